//! The new-user bonus draw: random to the recipient, reproducible and auditable to us.
//!
//! The amount is a pure function of a secret seed and the referred account:
//! `HMAC-SHA256(seed, "bonus/v1/{program}/{referred}/{role}")`. Its first 16 bytes, as a
//! big-endian integer, modulo the number of outcomes, pick the outcome (the modulo bias is
//! below 2^-100). Anyone holding the seed can recompute a bonus from the message and check
//! the digest we stored; without the seed nobody can predict one. Replaying an ingest draws
//! the same amount, and the ledger's true-up grants it once.

use hmac::{Hmac, Mac};
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::Sha256;

/// Shortest bonus seed accepted: a guessable seed makes every bonus predictable.
pub const MIN_SEED_CHARS: usize = 16;

/// Identifies a seed without revealing it: HMAC-SHA256 of a fixed label under the seed, hex.
/// Stored with every draw, so the database can tell when the seed changed.
pub fn seed_fingerprint(seed: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(seed)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"payouts/bonus-seed-fingerprint/v1");
    hex::encode(mac.finalize().into_bytes())
}

/// How a configured seed stands against the fingerprint the database's draws were made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedCheck {
    Matches,
    /// No draw has been made yet: the first one records this seed's fingerprint.
    Unrecorded,
    /// Different, and a rotation was requested: new draws use this seed, old ones stay.
    Rotated,
    /// Different, and no rotation was requested.
    Refused,
}

pub fn check_seed(stored: Option<&str>, current: &str, rotate: bool) -> SeedCheck {
    match stored {
        None => SeedCheck::Unrecorded,
        Some(s) if s == current => SeedCheck::Matches,
        Some(_) if rotate => SeedCheck::Rotated,
        Some(_) => SeedCheck::Refused,
    }
}

/// Why a bonus cannot be drawn. Fingerprints are shortened; the seed never appears.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeedError {
    #[error(
        "{program}.seed_env: environment variable {seed_env} must hold the bonus seed, a secret of at least {MIN_SEED_CHARS} characters (it is not set)"
    )]
    Missing { program: String, seed_env: String },
    #[error(
        "{program}: the bonus seed in {seed_env} (fingerprint {current}) is not the one this database's bonus draws were made with (fingerprint {stored}); drawn bonuses are final and never re-drawn. Restore the previous seed, or rotate on purpose by running once with PAYOUTS_ROTATE_BONUS_SEED=1 (new draws then use the new seed)"
    )]
    Changed {
        program: String,
        seed_env: String,
        stored: String,
        current: String,
    },
}

/// Who receives a bonus when a referred account reaches the spend threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BonusRole {
    Referrer,
    Referred,
}

impl BonusRole {
    pub fn code(self) -> &'static str {
        match self {
            BonusRole::Referrer => "referrer",
            BonusRole::Referred => "referred",
        }
    }
}

/// One weighted outcome of a table distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub amount: Decimal,
    pub weight: u32,
}

/// How bonus amounts are distributed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BonusDistribution {
    /// Every amount from `min` to `max` in steps of `step`, equally likely.
    Uniform {
        min: Decimal,
        max: Decimal,
        step: Decimal,
    },
    /// Amounts with relative weights.
    Table { outcomes: Vec<Outcome> },
}

impl BonusDistribution {
    /// How many equally likely slots the roll is reduced to.
    fn slots(&self) -> u128 {
        match self {
            BonusDistribution::Uniform { min, max, step } => {
                let n = ((*max - *min) / *step).trunc();
                u128::try_from(n).unwrap_or(0) + 1
            }
            BonusDistribution::Table { outcomes } => {
                outcomes.iter().map(|o| u128::from(o.weight)).sum()
            }
        }
    }

    /// The amount for slot `slot` (`slot < slots()`).
    fn amount_at(&self, slot: u128) -> Decimal {
        match self {
            BonusDistribution::Uniform { min, step, .. } => {
                // slot < slots(), which came from a Decimal, so it fits back into one.
                *min + *step * Decimal::from_i128_with_scale(slot as i128, 0)
            }
            BonusDistribution::Table { outcomes } => {
                let mut left = slot;
                for o in outcomes {
                    let w = u128::from(o.weight);
                    if left < w {
                        return o.amount;
                    }
                    left -= w;
                }
                outcomes.last().map_or(Decimal::ZERO, |o| o.amount)
            }
        }
    }

