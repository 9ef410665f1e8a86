//! API keys: who may call the HTTP API, and for what.
//!
//! A key is shown once when created and stored only as its SHA-256, so a leaked database does
//! not leak working keys. Each key has one scope; a referrer key also names the one account it
//! acts for.

use sha2::{Digest, Sha256};

use super::ids::AccountId;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The platform's event feed: ingest records.
    Ingest,
    /// The platform's console acting for one referrer: that account's balance and payouts.
    Referrer,
    /// Operators: everything.
    Operator,
    /// Finance: every account's balances and payouts, read only.
    Finance,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::Ingest,
        Scope::Referrer,
        Scope::Operator,
        Scope::Finance,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Referrer => "referrer",
            Scope::Operator => "operator",
            Scope::Finance => "finance",
        }
    }

    pub fn from_code(code: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// Why a key cannot be created as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("unknown scope {0:?}; use one of ingest, referrer, operator, finance")]
    UnknownScope(String),
    #[error("a referrer key acts for one account: give --account")]
    ReferrerNeedsAccount,
    #[error("only a referrer key names an account")]
    AccountOnlyForReferrer,
    #[error("PAYOUTS_API_KEYS entry {entry:?}: {why}")]
    BadConfiguredKey { entry: String, why: String },
}

/// The caller a valid key identifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    /// The key's name, as the history of what it did shows it.
    pub name: String,
    pub scope: Scope,
    /// The account a referrer key acts for.
    pub account: Option<AccountId>,
}

/// Something a caller asks to do. Each API route names exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Read an account's balance, payout methods and payouts.
    ReadAccount(&'a AccountId),
    /// Set an account's payout method for a rail (where its money goes).
    SetPayoutMethod(&'a AccountId),
    /// Take money out of an account: a withdrawal.
    Withdraw(&'a AccountId),
    /// Switch an account to affiliate cash (permanent).
    OptIn(&'a AccountId),
    /// Feed platform records.
    Ingest,
    /// Read payout runs' reports and service metrics.
    ReadOperations,
    /// Start a payout run.
    RunPayouts,
    /// Start a reconciliation and resolve its exceptions (finance's own work).
    Reconcile,
    /// Act on a payout that needs a human (retry, cancel, mark paid, release a hold).
    OperatePayouts,
    /// Register and remove event endpoints, replay events (who hears what, and again).
    ManageEvents,
}

/// How far a scope may do one kind of action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Never: 403.
    No,
    /// For the key's own account only; any other answers as if it did not exist (404).
    Own,
    /// For any account.
    Any,
}

impl Action<'_> {
    /// The account the action is about, if it is about one.
    pub fn account(&self) -> Option<&AccountId> {
        match *self {
            Action::ReadAccount(a)
            | Action::SetPayoutMethod(a)
            | Action::Withdraw(a)
            | Action::OptIn(a) => Some(a),
            Action::Ingest
            | Action::ReadOperations
            | Action::RunPayouts
            | Action::Reconcile
            | Action::OperatePayouts
            | Action::ManageEvents => None,
        }
    }

    /// The one table of who may do what (the README's access table is its contract).
    ///
    /// Money leaves only at the account's own request or an operator's: the platform's feed
    /// (ingest) may set payout methods and opt-ins, as its records do, but never withdraw, so
    /// a leaked feed key cannot cash anyone out.
    pub fn grant(&self, scope: Scope) -> Grant {
        use Grant::{Any, No, Own};
        let [ingest, referrer, operator, finance] = match self {
            Action::ReadAccount(_) => [No, Own, Any, Any],
            Action::SetPayoutMethod(_) => [Any, Own, Any, No],
            Action::Withdraw(_) => [No, Own, Any, No],
            Action::OptIn(_) => [Any, Own, Any, No],
            Action::Ingest => [Any, No, Any, No],
            Action::ReadOperations => [No, No, Any, Any],
            Action::RunPayouts => [No, No, Any, No],
            Action::Reconcile => [No, No, Any, Any],
            Action::OperatePayouts => [No, No, Any, No],
            Action::ManageEvents => [No, No, Any, No],
        };
        match scope {
            Scope::Ingest => ingest,
            Scope::Referrer => referrer,
            Scope::Operator => operator,
            Scope::Finance => finance,
        }
    }
}

/// Why a caller may not do something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The key's scope never allows this.
    Forbidden,
    /// A referrer key asked about another account: answered as if it did not exist, so keys
    /// cannot probe which accounts do.
    Hidden,
}

