//! Wise's error table and status map, as data (docs/providers/wise.md, "Status map" and
//! "Errors").
//!
//! First matching error row wins; anything unlisted falls to the safe default of its class:
//! an unlisted 4xx is permanent, anything else unknown (it may have executed).

use crate::domain::tracking::{Observation, RailState};
use crate::providers::Class;

/// One row: a status range, an optional error code, and the decision.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub status: (u16, u16),
    pub code: Option<&'static str>,
    pub class: Class,
    pub why: &'static str,
}

/// The code our mock answers for a quote used after its 30 minutes (Wise's own code is
/// UNCONFIRMED). Nothing was created, so a new attempt with a fresh quote is safe.
pub const QUOTE_EXPIRED: &str = "error.quote.expired";

pub const RULES: &[Rule] = &[
    Rule {
        status: (400, 422),
        code: Some(QUOTE_EXPIRED),
        class: Class::Retry,
        why: "the quote expired before the transfer was created; a new attempt re-quotes",
    },
    Rule {
        status: (401, 401),
        code: None,
        class: Class::Permanent,
        why: "token missing, invalid or expired; fix the credentials",
    },
    Rule {
        status: (403, 403),
        code: None,
        class: Class::Permanent,
        why: "forbidden (a strong-customer-authentication challenge is not implemented here)",
    },
    Rule {
        status: (408, 408),
        code: None,
        class: Class::Unknown,
        why: "operation timed out at Wise; it may have executed",
    },
    Rule {
        status: (429, 429),
        code: None,
        class: Class::Throttled,
        why: "rate limited before execution",
    },
    Rule {
        status: (500, 599),
        code: None,
        class: Class::Unknown,
        why: "Wise error; the request may or may not have executed",
    },
    Rule {
        status: (400, 499),
        code: None,
        class: Class::Permanent,
        why: "request refused (validation, not found or unprocessable)",
    },
];

/// Looks up the decision for a non-2xx response.
pub fn classify(status: u16, code: Option<&str>) -> (Class, &'static str) {
    RULES
        .iter()
        .find(|r| {
            (r.status.0..=r.status.1).contains(&status) && r.code.is_none_or(|c| Some(c) == code)
        })
        .map(|r| (r.class, r.why))
        .unwrap_or((Class::Unknown, "unexpected response"))
}

/// Transfer status → what it means for the money. `bounced_back` is not yet money back (Wise
/// may re-send it); `funds_refunded` is. `cancelled` means never delivered.
pub const STATUS_MAP: &[(&str, RailState)] = &[
    ("incoming_payment_waiting", RailState::InFlight),
    ("incoming_payment_initiated", RailState::InFlight),
    ("processing", RailState::InFlight),
    ("funds_converted", RailState::InFlight),
    ("waiting_recipient_input_to_proceed", RailState::InFlight),
    ("bounced_back", RailState::InFlight),
    ("unknown", RailState::InFlight),
    ("outgoing_payment_sent", RailState::Paid),
    ("cancelled", RailState::Failed),
    ("funds_refunded", RailState::Returned),
    ("charged_back", RailState::Returned),
];

/// Maps a raw status; an unlisted one is treated as still moving, never as a final state.
pub fn rail_state(status: &str) -> Option<RailState> {
    STATUS_MAP
        .iter()
        .find(|(s, _)| *s == status)
        .map(|(_, state)| *state)
}

/// An observation of a raw transfer status.
pub fn observe_status(status: &str) -> Observation {
    match rail_state(status) {
        Some(state) => Observation::new(state, status),
        None => Observation::new(RailState::InFlight, status)
            .with_detail(Some("status not known to this system".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_decisions() {
        assert_eq!(
            classify(400, Some("error.route.not.supported")).0,
            Class::Permanent
        );
        assert_eq!(classify(422, Some(QUOTE_EXPIRED)).0, Class::Retry);
        assert_eq!(classify(401, Some("invalid_token")).0, Class::Permanent);
        assert_eq!(classify(403, None).0, Class::Permanent);
        assert_eq!(classify(404, None).0, Class::Permanent);
        assert_eq!(classify(408, None).0, Class::Unknown);
        assert_eq!(classify(422, Some("NOT_VALID")).0, Class::Permanent);
        assert_eq!(classify(429, None).0, Class::Throttled);
        assert_eq!(
            classify(500, Some("Internal Server Error")).0,
            Class::Unknown
        );
        assert_eq!(classify(503, None).0, Class::Unknown);
        assert_eq!(classify(302, None).0, Class::Unknown);
    }

    #[test]
    fn status_map() {
        assert_eq!(rail_state("processing"), Some(RailState::InFlight));
        assert_eq!(rail_state("bounced_back"), Some(RailState::InFlight));
        assert_eq!(rail_state("outgoing_payment_sent"), Some(RailState::Paid));
        assert_eq!(rail_state("cancelled"), Some(RailState::Failed));
        assert_eq!(rail_state("funds_refunded"), Some(RailState::Returned));
        assert_eq!(rail_state("charged_back"), Some(RailState::Returned));
        assert_eq!(observe_status("new_thing").state, RailState::InFlight);
    }
}
