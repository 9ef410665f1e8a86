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
}

/// The caller a valid key identifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    pub scope: Scope,
    /// The account a referrer key acts for.
    pub account: Option<AccountId>,
}

impl Principal {
    /// Whether this caller may read `account`'s balance and payouts.
    pub fn may_read_account(&self, account: &AccountId) -> bool {
        match self.scope {
            Scope::Operator | Scope::Finance => true,
            Scope::Referrer => self.account.as_ref() == Some(account),
            Scope::Ingest => false,
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
}