    pub fn min(&self) -> Decimal {
        match self {
            BonusDistribution::Uniform { min, .. } => *min,
            BonusDistribution::Table { outcomes } => outcomes
                .iter()
                .filter(|o| o.weight > 0)
                .map(|o| o.amount)
                .min()
                .unwrap_or(Decimal::ZERO),
        }
    }

    pub fn max(&self) -> Decimal {
        match self {
            BonusDistribution::Uniform { max, .. } => *max,
            BonusDistribution::Table { outcomes } => outcomes
                .iter()
                .filter(|o| o.weight > 0)
                .map(|o| o.amount)
                .max()
                .unwrap_or(Decimal::ZERO),
        }
    }

    /// The expected bonus, for finance's budget.
    pub fn mean(&self) -> Decimal {
        match self {
            BonusDistribution::Uniform { min, max, .. } => (*min + *max) / Decimal::TWO,
            BonusDistribution::Table { outcomes } => {
                let total: Decimal = outcomes.iter().map(|o| Decimal::from(o.weight)).sum();
                if total.is_zero() {
                    return Decimal::ZERO;
                }
                outcomes
                    .iter()
                    .map(|o| o.amount * Decimal::from(o.weight))
                    .sum::<Decimal>()
                    / total
            }
        }
    }

    /// Checks the distribution can be drawn from; the message says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            BonusDistribution::Uniform { min, max, step } => {
                if *min <= Decimal::ZERO {
                    return Err(format!("min must be positive, got {min}"));
                }
                if max < min {
                    return Err(format!("max ({max}) must not be below min ({min})"));
                }
                if *step <= Decimal::ZERO {
                    return Err(format!("step must be positive, got {step}"));
                }
                if !((*max - *min) % *step).is_zero() {
                    return Err(format!(
                        "max - min ({}) must be a whole number of steps of {step}",
                        *max - *min
                    ));
                }
                for (name, v) in [("min", min), ("max", max), ("step", step)] {
                    if v.normalize().scale() > 2 {
                        return Err(format!("{name} {v} has more than 2 decimals"));
                    }
                }
            }
            BonusDistribution::Table { outcomes } => {
                if outcomes.is_empty() {
                    return Err("outcomes must list at least one amount".into());
                }
                for (i, o) in outcomes.iter().enumerate() {
                    if o.amount <= Decimal::ZERO || o.amount.normalize().scale() > 2 {
                        return Err(format!(
                            "outcomes[{i}].amount must be positive with at most 2 decimals, got {}",
                            o.amount
                        ));
                    }
                }
                if outcomes.iter().all(|o| o.weight == 0) {
                    return Err("at least one outcome needs a positive weight".into());
                }
            }
        }
        Ok(())
    }
}

/// One bonus draw, with everything needed to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BonusDraw {
    pub role: BonusRole,
    pub amount: Decimal,
    /// The exact message that was MACed.
    pub message: String,
    /// HMAC-SHA256 of the message under the seed, hex.
    pub digest: String,
    /// The slot the digest chose, out of `slots`.
    pub slot: u128,
    pub slots: u128,
}

