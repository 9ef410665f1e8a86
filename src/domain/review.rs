//! Which payouts wait for a person before they are sent, and why (no I/O).
//!
//! A program's review rules flag a new payout on signals of referral farming (a destination
//! another account also uses, a payee linked to the accounts it referred, referred spend that
//! was mostly refunded) and on amounts worth a second look. A flagged payout is created
//! `held` with its hold in place: nothing leaves until an operator approves it, and a
//! rejection voids the hold. The platform's tax rules (`domain::tax::tax_flag`) hold a payout
//! the same way until the missing form arrives.

use std::fmt;

use rust_decimal::Decimal;
use serde::Serialize;

use super::money::Money;
use super::operator::{Booking, Effect, PayoutFacts, Refusal};
use super::status::PayoutStatus;
use super::tracking::LedgerEffect;

/// Why a payout is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The destination is also the payout method of another account.
    SharedDestination,
    /// The payee is linked (an explicit link, the same email or payment method) to an account
    /// it referred.
    LinkedReferred,
    /// The amount is above the program's review threshold.
    AboveThreshold,
    /// The destination was never paid before and the amount is above the smaller threshold.
    NewDestination,
    /// Most of the spend of the payee's referred accounts was refunded.
    MostlyRefunded,
    /// A US payee would pass the year's reporting threshold without a W-9 on file.
    W9Missing,
    /// A payee outside the US has no W-8BEN or W-8BEN-E on file.
    W8Missing,
}

impl Rule {
    pub const ALL: [Rule; 7] = [
        Rule::SharedDestination,
        Rule::LinkedReferred,
        Rule::AboveThreshold,
        Rule::NewDestination,
        Rule::MostlyRefunded,
        Rule::W9Missing,
        Rule::W8Missing,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Rule::SharedDestination => "shared_destination",
            Rule::LinkedReferred => "linked_referred",
            Rule::AboveThreshold => "above_threshold",
            Rule::NewDestination => "new_destination",
            Rule::MostlyRefunded => "mostly_refunded",
            Rule::W9Missing => "w9_missing",
            Rule::W8Missing => "w8_missing",
        }
    }

    pub fn from_code(code: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.code() == code)
    }

    /// A tax rule is met by a form arriving, never waived by an operator's approval.
    pub fn is_tax(self) -> bool {
        matches!(self, Rule::W9Missing | Rule::W8Missing)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One reason a payout is held, with what a reviewer needs to judge it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    pub rule: Rule,
    pub evidence: String,
}

/// A program's review rules; every one is off unless its configuration turns it on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReviewRules {
    pub shared_destination: bool,
    pub linked_referred: bool,
    /// Hold every payout above this amount (the program's currency).
    pub above: Option<Decimal>,
    /// Hold a payout above this amount to a destination never paid before.
    pub new_destination_above: Option<Decimal>,
    /// Hold when more than this share of the referred accounts' spend was refunded.
    pub refunded_share: Option<Decimal>,
}

impl ReviewRules {
    pub fn is_off(&self) -> bool {
        *self == ReviewRules::default()
    }
}

/// What the rules are judged on, loaded where the payout is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewFacts {
    /// Other accounts whose payout method (on any rail) is this payout's destination.
    pub sharing: Vec<String>,
    /// Accounts the payee referred that are linked to it, each with how (`link`, `email`,
    /// `payment method`).
    pub linked: Vec<(String, String)>,
    /// A payout to this destination on this rail was paid before.
    pub destination_paid_before: bool,
    /// Lifetime spend of the payee's referred accounts in the payout's currency, and the part
    /// of it refunded.
    pub referred_spend: Money,
    pub referred_refunded: Money,
}

