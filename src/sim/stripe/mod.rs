//! A faithful mock of Stripe's transfer API (docs/providers/stripe.md, "Simulator"), for tests
//! and the demo.
//!
//! It keeps its own record of every transfer it really made ([`MockStripe::transfers`]): the
//! truth the tests compare our ledger against. Faults are injected from [`Faults`]:
//! latency, 429s (rejected before the idempotency layer, so not stored), 500s before or
//! after committing (stored under the key and replayed, as Stripe does), "commit, then drop
//! the connection", late commits (the client's connection drops, the transfer lands
//! `late_commit_ms` later; its key answers 409 until then, then the stored result) and
//! listings that lag writes by `list_lag_ms`; `key_ttl_ms` makes it forget idempotency keys
//! early. A request runs to its end even if its client disconnects, as at Stripe.
//!
//! Every transfer emits a signed `transfer.created` webhook through its outbox. A transfer to
//! a destination starting `acct_bounce` is reversed in full `late_after_ms` later (the
//! connected account's bank payout failed and the platform pulled the money back), emitting
//! `transfer.reversed`; [`MockStripe::reverse`] does the same on demand.
//!
//! For reconciliation (see `mock_records.rs`): transfer and payout lists honour
//! `created[gt|gte|lt|lte]` and pagination; `POST /v1/payouts` makes a platform bank payout
//! (`pending`, then `paid` `late_after_ms` later); test-control routes tamper with or forget a
//! transfer silently, move the mock's clock, and export the dashboard's transfers CSV.

mod execute;
mod params;
mod records;
mod reply;
mod routes;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::domain::money::Currency;
use crate::providers::stripe::webhook::{SIGNATURE_HEADER, sign};
use crate::providers::stripe::wire::{Payout, Transfer};
use crate::sim::kit::{Dice, Gate, MovedMoney, Outbox, lock};

pub use crate::sim::kit::Faults;
pub use records::Tamper;

#[derive(Debug, Clone)]
enum Idem {
    InFlight {
        fingerprint: String,
    },
    Done {
        fingerprint: String,
        status: u16,
        body: String,
    },
}

#[derive(Debug)]
struct Inner {
    api_key: SecretString,
    faults: Faults,
    dice: Dice,
    /// Holds transfer creations in flight while a test acts (see [`Gate`]).
    gate: Gate,
    transfers: Vec<Transfer>,
    /// Platform payouts to the platform's own bank, oldest first.
    payouts: Vec<Payout>,
    /// Seconds added to `created` of new objects, so tests can make them on other days.
    clock_offset_secs: i64,
    /// Idempotency entries with the time they were stored (for `Faults::key_ttl_ms`).
    idempotency: HashMap<String, (Instant, Idem)>,
    /// When each transfer was written, for `Faults::list_lag_ms`.
    written: HashMap<String, Instant>,
    outbox: Outbox,
    webhook_secret: SecretString,
    /// Seconds added to the signing clock, to test the receiver's 300 s tolerance.
    webhook_skew_secs: i64,
    late_after_ms: u64,
    next_event: u64,
    /// Available platform balance per lowercase currency, in minor units.
    balance: BTreeMap<String, i64>,
    default_balance: i64,
    next_id: u64,
    requests: u64,
    /// Money-moving requests answered 429 by `Faults::rate_limit_first` so far.
    limited_first: u32,
    /// `Faults::limit_per_sec` as enforced on every /v1 request.
    limit: crate::sim::kit::Limit,
}