impl Principal {
    /// Whether this caller may read `account`'s balance and payouts.
    pub fn may_read_account(&self, account: &AccountId) -> bool {
        self.authorize(Action::ReadAccount(account)).is_ok()
    }

    /// Whether this caller may read any account at all (a referrer key: its own).
    pub fn reads_accounts(&self) -> bool {
        !matches!(self.scope, Scope::Ingest)
    }

    /// Checks `action` against [`Action::grant`].
    pub fn authorize(&self, action: Action<'_>) -> Result<(), Denied> {
        match action.grant(self.scope) {
            Grant::Any => Ok(()),
            Grant::No => Err(Denied::Forbidden),
            Grant::Own => match action.account() {
                Some(account) if self.account.as_ref() == Some(account) => Ok(()),
                Some(_) => Err(Denied::Hidden),
                // An own-account grant on an action about no account cannot be satisfied.
                None => Err(Denied::Forbidden),
            },
        }
    }
}

/// Checks a requested scope and account against each other.
pub fn check_grant(scope: &str, account: Option<&AccountId>) -> Result<Scope, KeyError> {
    let scope = Scope::from_code(scope).ok_or_else(|| KeyError::UnknownScope(scope.into()))?;
    match (scope, account) {
        (Scope::Referrer, None) => Err(KeyError::ReferrerNeedsAccount),
        (Scope::Referrer, Some(_)) | (_, None) => Ok(scope),
        (_, Some(_)) => Err(KeyError::AccountOnlyForReferrer),
    }
}

/// A key given in configuration (`PAYOUTS_API_KEYS`) rather than created in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredKey {
    /// SHA-256 of the key, hex: configuration never holds a working key.
    pub hash: String,
    pub principal: Principal,
}

/// Parses `name:scope[:account]=sha256hex`, comma separated (see `.env.example`).
pub fn parse_configured_keys(text: &str) -> Result<Vec<ConfiguredKey>, KeyError> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let bad = |why: &str| KeyError::BadConfiguredKey {
                entry: entry.split('=').next().unwrap_or_default().to_string(),
                why: why.to_string(),
            };
            let (grant, hash) = entry
                .rsplit_once('=')
                .ok_or_else(|| bad("expected name:scope[:account]=sha256hex"))?;
            let hash = hash.trim().to_ascii_lowercase();
            if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad("the hash must be 64 hex digits (`payouts keys hash`)"));
            }
            let mut parts = grant.splitn(3, ':');
            let name = parts.next().unwrap_or_default().trim();
            if name.is_empty() {
                return Err(bad("the key needs a name"));
            }
            let scope = parts.next().ok_or_else(|| bad("the key needs a scope"))?;
            let account = parts
                .next()
                .map(AccountId::parse)
                .transpose()
                .map_err(|e| bad(&e.to_string()))?;
            let scope = check_grant(scope.trim(), account.as_ref())?;
            Ok(ConfiguredKey {
                hash,
                principal: Principal {
                    key_id: format!("config:{name}"),
                    name: name.to_string(),
                    scope,
                    account,
                },
            })
        })
        .collect()
}

/// What is stored for a presented key.
pub fn key_hash(presented: &str) -> String {
    hex::encode(Sha256::digest(presented.as_bytes()))
}

