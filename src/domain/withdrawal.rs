//! Whether a withdrawal may go ahead, and the payout it creates (no I/O). A payout run makes
//! the same [`NewPayout`], so one writer stores the hold, the payout, its first event and its
//! job for both (`storage::sql::new_payouts`).

use chrono::{DateTime, SecondsFormat, Utc};

use super::ids::{AccountId, PayoutId, ProgramId, Rail};
use super::money::Money;

/// A payout decided and not yet written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayout {
    pub id: PayoutId,
    pub account: AccountId,
    pub program: ProgramId,
    pub rail: Rail,
    pub destination: String,
    pub amount: Money,
    /// The caller's key (a withdrawal) or the run's derived one; unique per account.
    pub idempotency_key: String,
    /// No worker sends it before then (a cooling-off hold); `None`: at once.
    pub not_before: Option<DateTime<Utc>>,
    /// Why it exists, on its first event.
    pub reason: String,
    /// Who asked: `withdrawal` or `payout_run`.
    pub source: &'static str,
    /// Why it is held for an operator or a tax form (`domain::review`); empty: it is sent.
    pub flags: Vec<crate::domain::review::Flag>,
}

/// What the books say about the payee's balance in the program and currency asked for.
#[derive(Debug, Clone, Copy)]
pub struct Standing<'a> {
    /// Why the payee may not cash out, if it may not.
    pub ineligible: Option<&'a str>,
    /// The rails that may pay this program's cash.
    pub rails: &'a [Rail],
    pub available: Money,
    pub payable_now: Money,
}

/// The payee's saved method for the rail asked for.
#[derive(Debug, Clone, Copy)]
pub struct SavedMethod<'a> {
    pub destination: &'a str,
    /// When it last changed: a recent change holds payouts for the cooling-off period.
    pub changed_at: Option<DateTime<Utc>>,
}

/// A withdrawal as the payee asked for it.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub account: &'a AccountId,
    pub program: &'a ProgramId,
    pub rail: Rail,
    pub amount: Money,
    pub idempotency_key: &'a str,
}

/// Why a withdrawal is refused; nothing is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No balance in this program and currency.
    NoBalance,
    RailNotAllowed {
        allowed: String,
    },
    Ineligible {
        reason: String,
    },
    NoPayoutMethod,
    InsufficientFunds {
        available: Money,
    },
}

/// Decides a withdrawal, in this order: a balance exists, the rail may pay the program, the
/// payee may cash out, it has a method on the rail, and the amount is payable now. A method
/// changed within `held_until`'s cooling-off holds the payout until then.
pub fn decide(
    id: PayoutId,
    ask: Ask<'_>,
    standing: Option<Standing<'_>>,
    method: Option<SavedMethod<'_>>,
    held_until: Option<DateTime<Utc>>,
) -> Result<NewPayout, Refusal> {
    let standing = standing.ok_or(Refusal::NoBalance)?;
    if standing.ineligible.is_none() && !standing.rails.contains(&ask.rail) {
        let allowed: Vec<&str> = standing.rails.iter().map(|r| r.as_str()).collect();
        return Err(Refusal::RailNotAllowed {
            allowed: allowed.join(", "),
        });
    }
    if let Some(reason) = standing.ineligible {
        return Err(Refusal::Ineligible {
            reason: reason.to_string(),
        });
    }
    let method = method.ok_or(Refusal::NoPayoutMethod)?;
    if ask.amount.amount() > standing.payable_now.amount() {
        return Err(Refusal::InsufficientFunds {
            available: standing.payable_now,
        });
    }
    let mut reason = format!(
        "withdrawal of {} to {} {} requested; {} held from an available {}",
        ask.amount, ask.rail, method.destination, ask.amount, standing.available
    );
    if let (Some(until), Some(changed)) = (held_until, method.changed_at) {
        reason.push_str(&format!(
            "; on cooling-off hold until {} because the {} payout method changed at {}",
            until.to_rfc3339_opts(SecondsFormat::Secs, true),
            ask.rail,
            changed.to_rfc3339_opts(SecondsFormat::Secs, true),
        ));
    }
    Ok(NewPayout {
        id,
        account: ask.account.clone(),
        program: ask.program.clone(),
        rail: ask.rail,
        destination: method.destination.to_string(),
        amount: ask.amount,
        idempotency_key: ask.idempotency_key.to_string(),
        not_before: held_until,
        reason,
        source: "withdrawal",
        flags: Vec::new(),
    })
}

