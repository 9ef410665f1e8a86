//! A mock of PartnerStack's vendor API v2 reward endpoints (docs/providers/partnerstack.md,
//! "Simulator"), for tests and the demo. Routes live under `/api/v2` like the real host, so
//! [`MockPartnerstack::base_url`] is what `PartnerstackConfig::api_base` takes; control
//! routes live under `/__mock`.
//!
//! What it models:
//! - Basic auth with a Test and a Production key pair. They are separate worlds: rewards made
//!   with the test pair are tagged `test: true` and only that pair sees them; the test pair may
//!   only reward test partners (`gstest`), the production pair only real ones.
//! - Seeded partners (more via [`MockPartnerstack::add_partner`]); an unknown partner is 404.
//! - `POST /rewards` validation (int amount, 3-letter currency, key 4–255 chars, metadata
//!   limits), envelope `{data, message, status}`, ms timestamps, cursor pagination.
//! - Late commits (`Faults::late_commit_rate`: the client's connection drops at once, the
//!   reward is recorded `late_commit_ms` later) and listings that lag writes
//!   (`list_lag_ms`); reads by key see a reward at once. A request runs to its end even if
//!   its client disconnects.
//! - Duplicate keys per [`DuplicateKey`]; it never creates a second reward for a key it still
//!   remembers. `Faults::key_ttl_ms` makes it forget keys: after that a repeated key WOULD
//!   create a second reward, which proves our adapter never re-sends to resolve.
//! - Background progression (ticks every 50 ms): `pending` becomes `available` after
//!   `process_after_ms`; later steps after a further `late_after_ms`, scripted by partner key:
//!   - `expire*`   → `available`, then `expired`
//!   - `refund*`   → `available`, then `paid_and_refunded`
//!   - `withdraw*` → `available`, then `in_transit`, then `withdrawn`
//!   - `fail*`     → `failed` instead of `available`
//!   - anything else stays `available`.
//! - A webhook (name `webhook_event`, default `reward.updated`) through the [`Outbox`] on every
//!   change, with our `X-Webhook-Token` header when configured; duplicate and out-of-order
//!   delivery on request.
//! - Its records side (rewards export, silent tamper/forget controls) is in
//!   `mock_records.rs`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::providers::partnerstack::wire::Reward;
use crate::sim::kit::{Dice, MovedMoney, Outbox, Running, lock};
use state::{Inner, basic, moved};

pub use crate::sim::kit::Faults;

mod records;
mod reply;
mod routes;
mod state;

/// What a repeated reward `key` gets, until PartnerStack's real behaviour is confirmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DuplicateKey {
    /// `409 {"message": "duplicate key …"}`.
    #[default]
    Reject409,
    /// `200` with the reward already recorded under the key.
    ReturnExisting,
}

/// A partner the mock knows; `test` partners take rewards from the Test key pair only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockPartner {
    pub key: String,
    pub test: bool,
}

impl MockPartner {
    pub fn new(key: &str, test: bool) -> Self {
        MockPartner {
            key: key.to_string(),
            test,
        }
    }
}

/// What the mock is started with.
#[derive(Clone)]
pub struct MockPartnerstackConfig {
    pub test_public_key: String,
    pub test_secret_key: SecretString,
    pub prod_public_key: String,
    pub prod_secret_key: SecretString,
    pub faults: Faults,
    pub duplicate_key: DuplicateKey,
    pub process_after_ms: u64,
    pub late_after_ms: u64,
    pub webhook_event: String,
    /// Sent as `X-Webhook-Token` on every delivery when set.
    pub webhook_token: Option<SecretString>,
    pub duplicate_webhooks: bool,
    pub out_of_order_webhooks: bool,
    pub partners: Vec<MockPartner>,
}

impl std::fmt::Debug for MockPartnerstackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockPartnerstackConfig")
            .field("test_public_key", &self.test_public_key)
            .field("prod_public_key", &self.prod_public_key)
            .field("secret keys", &"[redacted]")
            .field("faults", &self.faults)
            .field("duplicate_key", &self.duplicate_key)
            .field("process_after_ms", &self.process_after_ms)
            .field("late_after_ms", &self.late_after_ms)
            .field("webhook_event", &self.webhook_event)
            .field("duplicate_webhooks", &self.duplicate_webhooks)
            .field("out_of_order_webhooks", &self.out_of_order_webhooks)
            .field("partners", &self.partners)
            .finish()
    }
}

/// Partners every mock starts with: the test partner and one per scripted outcome.
pub const SEEDED_PARTNERS: &[(&str, bool)] = &[
    ("gstest", true),
    ("pk_alice", false),
    ("pk_bob", false),
    ("expire_pk_carol", false),
    ("fail_pk_dave", false),
    ("refund_pk_erin", false),
    ("withdraw_pk_frank", false),
];