/// Draws the bonus of one recipient. The distribution must have passed `validate`.
pub fn draw(
    seed: &[u8],
    program: &str,
    referred: &str,
    role: BonusRole,
    distribution: &BonusDistribution,
) -> BonusDraw {
    let message = format!("bonus/v1/{program}/{referred}/{}", role.code());
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(seed)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(message.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut head = [0u8; 16];
    head.copy_from_slice(&digest[..16]);
    let roll = u128::from_be_bytes(head);
    let slots = distribution.slots().max(1);
    let slot = roll % slots;
    BonusDraw {
        role,
        amount: distribution.amount_at(slot),
        message,
        digest: hex::encode(digest),
        slot,
        slots,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn uniform() -> BonusDistribution {
        BonusDistribution::Uniform {
            min: d("5"),
            max: d("500"),
            step: d("1"),
        }
    }

    #[test]
    fn a_draw_is_reproducible_and_depends_on_seed_account_and_role() {
        let a = draw(
            b"seed-one",
            "runpod-bonus",
            "u1",
            BonusRole::Referred,
            &uniform(),
        );
        let again = draw(
            b"seed-one",
            "runpod-bonus",
            "u1",
            BonusRole::Referred,
            &uniform(),
        );
        assert_eq!(a, again);
        assert_eq!(a.message, "bonus/v1/runpod-bonus/u1/referred");
        assert_eq!(a.slots, 496);
        let other_seed = draw(
            b"seed-two",
            "runpod-bonus",
            "u1",
            BonusRole::Referred,
            &uniform(),
        );
        let other_role = draw(
            b"seed-one",
            "runpod-bonus",
            "u1",
            BonusRole::Referrer,
            &uniform(),
        );
        assert_ne!(a.digest, other_seed.digest);
        assert_ne!(a.digest, other_role.digest);
    }

    #[test]
    fn the_digest_is_plain_hmac_sha256_so_finance_can_recheck_it() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let x = draw(b"k", "p", "a", BonusRole::Referrer, &uniform());
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"k").unwrap();
        mac.update(x.message.as_bytes());
        assert_eq!(x.digest, hex::encode(mac.finalize().into_bytes()));
    }

    #[test]
    fn table_weights_shape_the_draws() {
        let table = BonusDistribution::Table {
            outcomes: vec![
                Outcome {
                    amount: d("5"),
                    weight: 90,
                },
                Outcome {
                    amount: d("500"),
                    weight: 10,
                },
            ],
        };
        table.validate().unwrap();
        let n = 4000;
        let big = (0..n)
            .filter(|i| {
                draw(b"s", "p", &format!("acct-{i}"), BonusRole::Referred, &table).amount
                    == d("500")
            })
            .count();
        // Expected 400; a fair draw lands within 4 standard deviations (±76).
        assert!(
            (324..=476).contains(&big),
            "{big} of {n} drew the top prize"
        );
        assert_eq!(table.mean(), d("54.5"));
    }

    #[test]
    fn bad_distributions_say_what_to_fix() {
        let e = BonusDistribution::Uniform {
            min: d("5"),
            max: d("4"),
            step: d("1"),
        };
        assert!(e.validate().unwrap_err().contains("max (4)"));
        let e = BonusDistribution::Uniform {
            min: d("5"),
            max: d("10"),
            step: d("3"),
        };
        assert!(e.validate().unwrap_err().contains("whole number of steps"));
        let e = BonusDistribution::Table { outcomes: vec![] };
        assert!(e.validate().is_err());
        let e = BonusDistribution::Table {
            outcomes: vec![Outcome {
                amount: d("5"),
                weight: 0,
            }],
        };
        assert!(e.validate().unwrap_err().contains("positive weight"));
    }

    #[test]
    fn a_seed_is_known_by_its_fingerprint_and_a_changed_one_needs_a_rotation() {
        let fp = seed_fingerprint(b"seed-one-0123456789");
        assert_eq!(fp.len(), 64);
        assert!(!fp.contains("seed-one"));
        assert_eq!(fp, seed_fingerprint(b"seed-one-0123456789"));
        let other = seed_fingerprint(b"seed-two-0123456789");
        assert_ne!(fp, other);
        assert_eq!(check_seed(None, &fp, false), SeedCheck::Unrecorded);
        assert_eq!(check_seed(Some(&fp), &fp, false), SeedCheck::Matches);
        assert_eq!(check_seed(Some(&fp), &other, false), SeedCheck::Refused);
        assert_eq!(check_seed(Some(&fp), &other, true), SeedCheck::Rotated);
    }

    proptest! {
        #[test]
        fn draws_stay_within_the_configured_range(account in "[a-z0-9]{1,20}", seed in proptest::collection::vec(any::<u8>(), 1..64)) {
            let u = uniform();
            let x = draw(&seed, "runpod-bonus", &account, BonusRole::Referrer, &u);
            prop_assert!(x.amount >= d("5") && x.amount <= d("500"));
            prop_assert!(x.amount.fract().is_zero());
            prop_assert!(x.slot < x.slots);
        }
    }
}
