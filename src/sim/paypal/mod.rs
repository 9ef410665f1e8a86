//! A faithful mock of PayPal Payouts v1 (docs/providers/paypal.md, "Simulator"), for tests
//! and the demo.
//!
//! - `POST /v1/oauth2/token` (Basic `client_id:secret`) issues bearer tokens that expire
//!   after `token_ttl` (or at once via [`MockPaypal::expire_tokens`]); API calls with an
//!   expired or unknown token get 401. Bad credentials get the OAuth `invalid_client` body.
//! - `POST /v1/payments/payouts` validates all-or-nothing (400 `VALIDATION_ERROR` with
//!   `details[].field` such as `items[0].receiver`), refuses a `sender_batch_id` seen within
//!   `key_ttl_ms` (0 = for ever) with 400 `USER_BUSINESS_ERROR` linking to the original batch,
//!   debits the sender balance (422 `INSUFFICIENT_FUNDS` if short) and answers 201 `PENDING`.
//!   `PayPal-Request-Id` replay is off unless `request_id_replay` (real payouts doubt it).
//! - Background processing (every `tick_ms`): after `process_after_ms` a PENDING item goes
//!   SUCCESS, unless its receiver's local part scripts otherwise:
//!   `unclaimed*@…` → UNCLAIMED (RECEIVER_UNREGISTERED), then RETURNED after
//!   `unclaimed_return_after_ms`; `fail*@…` → FAILED (RECEIVER_UNREGISTERED);
//!   `hold*@…` → ONHOLD, then SUCCESS after another `process_after_ms`;
//!   `reverse*@…` → SUCCESS, then REVERSED after `late_after_ms`; `block*@…` → BLOCKED.
//!   FAILED/RETURNED/BLOCKED/REFUNDED/REVERSED credit the balance back (once).
//! - Every change emits a signed `PAYMENT.PAYOUTS-ITEM.*` (and, when a batch finishes,
//!   `PAYMENT.PAYOUTSBATCH.SUCCESS`) through the [`Outbox`]; `verify-webhook-signature`
//!   recomputes the mock's HMAC signature and answers SUCCESS or FAILURE.
//! - Faults ([`Faults`]): 429 `RATE_LIMIT_REACHED` with Retry-After and 500 `INTERNAL_ERROR`
//!   before execution; 500 after commit; connection dropped after commit.
//! - Reporting (`mock_records.rs`): `GET /v1/reporting/transactions` lists one `T0001` row per
//!   batch created in the window; `GET /__mock/statement.csv?from&to` exports the payouts
//!   report of those batches' items.

mod create;
mod engine;
mod records;
mod reply;
mod routes;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;

use crate::domain::money::Currency;
use crate::sim::kit::{Dice, MovedMoney, Outbox, Running, lock};
use engine::{Inner, Outgoing, Timing};

pub use crate::sim::kit::Faults;

/// What the mock starts with.
#[derive(Clone)]
pub struct MockPaypalConfig {
    pub client_id: String,
    pub client_secret: SecretString,
    /// The webhook subscription id the verify route accepts.
    pub webhook_id: String,
    pub token_ttl: Duration,
    pub faults: Faults,
    pub process_after_ms: u64,
    pub unclaimed_return_after_ms: u64,
    pub late_after_ms: u64,
    pub tick_ms: u64,
    /// Replay the stored answer for a repeated `PayPal-Request-Id`.
    pub request_id_replay: bool,
    /// Starting sender balance per currency, in minor units.
    pub balance_minor: i64,
    pub duplicate_webhooks: bool,
    pub out_of_order_webhooks: bool,
}

impl Default for MockPaypalConfig {
    fn default() -> Self {
        MockPaypalConfig {
            client_id: "mock-client-id".into(),
            client_secret: SecretString::from("mock-client-secret"),
            webhook_id: "WH-MOCK-0001".into(),
            token_ttl: Duration::from_secs(32_400),
            faults: Faults::default(),
            process_after_ms: 200,
            unclaimed_return_after_ms: 600,
            late_after_ms: 600,
            tick_ms: 50,
            request_id_replay: false,
            balance_minor: 1_000_000_000,
            duplicate_webhooks: false,
            out_of_order_webhooks: false,
        }
    }
}

impl std::fmt::Debug for MockPaypalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockPaypalConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("webhook_id", &self.webhook_id)
            .field("token_ttl", &self.token_ttl)
            .field("faults", &self.faults)
            .field("process_after_ms", &self.process_after_ms)
            .finish_non_exhaustive()
    }
}

type Shared = Arc<Mutex<Inner>>;

#[derive(Clone)]
struct AppState {
    inner: Shared,
    outbox: Outbox,
}

/// Handle to a running mock. Dropping it does not stop the server; call [`MockPaypal::stop`].
#[derive(Debug, Clone)]
pub struct MockPaypal {
    inner: Shared,
    running: Running,
    outbox: Outbox,
}