/// The payout a run makes of a payee's whole payable balance (the run has already decided
/// that the payee is eligible and chosen its method; see `domain::payout_run`).
pub struct RunPayout<'a> {
    pub period: &'a str,
    pub account: AccountId,
    pub program: ProgramId,
    pub rail: Rail,
    pub destination: String,
    pub amount: Money,
    pub available: Money,
    pub idempotency_key: String,
}

impl RunPayout<'_> {
    pub fn into_new(self, id: PayoutId) -> NewPayout {
        let reason = format!(
            "payout run {}: {} to {} {}; {} held from an available {}",
            self.period, self.amount, self.rail, self.destination, self.amount, self.available
        );
        NewPayout {
            id,
            account: self.account,
            program: self.program,
            rail: self.rail,
            destination: self.destination,
            amount: self.amount,
            idempotency_key: self.idempotency_key,
            not_before: None,
            reason,
            source: "payout_run",
            flags: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::Currency;

    fn usd(s: &str) -> Money {
        Money::new(s.parse().unwrap(), Currency::Usd)
    }

    struct Case {
        account: AccountId,
        program: ProgramId,
    }

    impl Case {
        fn new() -> Self {
            Case {
                account: AccountId::parse("acct_1").unwrap(),
                program: ProgramId::parse("vast_referral").unwrap(),
            }
        }

        fn ask(&self, rail: Rail, amount: &str) -> Ask<'_> {
            Ask {
                account: &self.account,
                program: &self.program,
                rail,
                amount: usd(amount),
                idempotency_key: "k1",
            }
        }
    }

    const RAILS: &[Rail] = &[Rail::Stripe, Rail::Paypal];

    fn standing(ineligible: Option<&str>) -> Standing<'_> {
        Standing {
            ineligible,
            rails: RAILS,
            available: usd("50.456"),
            payable_now: usd("50.45"),
        }
    }

    const METHOD: SavedMethod<'static> = SavedMethod {
        destination: "acct_dest",
        changed_at: None,
    };

    fn id() -> PayoutId {
        PayoutId::parse("po_1").unwrap()
    }

    #[test]
    fn a_payable_withdrawal_becomes_a_payout_that_says_why() {
        let c = Case::new();
        let p = decide(
            id(),
            c.ask(Rail::Stripe, "50.45"),
            Some(standing(None)),
            Some(METHOD),
            None,
        )
        .unwrap();
        assert_eq!(p.destination, "acct_dest");
        assert_eq!(p.not_before, None);
        assert_eq!(
            p.reason,
            "withdrawal of 50.45 USD to stripe acct_dest requested; 50.45 USD held from an available 50.456 USD"
        );
    }

    #[test]
    fn refusals_come_in_a_fixed_order() {
        let c = Case::new();
        let ask = c.ask(Rail::Wise, "60");
        assert_eq!(
            decide(id(), ask, None, Some(METHOD), None),
            Err(Refusal::NoBalance)
        );
        assert_eq!(
            decide(id(), ask, Some(standing(None)), Some(METHOD), None),
            Err(Refusal::RailNotAllowed {
                allowed: "stripe, paypal".into()
            })
        );
        // An ineligible payee hears why, whatever rail it asked for.
        assert_eq!(
            decide(
                id(),
                ask,
                Some(standing(Some("spend below $5"))),
                None,
                None
            ),
            Err(Refusal::Ineligible {
                reason: "spend below $5".into()
            })
        );
        let ask = c.ask(Rail::Stripe, "60");
        assert_eq!(
            decide(id(), ask, Some(standing(None)), None, None),
            Err(Refusal::NoPayoutMethod)
        );
        assert_eq!(
            decide(id(), ask, Some(standing(None)), Some(METHOD), None),
            Err(Refusal::InsufficientFunds {
                available: usd("50.45")
            })
        );
    }

    #[test]
    fn a_recently_changed_method_holds_the_payout_and_says_until_when() {
        let c = Case::new();
        let changed: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
        let until: DateTime<Utc> = "2026-12-03T10:00:00Z".parse().unwrap();
        let method = SavedMethod {
            changed_at: Some(changed),
            ..METHOD
        };
        let p = decide(
            id(),
            c.ask(Rail::Stripe, "10"),
            Some(standing(None)),
            Some(method),
            Some(until),
        )
        .unwrap();
        assert_eq!(p.not_before, Some(until));
        assert!(p.reason.ends_with(
            "on cooling-off hold until 2026-12-03T10:00:00Z because the stripe payout method changed at 2026-12-01T10:00:00Z"
        ));
    }
}