/// A new key's text: `pk_` and 32 random bytes, base64url.
pub fn generate_key() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    format!(
        "pk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct(s: &str) -> AccountId {
        AccountId::parse(s).unwrap()
    }

    #[test]
    fn a_referrer_key_reads_only_its_own_account() {
        let p = Principal {
            key_id: "k".into(),
            name: "k".into(),
            scope: Scope::Referrer,
            account: Some(acct("ref-alice")),
        };
        assert!(p.may_read_account(&acct("ref-alice")));
        assert!(!p.may_read_account(&acct("ref-bob")));
        let ingest = Principal {
            scope: Scope::Ingest,
            account: None,
            ..p.clone()
        };
        assert!(!ingest.may_read_account(&acct("ref-alice")));
        let finance = Principal {
            scope: Scope::Finance,
            account: None,
            ..p
        };
        assert!(finance.may_read_account(&acct("ref-bob")));
    }

    #[test]
    fn grants_are_checked() {
        assert_eq!(check_grant("operator", None), Ok(Scope::Operator));
        assert_eq!(
            check_grant("referrer", None),
            Err(KeyError::ReferrerNeedsAccount)
        );
        assert_eq!(
            check_grant("finance", Some(&acct("a"))),
            Err(KeyError::AccountOnlyForReferrer)
        );
        assert!(matches!(
            check_grant("root", None),
            Err(KeyError::UnknownScope(_))
        ));
    }

    #[test]
    fn keys_are_random_and_hashed_stably() {
        let (a, b) = (generate_key(), generate_key());
        assert_ne!(a, b);
        assert!(a.starts_with("pk_") && a.len() == 46, "{a}");
        assert_eq!(key_hash(&a), key_hash(&a));
        assert_ne!(key_hash(&a), key_hash(&b));
        assert_eq!(key_hash(&a).len(), 64);
    }

    fn principal(scope: Scope, account: Option<&str>) -> Principal {
        Principal {
            key_id: "k".into(),
            name: "k".into(),
            scope,
            account: account.map(acct),
        }
    }

    #[test]
    fn authorization_table() {
        let (a, b) = (acct("a"), acct("b"));
        let referrer = principal(Scope::Referrer, Some("a"));
        let ingest = principal(Scope::Ingest, None);
        let finance = principal(Scope::Finance, None);
        let operator = principal(Scope::Operator, None);
        for action in [
            Action::ReadAccount(&a),
            Action::SetPayoutMethod(&a),
            Action::Withdraw(&a),
            Action::OptIn(&a),
        ] {
            assert_eq!(referrer.authorize(action), Ok(()));
            assert_eq!(operator.authorize(action), Ok(()));
        }
        for action in [
            Action::ReadAccount(&b),
            Action::SetPayoutMethod(&b),
            Action::Withdraw(&b),
            Action::OptIn(&b),
        ] {
            assert_eq!(referrer.authorize(action), Err(Denied::Hidden));
            assert_eq!(operator.authorize(action), Ok(()));
        }
        for action in [
            Action::Ingest,
            Action::ReadOperations,
            Action::RunPayouts,
            Action::Reconcile,
            Action::OperatePayouts,
        ] {
            assert_eq!(referrer.authorize(action), Err(Denied::Forbidden));
            assert_eq!(operator.authorize(action), Ok(()));
        }
        // Only an operator acts on a payout that needs a human.
        for scope in [&ingest, &finance] {
            assert_eq!(
                scope.authorize(Action::OperatePayouts),
                Err(Denied::Forbidden)
            );
        }

        // The feed sets methods and opt-ins as its records do, and never takes money out.
        assert_eq!(ingest.authorize(Action::Ingest), Ok(()));
        assert_eq!(ingest.authorize(Action::SetPayoutMethod(&a)), Ok(()));
        assert_eq!(ingest.authorize(Action::OptIn(&a)), Ok(()));
        assert_eq!(
            ingest.authorize(Action::Withdraw(&a)),
            Err(Denied::Forbidden)
        );
        assert_eq!(
            ingest.authorize(Action::ReadAccount(&a)),
            Err(Denied::Forbidden)
        );
        assert_eq!(
            ingest.authorize(Action::ReadOperations),
            Err(Denied::Forbidden)
        );
        assert_eq!(ingest.authorize(Action::Reconcile), Err(Denied::Forbidden));

        // Finance reads everything and reconciles; it never changes an account.
        assert_eq!(finance.authorize(Action::ReadAccount(&b)), Ok(()));
        assert_eq!(finance.authorize(Action::ReadOperations), Ok(()));
        assert_eq!(finance.authorize(Action::Reconcile), Ok(()));
        for action in [
            Action::SetPayoutMethod(&b),
            Action::Withdraw(&b),
            Action::OptIn(&b),
        ] {
            assert_eq!(finance.authorize(action), Err(Denied::Forbidden));
        }
        assert_eq!(
            finance.authorize(Action::RunPayouts),
            Err(Denied::Forbidden)
        );
    }

    #[test]
    fn configured_keys_hold_hashes_with_their_grants() {
        let h = key_hash("pk_secret");
        let keys = parse_configured_keys(&format!("platform:ingest={h}, console:referrer:a:b={h}"))
            .unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].principal.key_id, "config:platform");
        assert_eq!(keys[0].principal.scope, Scope::Ingest);
        assert_eq!(keys[1].principal.account, Some(acct("a:b")));
        assert_eq!(keys[1].hash, h);
        for bad in [
            "platform:ingest=short",
            "platform:ingest",
            ":ingest=0000000000000000000000000000000000000000000000000000000000000000",
            "x:god=0000000000000000000000000000000000000000000000000000000000000000",
            "x:referrer=0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(parse_configured_keys(bad).is_err(), "{bad}");
        }
        assert!(parse_configured_keys("").unwrap().is_empty());
    }
}