impl MockPaypal {
    /// Starts the mock on `addr` (port 0 for an ephemeral port) with its processing ticker.
    pub async fn start(addr: SocketAddr, config: MockPaypalConfig) -> std::io::Result<Self> {
        let inner = Arc::new(Mutex::new(Inner {
            client_id: config.client_id,
            client_secret: config.client_secret,
            webhook_id: config.webhook_id,
            token_ttl: config.token_ttl,
            request_id_replay: config.request_id_replay,
            timing: Timing {
                process_after: Duration::from_millis(config.process_after_ms),
                unclaimed_return_after: Duration::from_millis(config.unclaimed_return_after_ms),
                late_after: Duration::from_millis(config.late_after_ms),
                duplicate_webhooks: config.duplicate_webhooks,
                out_of_order_webhooks: config.out_of_order_webhooks,
            },
            dice: Dice::new(config.faults.seed),
            faults: config.faults,
            signing_key: SecretString::from(uuid::Uuid::new_v4().to_string()),
            base_url: String::new(),
            tokens: HashMap::new(),
            token_requests: 0,
            payout_requests: 0,
            verify_requests: 0,
            batches: Vec::new(),
            sender_batch_ids: HashMap::new(),
            request_ids: HashMap::new(),
            balance: BTreeMap::new(),
            default_balance: config.balance_minor,
            next_id: 1,
        }));
        let outbox = Outbox::default();
        let state = AppState {
            inner: inner.clone(),
            outbox: outbox.clone(),
        };
        let running = Running::start(addr, routes::router(state), "paypal").await?;
        lock(&inner).base_url = running.base_url();
        let tick = Duration::from_millis(config.tick_ms.max(5));
        let (ticking, out) = (inner.clone(), outbox.clone());
        let ticker = tokio::spawn(async move {
            loop {
                crate::clock::sleep(tick).await;
                let sends = {
                    let mut guard = lock(&ticking);
                    let events = guard.tick();
                    guard.outgoing(events)
                };
                deliver(&out, sends);
            }
        });
        running.also_stops(ticker);
        Ok(MockPaypal {
            inner,
            running,
            outbox,
        })
    }

    pub fn base_url(&self) -> String {
        self.running.base_url()
    }

    pub fn stop(&self) {
        self.running.stop();
    }

    pub fn set_faults(&self, faults: Faults) {
        let mut inner = lock(&self.inner);
        inner.dice = Dice::new(faults.seed);
        inner.faults = faults;
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// One entry per payout item the mock really created.
    pub fn moved(&self) -> Vec<MovedMoney> {
        lock(&self.inner).moved()
    }

    /// Forces the item(s) of a batch to `status` (e.g. `REFUNDED`), emitting webhooks.
    /// False if no such batch.
    pub fn advance(&self, batch_id: &str, status: &str) -> bool {
        advance(&self.inner, &self.outbox, batch_id, status)
    }

    /// Expires every issued token now: the next API call gets 401.
    pub fn expire_tokens(&self) {
        let now = crate::clock::instant();
        for expiry in lock(&self.inner).tokens.values_mut() {
            *expiry = now;
        }
    }

    /// How many token requests were made (cached tokens make this small).
    pub fn token_requests(&self) -> u64 {
        lock(&self.inner).token_requests
    }

    /// How many create-payout requests arrived (including refused ones).
    pub fn payout_requests(&self) -> u64 {
        lock(&self.inner).payout_requests
    }

    /// How many verify-webhook-signature postbacks arrived (authorized or not).
    pub fn verify_requests(&self) -> u64 {
        lock(&self.inner).verify_requests
    }

    /// The sender balance for a currency, in minor units.
    pub fn balance(&self, currency: Currency) -> i64 {
        lock(&self.inner).balance_of(currency)
    }

    pub fn set_balance(&self, currency: Currency, minor: i64) {
        lock(&self.inner).balance.insert(currency, minor);
    }

    pub fn webhook_id(&self) -> String {
        lock(&self.inner).webhook_id.clone()
    }

    /// Signed transmission headers for an arbitrary event, as the mock would send them.
    pub fn sign_event(&self, event: &serde_json::Value) -> Vec<(String, String)> {
        lock(&self.inner).signed_headers(event)
    }
}

fn deliver(outbox: &Outbox, sends: Vec<Outgoing>) {
    for (headers, body, delay) in sends {
        outbox.send(headers, body, delay);
    }
}

fn advance(inner: &Shared, outbox: &Outbox, batch_id: &str, status: &str) -> bool {
    let sends = {
        let mut guard = lock(inner);
        let Some(b) = guard.find_batch(batch_id) else {
            return false;
        };
        let error = match status {
            "FAILED" | "UNCLAIMED" => Some("RECEIVER_UNREGISTERED"),
            "BLOCKED" => Some("RISK_DECLINE"),
            _ => None,
        };
        let n = guard.batches[b].items.len();
        let mut events = Vec::new();
        for i in 0..n {
            events.extend(guard.set_status(b, i, status, error));
        }
        guard.outgoing(events)
    };
    deliver(outbox, sends);
    true
}
