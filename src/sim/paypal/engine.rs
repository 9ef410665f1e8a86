//! The mock's books and clock-driven processing: batches, items, balances, the scripted
//! outcomes, and the signed webhook events every change produces. No HTTP here.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::SecondsFormat;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::domain::money::Currency;
use crate::providers::paypal::classify::item_state;
use crate::providers::paypal::webhook::{
    AUTH_ALGO, CERT_URL, TRANSMISSION_ID, TRANSMISSION_SIG, TRANSMISSION_TIME, canonical_json,
};
use crate::providers::paypal::wire::{Amount, BatchHeader, ItemError, Link, PayoutItem};
use crate::sim::kit::{Dice, Faults, MovedMoney};

/// What the receiver's address scripts for an item (see `mock` module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Script {
    Normal,
    Unclaimed,
    Fail,
    Hold,
    Reverse,
    Block,
}

impl Script {
    pub(crate) fn for_receiver(receiver: &str) -> Script {
        let local = receiver
            .split('@')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if local.starts_with("unclaimed") {
            Script::Unclaimed
        } else if local.starts_with("fail") {
            Script::Fail
        } else if local.starts_with("hold") {
            Script::Hold
        } else if local.starts_with("reverse") {
            Script::Reverse
        } else if local.starts_with("block") {
            Script::Block
        } else {
            Script::Normal
        }
    }
}

#[derive(Debug)]
pub(crate) struct ItemState {
    pub item: PayoutItem,
    pub script: Script,
    pub since: Instant,
    pub currency: Currency,
    pub minor: i64,
    /// Whether the amount went back to the sender balance already (at most once).
    pub credited: bool,
}

#[derive(Debug)]
pub(crate) struct Batch {
    pub header: BatchHeader,
    pub items: Vec<ItemState>,
}

/// Timings and webhook options, fixed at start.
#[derive(Debug, Clone)]
pub(crate) struct Timing {
    pub process_after: Duration,
    pub unclaimed_return_after: Duration,
    pub late_after: Duration,
    pub duplicate_webhooks: bool,
    pub out_of_order_webhooks: bool,
}

/// One webhook ready to go: headers, body, delay.
pub(crate) type Outgoing = (Vec<(String, String)>, Vec<u8>, Duration);

pub(crate) struct Inner {
    pub client_id: String,
    pub client_secret: SecretString,
    pub webhook_id: String,
    pub token_ttl: Duration,
    pub request_id_replay: bool,
    pub timing: Timing,
    pub faults: Faults,
    pub dice: Dice,
    /// Mock-internal signing key for webhooks; only the verify route knows it.
    pub signing_key: SecretString,
    pub base_url: String,
    pub tokens: HashMap<String, Instant>,
    pub token_requests: u64,
    pub payout_requests: u64,
    pub verify_requests: u64,
    pub batches: Vec<Batch>,
    /// sender_batch_id → (batch id, when first used).
    pub sender_batch_ids: HashMap<String, (String, Instant)>,
    /// PayPal-Request-Id → (status, body, when), only when replay is on.
    pub request_ids: HashMap<String, (u16, String, Instant)>,
    pub balance: BTreeMap<Currency, i64>,
    pub default_balance: i64,
    pub next_id: u64,
}

