//! What the rest of the system knows about Wise without calling it, and the token Wise
//! knows each attempt by.

use uuid::Uuid;

use crate::domain::destination::Grammar;
use crate::providers::RailFacts;

pub static FACTS: RailFacts = RailFacts {
    destination: &Grammar {
        // Wise types recipient ids as u64: at most 19 digits always fit.
        pattern: "^[1-9][0-9]{0,18}$",
        max_len: 19,
        expected: "a numeric Wise recipient account id (1 to 19 digits, no leading zero)",
        shape: |text| text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0'),
    },
    example_destination: "12345678",
    reference: |_payout, attempt_key| customer_transaction_id(attempt_key).to_string(),
    statement: &super::statement::FORMAT,
    // Wise allows 100 requests a second and 1,000 a minute: the minute is the binding
    // limit (16.7 a second), so 15 a second with a burst of 15.
    pace: crate::domain::pacing::Pace {
        per_second: 15,
        burst: 15,
    },
};

/// Namespace of the UUID v5 Wise `customerTransactionId`s. Fixed for ever: changing it would
/// make every pending attempt look new to Wise.
pub const CUSTOMER_TRANSACTION_NAMESPACE: Uuid =
    Uuid::from_u128(0xf796c599_2c3e_4c1e_a12e_83d88548fbb7);

/// The Wise `customerTransactionId` of an attempt: deterministic, so every retry of the
/// attempt (and every resolve) names the same transfer.
pub fn customer_transaction_id(idempotency_key: &str) -> Uuid {
    Uuid::new_v5(&CUSTOMER_TRANSACTION_NAMESPACE, idempotency_key.as_bytes())
}