/// Handle to a running mock. Dropping it does not stop the server; call [`MockStripe::stop`].
#[derive(Debug, Clone)]
pub struct MockStripe {
    inner: Arc<Mutex<Inner>>,
    addr: SocketAddr,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// What the mock was configured with at start.
#[derive(Debug, Clone)]
pub struct MockConfig {
    pub api_key: SecretString,
    pub faults: Faults,
    /// Starting platform balance per currency, in minor units.
    pub balance_minor: i64,
    /// Signs webhook deliveries (`whsec_…`).
    pub webhook_secret: SecretString,
    /// Transfers to destinations starting `acct_bounce` are reversed this long after they
    /// were made: the connected account's bank payout failed and the platform pulled the
    /// money back (`transfer.reversed`).
    pub late_after_ms: u64,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            api_key: SecretString::from("sk_test_mock"),
            faults: Faults::default(),
            balance_minor: 1_000_000_000,
            webhook_secret: SecretString::from("whsec_mock"),
            late_after_ms: 300,
        }
    }
}

impl MockStripe {
    /// Starts the mock on `addr` (use port 0 for an ephemeral port).
    pub async fn start(addr: SocketAddr, config: MockConfig) -> std::io::Result<MockStripe> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner {
            api_key: config.api_key,
            dice: Dice::new(config.faults.seed),
            faults: config.faults,
            gate: Gate::default(),
            transfers: Vec::new(),
            payouts: Vec::new(),
            clock_offset_secs: 0,
            idempotency: HashMap::new(),
            written: HashMap::new(),
            balance: BTreeMap::new(),
            default_balance: config.balance_minor,
            next_id: 1,
            requests: 0,
            limited_first: 0,
            limit: crate::sim::kit::Limit::default(),
            outbox: Outbox::default(),
            webhook_secret: config.webhook_secret,
            webhook_skew_secs: 0,
            late_after_ms: config.late_after_ms,
            next_event: 1,
        }));
        let app = routes::router(inner.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "mock stripe server stopped");
            }
        });
        Ok(MockStripe {
            inner,
            addr,
            task: Arc::new(Mutex::new(Some(task))),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every transfer the mock really made, oldest first.
    pub fn transfers(&self) -> Vec<Transfer> {
        lock(&self.inner).transfers.clone()
    }

    /// Every platform payout the mock made, oldest first.
    pub fn payouts(&self) -> Vec<Payout> {
        lock(&self.inner).payouts.clone()
    }

    /// Moves the clock that stamps `created` on new transfers and payouts by `secs` (e.g.
    /// `-86_400` to make "yesterday's" transfers). Webhook signing keeps the real clock.
    pub fn set_clock_offset(&self, secs: i64) {
        lock(&self.inner).clock_offset_secs = secs;
    }

    /// Silently changes a stored transfer (no webhook): the provider's books now disagree with
    /// what it told us. False if unknown.
    pub fn tamper(&self, change: &Tamper) -> bool {
        records::tamper(&self.inner, change)
    }

    /// Silently forgets a transfer (no webhook). False if unknown.
    pub fn forget(&self, id: &str) -> bool {
        records::forget(&self.inner, id)
    }

    /// How many transfers were made for one transfer group (our payout id).
    pub fn transfers_for_group(&self, group: &str) -> usize {
        lock(&self.inner)
            .transfers
            .iter()
            .filter(|t| t.transfer_group.as_deref() == Some(group))
            .count()
    }

    /// The gate transfer creations pass: hold it to keep requests in flight.
    pub fn gate(&self) -> Gate {
        lock(&self.inner).gate.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        let mut inner = lock(&self.inner);
        inner.dice = Dice::new(faults.seed);
        inner.faults = faults;
    }

    /// Sets the available platform balance for a currency, in minor units.
    pub fn set_balance(&self, currency: Currency, minor: i64) {
        lock(&self.inner)
            .balance
            .insert(currency.code().to_ascii_lowercase(), minor);
    }

    /// Makes a transfer nobody asked for (to test that our lookups notice duplicates).
    pub fn inject_transfer(
        &self,
        group: &str,
        destination: &str,
        amount: i64,
        currency: &str,
    ) -> String {
        let mut inner = lock(&self.inner);
        let transfer = new_transfer(
            &mut inner,
            amount,
            currency,
            destination,
            Some(group),
            BTreeMap::new(),
        );
        inner.transfers.push(transfer.clone());
        transfer.id
    }

    /// The mock's own books: one entry per transfer, paid unless reversed.
    pub fn moved(&self) -> Vec<MovedMoney> {
        lock(&self.inner)
            .transfers
            .iter()
            .map(|t| MovedMoney {
                payout_id: t
                    .metadata
                    .get("payout_id")
                    .cloned()
                    .or_else(|| t.transfer_group.clone())
                    .unwrap_or_default(),
                provider_ref: t.id.clone(),
                currency: t.currency.to_ascii_uppercase(),
                minor: t.amount - t.amount_reversed,
                state: crate::providers::stripe::observe(t).state,
            })
            .collect()
    }

    /// Webhook deliveries: set a target to receive them.
    pub fn outbox(&self) -> Outbox {
        lock(&self.inner).outbox.clone()
    }

    /// Skews the clock webhook signatures are made with.
    pub fn set_webhook_skew(&self, secs: i64) {
        lock(&self.inner).webhook_skew_secs = secs;
    }

    /// Reverses a transfer in full, crediting the platform balance. False if unknown or
    /// already reversed.
    pub fn reverse(&self, id: &str) -> bool {
        reverse_transfer(&self.inner, id)
    }

    /// Under `Faults::limit_per_sec`: when each API request arrived, and how many were
    /// answered 429.
    pub fn arrivals(&self) -> (Vec<std::time::Instant>, u64) {
        let inner = lock(&self.inner);
        (inner.limit.arrivals.clone(), inner.limit.refused)
    }

    pub fn requests(&self) -> u64 {
        lock(&self.inner).requests
    }

    pub fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

fn new_transfer(
    inner: &mut Inner,
    amount: i64,
    currency: &str,
    destination: &str,
    group: Option<&str>,
    metadata: BTreeMap<String, String>,
) -> Transfer {
    let n = inner.next_id;
    inner.next_id += 1;
    let id = format!("tr_mock{n:010}");
    inner.written.insert(id.clone(), crate::clock::instant());
    Transfer {
        object: "transfer".into(),
        amount,
        amount_reversed: 0,
        balance_transaction: Some(format!("txn_mock{n:010}")),
        created: crate::clock::now().timestamp() + inner.clock_offset_secs,
        currency: currency.to_string(),
        description: None,
        destination: destination.to_string(),
        destination_payment: Some(format!("py_mock{n:010}")),
        livemode: false,
        metadata,
        reversed: false,
        source_transaction: None,
        source_type: Some("card".into()),
        transfer_group: group.map(str::to_string),
        id,
    }
}

/// Signs and sends a `transfer.*` event through the outbox.
fn emit(inner: &mut Inner, kind: &str, transfer: &Transfer) {
    let created = crate::clock::now().timestamp();
    let event = serde_json::json!({
        "id": format!("evt_mock{:06}", inner.next_event),
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "type": kind,
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "data": {"object": transfer},
    });
    inner.next_event += 1;
    let body = event.to_string().into_bytes();
    let signature = sign(
        &inner.webhook_secret,
        created + inner.webhook_skew_secs,
        &body,
    );
    inner.outbox.send(
        vec![(SIGNATURE_HEADER.to_string(), signature)],
        body,
        Duration::ZERO,
    );
}

fn reverse_transfer(inner: &Mutex<Inner>, id: &str) -> bool {
    let mut guard = lock(inner);
    let inner = &mut *guard;
    let Some(t) = inner.transfers.iter_mut().find(|t| t.id == id) else {
        return false;
    };
    if t.reversed {
        return false;
    }
    let back = t.amount - t.amount_reversed;
    t.amount_reversed = t.amount;
    t.reversed = true;
    let transfer = t.clone();
    *inner.balance.entry(transfer.currency.clone()).or_insert(0) += back;
    emit(inner, "transfer.reversed", &transfer);
    true
}
