//! A faithful mock of Wise's payout API (docs/providers/wise.md, "Simulator"), for tests and
//! the demo.
//!
//! Speaks the real paths and JSON shapes: Bearer auth (401 OAuth-style body), profiles,
//! recipients, quotes (30-minute expiry on a clock tests can shift), one transfer per quote,
//! `customerTransactionId` dedupe (a repeat returns the SAME transfer, or a 409 if
//! [`RepeatMode::Conflict`]; never a second one), funding from a per-currency balance
//! (`REJECTED` with `balance.payment-option-unavailable` when short), listing with a `status`
//! CSV filter and `limit`/`offset`, and signed `transfers#state-change` webhooks.
//!
//! Seeded recipients (profile [`PROFILE_ID`] by default), whose ids script the outcome:
//! - [`RECIPIENT_USD`] 1001 (USD), [`RECIPIENT_EUR`] 1002 (EUR), [`RECIPIENT_GBP`] 1003 (GBP):
//!   `processing → funds_converted → outgoing_payment_sent`, one step per `process_after_ms`.
//! - [`RECIPIENT_BOUNCE`] 1004 (USD): reaches `outgoing_payment_sent`, then `bounced_back`
//!   after `late_after_ms` and `funds_refunded` after another `late_after_ms` (the money goes
//!   back into the mock balance).
//! - [`RECIPIENT_FAIL`] 1005 (USD): `processing → cancelled` with payout-failure code
//!   `WRONG_ACCOUNT_NUMBER` (money back into the balance).
//!
//! Its own record of the money is [`MockWise::moved`]: one entry per funded transfer. Its
//! records side (date-range listing, balance statement export, silent tamper/forget controls)
//! is in `mock_records.rs`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rust_decimal::{Decimal, RoundingStrategy};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::domain::money::Currency;
use crate::domain::tracking::RailState;
use crate::providers::wise::classify::QUOTE_EXPIRED;
use crate::providers::wise::wire::{
    Account, ErrorBody, FundRequest, FundResponse, Num, Profile, Quote, QuoteRequest, Transfer,
    TransferDetails, TransferRequest, WAITING,
};
use crate::sim::kit::{
    Dice, MovedMoney, Outbox, Running, dropped_connection, json_response, lock, with_retry_after,
};

pub use crate::sim::kit::Faults;

mod records;

/// TEST ONLY: the private key the mock signs webhooks with. It is public in this repository,
/// so it proves nothing outside tests.
pub const TEST_WEBHOOK_PRIVATE_KEY_PEM: &str = include_str!("test_webhook_private_key.pem");

/// TEST ONLY: the public half of that pair, for a receiver that listens to this simulator. Never
/// configure it in production; Wise publishes its own (different for sandbox and production).
pub const TEST_WEBHOOK_PUBLIC_KEY_PEM: &str = include_str!("test_webhook_public_key.pem");

pub const PROFILE_ID: u64 = 16_000_001;
pub const RECIPIENT_USD: u64 = 1001;
pub const RECIPIENT_EUR: u64 = 1002;
pub const RECIPIENT_GBP: u64 = 1003;
pub const RECIPIENT_BOUNCE: u64 = 1004;
pub const RECIPIENT_FAIL: u64 = 1005;
/// The payout-failure code the [`RECIPIENT_FAIL`] script ends with.
pub const FAILURE_CODE: &str = "WRONG_ACCOUNT_NUMBER";
/// The funding error code when the balance is short.
pub const INSUFFICIENT: &str = "balance.payment-option-unavailable";
const SUBSCRIPTION_ID: &str = "4b0e5d0a-6f2b-4c59-9a4e-3a4f0c6e2b11";
const QUOTE_TTL_MINUTES: i64 = 30;

/// Rates the mock quotes (source, target, rate); a pair not listed is not a supported route.
const RATES: &[(&str, &str, &str)] = &[
    ("USD", "EUR", "0.9210"),
    ("USD", "GBP", "0.7900"),
    ("EUR", "USD", "1.0850"),
    ("EUR", "GBP", "0.8570"),
    ("GBP", "USD", "1.2650"),
    ("GBP", "EUR", "1.1660"),
];

/// What a repeated `customerTransactionId` gets (Wise's behaviour is UNCONFIRMED).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RepeatMode {
    /// 200 with the transfer created first.
    #[default]
    SameTransfer,
    /// 409 with a validation-style error body.
    Conflict,
}

