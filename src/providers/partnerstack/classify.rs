//! PartnerStack's error table and payment-status table, as data.
//!
//! Errors: first matching row wins. PartnerStack publishes no error-code catalogue, so rows
//! match on the HTTP status and, where needed, a phrase in `message`. Anything unlisted falls
//! back to the safe side: an unlisted 5xx or odd status is Unknown, an unlisted 4xx Permanent.

use crate::domain::tracking::RailState;
use crate::providers::Class;

/// One row: a status range, an optional lower-case phrase of `message`, and the decision.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub status: (u16, u16),
    pub phrase: Option<&'static str>,
    pub class: Class,
    pub why: &'static str,
}

pub const RULES: &[Rule] = &[
    Rule {
        status: (400, 409),
        phrase: Some("duplicate"),
        class: Class::Unknown,
        why: "a reward with this key already exists; resolve finds it (duplicate-key semantics UNCONFIRMED)",
    },
    Rule {
        status: (409, 409),
        phrase: None,
        class: Class::Unknown,
        why: "conflict: another request with this key may have landed",
    },
    Rule {
        status: (429, 429),
        phrase: None,
        class: Class::Throttled,
        why: "rate limited before execution",
    },
    Rule {
        status: (400, 400),
        phrase: None,
        class: Class::Permanent,
        why: "validation refused the reward",
    },
    Rule {
        status: (401, 401),
        phrase: None,
        class: Class::Permanent,
        why: "API keys rejected",
    },
    Rule {
        status: (403, 403),
        phrase: None,
        class: Class::Permanent,
        why: "not allowed for these API keys",
    },
    Rule {
        status: (404, 404),
        phrase: None,
        class: Class::Permanent,
        why: "unknown partner",
    },
    Rule {
        status: (422, 422),
        phrase: None,
        class: Class::Permanent,
        why: "reward refused",
    },
    Rule {
        status: (500, 599),
        phrase: None,
        class: Class::Unknown,
        why: "provider error; the reward may or may not exist",
    },
    Rule {
        status: (400, 499),
        phrase: None,
        class: Class::Permanent,
        why: "request refused",
    },
];

/// Looks up the decision for a non-2xx response.
pub fn classify(status: u16, message: &str) -> (Class, &'static str) {
    let message = message.to_ascii_lowercase();
    RULES
        .iter()
        .find(|r| {
            (r.status.0..=r.status.1).contains(&status)
                && r.phrase.is_none_or(|p| message.contains(p))
        })
        .map(|r| (r.class, r.why))
        .unwrap_or((Class::Unknown, "unexpected response"))
}

/// Reward `payment_status` to what it means for the money. Once a reward is `available` the
/// amount sits in the partner's PartnerStack balance and is theirs to withdraw: from our
/// side the money has left (PartnerStack pays out from there), so that is `Paid`. A refunded
/// reward (`paid_and_refunded`) is `Returned`. Whether an `expired` or `failed` reward's money
/// comes back to us, or stays with PartnerStack to be paid again, is UNCONFIRMED: crediting
/// the referrer could pay twice, so those are `Disputed` and wait for an operator.
pub const STATUS_MAP: &[(&str, RailState)] = &[
    ("pending", RailState::InFlight),
    ("merging", RailState::InFlight),
    ("available", RailState::Paid),
    ("in_transit", RailState::Paid),
    ("withdrawn", RailState::Paid),
    ("paid_externally", RailState::Paid),
    ("paid_and_refunded", RailState::Returned),
    ("expired", RailState::Disputed),
    ("failed", RailState::Disputed),
];

/// The state for a payment status; an unknown word is treated as still in flight, so it
/// keeps being polled and never books money as moved or returned on a guess.
pub fn rail_state(payment_status: &str) -> RailState {
    STATUS_MAP
        .iter()
        .find(|(s, _)| *s == payment_status)
        .map(|(_, r)| *r)
        .unwrap_or(RailState::InFlight)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_decisions() {
        assert_eq!(classify(400, "amount is required").0, Class::Permanent);
        assert_eq!(classify(400, "Duplicate key").0, Class::Unknown);
        assert_eq!(classify(409, "duplicate key").0, Class::Unknown);
        assert_eq!(classify(409, "conflict").0, Class::Unknown);
        assert_eq!(classify(401, "").0, Class::Permanent);
        assert_eq!(classify(403, "").0, Class::Permanent);
        assert_eq!(classify(404, "partner not found").0, Class::Permanent);
        assert_eq!(classify(422, "").0, Class::Permanent);
        assert_eq!(classify(429, "").0, Class::Throttled);
        assert_eq!(classify(500, "").0, Class::Unknown);
        assert_eq!(classify(503, "").0, Class::Unknown);
        assert_eq!(classify(302, "").0, Class::Unknown);
        assert_eq!(classify(418, "").0, Class::Permanent);
    }

    #[test]
    fn status_map() {
        assert_eq!(rail_state("pending"), RailState::InFlight);
        for s in ["available", "in_transit", "withdrawn", "paid_externally"] {
            assert_eq!(rail_state(s), RailState::Paid, "{s}");
        }
        assert_eq!(rail_state("paid_and_refunded"), RailState::Returned);
        for s in ["expired", "failed"] {
            assert_eq!(rail_state(s), RailState::Disputed, "{s}");
        }
        assert_eq!(rail_state("something_new"), RailState::InFlight);
    }
}