/// Issued bearer tokens are secrets too: Debug shows only counts.
impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("base_url", &self.base_url)
            .field("faults", &self.faults)
            .field("tokens", &self.tokens.len())
            .field("batches", &self.batches.len())
            .field("balance", &self.balance)
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_text() -> String {
    crate::clock::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// HMAC-SHA256 (RFC 2104) over sha2, to avoid a second digest crate version.
pub(crate) fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for i in 0..64 {
        ipad[i] ^= k[i];
        opad[i] ^= k[i];
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

impl Inner {
    pub(crate) fn id(&mut self, prefix: &str) -> String {
        let n = self.next_id;
        self.next_id += 1;
        format!("{prefix}{n:010}")
    }

    /// Whether a remembered token (sender_batch_id, request id) is still remembered.
    pub(crate) fn remembered(&self, since: Instant) -> bool {
        self.faults.key_ttl_ms == 0
            || crate::clock::elapsed(since) < Duration::from_millis(self.faults.key_ttl_ms)
    }

    pub(crate) fn balance_of(&mut self, currency: Currency) -> i64 {
        let default = self.default_balance;
        *self.balance.entry(currency).or_insert(default)
    }

    /// The signature over one transmission: HMAC of `id|time|webhook_id|sha256(event)`.
    pub(crate) fn signature(
        &self,
        id: &str,
        time: &str,
        webhook_id: &str,
        event: &Value,
    ) -> String {
        let digest = hex::encode(Sha256::digest(canonical_json(event).as_bytes()));
        let base = format!("{id}|{time}|{webhook_id}|{digest}");
        let mac = hmac_sha256(self.signing_key.expose_secret().as_bytes(), base.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac)
    }

    /// Transmission headers for one event, signed for our webhook id.
    pub(crate) fn signed_headers(&self, event: &Value) -> Vec<(String, String)> {
        let id = uuid::Uuid::new_v4().to_string();
        let time = now_text();
        let sig = self.signature(&id, &time, &self.webhook_id, event);
        vec![
            (TRANSMISSION_ID.into(), id),
            (TRANSMISSION_TIME.into(), time),
            (TRANSMISSION_SIG.into(), sig),
            (
                CERT_URL.into(),
                format!("{}/v1/notifications/certs/CERT-MOCK-1", self.base_url),
            ),
            (AUTH_ALGO.into(), "SHA256withRSA".into()),
        ]
    }

    fn envelope(
        &mut self,
        event_type: &str,
        resource_type: &str,
        resource: Value,
        summary: String,
    ) -> Value {
        let id = format!("WH-{}", self.id("MOCKEVT"));
        json!({
            "id": id,
            "create_time": now_text(),
            "resource_type": resource_type,
            "event_version": "1.0",
            "event_type": event_type,
            "summary": summary,
            "resource_version": "1.0",
            "resource": resource,
            "links": [{"href": format!("{}/v1/notifications/webhooks-events/{id}", self.base_url), "rel": "self", "method": "GET"}],
        })
    }

    /// Signs events and applies the duplicate / out-of-order options.
    pub(crate) fn outgoing(&mut self, events: Vec<Value>) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let n = events.len();
        for (i, event) in events.into_iter().enumerate() {
            let body = event.to_string().into_bytes();
            let headers = self.signed_headers(&event);
            // Out of order: later events of one change go first.
            let delay = if self.timing.out_of_order_webhooks {
                Duration::from_millis(((n - i) as u64) * 40 + self.dice.pick(20) as u64)
            } else {
                Duration::ZERO
            };
            if self.timing.duplicate_webhooks {
                out.push((
                    headers.clone(),
                    body.clone(),
                    delay + Duration::from_millis(10),
                ));
            }
            out.push((headers, body, delay));
        }
        out
    }

    /// Moves item `i` of batch `b` to `status`; returns the events the change produces.
    pub(crate) fn set_status(
        &mut self,
        b: usize,
        i: usize,
        status: &str,
        error: Option<&str>,
    ) -> Vec<Value> {
        let now = now_text();
        let mut credit = None;
        let item_json = {
            let Some(batch) = self.batches.get_mut(b) else {
                return Vec::new();
            };
            let Some(state) = batch.items.get_mut(i) else {
                return Vec::new();
            };
            if state.item.transaction_status == status {
                return Vec::new();
            }
            state.item.transaction_status = status.to_string();
            state.item.time_processed = Some(now.clone());
            state.since = crate::clock::instant();
            if let Some(name) = error {
                state.item.errors = Some(ItemError {
                    name: name.to_string(),
                    message: Some(format!("mock: {name}")),
                });
            }
            if status == "SUCCESS" && state.item.transaction_id.is_none() {
                state.item.transaction_id = Some(format!("MOCKTX{}", state.item.payout_item_id));
            }
            if state.item.payout_item_fee.is_none() {
                state.item.payout_item_fee = Some(Amount {
                    value: Decimal::new(0, state.currency.minor_decimals()).to_string(),
                    currency: state.currency.code().to_string(),
                });
            }
            let returns = matches!(
                status,
                "FAILED" | "RETURNED" | "BLOCKED" | "REFUNDED" | "REVERSED"
            );
            if returns && !state.credited {
                state.credited = true;
                credit = Some((state.currency, state.minor));
            }
            serde_json::to_value(&state.item).unwrap_or(Value::Null)
        };
        if let Some((currency, minor)) = credit {
            let now_balance = self.balance_of(currency);
            self.balance.insert(currency, now_balance + minor);
        }
        let mut events = Vec::new();
        if let Some(kind) = item_event(status) {
            let summary = format!("Payout item is {status}");
            events.push(self.envelope(
                &format!("PAYMENT.PAYOUTS-ITEM.{kind}"),
                "payouts_item",
                item_json,
                summary,
            ));
        }
        // The batch finishes when no item is pending any more.
        let finished = self.batches.get_mut(b).and_then(|batch| {
            let pending = batch
                .items
                .iter()
                .any(|s| s.item.transaction_status == "PENDING");
            (!pending && batch.header.batch_status != "SUCCESS").then(|| {
                batch.header.batch_status = "SUCCESS".into();
                batch.header.time_completed = Some(now.clone());
                json!({"batch_header": batch.header.clone()})
            })
        });
        if let Some(resource) = finished {
            events.push(self.envelope(
                "PAYMENT.PAYOUTSBATCH.SUCCESS",
                "payouts",
                resource,
                "Payout batch completed".into(),
            ));
        }
        events
    }

    /// One tick of PayPal's background processing.
    pub(crate) fn tick(&mut self) -> Vec<Value> {
        let t = self.timing.clone();
        let mut changes = Vec::new();
        for (b, batch) in self.batches.iter().enumerate() {
            for (i, s) in batch.items.iter().enumerate() {
                let age = crate::clock::elapsed(s.since);
                let next = match (s.item.transaction_status.as_str(), s.script) {
                    ("PENDING", _) if age >= t.process_after => Some(match s.script {
                        Script::Normal | Script::Reverse => ("SUCCESS", None),
                        Script::Unclaimed => ("UNCLAIMED", Some("RECEIVER_UNREGISTERED")),
                        Script::Fail => ("FAILED", Some("RECEIVER_UNREGISTERED")),
                        Script::Hold => ("ONHOLD", None),
                        Script::Block => ("BLOCKED", Some("RISK_DECLINE")),
                    }),
                    ("ONHOLD", _) if age >= t.process_after => Some(("SUCCESS", None)),
                    ("UNCLAIMED", _) if age >= t.unclaimed_return_after => Some(("RETURNED", None)),
                    ("SUCCESS", Script::Reverse) if age >= t.late_after => Some(("REVERSED", None)),
                    _ => None,
                };
                if let Some((status, error)) = next {
                    changes.push((b, i, status, error));
                }
            }
        }
        let mut events = Vec::new();
        for (b, i, status, error) in changes {
            events.extend(self.set_status(b, i, status, error));
        }
        events
    }

    pub(crate) fn moved(&self) -> Vec<MovedMoney> {
        self.batches
            .iter()
            .flat_map(|b| {
                b.items.iter().map(move |s| MovedMoney {
                    payout_id: s
                        .item
                        .payout_item
                        .sender_item_id
                        .clone()
                        .unwrap_or_default(),
                    provider_ref: b.header.payout_batch_id.clone(),
                    currency: s.currency.code().to_string(),
                    minor: s.minor,
                    state: item_state(&s.item.transaction_status),
                })
            })
            .collect()
    }

    pub(crate) fn find_batch(&self, id: &str) -> Option<usize> {
        self.batches
            .iter()
            .position(|b| b.header.payout_batch_id == id)
    }

    pub(crate) fn find_item(&self, id: &str) -> Option<(usize, usize)> {
        self.batches.iter().enumerate().find_map(|(b, batch)| {
            batch
                .items
                .iter()
                .position(|s| s.item.payout_item_id == id)
                .map(|i| (b, i))
        })
    }

    pub(crate) fn self_link(&self, path: &str) -> Link {
        Link {
            href: format!("{}{path}", self.base_url),
            rel: Some("self".into()),
            method: Some("GET".into()),
        }
    }
}

/// The event name for an item status, if the status has one.
fn item_event(status: &str) -> Option<&'static str> {
    Some(match status {
        "SUCCESS" => "SUCCEEDED",
        "FAILED" => "FAILED",
        "UNCLAIMED" => "UNCLAIMED",
        "RETURNED" => "RETURNED",
        "ONHOLD" => "HELD",
        "BLOCKED" => "BLOCKED",
        "REFUNDED" => "REFUNDED",
        "REVERSED" => "REVERSED",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn receivers_script_outcomes() {
        assert_eq!(
            Script::for_receiver("unclaimed-1@x.test"),
            Script::Unclaimed
        );
        assert_eq!(Script::for_receiver("FAIL-2@x.test"), Script::Fail);
        assert_eq!(Script::for_receiver("hold@x.test"), Script::Hold);
        assert_eq!(Script::for_receiver("reverse-3@x.test"), Script::Reverse);
        assert_eq!(Script::for_receiver("alice@x.test"), Script::Normal);
    }
}
