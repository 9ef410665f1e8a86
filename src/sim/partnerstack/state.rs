//! The mock's books behind its lock: the stored rewards, the keys the duplicate check
//! remembers, the scripted progression, and the webhook each change queues.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};

use super::{DuplicateKey, Pending};
use crate::domain::tracking::RailState;
use crate::providers::partnerstack::wire::{PAYOUT_ID, Reward, WEBHOOK_TOKEN};
use crate::sim::kit::{Dice, Faults, MovedMoney};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Mode {
    Test,
    Prod,
}

#[derive(Debug)]
pub(super) struct Stored {
    pub(super) mode: Mode,
    pub(super) reward: Reward,
    pub(super) changed: Instant,
    /// When the reward was recorded, for `Faults::list_lag_ms`.
    pub(super) written: Instant,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) auth_test: String,
    pub(super) auth_prod: String,
    pub(super) faults: Faults,
    pub(super) dice: Dice,
    pub(super) duplicate_key: DuplicateKey,
    pub(super) process_after: Duration,
    pub(super) late_after: Duration,
    pub(super) webhook_event: String,
    pub(super) webhook_token: Option<SecretString>,
    pub(super) duplicate_webhooks: bool,
    pub(super) out_of_order_webhooks: bool,
    pub(super) partners: BTreeMap<String, bool>,
    pub(super) rewards: Vec<Stored>,
    /// Keys the duplicate check still remembers, with when they were recorded.
    pub(super) remembered: HashMap<(Mode, String), Instant>,
    /// Every key ever sent, for `drop_first_attempt`.
    pub(super) seen: HashSet<(Mode, String)>,
    pub(super) next_event: u64,
    pub(super) posts: u64,
    pub(super) reads: u64,
}

pub(super) fn now_ms() -> i64 {
    crate::clock::now().timestamp_millis()
}

/// Standard base64 of `public:secret`, for comparing Basic auth headers.
pub(super) fn basic(public: &str, secret: &SecretString) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let raw = format!("{public}:{}", secret.expose_secret());
    let mut out = String::new();
    for chunk in raw.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

/// Where the money of a reward in this payment status is, as the mock's books see it.
pub(super) fn money_state(payment_status: &str) -> RailState {
    match payment_status {
        "available" | "in_transit" | "withdrawn" | "paid_externally" => RailState::Paid,
        "pending" | "merging" => RailState::InFlight,
        _ => RailState::Returned,
    }
}

/// The scripted next payment status of a reward, if its time has come.
pub(super) fn next_status(partner: &str, current: &str) -> Option<(&'static str, bool)> {
    // (next status, whether it waits `late_after` rather than `process_after`)
    match current {
        "pending" if partner.starts_with("fail") => Some(("failed", false)),
        "pending" => Some(("available", false)),
        "available" if partner.starts_with("expire") => Some(("expired", true)),
        "available" if partner.starts_with("refund") => Some(("paid_and_refunded", true)),
        "available" if partner.starts_with("withdraw") => Some(("in_transit", true)),
        "in_transit" if partner.starts_with("withdraw") => Some(("withdrawn", true)),
        _ => None,
    }
}

impl Inner {
    /// Records a change of one reward and queues its webhook(s).
    pub(super) fn change(&mut self, index: usize, payment_status: &str) -> Vec<Pending> {
        let Some(stored) = self.rewards.get_mut(index) else {
            return Vec::new();
        };
        stored.reward.payment_status = payment_status.to_string();
        stored.reward.updated_at = Some(now_ms());
        stored.changed = crate::clock::instant();
        let reward = stored.reward.clone();
        self.event(&reward)
    }

    pub(super) fn event(&mut self, reward: &Reward) -> Vec<Pending> {
        self.next_event += 1;
        let body = serde_json::json!({
            "id": format!("evt_mock{:08}", self.next_event),
            "event": self.webhook_event,
            "created_at": now_ms(),
            "data": reward,
        })
        .to_string()
        .into_bytes();
        let headers: Vec<(String, String)> = self
            .webhook_token
            .as_ref()
            .map(|t| vec![(WEBHOOK_TOKEN.to_string(), t.expose_secret().to_string())])
            .unwrap_or_default();
        let copies = if self.duplicate_webhooks { 2 } else { 1 };
        (0..copies)
            .map(|_| {
                let delay = if self.out_of_order_webhooks {
                    Duration::from_millis(self.dice.pick(300) as u64)
                } else {
                    Duration::ZERO
                };
                (headers.clone(), body.clone(), delay)
            })
            .collect()
    }

    pub(super) fn tick(&mut self) -> Vec<Pending> {
        let mut due = Vec::new();
        for (i, s) in self.rewards.iter().enumerate() {
            if let Some((next, late)) = next_status(&s.reward.partner_key, &s.reward.payment_status)
            {
                let wait = if late {
                    self.late_after
                } else {
                    self.process_after
                };
                if crate::clock::elapsed(s.changed) >= wait {
                    due.push((i, next));
                }
            }
        }
        due.into_iter()
            .flat_map(|(i, next)| self.change(i, next))
            .collect()
    }

    pub(super) fn forget_expired_keys(&mut self) {
        let ttl = self.faults.key_ttl_ms;
        if ttl > 0 {
            let ttl = Duration::from_millis(ttl);
            let before = self.remembered.len();
            self.remembered
                .retain(|_, at| crate::clock::elapsed(*at) < ttl);
            for _ in self.remembered.len()..before {
                crate::sim::kit::injected(crate::sim::kit::KEY_EXPIRED);
            }
        }
    }

    pub(super) fn mode(&self, headers: &HeaderMap) -> Option<Mode> {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        if given == self.auth_test {
            Some(Mode::Test)
        } else if given == self.auth_prod {
            Some(Mode::Prod)
        } else {
            None
        }
    }
}

pub(super) fn moved(inner: &Inner) -> Vec<MovedMoney> {
    inner
        .rewards
        .iter()
        .map(|s| MovedMoney {
            payout_id: s
                .reward
                .metadata
                .get(PAYOUT_ID)
                .cloned()
                .unwrap_or_default(),
            provider_ref: s.reward.key.clone(),
            currency: s.reward.currency.to_ascii_uppercase(),
            minor: s.reward.amount,
            state: money_state(&s.reward.payment_status),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_encoding_matches_rfc4648() {
        assert_eq!(
            basic("Aladdin", &SecretString::from("open sesame")),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic("a", &SecretString::from("")), "Basic YTo=");
        assert_eq!(basic("ab", &SecretString::from("c")), "Basic YWI6Yw==");
    }

    #[test]
    fn scripted_progressions() {
        assert_eq!(
            next_status("pk_alice", "pending"),
            Some(("available", false))
        );
        assert_eq!(next_status("pk_alice", "available"), None);
        assert_eq!(next_status("fail_x", "pending"), Some(("failed", false)));
        assert_eq!(
            next_status("expire_x", "available"),
            Some(("expired", true))
        );
        assert_eq!(
            next_status("withdraw_x", "in_transit"),
            Some(("withdrawn", true))
        );
        assert_eq!(money_state("withdrawn"), RailState::Paid);
        assert_eq!(money_state("expired"), RailState::Returned);
    }
}