/// What the mock is configured with at start.
#[derive(Clone)]
pub struct MockWiseConfig {
    pub api_token: SecretString,
    pub profile_id: u64,
    pub faults: Faults,
    /// Starting balance per currency (USD, EUR, GBP), in minor units.
    pub balance_minor: i64,
    /// Time between the automatic steps after funding.
    pub process_after_ms: u64,
    /// Time from `outgoing_payment_sent` to `bounced_back`, and on to `funds_refunded`.
    pub late_after_ms: u64,
    pub tick_ms: u64,
    pub repeat_mode: RepeatMode,
    /// Deliver every webhook twice (each with its own X-Delivery-Id).
    pub duplicate_webhooks: bool,
    /// Delay each webhook by a random 0–400 ms, so they arrive out of order.
    pub out_of_order_webhooks: bool,
    /// PEM of the key webhooks are signed with (PKCS#1 or PKCS#8).
    pub webhook_private_key_pem: String,
}

impl std::fmt::Debug for MockWiseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockWiseConfig")
            .field("api_token", &"[redacted]")
            .field("profile_id", &self.profile_id)
            .field("faults", &self.faults)
            .field("balance_minor", &self.balance_minor)
            .field("process_after_ms", &self.process_after_ms)
            .field("late_after_ms", &self.late_after_ms)
            .field("repeat_mode", &self.repeat_mode)
            .finish_non_exhaustive()
    }
}

impl Default for MockWiseConfig {
    fn default() -> Self {
        MockWiseConfig {
            api_token: SecretString::from("wise_test_token"),
            profile_id: PROFILE_ID,
            faults: Faults::default(),
            balance_minor: 1_000_000_000,
            process_after_ms: 100,
            late_after_ms: 300,
            tick_ms: 50,
            repeat_mode: RepeatMode::SameTransfer,
            duplicate_webhooks: false,
            out_of_order_webhooks: false,
            webhook_private_key_pem: TEST_WEBHOOK_PRIVATE_KEY_PEM.to_string(),
        }
    }
}

#[derive(Debug)]
struct MockQuote {
    quote: Quote,
    expires: DateTime<Utc>,
    target_account: Option<u64>,
    used_by: Option<u64>,
}

#[derive(Debug)]
struct MockTransfer {
    transfer: Transfer,
    /// Source-currency minor units taken from the balance, once funded.
    funded_minor: Option<i64>,
    refunded: bool,
    failure_code: Option<String>,
    script: VecDeque<(Instant, &'static str)>,
    ctid_at: Instant,
}

/// Answers that do not say what happened, for tests of what the client believes.
#[derive(Debug, Clone, Copy, Default)]
pub struct FundingQuirks {
    /// Funding takes the money and moves the transfer on, but answers `REJECTED`.
    pub reject_after_funding: bool,
    /// Cancelling answers 500 and leaves the transfer as it was.
    pub cancel_fails: bool,
}

struct Inner {
    token: SecretString,
    profile_id: u64,
    faults: Faults,
    dice: Dice,
    accounts: Vec<Account>,
    quotes: HashMap<String, MockQuote>,
    transfers: Vec<MockTransfer>,
    balances: BTreeMap<String, i64>,
    clock_offset: chrono::Duration,
    /// At most this many transfers per listing page, whatever `limit` asks: Wise may answer
    /// a short page that is not the last.
    page_cap: Option<usize>,
    next_id: u64,
    process_after: Duration,
    late_after: Duration,
    repeat_mode: RepeatMode,
    funding_quirks: FundingQuirks,
    duplicate_webhooks: bool,
    out_of_order_webhooks: bool,
    signer: SigningKey<Sha256>,
    outbox: Outbox,
}

type Shared = Arc<Mutex<Inner>>;

/// Handle to a running mock. Dropping it does not stop the server; call [`MockWise::stop`].
#[derive(Clone)]
pub struct MockWise {
    inner: Shared,
    running: Running,
    outbox: Outbox,
}

impl std::fmt::Debug for MockWise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockWise")
            .field("addr", &self.running.addr)
            .finish()
    }
}

fn signer_from_pem(pem: &str) -> std::io::Result<SigningKey<Sha256>> {
    let key = RsaPrivateKey::from_pkcs1_pem(pem.trim())
        .or_else(|_| RsaPrivateKey::from_pkcs8_pem(pem.trim()))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    Ok(SigningKey::new(key))
}

/// TEST ONLY: the `X-Signature-SHA256` value the mock would send for `body`.
pub fn sign_test_body(body: &[u8]) -> std::io::Result<String> {
    let signer = signer_from_pem(TEST_WEBHOOK_PRIVATE_KEY_PEM)?;
    Ok(STANDARD.encode(signer.sign(body).to_bytes()))
}

