//! Who may earn from whom: new accounts only, never yourself or an account connected to you.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ids::AccountId;

/// What the rules need to know about an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFacts {
    pub id: AccountId,
    pub created_at: DateTime<Utc>,
    /// Every email the account has had: a connection once seen stays evidence, so the verdict
    /// does not depend on the order account versions arrived in.
    pub emails: Vec<String>,
    /// Every payment fingerprint the account has had, for the same reason.
    pub payment_fingerprints: Vec<String>,
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

    /// The ledger note and balance reason of a referral disqualified after it had qualified.
    pub fn explain_late(self, evidence_at: DateTime<Utc>, clawed_back: bool) -> String {
        let outcome = if clawed_back {
            "what it had earned was clawed back"
        } else {
            "what it had earned stays; spend from then on earns nothing"
        };
        format!(
            "referral disqualified: {}; the evidence arrived at {} after the referral had qualified, so {outcome}",
            self.explain(),
            evidence_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
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
    let shared = |a: &[String], b: &[String], norm: fn(&str) -> String| {
        a.iter()
            .map(|x| norm(x))
            .filter(|x| !x.is_empty())
            .any(|x| b.iter().any(|y| norm(y) == x))
    };
    if shared(&referrer.emails, &referred.emails, normalize_email) {
        return Err(Disqualification::SameEmail);
    }
    if shared(
        &referrer.payment_fingerprints,
        &referred.payment_fingerprints,
        |f| f.trim().to_string(),
    ) {
        return Err(Disqualification::SamePaymentFingerprint);
    }
    if referred.created_at < referred_at {
        return Err(Disqualification::ExistingAccount);
    }
    Ok(())
}

/// A referral's stored verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredVerdict {
    /// Not judged yet: one of its accounts is not known.
    Pending,
    Qualified,
    Disqualified(Disqualification),
}

/// A verdict to store: the judgement, and since when a referral that had qualified is
/// disqualified (`None` when it never qualified, or qualifies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerdictChange {
    pub verdict: Result<(), Disqualification>,
    pub late_at: Option<DateTime<Utc>>,
}

/// What to store when a referral is judged (again) at `now`; `None` when nothing changes.
/// Evidence that disqualifies a qualified referral is late: its time is kept, so the balance
/// can say when and a program that only stops future earnings knows where to cut.
pub fn rejudge(
    previous: StoredVerdict,
    previous_late_at: Option<DateTime<Utc>>,
    verdict: Result<(), Disqualification>,
    now: DateTime<Utc>,
) -> Option<VerdictChange> {
    let late_at = match (previous, verdict) {
        (StoredVerdict::Qualified, Ok(())) => return None,
        (StoredVerdict::Disqualified(was), Err(now_why)) if was == now_why => return None,
        (StoredVerdict::Qualified, Err(_)) => Some(now),
        (StoredVerdict::Disqualified(_), Err(_)) => previous_late_at,
        (StoredVerdict::Pending, _) | (_, Ok(())) => None,
    };
    Some(VerdictChange { verdict, late_at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn account(id: &str, email: &str, fp: Option<&str>, day: u32) -> AccountFacts {
        AccountFacts {
            id: AccountId::parse(id).unwrap(),
            created_at: Utc.with_ymd_and_hms(2026, 1, day, 0, 0, 0).unwrap(),
            emails: vec![email.into()],
            payment_fingerprints: fp.into_iter().map(Into::into).collect(),
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
    fn any_email_or_fingerprint_an_account_ever_had_connects_it() {
        let r = account("a", "a@x.com", Some("fp1"), 1);
        let mut n = account("b", "b@x.com", Some("fp2"), 5);
        n.payment_fingerprints.push("fp1".into());
        assert_eq!(
            judge_referral(&r, &n, at(5), false),
            Err(Disqualification::SamePaymentFingerprint)
        );
        let mut n = account("b", "b@x.com", Some(" "), 5);
        n.emails.push("A+old@x.com".into());
        assert_eq!(
            judge_referral(&r, &n, at(5), false),
            Err(Disqualification::SameEmail)
        );
        let blank = account("c", "c@x.com", Some(" "), 5);
        let blank_too = account("d", "d@x.com", Some(" "), 5);
        assert_eq!(judge_referral(&blank, &blank_too, at(5), false), Ok(()));
    }

    #[test]
    fn late_evidence_is_remembered_and_only_changes_are_written() {
        use StoredVerdict::*;
        let same = Disqualification::SamePaymentFingerprint;
        let (t1, t2) = (at(10), at(20));
        assert_eq!(rejudge(Qualified, None, Ok(()), t1), None);
        assert_eq!(
            rejudge(Pending, None, Err(same), t1),
            Some(VerdictChange {
                verdict: Err(same),
                late_at: None
            })
        );
        assert_eq!(
            rejudge(Qualified, None, Err(same), t1),
            Some(VerdictChange {
                verdict: Err(same),
                late_at: Some(t1)
            })
        );
        assert_eq!(rejudge(Disqualified(same), Some(t1), Err(same), t2), None);
        assert_eq!(
            rejudge(
                Disqualified(same),
                Some(t1),
                Err(Disqualification::LinkedAccounts),
                t2
            ),
            Some(VerdictChange {
                verdict: Err(Disqualification::LinkedAccounts),
                late_at: Some(t1)
            })
        );
        assert_eq!(
            rejudge(
                Disqualified(Disqualification::ExistingAccount),
                None,
                Ok(()),
                t2
            ),
            Some(VerdictChange {
                verdict: Ok(()),
                late_at: None
            })
        );
        let note = same.explain_late(t1, true);
        assert!(note.starts_with("referral disqualified: "), "{note}");
        assert!(
            note.contains("2026-01-10T00:00:00Z") && note.contains("clawed back"),
            "{note}"
        );
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
