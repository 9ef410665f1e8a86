//! What the rest of the system knows about PartnerStack without calling it, and the key
//! PartnerStack knows each attempt's reward by.

use sha2::{Digest, Sha256};

use crate::domain::destination::{Grammar, alnum};
use crate::providers::RailFacts;

pub static FACTS: RailFacts = RailFacts {
    destination: &Grammar {
        pattern: "^[A-Za-z0-9_-]+$",
        max_len: 128,
        expected: "a PartnerStack partner key",
        shape: |text| alnum(text, b"_-"),
    },
    example_destination: "pk_alice",
    reference: |_payout, attempt_key| reward_key(attempt_key),
    statement: &super::statement::FORMAT,
    // PartnerStack publishes no figure: a cautious 10 a second.
    pace: crate::domain::pacing::Pace {
        per_second: 10,
        burst: 10,
    },
};

/// PartnerStack's bounds on a transaction / reward `key`.
pub const REWARD_KEY_MIN: usize = 4;
pub const REWARD_KEY_MAX: usize = 255;

/// The PartnerStack reward `key` of an attempt: the idempotency key itself when it fits
/// PartnerStack's 4–255 characters and a plain character set, else a SHA-256 digest of it.
/// Deterministic, so a crashed worker and its successor agree on it.
pub fn reward_key(idempotency_key: &str) -> String {
    let plain = idempotency_key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if plain && (REWARD_KEY_MIN..=REWARD_KEY_MAX).contains(&idempotency_key.len()) {
        idempotency_key.to_string()
    } else {
        format!("payout-{}", hex::encode(Sha256::digest(idempotency_key)))
    }
}
