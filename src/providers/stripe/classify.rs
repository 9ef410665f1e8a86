//! Stripe's error table: HTTP status and error code to a decision, as data.
//!
//! First matching row wins. The default for anything unlisted is the safe one for its class:
//! an unlisted 5xx is "unknown" (it may have executed), an unlisted 4xx is permanent.

use crate::providers::Class;

/// One row: a status range, an optional `error.code` or `error.type`, and the decision.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub status: (u16, u16),
    pub code: Option<&'static str>,
    pub class: Class,
    pub why: &'static str,
}

pub const RULES: &[Rule] = &[
    Rule {
        status: (400, 400),
        code: Some("idempotency_error"),
        class: Class::Unknown,
        why: "key reused with other parameters; another request with this key may have landed",
    },
    Rule {
        status: (400, 400),
        code: Some("balance_insufficient"),
        class: Class::Retry,
        why: "the platform balance cannot cover the transfer yet",
    },
    Rule {
        status: (409, 409),
        code: None,
        class: Class::Unknown,
        why: "a request with this key is still executing",
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
        why: "provider error; the transfer may or may not exist",
    },
    Rule {
        status: (400, 499),
        code: None,
        class: Class::Permanent,
        why: "request refused",
    },
];

/// Looks up the decision for a non-2xx response.
pub fn classify(status: u16, code: Option<&str>, kind: Option<&str>) -> (Class, &'static str) {
    RULES
        .iter()
        .find(|r| {
            (r.status.0..=r.status.1).contains(&status)
                && r.code.is_none_or(|c| Some(c) == code || Some(c) == kind)
        })
        .map(|r| (r.class, r.why))
        .unwrap_or((Class::Unknown, "unexpected response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_decisions() {
        assert_eq!(
            classify(
                400,
                Some("balance_insufficient"),
                Some("invalid_request_error")
            )
            .0,
            Class::Retry
        );
        assert_eq!(
            classify(400, None, Some("idempotency_error")).0,
            Class::Unknown
        );
        assert_eq!(
            classify(400, Some("parameter_missing"), None).0,
            Class::Permanent
        );
        assert_eq!(classify(401, None, None).0, Class::Permanent);
        assert_eq!(
            classify(404, Some("resource_missing"), None).0,
            Class::Permanent
        );
        assert_eq!(
            classify(409, Some("idempotency_key_in_use"), None).0,
            Class::Unknown
        );
        assert_eq!(classify(429, Some("rate_limit"), None).0, Class::Throttled);
        assert_eq!(classify(500, None, Some("api_error")).0, Class::Unknown);
        assert_eq!(classify(503, None, None).0, Class::Unknown);
        assert_eq!(classify(302, None, None).0, Class::Unknown);
    }
}
