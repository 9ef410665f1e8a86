//! PayPal's error table and status map, as data (docs/providers/paypal.md, "Status map"
//! and "Errors").
//!
//! First matching row wins. A duplicate `sender_batch_id` is NOT in this table: it means an
//! earlier send landed, so the adapter recognises it ([`is_duplicate_batch`]) before asking
//! the table anything. Unlisted 5xx are "unknown" (may have executed), unlisted 4xx refused.

use super::wire::ErrorBody;
use crate::domain::tracking::RailState;
use crate::providers::Class;

/// One row: a status range, an optional error `name` (or `details[].issue`), the decision.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub status: (u16, u16),
    pub name: Option<&'static str>,
    pub class: Class,
    pub why: &'static str,
}

pub const RULES: &[Rule] = &[
    Rule {
        status: (422, 422),
        name: Some("INSUFFICIENT_FUNDS"),
        class: Class::Retry,
        why: "the sender balance cannot cover the payout yet; no batch was created",
    },
    Rule {
        status: (400, 400),
        name: Some("VALIDATION_ERROR"),
        class: Class::Permanent,
        why: "request failed validation; nothing was created",
    },
    Rule {
        status: (400, 400),
        name: None,
        class: Class::Permanent,
        why: "request refused (duplicates are handled before this table)",
    },
    Rule {
        status: (401, 401),
        name: None,
        class: Class::Permanent,
        why: "authentication failed even with a fresh token",
    },
    Rule {
        status: (403, 403),
        name: None,
        class: Class::Permanent,
        why: "not authorised for payouts",
    },
    Rule {
        status: (404, 404),
        name: None,
        class: Class::Permanent,
        why: "resource not found",
    },
    Rule {
        status: (409, 409),
        name: None,
        class: Class::Unknown,
        why: "conflict with a request that may still be executing",
    },
    Rule {
        status: (422, 422),
        name: None,
        class: Class::Permanent,
        why: "unprocessable request",
    },
    Rule {
        status: (429, 429),
        name: None,
        class: Class::Throttled,
        why: "rate limited before execution",
    },
    Rule {
        status: (500, 599),
        name: None,
        class: Class::Unknown,
        why: "provider error; the batch may exist (resolve re-sends the same sender_batch_id, which PayPal deduplicates)",
    },
    Rule {
        status: (400, 499),
        name: None,
        class: Class::Permanent,
        why: "request refused",
    },
];

/// The decision for a non-2xx answer. `issues` are the `details[].issue` strings, which
/// carry the reason on 422s.
pub fn classify(status: u16, name: Option<&str>, issues: &[&str]) -> (Class, &'static str) {
    RULES
        .iter()
        .find(|r| {
            (r.status.0..=r.status.1).contains(&status)
                && r.name
                    .is_none_or(|n| Some(n) == name || issues.contains(&n))
        })
        .map(|r| (r.class, r.why))
        .unwrap_or((Class::Unknown, "unexpected response"))
}

/// Whether a refusal says "this sender_batch_id was already used": the earlier send landed.
/// The exact `issue` wording is UNCONFIRMED (2015: "Duplicate batch request"; later
/// "Batch with given sender_batch_id already exists"), so both shapes are recognised.
pub fn is_duplicate_batch(status: u16, body: &ErrorBody) -> bool {
    status == 400
        && body.name == "USER_BUSINESS_ERROR"
        && body.details.iter().any(|d| {
            let issue = d.issue.as_deref().unwrap_or("").to_ascii_lowercase();
            let field = d.field.as_deref().unwrap_or("").to_ascii_lowercase();
            issue.contains("duplicate")
                || (issue.contains("already") && issue.contains("sender_batch_id"))
                || (field == "sender_batch_id" && issue.contains("batch"))
        })
}

/// The batch id a duplicate error links to: the last path segment of a link to
/// `/v1/payments/payouts/{id}`. Only the id is taken: we read it from our own api_base and
/// never send our token to a host named in a response.
pub fn duplicate_batch_id(body: &ErrorBody) -> Option<String> {
    body.links.iter().find_map(|l| {
        let path = l.href.split(['?', '#']).next()?;
        let (_, id) = path.split_once("/v1/payments/payouts/")?;
        let id = id.trim_end_matches('/');
        is_batch_id(id).then(|| id.to_string())
    })
}

/// PayPal ids are short upper-case alphanumerics; anything else is not put in a URL path.
pub fn is_batch_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Item `transaction_status` → what it means for the money.
pub const STATUS_MAP: &[(&str, RailState)] = &[
    ("SUCCESS", RailState::Paid),
    ("FAILED", RailState::Failed),
    ("PENDING", RailState::InFlight),
    // Open until the receiver claims it (→ SUCCESS) or it is returned (→ RETURNED).
    ("UNCLAIMED", RailState::InFlight),
    ("RETURNED", RailState::Returned),
    ("ONHOLD", RailState::InFlight),
    ("BLOCKED", RailState::Failed),
    ("REFUNDED", RailState::Returned),
    ("REVERSED", RailState::Returned),
    // Docs mention these for items though the spec enum does not (UNCONFIRMED).
    ("DENIED", RailState::Failed),
    ("CANCELED", RailState::Failed),
];

