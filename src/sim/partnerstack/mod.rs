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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::domain::tracking::RailState;
use crate::providers::partnerstack::wire::{
    CreateReward, Envelope, ErrorBody, KEY_MAX, KEY_MIN, MAX_LIMIT, PAYOUT_ID, Page, Reward,
    WEBHOOK_TOKEN,
};
use crate::sim::kit::{
    Dice, MovedMoney, Outbox, Running, dropped_connection, json_response, lock, with_retry_after,
};

pub use crate::sim::kit::Faults;

mod records;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Mode {
    Test,
    Prod,
}

#[derive(Debug)]
struct Stored {
    mode: Mode,
    reward: Reward,
    changed: Instant,
    /// When the reward was recorded, for `Faults::list_lag_ms`.
    written: Instant,
}

#[derive(Debug)]
struct Inner {
    auth_test: String,
    auth_prod: String,
    faults: Faults,
    dice: Dice,
    duplicate_key: DuplicateKey,
    process_after: Duration,
    late_after: Duration,
    webhook_event: String,
    webhook_token: Option<SecretString>,
    duplicate_webhooks: bool,
    out_of_order_webhooks: bool,
    partners: BTreeMap<String, bool>,
    rewards: Vec<Stored>,
    /// Keys the duplicate check still remembers, with when they were recorded.
    remembered: HashMap<(Mode, String), Instant>,
    /// Every key ever sent, for `drop_first_attempt`.
    seen: HashSet<(Mode, String)>,
    next_event: u64,
    posts: u64,
    reads: u64,
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

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Standard base64 of `public:secret`, for comparing Basic auth headers.
fn basic(public: &str, secret: &SecretString) -> String {
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
fn money_state(payment_status: &str) -> RailState {
    match payment_status {
        "available" | "in_transit" | "withdrawn" | "paid_externally" => RailState::Paid,
        "pending" | "merging" => RailState::InFlight,
        _ => RailState::Returned,
    }
}

/// The scripted next payment status of a reward, if its time has come.
fn next_status(partner: &str, current: &str) -> Option<(&'static str, bool)> {
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
    fn change(&mut self, index: usize, payment_status: &str) -> Vec<Pending> {
        let Some(stored) = self.rewards.get_mut(index) else {
            return Vec::new();
        };
        stored.reward.payment_status = payment_status.to_string();
        stored.reward.updated_at = Some(now_ms());
        stored.changed = Instant::now();
        let reward = stored.reward.clone();
        self.event(&reward)
    }

    fn event(&mut self, reward: &Reward) -> Vec<Pending> {
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

    fn tick(&mut self) -> Vec<Pending> {
        let mut due = Vec::new();
        for (i, s) in self.rewards.iter().enumerate() {
            if let Some((next, late)) = next_status(&s.reward.partner_key, &s.reward.payment_status)
            {
                let wait = if late {
                    self.late_after
                } else {
                    self.process_after
                };
                if s.changed.elapsed() >= wait {
                    due.push((i, next));
                }
            }
        }
        due.into_iter()
            .flat_map(|(i, next)| self.change(i, next))
            .collect()
    }

    fn forget_expired_keys(&mut self) {
        let ttl = self.faults.key_ttl_ms;
        if ttl > 0 {
            let ttl = Duration::from_millis(ttl);
            self.remembered.retain(|_, at| at.elapsed() < ttl);
        }
    }

    fn mode(&self, headers: &HeaderMap) -> Option<Mode> {
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
        let running = Running::start(addr, router(shared.clone()), "partnerstack").await?;
        let ticking = shared.clone();
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(50));
            loop {
                every.tick().await;
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

fn moved(inner: &Inner) -> Vec<MovedMoney> {
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

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v2/rewards", post(create_reward).get(list_rewards))
        .route("/api/v2/rewards/{key}", get(get_reward))
        .route("/__mock/faults", post(control_faults))
        .route("/__mock/rewards", get(control_truth))
        .route("/__mock/advance", post(control_advance))
        .route("/__mock/duplicate_key", post(control_duplicate_key))
        .route("/__mock/statement.csv", get(records::statement_csv))
        .route("/__mock/tamper", post(records::tamper))
        .route("/__mock/rewards/{key}", delete(records::forget))
        .fallback(unknown_route)
        .with_state(shared)
}

fn error(status: u16, message: &str) -> Response {
    let body = serde_json::to_string(&ErrorBody {
        message: message.to_string(),
        status,
    })
    .unwrap_or_default();
    json_response(status, body)
}

fn ok<T: Serialize>(data: T) -> Response {
    let body = serde_json::to_string(&Envelope {
        data,
        message: "Success".to_string(),
        status: 200,
    })
    .unwrap_or_default();
    json_response(200, body)
}

fn unauthorized() -> Response {
    error(401, "Unauthorized: invalid public or secret key")
}

/// Field checks of `POST /rewards`, as PartnerStack documents them for transactions.
fn validate(r: &CreateReward) -> Result<(), String> {
    if !(1..=50_000_000_000).contains(&r.amount) {
        return Err("amount must be a positive integer of at most 50000000000".into());
    }
    if r.currency.len() != 3 || !r.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("currency {:?} must be a 3-letter code", r.currency));
    }
    if !(KEY_MIN..=KEY_MAX).contains(&r.key.len()) {
        return Err("key must be between 4 and 255 characters".into());
    }
    if r.metadata.len() > 25
        || r.metadata
            .iter()
            .any(|(k, v)| k.len() > 30 || v.len() > 100)
    {
        return Err(
            "metadata allows 25 attributes, names up to 30 and values up to 100 characters".into(),
        );
    }
    Ok(())
}

async fn create_reward(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (latency, late) = {
        let mut guard = lock(&shared.inner);
        let inner = &mut *guard;
        inner.posts += 1;
        let Some(mode) = inner.mode(&headers) else {
            return unauthorized();
        };
        let create: CreateReward = match serde_json::from_slice(&body) {
            Ok(c) => c,
            Err(e) => return error(400, &format!("invalid request body: {e}")),
        };
        if let Err(m) = validate(&create) {
            return error(400, &m);
        }
        match inner.partners.get(&create.partner_key) {
            None => return error(404, &format!("partner {:?} not found", create.partner_key)),
            Some(true) if mode == Mode::Prod => {
                return error(
                    400,
                    "test partners only take rewards from the Test key pair",
                );
            }
            Some(false) if mode == Mode::Test => {
                return error(400, "the Test key pair may only reward test partners");
            }
            Some(_) => {}
        }
        // Refused before anything executes: nothing is stored.
        if inner.dice.roll(inner.faults.rate_limit_rate) {
            return with_retry_after(error(429, "Too many requests"), 1);
        }
        if inner.dice.roll(inner.faults.error_rate) {
            return error(500, "Internal server error");
        }
        let late = inner.dice.roll(inner.faults.late_commit_rate);
        let late = late.then(|| Duration::from_millis(inner.faults.late_commit_ms));
        (Duration::from_millis(inner.faults.latency_ms), late)
    };
    // The request runs on its own task: a client that disconnects (or gave up) does not
    // stop it, so a late request still commits.
    let work = tokio::spawn(async move {
        let wait = latency + late.unwrap_or_default();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let (response, pending) = commit(&shared, &headers, &body);
        flush(&shared.outbox, pending);
        response
    });
    if late.is_some() {
        return dropped_connection();
    }
    work.await
        .unwrap_or_else(|_| error(500, "the mock's request task failed"))
}

/// Duplicate check and commit under one lock: never two rewards for a remembered key.
fn commit(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> (Response, Vec<Pending>) {
    {
        let mut guard = lock(&shared.inner);
        let inner = &mut *guard;
        let Some(mode) = inner.mode(headers) else {
            return (unauthorized(), Vec::new());
        };
        let Ok(create) = serde_json::from_slice::<CreateReward>(body) else {
            return (error(400, "invalid request body"), Vec::new());
        };
        inner.forget_expired_keys();
        let id = (mode, create.key.clone());
        if inner.remembered.contains_key(&id) {
            let existing = inner
                .rewards
                .iter()
                .find(|s| s.mode == mode && s.reward.key == create.key)
                .map(|s| s.reward.clone());
            let response = match (inner.duplicate_key, existing) {
                (DuplicateKey::ReturnExisting, Some(r)) => ok(r),
                _ => error(
                    409,
                    &format!(
                        "duplicate key: a reward with key {:?} already exists",
                        create.key
                    ),
                ),
            };
            return (response, Vec::new());
        }
        let first_seen = inner.seen.insert(id.clone());
        inner.remembered.insert(id, Instant::now());
        let now = now_ms();
        let reward = Reward {
            key: create.key,
            partner_key: create.partner_key,
            amount: create.amount,
            currency: create.currency,
            description: create.description,
            status: "approved".into(),
            payment_status: "pending".into(),
            created_at: now,
            updated_at: Some(now),
            metadata: create.metadata,
            test: mode == Mode::Test,
        };
        inner.rewards.push(Stored {
            mode,
            reward: reward.clone(),
            changed: Instant::now(),
            written: Instant::now(),
        });
        let pending = inner.event(&reward);
        let faults = inner.faults.clone();
        let response = if (faults.drop_first_attempt && first_seen)
            || inner.dice.roll(faults.drop_after_commit_rate)
        {
            dropped_connection()
        } else if inner.dice.roll(faults.error_after_commit_rate) {
            error(500, "Internal server error")
        } else {
            ok(reward)
        };
        (response, pending)
    }
}

#[derive(Debug, Deserialize)]
struct ListParams {
    partner_key: Option<String>,
    payment_status: Option<String>,
    limit: Option<String>,
    starting_after: Option<String>,
    ending_before: Option<String>,
    min_created: Option<i64>,
    max_created: Option<i64>,
}

async fn list_rewards(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<ListParams>,
) -> Response {
    let inner = lock(&shared.inner);
    let Some(mode) = inner.mode(&headers) else {
        return unauthorized();
    };
    let limit = match q.limit.as_deref().map(str::parse::<usize>) {
        None => 10,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => return error(400, "limit must be between 1 and 250"),
    };
    if q.starting_after.is_some() && q.ending_before.is_some() {
        return error(
            400,
            "starting_after and ending_before are mutually exclusive",
        );
    }
    // Newest first.
    let matching: Vec<&Reward> = inner
        .rewards
        .iter()
        .rev()
        .filter(|s| s.mode == mode && inner.faults.listed(s.written))
        .map(|s| &s.reward)
        .filter(|r| q.partner_key.as_ref().is_none_or(|p| r.partner_key == *p))
        .filter(|r| {
            q.payment_status
                .as_ref()
                .is_none_or(|p| r.payment_status == *p)
        })
        .filter(|r| q.min_created.is_none_or(|m| r.created_at >= m))
        .filter(|r| q.max_created.is_none_or(|m| r.created_at <= m))
        .collect();
    let window: Vec<&Reward> = if let Some(after) = &q.starting_after {
        match matching.iter().position(|r| r.key == *after) {
            Some(i) => matching[i + 1..].to_vec(),
            None => {
                return error(
                    400,
                    &format!("starting_after {after:?} is not in this list"),
                );
            }
        }
    } else if let Some(before) = &q.ending_before {
        match matching.iter().position(|r| r.key == *before) {
            Some(i) => {
                let start = i.saturating_sub(limit);
                matching[start..i].to_vec()
            }
            None => {
                return error(
                    400,
                    &format!("ending_before {before:?} is not in this list"),
                );
            }
        }
    } else {
        matching
    };
    let has_more = window.len() > limit;
    let items: Vec<Reward> = window.into_iter().take(limit).cloned().collect();
    ok(Page { has_more, items })
}

async fn get_reward(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let mut inner = lock(&shared.inner);
    inner.reads += 1;
    let Some(mode) = inner.mode(&headers) else {
        return unauthorized();
    };
    match inner
        .rewards
        .iter()
        .find(|s| s.mode == mode && s.reward.key == key)
    {
        Some(s) => ok(s.reward.clone()),
        None => error(404, &format!("reward {key:?} not found")),
    }
}

async fn control_faults(State(shared): State<Arc<Shared>>, Json(faults): Json<Faults>) -> Response {
    let mut inner = lock(&shared.inner);
    inner.dice = Dice::new(faults.seed);
    inner.faults = faults;
    json_response(204, "")
}

async fn control_truth(State(shared): State<Arc<Shared>>) -> Response {
    Json(moved(&lock(&shared.inner))).into_response_json()
}

#[derive(Debug, Deserialize)]
struct Advance {
    key: String,
    payment_status: String,
}

async fn control_advance(State(shared): State<Arc<Shared>>, Json(a): Json<Advance>) -> Response {
    let pending = {
        let mut inner = lock(&shared.inner);
        let hits: Vec<usize> = (0..inner.rewards.len())
            .filter(|i| inner.rewards[*i].reward.key == a.key)
            .collect();
        hits.into_iter()
            .flat_map(|i| inner.change(i, &a.payment_status))
            .collect::<Vec<_>>()
    };
    if pending.is_empty() {
        return error(404, &format!("reward {:?} not found", a.key));
    }
    flush(&shared.outbox, pending);
    json_response(204, "")
}

#[derive(Debug, Deserialize)]
struct DuplicateMode {
    mode: DuplicateKey,
}

async fn control_duplicate_key(
    State(shared): State<Arc<Shared>>,
    Json(m): Json<DuplicateMode>,
) -> Response {
    lock(&shared.inner).duplicate_key = m.mode;
    json_response(204, "")
}

async fn unknown_route(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error(404, &format!("no route for {method} {}", uri.path()))
}

/// `Json` into a response without pulling `IntoResponse` into every handler above.
trait IntoJson {
    fn into_response_json(self) -> Response;
}

impl<T: Serialize> IntoJson for Json<T> {
    fn into_response_json(self) -> Response {
        json_response(200, serde_json::to_string(&self.0).unwrap_or_default())
    }
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