/// The flags `rules` raise on a payout of `amount` to `destination`.
pub fn review(
    rules: &ReviewRules,
    amount: Money,
    destination: &str,
    facts: &ReviewFacts,
) -> Vec<Flag> {
    let mut flags = Vec::new();
    let mut raise = |rule, evidence: String| flags.push(Flag { rule, evidence });
    if rules.shared_destination && !facts.sharing.is_empty() {
        raise(
            Rule::SharedDestination,
            format!(
                "destination {destination} is also the payout method of {}",
                facts.sharing.join(", ")
            ),
        );
    }
    if rules.linked_referred && !facts.linked.is_empty() {
        let how: Vec<String> = facts
            .linked
            .iter()
            .map(|(account, by)| format!("{account} (by {by})"))
            .collect();
        raise(
            Rule::LinkedReferred,
            format!("the payee is linked to referred {}", how.join(", ")),
        );
    }
    if let Some(limit) = rules.above.filter(|l| amount.amount() > *l) {
        raise(
            Rule::AboveThreshold,
            format!(
                "{amount} is above the review threshold of {} {}",
                limit,
                amount.currency()
            ),
        );
    }
    let new_limit = rules.new_destination_above;
    if let Some(limit) =
        new_limit.filter(|l| amount.amount() > *l && !facts.destination_paid_before)
    {
        raise(
            Rule::NewDestination,
            format!(
                "destination {destination} was never paid before and {amount} is above {limit} {}",
                amount.currency()
            ),
        );
    }
    if let Some(share) = rules.refunded_share {
        let spend = facts.referred_spend.amount();
        let refunded = facts.referred_refunded.amount();
        if spend > Decimal::ZERO && refunded > spend * share {
            raise(
                Rule::MostlyRefunded,
                format!(
                    "{} of the referred accounts' spend of {} was refunded, more than {}%",
                    facts.referred_refunded,
                    facts.referred_spend,
                    (share * Decimal::ONE_HUNDRED).normalize()
                ),
            );
        }
    }
    flags
}

/// An operator's decision on a held payout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approved,
    Rejected,
}

impl Verdict {
    pub fn code(self) -> &'static str {
        match self {
            Verdict::Approved => "approved",
            Verdict::Rejected => "rejected",
        }
    }
}

fn must_be_held(action: &'static str, facts: &PayoutFacts) -> Result<(), Refusal> {
    if facts.status == PayoutStatus::Held {
        return Ok(());
    }
    Err(Refusal::WrongState {
        action,
        status: facts.status,
        hint: "only a payout held for review or a tax form is approved or rejected",
    })
}