/// Maps an item status; an unknown word stays in flight (we keep polling, never guess).
pub fn item_state(status: &str) -> RailState {
    STATUS_MAP
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(status))
        .map(|(_, r)| *r)
        .unwrap_or(RailState::InFlight)
}

/// A batch with no items is only final when PayPal refused the whole batch.
pub fn empty_batch_state(batch_status: &str) -> RailState {
    match batch_status {
        "DENIED" | "CANCELED" => RailState::Failed,
        _ => RailState::InFlight,
    }
}

/// A refusal of the request's content (schema or field validation), which the identical
/// earlier request would have met too. Anything naming the batch id or a duplicate is not.
pub fn is_content_refusal(status: u16, name: Option<&str>, issues: &[&str]) -> bool {
    let content = matches!(name, Some("VALIDATION_ERROR" | "INVALID_REQUEST"));
    let about_batch = issues.iter().any(|i| {
        let i = i.to_ascii_lowercase();
        i.contains("duplicate") || i.contains("sender_batch") || i.contains("already")
    });
    matches!(status, 400 | 422) && content && !about_batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_content_errors_prove_a_resend_could_not_have_landed() {
        assert!(is_content_refusal(
            400,
            Some("VALIDATION_ERROR"),
            &["Receiver is invalid"]
        ));
        assert!(!is_content_refusal(400, Some("USER_BUSINESS_ERROR"), &[]));
        assert!(!is_content_refusal(
            400,
            Some("VALIDATION_ERROR"),
            &["Batch with given sender_batch_id already exists"]
        ));
        assert!(!is_content_refusal(403, Some("VALIDATION_ERROR"), &[]));
    }
    use crate::providers::paypal::wire::{ErrorDetail, Link};

    #[test]
    fn table_decisions() {
        let c = |s, n| classify(s, n, &[]).0;
        assert_eq!(c(400, Some("VALIDATION_ERROR")), Class::Permanent);
        assert_eq!(c(400, Some("USER_BUSINESS_ERROR")), Class::Permanent);
        assert_eq!(c(401, Some("AUTHENTICATION_FAILURE")), Class::Permanent);
        assert_eq!(c(403, Some("NOT_AUTHORIZED")), Class::Permanent);
        assert_eq!(c(404, Some("RESOURCE_NOT_FOUND")), Class::Permanent);
        assert_eq!(c(409, Some("RESOURCE_CONFLICT")), Class::Unknown);
        assert_eq!(c(422, Some("UNPROCESSABLE_ENTITY")), Class::Permanent);
        assert_eq!(
            classify(422, Some("UNPROCESSABLE_ENTITY"), &["INSUFFICIENT_FUNDS"]).0,
            Class::Retry
        );
        assert_eq!(c(429, Some("RATE_LIMIT_REACHED")), Class::Throttled);
        assert_eq!(c(500, Some("INTERNAL_ERROR")), Class::Unknown);
        assert_eq!(c(503, Some("SERVICE_UNAVAILABLE")), Class::Unknown);
        assert_eq!(c(504, Some("REQUEST_TIMEOUT_EXCEEDED")), Class::Unknown);
        assert_eq!(c(302, None), Class::Unknown);
    }

    fn dup(issue: &str, href: &str) -> ErrorBody {
        let mut b = ErrorBody::new("USER_BUSINESS_ERROR", "User business error.");
        b.details.push(ErrorDetail {
            field: Some("SENDER_BATCH_ID".into()),
            issue: Some(issue.into()),
            ..Default::default()
        });
        b.links.push(Link {
            href: href.into(),
            rel: Some("self".into()),
            method: Some("GET".into()),
        });
        b
    }

    #[test]
    fn duplicates_are_recognised_with_their_batch() {
        let b = dup(
            "Batch with given sender_batch_id already exists",
            "https://api-m.paypal.com/v1/payments/payouts/ABC123?x=1",
        );
        assert!(is_duplicate_batch(400, &b));
        assert_eq!(duplicate_batch_id(&b).as_deref(), Some("ABC123"));
        assert!(is_duplicate_batch(400, &dup("Duplicate batch request", "")));
        assert!(!is_duplicate_batch(500, &b));
        let evil = dup(
            "Duplicate batch request",
            "https://x/v1/payments/payouts/../a",
        );
        assert_eq!(duplicate_batch_id(&evil), None);
        let other = ErrorBody::new("USER_BUSINESS_ERROR", "Something else");
        assert!(!is_duplicate_batch(400, &other));
    }

    #[test]
    fn statuses_map() {
        assert_eq!(item_state("SUCCESS"), RailState::Paid);
        assert_eq!(item_state("UNCLAIMED"), RailState::InFlight);
        assert_eq!(item_state("REVERSED"), RailState::Returned);
        assert_eq!(item_state("BLOCKED"), RailState::Failed);
        assert_eq!(item_state("SOMETHING_NEW"), RailState::InFlight);
        assert_eq!(empty_batch_state("DENIED"), RailState::Failed);
        assert_eq!(empty_batch_state("PENDING"), RailState::InFlight);
    }
}