fn seeded_accounts(profile: u64) -> Vec<Account> {
    let account = |id: u64, currency: &str, country: &str, name: &str, kind: &str| Account {
        id,
        profile,
        account_holder_name: name.into(),
        currency: currency.into(),
        country: country.into(),
        kind: kind.into(),
        active: true,
        owned_by_customer: false,
    };
    vec![
        account(RECIPIENT_USD, "USD", "US", "Ada Referrer", "aba"),
        account(RECIPIENT_EUR, "EUR", "DE", "Bea Referrer", "iban"),
        account(RECIPIENT_GBP, "GBP", "GB", "Cal Referrer", "sort_code"),
        account(RECIPIENT_BOUNCE, "USD", "US", "Dee Bounce", "aba"),
        account(RECIPIENT_FAIL, "USD", "US", "Eve Closed", "aba"),
    ]
}

impl MockWise {
    /// Starts the mock on `addr` (port 0 for an ephemeral port) and its progression ticker.
    pub async fn start(addr: SocketAddr, config: MockWiseConfig) -> std::io::Result<MockWise> {
        let outbox = Outbox::default();
        let balances = ["USD", "EUR", "GBP"]
            .iter()
            .map(|c| (c.to_string(), config.balance_minor))
            .collect();
        let inner = Arc::new(Mutex::new(Inner {
            token: config.api_token,
            profile_id: config.profile_id,
            dice: Dice::new(config.faults.seed),
            faults: config.faults,
            accounts: seeded_accounts(config.profile_id),
            quotes: HashMap::new(),
            transfers: Vec::new(),
            balances,
            clock_offset: chrono::Duration::zero(),
            page_cap: None,
            next_id: 50_000_001,
            process_after: Duration::from_millis(config.process_after_ms),
            late_after: Duration::from_millis(config.late_after_ms),
            repeat_mode: config.repeat_mode,
            funding_quirks: FundingQuirks::default(),
            duplicate_webhooks: config.duplicate_webhooks,
            out_of_order_webhooks: config.out_of_order_webhooks,
            signer: signer_from_pem(&config.webhook_private_key_pem)?,
            outbox: outbox.clone(),
        }));
        let running = Running::start(addr, router(inner.clone()), "mock wise").await?;
        let tick = Duration::from_millis(config.tick_ms.max(1));
        let ticking = inner.clone();
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            loop {
                interval.tick().await;
                progress_due(&mut lock(&ticking), Instant::now());
            }
        });
        running.also_stops(ticker);
        Ok(MockWise {
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

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn set_faults(&self, faults: Faults) {
        let mut inner = lock(&self.inner);
        inner.dice = Dice::new(faults.seed);
        inner.faults = faults;
    }

    /// Funding and cancelling misbehaving in ways a client must not trust blindly.
    pub fn set_funding_quirks(&self, quirks: FundingQuirks) {
        lock(&self.inner).funding_quirks = quirks;
    }

    pub fn set_repeat_mode(&self, mode: RepeatMode) {
        lock(&self.inner).repeat_mode = mode;
    }

    /// Caps every transfer listing page at `cap` transfers (`None`: as many as `limit` asks).
    pub fn set_page_cap(&self, cap: Option<usize>) {
        lock(&self.inner).page_cap = cap;
    }

    /// Shifts the mock's clock (quote expiry) by `offset` from real time.
    pub fn set_clock_offset(&self, offset: chrono::Duration) {
        lock(&self.inner).clock_offset = offset;
    }

    /// Sets the balance of a currency, in minor units.
    pub fn set_balance(&self, currency: Currency, minor: i64) {
        lock(&self.inner)
            .balances
            .insert(currency.code().to_string(), minor);
    }

    pub fn balance(&self, currency: Currency) -> i64 {
        lock(&self.inner)
            .balances
            .get(currency.code())
            .copied()
            .unwrap_or(0)
    }

    /// How many quotes were created.
    pub fn quotes_created(&self) -> usize {
        lock(&self.inner).quotes.len()
    }

    /// Every transfer the mock holds, funded or not, oldest first.
    pub fn transfers(&self) -> Vec<Transfer> {
        lock(&self.inner)
            .transfers
            .iter()
            .map(|t| t.transfer.clone())
            .collect()
    }

    /// The mock's own record of money moved: one entry per funded transfer.
    pub fn moved(&self) -> Vec<MovedMoney> {
        moved(&lock(&self.inner))
    }

    /// The payout-failure code a transfer's script ended with, if any.
    pub fn failure_code(&self, transfer_id: &str) -> Option<String> {
        let inner = lock(&self.inner);
        find(&inner, transfer_id).and_then(|i| inner.transfers[i].failure_code.clone())
    }

    /// Moves a transfer to `status` now, dropping the rest of its script. False if unknown.
    pub fn advance(&self, transfer_id: &str, status: &str) -> bool {
        let mut inner = lock(&self.inner);
        advance(&mut inner, transfer_id, status)
    }
}

fn moved(inner: &Inner) -> Vec<MovedMoney> {
    inner
        .transfers
        .iter()
        .filter_map(|t| {
            let minor = t.funded_minor?;
            let state = match t.transfer.status.as_str() {
                "outgoing_payment_sent" => RailState::Paid,
                "funds_refunded" | "charged_back" => RailState::Returned,
                "cancelled" => RailState::Failed,
                _ => RailState::InFlight,
            };
            Some(MovedMoney {
                payout_id: t.transfer.details.reference.clone().unwrap_or_default(),
                provider_ref: t.transfer.id.to_string(),
                currency: t.transfer.source_currency.clone(),
                minor,
                state,
            })
        })
        .collect()
}

fn advance(inner: &mut Inner, transfer_id: &str, status: &str) -> bool {
    let Some(i) = inner
        .transfers
        .iter()
        .position(|t| t.transfer.id.to_string() == transfer_id)
    else {
        return false;
    };
    inner.transfers[i].script.clear();
    set_status(inner, i, status);
    true
}

/// Applies every scripted step that is due.
fn progress_due(inner: &mut Inner, now: Instant) {
    for i in 0..inner.transfers.len() {
        while let Some((due, status)) = inner.transfers[i].script.front().copied() {
            if due > now {
                break;
            }
            inner.transfers[i].script.pop_front();
            set_status(inner, i, status);
        }
    }
}

/// Changes a transfer's status, returns money to the balance where the status says it came
/// back, and sends the webhook.
fn set_status(inner: &mut Inner, i: usize, status: &str) {
    let previous = inner.transfers[i].transfer.status.clone();
    if previous == status {
        return;
    }
    let t = &mut inner.transfers[i];
    t.transfer.status = status.to_string();
    if matches!(status, "funds_refunded" | "cancelled")
        && !t.refunded
        && let Some(minor) = t.funded_minor
    {
        t.refunded = true;
        let currency = t.transfer.source_currency.clone();
        *inner.balances.entry(currency).or_insert(0) += minor;
    }
    let transfer = inner.transfers[i].transfer.clone();
    deliver(inner, &transfer, Some(previous));
}

/// Sends a signed `transfers#state-change` v2 event through the outbox.
fn deliver(inner: &mut Inner, t: &Transfer, previous: Option<String>) {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let body = serde_json::json!({
        "data": {
            "resource": {
                "type": "transfer",
                "id": t.id,
                "profile_id": inner.profile_id,
                "account_id": t.target_account,
            },
            "current_state": t.status,
            "previous_state": previous,
            "occurred_at": now,
        },
        "subscription_id": SUBSCRIPTION_ID,
        "event_type": "transfers#state-change",
        "schema_version": "2.0.0",
        "sent_at": now,
    });
    let Ok(bytes) = serde_json::to_vec(&body) else {
        return;
    };
    let signature = STANDARD.encode(inner.signer.sign(&bytes).to_bytes());
    let copies = if inner.duplicate_webhooks { 2 } else { 1 };
    for copy in 0..copies {
        let delay = if inner.out_of_order_webhooks {
            Duration::from_millis(inner.dice.pick(5) as u64 * 100)
        } else {
            Duration::from_millis(copy * 20)
        };
        let headers = vec![
            ("X-Signature-SHA256".to_string(), signature.clone()),
            ("X-Delivery-Id".to_string(), Uuid::new_v4().to_string()),
        ];
        inner.outbox.send(headers, bytes.clone(), delay);
    }
}

fn router(inner: Shared) -> Router {
    Router::new()
        .route("/v1/profiles", get(profiles))
        .route("/v2/profiles", get(profiles))
        .route("/v1/accounts", get(list_accounts))
        .route("/v1/accounts/{id}", get(get_account))
        .route("/v3/profiles/{profile}/quotes", post(create_quote))
        .route("/v3/profiles/{profile}/quotes/{id}", get(get_quote))
        .route("/v1/transfer-requirements", post(transfer_requirements))
        .route("/v1/transfers", post(create_transfer).get(list_transfers))
        .route("/v1/transfers/{id}", get(get_transfer))
        .route("/v1/transfers/{id}/cancel", put(cancel_transfer))
        .route(
            "/v3/profiles/{profile}/transfers/{id}/payments",
            post(fund_transfer),
        )
        .route("/__mock/transfers", get(truth))
        .route("/__mock/faults", post(set_faults))
        .route("/__mock/advance", post(control_advance))
        .route("/__mock/clock", post(control_clock))
        .route("/__mock/statement.csv", get(records::statement_csv))
        .route("/__mock/tamper", post(records::tamper))
        .route("/__mock/transfers/{id}", delete(records::forget))
        .fallback(unknown_route)
        .with_state(inner)
}

fn body_of(status: u16, body: &impl Serialize) -> Response {
    json_response(status, serde_json::to_vec(body).unwrap_or_default())
}

fn validation(status: u16, code: &str, message: &str, path: Option<&str>) -> Response {
    body_of(status, &ErrorBody::validation(code, message, path))
}

fn system(status: u16, error: &str, message: &str, path: &str) -> Response {
    body_of(status, &ErrorBody::system(status, error, message, path))
}

fn authorized(inner: &Inner, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match given.and_then(|v| v.strip_prefix("Bearer ")) {
        Some(t) if t == inner.token.expose_secret() => Ok(()),
        Some(_) => Err(Box::new(body_of(
            401,
            &ErrorBody::oauth("invalid_token", "Invalid token"),
        ))),
        None => Err(Box::new(body_of(
            401,
            &ErrorBody::oauth(
                "unauthorized",
                "Full authentication is required to access this resource",
            ),
        ))),
    }
}

fn mock_now(inner: &Inner) -> DateTime<Utc> {
    Utc::now() + inner.clock_offset
}

fn rate(source: &str, target: &str) -> Option<Decimal> {
    if source == target {
        return Some(Decimal::ONE);
    }
    RATES
        .iter()
        .find(|(s, t, _)| *s == source && *t == target)
        .and_then(|(_, _, r)| Decimal::from_str(r).ok())
}

fn minor_decimals(code: &str) -> u32 {
    Currency::from_str(code)
        .map(|c| c.minor_decimals())
        .unwrap_or(2)
}

/// Fault decisions taken before a money-moving request executes.
async fn before_execution(shared: &Shared, path: &str) -> Result<(), Response> {
    let latency = {
        let mut guard = lock(shared);
        let inner = &mut *guard;
        if inner.dice.roll(inner.faults.rate_limit_rate) {
            let r = system(429, "Too Many Requests", "Rate limit exceeded", path);
            return Err(with_retry_after(r, 1));
        }
        if inner.dice.roll(inner.faults.error_rate) {
            return Err(system(
                500,
                "Internal Server Error",
                "mock: failed before executing",
                path,
            ));
        }
        inner.faults.latency_ms
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    Ok(())
}

/// Fault decisions taken after a money-moving request committed.
fn after_commit(inner: &mut Inner, first: bool, ok: Response, path: &str) -> Response {
    let faults = inner.faults.clone();
    if inner.dice.roll(faults.error_after_commit_rate) {
        return system(
            500,
            "Internal Server Error",
            "mock: failed after executing",
            path,
        );
    }
    if (faults.drop_first_attempt && first) || inner.dice.roll(faults.drop_after_commit_rate) {
        return dropped_connection();
    }
    ok
}

async fn profiles(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let inner = lock(&shared);
    if let Err(r) = authorized(&inner, &headers) {
        return *r;
    }
    body_of(
        200,
        &vec![Profile {
            id: inner.profile_id,
            kind: "business".into(),
        }],
    )
}

#[derive(Debug, Deserialize)]
struct AccountQuery {
    profile: Option<u64>,
    currency: Option<String>,
}

async fn list_accounts(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<AccountQuery>,
) -> Response {
    let inner = lock(&shared);
    if let Err(r) = authorized(&inner, &headers) {
        return *r;
    }
    let list: Vec<&Account> = inner
        .accounts
        .iter()
        .filter(|a| q.profile.is_none_or(|p| p == a.profile))
        .filter(|a| q.currency.as_ref().is_none_or(|c| *c == a.currency))
        .collect();
    body_of(200, &list)
}

async fn get_account(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let inner = lock(&shared);
    if let Err(r) = authorized(&inner, &headers) {
        return *r;
    }
    match inner.accounts.iter().find(|a| a.id.to_string() == id) {
        Some(a) => body_of(200, a),
        None => validation(
            404,
            "RECIPIENT_NOT_FOUND",
            &format!("Recipient {id} not found"),
            None,
        ),
    }
}

async fn create_quote(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(profile): Path<String>,
    body: Bytes,
) -> Response {
    let mut guard = lock(&shared);
    let inner = &mut *guard;
    if let Err(r) = authorized(inner, &headers) {
        return *r;
    }
    if profile != inner.profile_id.to_string() {
        return validation(404, "PROFILE_NOT_FOUND", "Profile not found", None);
    }
    let req: QuoteRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return validation(400, "NOT_VALID", &e.to_string(), None),
    };
    let Some(Num(source_amount)) = (match (req.source_amount, req.target_amount) {
        (Some(s), None) => Some(s),
        (None, Some(_)) => None,
        _ => {
            return validation(
                400,
                "NOT_VALID",
                "Exactly one of sourceAmount or targetAmount is required",
                Some("sourceAmount"),
            );
        }
    }) else {
        return validation(
            400,
            "NOT_VALID",
            "The mock only quotes by sourceAmount",
            Some("targetAmount"),
        );
    };
    if source_amount <= Decimal::ZERO {
        return validation(
            400,
            "NOT_VALID",
            "sourceAmount must be positive",
            Some("sourceAmount"),
        );
    }
    let Some(rate) = rate(&req.source_currency, &req.target_currency) else {
        let mut body = ErrorBody::validation(
            "error.route.not.supported",
            "This route is not supported",
            Some("sourceCurrency"),
        );
        if let Some(items) = body.errors.as_mut() {
            for item in items {
                item.arguments = vec![serde_json::json!(format!(
                    "{}-{}",
                    req.source_currency, req.target_currency
                ))];
            }
        }
        return body_of(422, &body);
    };
    if let Some(target) = req.target_account {
        match inner.accounts.iter().find(|a| a.id == target) {
            Some(a) if a.currency == req.target_currency => {}
            Some(_) => {
                return validation(
                    422,
                    "NOT_VALID",
                    "targetCurrency does not match the recipient's currency",
                    Some("targetAccount"),
                );
            }
            None => {
                return validation(
                    404,
                    "RECIPIENT_NOT_FOUND",
                    "Recipient not found",
                    Some("targetAccount"),
                );
            }
        }
    }
    let target_amount = (source_amount * rate).round_dp_with_strategy(
        minor_decimals(&req.target_currency),
        RoundingStrategy::ToZero,
    );
    let now = mock_now(inner);
    let expires = now + chrono::Duration::minutes(QUOTE_TTL_MINUTES);
    let quote = Quote {
        id: Uuid::new_v4().to_string(),
        source_currency: req.source_currency.clone(),
        target_currency: req.target_currency.clone(),
        source_amount: Num(source_amount),
        target_amount: Num(target_amount),
        rate: Num(rate),
        rate_type: "FIXED".into(),
        created_time: now.to_rfc3339_opts(SecondsFormat::Secs, true),
        expiration_time: expires.to_rfc3339_opts(SecondsFormat::Secs, true),
        pay_out: req
            .pay_out
            .clone()
            .unwrap_or_else(|| "BANK_TRANSFER".into()),
        profile: inner.profile_id,
        status: "PENDING".into(),
    };
    inner.quotes.insert(
        quote.id.clone(),
        MockQuote {
            quote: quote.clone(),
            expires,
            target_account: req.target_account,
            used_by: None,
        },
    );
    body_of(200, &quote)
}

async fn get_quote(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path((_, id)): Path<(String, String)>,
) -> Response {
    let inner = lock(&shared);
    if let Err(r) = authorized(&inner, &headers) {
        return *r;
    }
    match inner.quotes.get(&id) {
        Some(q) => body_of(200, &q.quote),
        None => validation(404, "QUOTE_NOT_FOUND", "Quote not found", None),
    }
}

async fn transfer_requirements(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let inner = lock(&shared);
    if let Err(r) = authorized(&inner, &headers) {
        return *r;
    }
    // No extra fields are ever required by the mock.
    body_of(200, &Vec::<serde_json::Value>::new())
}

/// The transfer an earlier request made under `ctid`, while the mock still remembers it.
fn by_ctid(inner: &Inner, ctid: &str) -> Option<usize> {
    let ttl = inner.faults.key_ttl_ms;
    inner.transfers.iter().position(|t| {
        t.transfer.customer_transaction_id.as_deref() == Some(ctid)
            && (ttl == 0 || t.ctid_at.elapsed() < Duration::from_millis(ttl))
    })
}

async fn create_transfer(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const PATH: &str = "/v1/transfers";
    if let Err(r) = authorized(&lock(&shared), &headers) {
        return *r;
    }
    let req: TransferRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return validation(400, "NOT_VALID", &e.to_string(), None),
    };
    if Uuid::parse_str(&req.customer_transaction_id).is_err() {
        return validation(
            422,
            "NOT_VALID",
            "customerTransactionId must be a UUID",
            Some("customerTransactionId"),
        );
    }
    if let Err(r) = before_execution(&shared, PATH).await {
        return r;
    }
    let mut guard = lock(&shared);
    let inner = &mut *guard;
    if let Some(i) = by_ctid(inner, &req.customer_transaction_id) {
        return match inner.repeat_mode {
            RepeatMode::SameTransfer => body_of(200, &inner.transfers[i].transfer),
            RepeatMode::Conflict => validation(
                409,
                "transfer.duplicate",
                "A transfer with this customerTransactionId already exists",
                Some("customerTransactionId"),
            ),
        };
    }
    let now = mock_now(inner);
    let Some(quote) = inner.quotes.get_mut(&req.quote_uuid) else {
        return validation(
            400,
            "error.quote.not.found",
            "Quote not found",
            Some("quoteUuid"),
        );
    };
    if quote.expires <= now {
        return validation(422, QUOTE_EXPIRED, "Quote has expired", Some("quoteUuid"));
    }
    if quote.used_by.is_some() {
        return validation(
            422,
            "error.quote.already.used",
            "Quote already used for a transfer",
            Some("quoteUuid"),
        );
    }
    if quote
        .target_account
        .is_some_and(|a| a != req.target_account)
    {
        return validation(
            422,
            "NOT_VALID",
            "targetAccount differs from the quote's",
            Some("targetAccount"),
        );
    }
    let id = inner.next_id;
    inner.next_id += 1;
    quote.used_by = Some(id);
    let q = quote.quote.clone();
    let transfer = Transfer {
        id,
        user: Some(9_000_001),
        target_account: req.target_account,
        source_account: None,
        quote_uuid: Some(q.id.clone()),
        status: WAITING.into(),
        reference: None,
        rate: q.rate,
        created: Utc::now().format("%Y-%m-%d %H:%M:%S").to_string(),
        business: Some(inner.profile_id),
        details: TransferDetails {
            reference: req.details.reference.clone(),
        },
        has_active_issues: false,
        source_currency: q.source_currency.clone(),
        source_value: q.source_amount,
        target_currency: q.target_currency.clone(),
        target_value: q.target_amount,
        customer_transaction_id: Some(req.customer_transaction_id.clone()),
    };
    inner.transfers.push(MockTransfer {
        transfer: transfer.clone(),
        funded_minor: None,
        refunded: false,
        failure_code: None,
        script: VecDeque::new(),
        ctid_at: Instant::now(),
    });
    deliver(inner, &transfer, None);
    let ok = body_of(200, &transfer);
    after_commit(inner, true, ok, PATH)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    profile: Option<u64>,
    status: Option<String>,
    /// `YYYY-MM-DD` (inclusive) or an ISO 8601 time: see `records::CreatedRange`.
    #[serde(rename = "createdDateStart")]
    created_date_start: Option<String>,
    #[serde(rename = "createdDateEnd")]
    created_date_end: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

async fn list_transfers(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let inner = lock(&shared);
    if let Err(r) = authorized(&inner, &headers) {
        return *r;
    }
    let limit = q.limit.unwrap_or(10);
    if !(1..=200).contains(&limit) {
        return validation(
            400,
            "NOT_VALID",
            "limit must be between 1 and 200",
            Some("limit"),
        );
    }
    let created = match records::CreatedRange::parse(
        q.created_date_start.as_deref(),
        q.created_date_end.as_deref(),
    ) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let statuses: Option<Vec<&str>> = q.status.as_deref().map(|s| s.split(',').collect());
    // Newest first.
    let page: Vec<&Transfer> = inner
        .transfers
        .iter()
        .rev()
        .map(|t| &t.transfer)
        .filter(|t| q.profile.is_none_or(|p| t.business == Some(p)))
        .filter(|t| created.contains(&t.created))
        .filter(|t| {
            statuses
                .as_ref()
                .is_none_or(|s| s.contains(&t.status.as_str()))
        })
        .skip(q.offset.unwrap_or(0))
        .take(inner.page_cap.map_or(limit, |cap| limit.min(cap)))
        .collect();
    body_of(200, &page)
}

fn find(inner: &Inner, id: &str) -> Option<usize> {
    inner
        .transfers
        .iter()
        .position(|t| t.transfer.id.to_string() == id)
}

fn not_found(id: &str) -> Response {
    validation(
        404,
        "transfer.not.found",
        &format!("Transfer {id} not found"),
        None,
    )
}

async fn get_transfer(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let inner = lock(&shared);
    if let Err(r) = authorized(&inner, &headers) {
        return *r;
    }
    match find(&inner, &id) {
        Some(i) => body_of(200, &inner.transfers[i].transfer),
        None => not_found(&id),
    }
}

async fn cancel_transfer(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut guard = lock(&shared);
    let inner = &mut *guard;
    if let Err(r) = authorized(inner, &headers) {
        return *r;
    }
    let Some(i) = find(inner, &id) else {
        return not_found(&id);
    };
    if inner.funding_quirks.cancel_fails {
        return validation(500, "INTERNAL_ERROR", "cancellation failed", None);
    }
    match inner.transfers[i].transfer.status.as_str() {
        WAITING => {
            inner.transfers[i].script.clear();
            set_status(inner, i, "cancelled");
            body_of(200, &inner.transfers[i].transfer)
        }
        "cancelled" => body_of(200, &inner.transfers[i].transfer),
        other => validation(
            422,
            "transfer.cancel.not.allowed",
            &format!("Transfer in status {other} cannot be cancelled"),
            None,
        ),
    }
}

async fn fund_transfer(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path((profile, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let path = format!("/v3/profiles/{profile}/transfers/{id}/payments");
    {
        let inner = lock(&shared);
        if let Err(r) = authorized(&inner, &headers) {
            return *r;
        }
        if profile != inner.profile_id.to_string() {
            return validation(404, "PROFILE_NOT_FOUND", "Profile not found", None);
        }
    }
    match serde_json::from_slice::<FundRequest>(&body) {
        Ok(r) if r.kind == "BALANCE" => {}
        Ok(r) => {
            return validation(
                400,
                "NOT_VALID",
                &format!("payment type {} not supported", r.kind),
                Some("type"),
            );
        }
        Err(e) => return validation(400, "NOT_VALID", &e.to_string(), None),
    }
    if let Err(r) = before_execution(&shared, &path).await {
        return r;
    }
    let mut guard = lock(&shared);
    let inner = &mut *guard;
    let Some(i) = find(inner, &id) else {
        return not_found(&id);
    };
    if inner.transfers[i].transfer.status != WAITING {
        return validation(
            409,
            "transfer.already.funded",
            &format!(
                "Transfer is {}, not awaiting funding",
                inner.transfers[i].transfer.status
            ),
            None,
        );
    }
    let t = &inner.transfers[i].transfer;
    let currency = t.source_currency.clone();
    let recipient = t.target_account;
    let mut scaled = t.source_value.0 * Decimal::from(10i64.pow(minor_decimals(&currency)));
    scaled.rescale(0);
    let minor = i64::try_from(scaled).unwrap_or(i64::MAX);
    let available = inner.balances.get(&currency).copied().unwrap_or(0);
    if available < minor {
        return body_of(
            200,
            &FundResponse {
                kind: "BALANCE".into(),
                status: "REJECTED".into(),
                error_code: Some(INSUFFICIENT.into()),
                error_message: Some("Insufficient funds in the balance".into()),
                balance_transaction_id: None,
            },
        );
    }
    inner.balances.insert(currency, available - minor);
    let p = inner.process_after;
    let late = inner.late_after;
    let now = Instant::now();
    let entry = &mut inner.transfers[i];
    entry.funded_minor = Some(minor);
    entry.script = match recipient {
        RECIPIENT_FAIL => {
            entry.failure_code = Some(FAILURE_CODE.into());
            VecDeque::from([(now + p, "cancelled")])
        }
        RECIPIENT_BOUNCE => VecDeque::from([
            (now + p, "funds_converted"),
            (now + p * 2, "outgoing_payment_sent"),
            (now + p * 2 + late, "bounced_back"),
            (now + p * 2 + late * 2, "funds_refunded"),
        ]),
        _ => VecDeque::from([
            (now + p, "funds_converted"),
            (now + p * 2, "outgoing_payment_sent"),
        ]),
    };
    set_status(inner, i, "processing");
    let balance_transaction_id = inner.next_id;
    inner.next_id += 1;
    let answer = if inner.funding_quirks.reject_after_funding {
        FundResponse {
            kind: "BALANCE".into(),
            status: "REJECTED".into(),
            error_code: Some("payment.failed".into()),
            error_message: Some("Payment could not be processed".into()),
            balance_transaction_id: None,
        }
    } else {
        FundResponse {
            kind: "BALANCE".into(),
            status: "COMPLETED".into(),
            error_code: None,
            error_message: None,
            balance_transaction_id: Some(balance_transaction_id),
        }
    };
    let ok = body_of(201, &answer);
    after_commit(inner, true, ok, &path)
}

async fn truth(State(shared): State<Shared>) -> Response {
    body_of(200, &moved(&lock(&shared)))
}

async fn set_faults(State(shared): State<Shared>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => {
            let mut inner = lock(&shared);
            inner.dice = Dice::new(faults.seed);
            inner.faults = faults;
            json_response(204, "")
        }
        Err(e) => validation(400, "NOT_VALID", &e.to_string(), None),
    }
}

#[derive(Debug, Deserialize)]
struct AdvanceBody {
    transfer_id: String,
    status: String,
}

async fn control_advance(State(shared): State<Shared>, body: Bytes) -> Response {
    match serde_json::from_slice::<AdvanceBody>(&body) {
        Ok(a) if advance(&mut lock(&shared), &a.transfer_id, &a.status) => json_response(204, ""),
        Ok(a) => not_found(&a.transfer_id),
        Err(e) => validation(400, "NOT_VALID", &e.to_string(), None),
    }
}

#[derive(Debug, Deserialize)]
struct ClockBody {
    offset_secs: i64,
}

async fn control_clock(State(shared): State<Shared>, body: Bytes) -> Response {
    match serde_json::from_slice::<ClockBody>(&body) {
        Ok(c) => {
            lock(&shared).clock_offset = chrono::Duration::seconds(c.offset_secs);
            json_response(204, "")
        }
        Err(e) => validation(400, "NOT_VALID", &e.to_string(), None),
    }
}

async fn unknown_route(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    system(
        404,
        "Not Found",
        &format!("No handler for {method} {}", uri.path()),
        uri.path(),
    )
}
