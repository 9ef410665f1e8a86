//! Who may earn from whom: new accounts only, never yourself or an account connected to you.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ids::AccountId;

/// What the rules need to know about an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFacts {
    pub id: AccountId,
    pub created_at: DateTime<Utc>,
    pub email: String,
    pub payment_fingerprint: Option<String>,
    pub hosted_machines: bool,
}

/// Why a referral earns nothing. Stored with the referral so a balance can explain itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disqualification {
    SelfReferral,
    ExistingAccount,
    SameEmail,
    SamePaymentFingerprint,
    LinkedAccounts,
}

impl Disqualification {
    pub fn code(self) -> &'static str {
        match self {
            Disqualification::SelfReferral => "self_referral",
            Disqualification::ExistingAccount => "existing_account",
            Disqualification::SameEmail => "same_email",
            Disqualification::SamePaymentFingerprint => "same_payment_fingerprint",
            Disqualification::LinkedAccounts => "linked_accounts",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        [
            Disqualification::SelfReferral,
            Disqualification::ExistingAccount,
            Disqualification::SameEmail,
            Disqualification::SamePaymentFingerprint,
            Disqualification::LinkedAccounts,
        ]
        .into_iter()
        .find(|d| d.code() == code)
    }

    /// A sentence a referrer can read.
    pub fn explain(self) -> &'static str {
        match self {
            Disqualification::SelfReferral => "an account cannot refer itself",
            Disqualification::ExistingAccount => {
                "the referred account existed before the referral; only new accounts count"
            }
            Disqualification::SameEmail => {
                "the referred account has the same email address as the referrer (connected account)"
            }
            Disqualification::SamePaymentFingerprint => {
                "the referred account uses the same payment method as the referrer (connected account)"
            }
            Disqualification::LinkedAccounts => {
                "the two accounts are known to be connected (linked by the platform)"
            }
        }
    }
}

/// Normalizes an email so aliases of one mailbox compare equal: case and surrounding space are
/// ignored, `+tag` suffixes are dropped, and for Gmail the dots in the local part too.
pub fn normalize_email(email: &str) -> String {
    let email = email.trim().to_ascii_lowercase();
    let Some((local, domain)) = email.rsplit_once('@') else {
        return email;
    };
    let local = local.split('+').next().unwrap_or(local);
    let domain = if domain == "googlemail.com" {
        "gmail.com"
    } else {
        domain
    };
    let local = if domain == "gmail.com" {
        local.replace('.', "")
    } else {
        local.to_string()
    };
    format!("{local}@{domain}")
}

/// Judges a referral made at `referred_at`. `linked` says whether the platform reported the two
/// accounts as connected. Checks run from the most to the least specific reason.
pub fn judge_referral(
    referrer: &AccountFacts,
    referred: &AccountFacts,
    referred_at: DateTime<Utc>,
    linked: bool,
) -> Result<(), Disqualification> {
    if referrer.id == referred.id {
        return Err(Disqualification::SelfReferral);
    }
    if linked {
        return Err(Disqualification::LinkedAccounts);
    }
    if normalize_email(&referrer.email) == normalize_email(&referred.email) {
        return Err(Disqualification::SameEmail);
    }
    if let (Some(a), Some(b)) = (&referrer.payment_fingerprint, &referred.payment_fingerprint)
        && !a.trim().is_empty()
        && a.trim() == b.trim()
    {
        return Err(Disqualification::SamePaymentFingerprint);
    }
    if referred.created_at < referred_at {
        return Err(Disqualification::ExistingAccount);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn account(id: &str, email: &str, fp: Option<&str>, day: u32) -> AccountFacts {
        AccountFacts {
            id: AccountId::parse(id).unwrap(),
            created_at: Utc.with_ymd_and_hms(2026, 1, day, 0, 0, 0).unwrap(),
            email: email.into(),
            payment_fingerprint: fp.map(Into::into),
            hosted_machines: false,
        }
    }

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, day, 0, 0, 0).unwrap()
    }

    #[test]
    fn a_new_unrelated_account_qualifies() {
        let r = account("a", "a@x.com", Some("fp1"), 1);
        let n = account("b", "b@x.com", Some("fp2"), 5);
        assert_eq!(judge_referral(&r, &n, at(5), false), Ok(()));
    }

    #[test]
    fn self_referral_earns_nothing() {
        let r = account("a", "a@x.com", None, 1);
        assert_eq!(
            judge_referral(&r, &r, at(1), false),
            Err(Disqualification::SelfReferral)
        );
    }

    #[test]
    fn connected_accounts_earn_nothing() {
        let r = account("a", "Jo.Doe+ref@gmail.com", Some("fp1"), 1);
        let same_mail = account("b", "jodoe@googlemail.com", None, 5);
        assert_eq!(
            judge_referral(&r, &same_mail, at(5), false),
            Err(Disqualification::SameEmail)
        );
        let same_card = account("c", "c@x.com", Some("fp1"), 5);
        assert_eq!(
            judge_referral(&r, &same_card, at(5), false),
            Err(Disqualification::SamePaymentFingerprint)
        );
        let linked = account("d", "d@x.com", None, 5);
        assert_eq!(
            judge_referral(&r, &linked, at(5), true),
            Err(Disqualification::LinkedAccounts)
        );
    }

    #[test]
    fn only_accounts_created_at_or_after_the_referral_count() {
        let r = account("a", "a@x.com", None, 1);
        let old = account("b", "b@x.com", None, 3);
        assert_eq!(
            judge_referral(&r, &old, at(4), false),
            Err(Disqualification::ExistingAccount)
        );
        assert_eq!(judge_referral(&r, &old, at(3), false), Ok(()));
    }

    #[test]
    fn email_normalization() {
        assert_eq!(normalize_email(" A.B+x@Example.com "), "a.b@example.com");
        assert_eq!(normalize_email("a.b+x@gmail.com"), "ab@gmail.com");
        assert_eq!(normalize_email("not-an-email"), "not-an-email");
        for d in [
            Disqualification::SelfReferral,
            Disqualification::ExistingAccount,
            Disqualification::SameEmail,
            Disqualification::SamePaymentFingerprint,
            Disqualification::LinkedAccounts,
        ] {
            assert_eq!(Disqualification::from_code(d.code()), Some(d));
        }
    }
}
