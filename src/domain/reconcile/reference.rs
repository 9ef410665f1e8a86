//! The token each rail knows one of our attempts by. The adapters send it and the
//! reconciliation finds our payout again by it, so both derive it here, in one place.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::ids::{PayoutId, Rail};

/// Namespace of the UUID v5 Wise `customerTransactionId`s. Fixed for ever: changing it would
/// make every pending attempt look new to Wise.
pub const CUSTOMER_TRANSACTION_NAMESPACE: Uuid =
    Uuid::from_u128(0xf796c599_2c3e_4c1e_a12e_83d88548fbb7);

/// PartnerStack's bounds on a transaction / reward `key`.
pub const REWARD_KEY_MIN: usize = 4;
pub const REWARD_KEY_MAX: usize = 255;

/// The Wise `customerTransactionId` of an attempt: deterministic, so every retry of the
/// attempt (and every resolve) names the same transfer.
pub fn customer_transaction_id(idempotency_key: &str) -> Uuid {
    Uuid::new_v5(&CUSTOMER_TRANSACTION_NAMESPACE, idempotency_key.as_bytes())
}

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

/// What the provider echoes back for an attempt: Stripe's transfer_group is the payout id
/// (shared by every attempt), PayPal's sender_batch_id is the attempt key, Wise's
/// customerTransactionId and PartnerStack's reward key are derived from it.
pub fn rail_reference(rail: Rail, payout: &PayoutId, attempt_key: &str) -> String {
    match rail {
        Rail::Stripe => payout.to_string(),
        Rail::Paypal => attempt_key.to_string(),
        Rail::Wise => customer_transaction_id(attempt_key).to_string(),
        Rail::Partnerstack => reward_key(attempt_key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rail_has_a_deterministic_reference() {
        let payout = PayoutId::parse("po_1").unwrap();
        for rail in [Rail::Stripe, Rail::Paypal, Rail::Wise, Rail::Partnerstack] {
            let a = rail_reference(rail, &payout, "po_1-attempt-1");
            assert_eq!(a, rail_reference(rail, &payout, "po_1-attempt-1"));
        }
        assert_eq!(rail_reference(Rail::Stripe, &payout, "k"), "po_1");
        assert_eq!(rail_reference(Rail::Paypal, &payout, "k-1"), "k-1");
        assert_ne!(
            rail_reference(Rail::Wise, &payout, "k-1"),
            rail_reference(Rail::Wise, &payout, "k-2")
        );
    }

    #[test]
    fn reward_keys_are_plain_or_hashed() {
        assert_eq!(reward_key("po_1-attempt-1"), "po_1-attempt-1");
        assert!(reward_key("a b").starts_with("payout-"));
        assert!(reward_key("abc").starts_with("payout-"));
    }
}