impl Default for MockPartnerstackConfig {
    fn default() -> Self {
        MockPartnerstackConfig {
            test_public_key: "pk_test_mock".into(),
            test_secret_key: SecretString::from("sk_test_mock"),
            prod_public_key: "pk_live_mock".into(),
            prod_secret_key: SecretString::from("sk_live_mock"),
            faults: Faults::default(),
            duplicate_key: DuplicateKey::default(),
            process_after_ms: 200,
            late_after_ms: 500,
            webhook_event: "reward.updated".into(),
            webhook_token: None,
            duplicate_webhooks: false,
            out_of_order_webhooks: false,
            partners: SEEDED_PARTNERS
                .iter()
                .map(|(k, t)| MockPartner::new(k, *t))
                .collect(),
        }
    }
}

struct Shared {
    inner: Mutex<Inner>,
    outbox: Outbox,
}

/// A webhook to deliver once the lock is released.
type Pending = (Vec<(String, String)>, Vec<u8>, Duration);

/// Handle to a running mock. Dropping it does not stop the server; call [`Self::stop`].
#[derive(Clone)]
pub struct MockPartnerstack {
    shared: Arc<Shared>,
    running: Running,
}

impl std::fmt::Debug for MockPartnerstack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockPartnerstack")
            .field("addr", &self.running.addr)
            .finish()
    }
}

fn flush(outbox: &Outbox, pending: Vec<Pending>) {
    for (headers, body, delay) in pending {
        outbox.send(headers, body, delay);
    }
}

impl MockPartnerstack {
    /// Starts the mock on `addr` (port 0 for an ephemeral port) and its progression ticker.
    pub async fn start(
        addr: SocketAddr,
        config: MockPartnerstackConfig,
    ) -> std::io::Result<MockPartnerstack> {
        let inner = Inner {
            auth_test: basic(&config.test_public_key, &config.test_secret_key),
            auth_prod: basic(&config.prod_public_key, &config.prod_secret_key),
            dice: Dice::new(config.faults.seed),
            faults: config.faults,
            duplicate_key: config.duplicate_key,
            process_after: Duration::from_millis(config.process_after_ms),
            late_after: Duration::from_millis(config.late_after_ms),
            webhook_event: config.webhook_event,
            webhook_token: config.webhook_token,
            duplicate_webhooks: config.duplicate_webhooks,
            out_of_order_webhooks: config.out_of_order_webhooks,
            partners: config
                .partners
                .into_iter()
                .map(|p| (p.key, p.test))
                .collect(),
            rewards: Vec::new(),
            remembered: HashMap::new(),
            seen: HashSet::new(),
            next_event: 0,
            posts: 0,
            reads: 0,
        };
        let shared = Arc::new(Shared {
            inner: Mutex::new(inner),
            outbox: Outbox::default(),
        });
        let running = Running::start(addr, routes::router(shared.clone()), "partnerstack").await?;
        let ticking = shared.clone();
        let ticker = tokio::spawn(async move {
            loop {
                crate::clock::sleep(Duration::from_millis(50)).await;
                let pending = lock(&ticking.inner).tick();
                flush(&ticking.outbox, pending);
            }
        });
        running.also_stops(ticker);
        Ok(MockPartnerstack { shared, running })
    }

    /// The API base to configure the adapter with (`http://addr/api/v2`).
    pub fn base_url(&self) -> String {
        format!("{}/api/v2", self.running.base_url())
    }

    /// Where the `/__mock/...` control routes live.
    pub fn root_url(&self) -> String {
        self.running.base_url()
    }

    pub fn stop(&self) {
        self.running.stop();
    }

    pub fn set_faults(&self, faults: Faults) {
        let mut inner = lock(&self.shared.inner);
        inner.dice = Dice::new(faults.seed);
        inner.faults = faults;
    }

    pub fn set_duplicate_key(&self, mode: DuplicateKey) {
        lock(&self.shared.inner).duplicate_key = mode;
    }

    pub fn add_partner(&self, key: &str, test: bool) {
        lock(&self.shared.inner)
            .partners
            .insert(key.to_string(), test);
    }

    pub fn outbox(&self) -> &Outbox {
        &self.shared.outbox
    }

    /// Every reward the mock recorded, oldest first.
    pub fn rewards(&self) -> Vec<Reward> {
        lock(&self.shared.inner)
            .rewards
            .iter()
            .map(|s| s.reward.clone())
            .collect()
    }

    /// How many `POST /rewards` requests arrived (any outcome).
    pub fn posts(&self) -> u64 {
        lock(&self.shared.inner).posts
    }

    /// How many `GET /rewards/{key}` requests arrived (any outcome).
    pub fn reads(&self) -> u64 {
        lock(&self.shared.inner).reads
    }

    /// One entry per reward recorded (test-mode rewards included; they are tagged in the API).
    pub fn moved(&self) -> Vec<MovedMoney> {
        moved(&lock(&self.shared.inner))
    }

    /// Sets the payment status of every reward under `key`; false if there is none.
    pub fn advance(&self, key: &str, payment_status: &str) -> bool {
        let pending = {
            let mut inner = lock(&self.shared.inner);
            let hits: Vec<usize> = (0..inner.rewards.len())
                .filter(|i| inner.rewards[*i].reward.key == key)
                .collect();
            hits.into_iter()
                .flat_map(|i| inner.change(i, payment_status))
                .collect::<Vec<_>>()
        };
        let found = !pending.is_empty();
        flush(&self.shared.outbox, pending);
        found
    }
}