/// Approving clears the review flags. A missing tax form is not an operator's to waive: the
/// payout then stays held until the form arrives.
pub fn approve(facts: &PayoutFacts) -> Result<Effect, Refusal> {
    must_be_held("approve", facts)?;
    let (tax, review): (Vec<Rule>, Vec<Rule>) = facts.flags.iter().partition(|r| r.is_tax());
    if review.is_empty() {
        return Err(Refusal::WrongState {
            action: "approve",
            status: facts.status,
            hint: "it waits for a tax form, which no approval replaces; it is released when the form arrives, or reject it",
        });
    }
    let names = |rules: &[Rule]| {
        rules
            .iter()
            .map(|r| r.code())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (to, summary) = match tax.is_empty() {
        true => (
            PayoutStatus::Queued,
            format!(
                "approved in review ({}); the payout is sent",
                names(&review)
            ),
        ),
        false => (
            PayoutStatus::Held,
            format!(
                "approved in review ({}); still held until the tax form arrives ({})",
                names(&review),
                names(&tax)
            ),
        ),
    };
    Ok(Effect {
        to,
        ledger: LedgerEffect::None,
        fresh_attempts: false,
        // The storage queues it when due (a cooling-off may still hold it).
        run_now: false,
        summary,
        book: Some(Booking::Review {
            verdict: Verdict::Approved,
            clawback: None,
        }),
    })
}

/// Rejecting voids the hold; with `clawback` the amount also leaves the payee's balance.
pub fn reject(facts: &PayoutFacts, clawback: bool) -> Result<Effect, Refusal> {
    must_be_held("reject", facts)?;
    let summary = match clawback {
        true => format!(
            "rejected in review; the hold is voided and the {} behind it clawed back",
            facts.amount
        ),
        false => {
            "rejected in review; the hold is voided and the amount is available again".to_string()
        }
    };
    Ok(Effect {
        to: PayoutStatus::Failed,
        ledger: LedgerEffect::of_move(PayoutStatus::Failed),
        fresh_attempts: false,
        run_now: false,
        summary,
        book: Some(Booking::Review {
            verdict: Verdict::Rejected,
            clawback: clawback.then_some(facts.amount),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::Currency;

    fn usd(s: &str) -> Money {
        Money::new(s.parse().unwrap(), Currency::Usd)
    }

    fn clean() -> ReviewFacts {
        ReviewFacts {
            sharing: vec![],
            linked: vec![],
            destination_paid_before: true,
            referred_spend: usd("0"),
            referred_refunded: usd("0"),
        }
    }

    fn all_on() -> ReviewRules {
        ReviewRules {
            shared_destination: true,
            linked_referred: true,
            above: Some("500".parse().unwrap()),
            new_destination_above: Some("100".parse().unwrap()),
            refunded_share: Some("0.5".parse().unwrap()),
        }
    }

    fn rules_of(flags: &[Flag]) -> Vec<Rule> {
        flags.iter().map(|f| f.rule).collect()
    }

    #[test]
    fn rules_that_are_off_raise_nothing() {
        let mut facts = clean();
        facts.sharing = vec!["alt-1".into()];
        facts.destination_paid_before = false;
        assert!(review(&ReviewRules::default(), usd("9999"), "d@x", &facts).is_empty());
        assert!(ReviewRules::default().is_off() && !all_on().is_off());
    }

    #[test]
    fn each_rule_fires_on_its_own_signal_only() {
        let rules = all_on();
        assert!(review(&rules, usd("100"), "d@x", &clean()).is_empty());
        let mut shared = clean();
        shared.sharing = vec!["alt-1".into(), "alt-2".into()];
        let flags = review(&rules, usd("10"), "d@x", &shared);
        assert_eq!(rules_of(&flags), [Rule::SharedDestination]);
        assert_eq!(
            flags[0].evidence,
            "destination d@x is also the payout method of alt-1, alt-2"
        );
        let mut linked = clean();
        linked.linked = vec![("alt-1".into(), "email".into())];
        assert_eq!(
            review(&rules, usd("10"), "d@x", &linked)[0].evidence,
            "the payee is linked to referred alt-1 (by email)"
        );
        // Above: strictly more than the threshold.
        assert!(review(&rules, usd("500"), "d@x", &clean()).is_empty());
        assert_eq!(
            rules_of(&review(&rules, usd("500.01"), "d@x", &clean())),
            [Rule::AboveThreshold]
        );
        let mut fresh = clean();
        fresh.destination_paid_before = false;
        assert!(review(&rules, usd("100"), "d@x", &fresh).is_empty());
        assert_eq!(
            rules_of(&review(&rules, usd("100.01"), "d@x", &fresh)),
            [Rule::NewDestination]
        );
    }

    #[test]
    fn mostly_refunded_is_more_than_the_share() {
        let rules = all_on();
        let mut facts = clean();
        facts.referred_spend = usd("1000");
        facts.referred_refunded = usd("500");
        assert!(review(&rules, usd("10"), "d@x", &facts).is_empty());
        facts.referred_refunded = usd("500.01");
        let flags = review(&rules, usd("10"), "d@x", &facts);
        assert_eq!(rules_of(&flags), [Rule::MostlyRefunded]);
        assert_eq!(
            flags[0].evidence,
            "500.01 USD of the referred accounts' spend of 1000.00 USD was refunded, more than 50%"
        );
        // No spend at all is no signal.
        assert!(review(&rules, usd("10"), "d@x", &clean()).is_empty());
    }

    #[test]
    fn codes_round_trip_and_tax_rules_are_named() {
        for r in Rule::ALL {
            assert_eq!(Rule::from_code(r.code()), Some(r));
        }
        assert!(Rule::W9Missing.is_tax() && !Rule::SharedDestination.is_tax());
    }
}
