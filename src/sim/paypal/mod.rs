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

mod engine;
mod records;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use crate::domain::money::Currency;
use crate::providers::paypal::wire::{
    self, BatchHeader, CreatePayout, CreateResponse, ErrorBody, ErrorDetail, PayoutBatch,
    PayoutItem, VerifyRequest,
};
use crate::sim::kit::{
    Dice, MovedMoney, Outbox, Running, dropped_connection, json_response, lock, with_retry_after,
};
use engine::{Batch, Inner, ItemState, Outgoing, Script, Timing, now_text};

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
        let running = Running::start(addr, router(state), "paypal").await?;
        lock(&inner).base_url = running.base_url();
        let tick = Duration::from_millis(config.tick_ms.max(5));
        let (ticking, out) = (inner.clone(), outbox.clone());
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
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
        let now = Instant::now();
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

fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/oauth2/token", post(token))
        .route("/v1/payments/payouts", post(create))
        .route("/v1/payments/payouts/{id}", get(get_batch))
        .route("/v1/payments/payouts-item/{id}", get(get_item))
        .route("/v1/payments/payouts-item/{id}/cancel", post(cancel_item))
        .route("/v1/reporting/transactions", get(records::search))
        .route(
            "/v1/notifications/verify-webhook-signature",
            post(verify_signature),
        )
        .route("/__mock/truth", get(truth))
        .route("/__mock/faults", post(set_faults))
        .route("/__mock/advance", post(advance_route))
        .route("/__mock/expire-tokens", post(expire_route))
        .route("/__mock/statement.csv", get(records::statement))
        .fallback(unknown_route)
        .with_state(state)
}

fn error(status: u16, body: &ErrorBody) -> Response {
    json_response(status, serde_json::to_string(body).unwrap_or_default())
}

fn simple(status: u16, name: &str, message: &str) -> Response {
    error(status, &ErrorBody::new(name, message))
}

fn detail(field: &str, issue: &str) -> ErrorDetail {
    ErrorDetail {
        field: Some(field.into()),
        location: Some("body".into()),
        issue: Some(issue.into()),
        ..Default::default()
    }
}

async fn token(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let mut inner = lock(&s.inner);
    inner.token_requests += 1;
    let creds = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    let expected = format!(
        "{}:{}",
        inner.client_id,
        inner.client_secret.expose_secret()
    );
    if creds.as_deref() != Some(expected.as_str()) {
        return json_response(
            401,
            json!({"error": "invalid_client", "error_description": "Client Authentication failed"})
                .to_string(),
        );
    }
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if !form
        .iter()
        .any(|(k, v)| k == "grant_type" && v == "client_credentials")
    {
        return json_response(
            400,
            json!({"error": "unsupported_grant_type", "error_description": "Grant Type is NULL"})
                .to_string(),
        );
    }
    let access = format!("A21AAmock{}", uuid::Uuid::new_v4().simple());
    let ttl = inner.token_ttl;
    inner.tokens.insert(access.clone(), Instant::now() + ttl);
    json_response(
        200,
        json!({
            "scope": format!("https://uri.paypal.com/services/payments/realtimepayment {}", wire::PAYOUTS_SCOPE),
            "access_token": access,
            "token_type": "Bearer",
            "app_id": "APP-MOCK0001",
            "expires_in": ttl.as_secs(),
            "nonce": format!("{}mock", now_text()),
        })
        .to_string(),
    )
}

/// 401 unless the bearer token was issued and has not expired.
fn authorized(inner: &Inner, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given.and_then(|t| inner.tokens.get(t)) {
        Some(expiry) if Instant::now() < *expiry => Ok(()),
        Some(_) => Err(Box::new(json_response(
            401,
            json!({"error": "invalid_token", "error_description": "Token signature verification failed"})
                .to_string(),
        ))),
        None => Err(Box::new(simple(
            401,
            "AUTHENTICATION_FAILURE",
            "Authentication failed due to invalid authentication credentials or a missing Authorization header.",
        ))),
    }
}

/// A validated single-currency item: receiver, currency, minor units, script.
struct Valid {
    header_recipient: Option<String>,
    items: Vec<(Currency, i64, Script)>,
}

fn validate(req: &CreatePayout) -> Result<Valid, Vec<ErrorDetail>> {
    let mut details = Vec::new();
    let header = req.sender_batch_header.clone().unwrap_or_default();
    match header.sender_batch_id.as_deref() {
        None | Some("") => details.push(detail(
            "sender_batch_header.sender_batch_id",
            "MISSING_REQUIRED_PARAMETER",
        )),
        Some(id) if id.chars().count() > 256 => details.push(detail(
            "sender_batch_header.sender_batch_id",
            "VALUE_TOO_LONG",
        )),
        Some(_) => {}
    }
    if req.items.is_empty() {
        details.push(detail("items", "MISSING_REQUIRED_PARAMETER"));
    }
    if req.items.len() > 15_000 {
        details.push(detail("items", "Maximum number of items exceeded"));
    }
    let mut items = Vec::new();
    for (i, item) in req.items.iter().enumerate() {
        let f = |name: &str| format!("items[{i}].{name}");
        let kind = item
            .recipient_type
            .clone()
            .or_else(|| header.recipient_type.clone());
        match kind.as_deref() {
            Some("EMAIL" | "PHONE" | "PAYPAL_ID") => {}
            None => details.push(detail(&f("recipient_type"), "MISSING_REQUIRED_PARAMETER")),
            Some(_) => details.push(detail(&f("recipient_type"), "INVALID_PARAMETER_SYNTAX")),
        }
        let receiver = item.receiver.as_deref().unwrap_or("");
        if receiver.is_empty() {
            details.push(detail(&f("receiver"), "MISSING_REQUIRED_PARAMETER"));
        } else if receiver.chars().count() > 127
            || (kind.as_deref() == Some("EMAIL")
                && (!receiver.contains('@')
                    || receiver.starts_with('@')
                    || receiver.ends_with('@')))
        {
            details.push(detail(
                &f("receiver"),
                "Receiver is invalid or does not match with type",
            ));
        }
        if item
            .sender_item_id
            .as_deref()
            .is_some_and(|s| s.chars().count() > 63)
        {
            details.push(detail(&f("sender_item_id"), "VALUE_TOO_LONG"));
        }
        let Some(amount) = &item.amount else {
            details.push(detail(&f("amount"), "MISSING_REQUIRED_PARAMETER"));
            continue;
        };
        let Ok(currency) = amount.currency.parse::<Currency>() else {
            details.push(detail(&f("amount.currency"), "Currency code is invalid"));
            continue;
        };
        let value = amount.value.parse::<Decimal>().ok();
        match (value, amount.to_minor()) {
            (Some(v), Some((_, minor))) if v > Decimal::ZERO => {
                items.push((currency, minor, Script::for_receiver(receiver)))
            }
            (Some(v), _) if v <= Decimal::ZERO => details.push(detail(
                &f("amount.value"),
                "Amount must be greater than zero",
            )),
            _ => details.push(detail(
                &f("amount.value"),
                "Currency does not support decimals or value has too many decimal places",
            )),
        }
    }
    if details.is_empty() {
        Ok(Valid {
            header_recipient: header.recipient_type,
            items,
        })
    } else {
        Err(details)
    }
}

async fn create(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let request_id = headers
        .get(wire::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let latency = {
        let mut inner = lock(&s.inner);
        inner.payout_requests += 1;
        if let Err(r) = authorized(&inner, &headers) {
            return *r;
        }
        let rate = inner.faults.rate_limit_rate;
        if inner.dice.roll(rate) {
            return with_retry_after(
                simple(
                    429,
                    "RATE_LIMIT_REACHED",
                    "Too many requests. Blocked due to rate limiting.",
                ),
                1,
            );
        }
        if inner.request_id_replay
            && let Some(id) = &request_id
            && let Some((status, body, at)) = inner.request_ids.get(id).cloned()
            && inner.remembered(at)
        {
            return json_response(status, body);
        }
        inner.faults.latency_ms
    };
    let req: CreatePayout = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let mut b = ErrorBody::new(
                "INVALID_REQUEST",
                "Request is not well-formed, syntactically incorrect, or violates schema.",
            );
            b.details.push(ErrorDetail {
                field: Some("/".into()),
                issue: Some("MALFORMED_REQUEST_JSON".into()),
                description: Some(e.to_string()),
                ..Default::default()
            });
            return error(400, &b);
        }
    };
    let valid = match validate(&req) {
        Ok(v) => v,
        Err(details) => {
            let mut b = ErrorBody::new("VALIDATION_ERROR", "Invalid request - see details.");
            b.details = details;
            return error(400, &b);
        }
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let mut guard = lock(&s.inner);
    let inner = &mut *guard;
    let faults = inner.faults.clone();
    if inner.dice.roll(faults.error_rate) {
        return simple(
            500,
            "INTERNAL_ERROR",
            "An internal server error has occurred.",
        );
    }
    let header = req.sender_batch_header.clone().unwrap_or_default();
    let sender_batch_id = header.sender_batch_id.clone().unwrap_or_default();
    if let Some((original, at)) = inner.sender_batch_ids.get(&sender_batch_id).cloned()
        && inner.remembered(at)
    {
        let mut b = ErrorBody::new("USER_BUSINESS_ERROR", "User business error.");
        b.details.push(ErrorDetail {
            field: Some("SENDER_BATCH_ID".into()),
            value: Some(sender_batch_id.clone()),
            location: Some("body".into()),
            issue: Some("Batch with given sender_batch_id already exists".into()),
            description: None,
        });
        b.links
            .push(inner.self_link(&format!("/v1/payments/payouts/{original}")));
        return error(400, &b);
    }
    // Funds per currency, all-or-nothing.
    let mut needed: BTreeMap<Currency, i64> = BTreeMap::new();
    for (c, m, _) in &valid.items {
        *needed.entry(*c).or_default() += m;
    }
    for (c, m) in &needed {
        if inner.balance_of(*c) < *m {
            let mut b = ErrorBody::new(
                "UNPROCESSABLE_ENTITY",
                "The requested action could not be performed, semantically incorrect, or failed business validation.",
            );
            b.details.push(detail("items", "INSUFFICIENT_FUNDS"));
            return error(422, &b);
        }
    }
    for (c, m) in &needed {
        let now = inner.balance_of(*c);
        inner.balance.insert(*c, now - m);
    }
    let batch_id = inner.id("MOCKB");
    let created_at = now_text();
    let mut items = Vec::new();
    for (req_item, (currency, minor, script)) in req.items.iter().zip(valid.items) {
        let mut echoed = req_item.clone();
        echoed.recipient_type = echoed
            .recipient_type
            .or_else(|| valid.header_recipient.clone());
        let item_id = inner.id("MOCKI");
        items.push(ItemState {
            item: PayoutItem {
                links: vec![inner.self_link(&format!("/v1/payments/payouts-item/{item_id}"))],
                payout_item_id: item_id,
                transaction_id: None,
                activity_id: None,
                transaction_status: "PENDING".into(),
                payout_item_fee: None,
                payout_batch_id: batch_id.clone(),
                sender_batch_id: Some(sender_batch_id.clone()),
                payout_item: echoed,
                time_processed: None,
                errors: None,
            },
            script,
            since: Instant::now(),
            currency,
            minor,
            credited: false,
        });
    }
    let total = needed.iter().next().map(|(c, m)| wire::Amount {
        value: Decimal::new(*m, c.minor_decimals()).to_string(),
        currency: c.code().to_string(),
    });
    let batch_header = BatchHeader {
        payout_batch_id: batch_id.clone(),
        batch_status: "PENDING".into(),
        time_created: Some(created_at),
        time_completed: None,
        time_closed: None,
        sender_batch_header: header,
        funding_source: Some("BALANCE".into()),
        amount: total,
        fees: None,
    };
    inner.batches.push(Batch {
        header: batch_header.clone(),
        items,
    });
    inner
        .sender_batch_ids
        .insert(sender_batch_id, (batch_id.clone(), Instant::now()));
    let response = CreateResponse {
        batch_header,
        links: vec![inner.self_link(&format!("/v1/payments/payouts/{batch_id}"))],
    };
    let body = serde_json::to_string(&response).unwrap_or_default();
    if inner.request_id_replay
        && let Some(id) = request_id
    {
        inner
            .request_ids
            .insert(id, (201, body.clone(), Instant::now()));
    }
    let drop = faults.drop_first_attempt || inner.dice.roll(faults.drop_after_commit_rate);
    if drop {
        return dropped_connection();
    }
    if inner.dice.roll(faults.error_after_commit_rate) {
        return simple(
            500,
            "INTERNAL_ERROR",
            "An internal server error has occurred.",
        );
    }
    json_response(201, body)
}

#[derive(Debug, Default, Deserialize)]
struct BatchQuery {
    fields: Option<String>,
    page: Option<usize>,
    page_size: Option<usize>,
    total_required: Option<bool>,
}

async fn get_batch(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<BatchQuery>,
) -> Response {
    let inner = lock(&s.inner);
    if let Err(r) = authorized(&inner, &headers) {
        return *r;
    }
    let Some(b) = inner.find_batch(&id) else {
        return simple(
            404,
            "INVALID_RESOURCE_ID",
            "The requested resource ID was not found",
        );
    };
    let batch = &inner.batches[b];
    let page = q.page.unwrap_or(1).max(1);
    let size = q.page_size.unwrap_or(1000).clamp(1, 1000);
    let all: Vec<PayoutItem> = batch.items.iter().map(|s| s.item.clone()).collect();
    let total = all.len();
    let items = if q.fields.as_deref() == Some("batch_header") {
        Vec::new()
    } else {
        all.into_iter().skip((page - 1) * size).take(size).collect()
    };
    let wanted = q.total_required.unwrap_or(false);
    let out = PayoutBatch {
        batch_header: batch.header.clone(),
        items,
        total_items: wanted.then_some(total as u64),
        total_pages: wanted.then_some(total.div_ceil(size) as u64),
        links: vec![inner.self_link(&format!("/v1/payments/payouts/{id}"))],
    };
    json_response(200, serde_json::to_string(&out).unwrap_or_default())
}

async fn get_item(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let inner = lock(&s.inner);
    if let Err(r) = authorized(&inner, &headers) {
        return *r;
    }
    match inner.find_item(&id) {
        Some((b, i)) => json_response(
            200,
            serde_json::to_string(&inner.batches[b].items[i].item).unwrap_or_default(),
        ),
        None => simple(
            404,
            "INVALID_RESOURCE_ID",
            "The requested resource ID was not found",
        ),
    }
}

async fn cancel_item(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (answer, sends) = {
        let mut inner = lock(&s.inner);
        if let Err(r) = authorized(&inner, &headers) {
            return *r;
        }
        let Some((b, i)) = inner.find_item(&id) else {
            return simple(
                404,
                "INVALID_RESOURCE_ID",
                "The requested resource ID was not found",
            );
        };
        if inner.batches[b].items[i].item.transaction_status != "UNCLAIMED" {
            return simple(
                400,
                "ITEM_INCORRECT_STATUS",
                "Item cannot be cancelled: only UNCLAIMED items can be cancelled.",
            );
        }
        let events = inner.set_status(b, i, "RETURNED", None);
        let item = inner.batches[b].items[i].item.clone();
        (item, inner.outgoing(events))
    };
    deliver(&s.outbox, sends);
    json_response(200, serde_json::to_string(&answer).unwrap_or_default())
}

async fn verify_signature(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let mut inner = lock(&s.inner);
    inner.verify_requests += 1;
    if let Err(r) = authorized(&inner, &headers) {
        return *r;
    }
    let req: VerifyRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let mut b = ErrorBody::new("VALIDATION_ERROR", "Invalid request - see details.");
            b.details.push(ErrorDetail {
                field: Some("/".into()),
                issue: Some(e.to_string()),
                ..Default::default()
            });
            return error(400, &b);
        }
    };
    let expected = inner.signature(
        &req.transmission_id,
        &req.transmission_time,
        &req.webhook_id,
        &req.webhook_event,
    );
    let ok = req.webhook_id == inner.webhook_id
        && req.cert_url.starts_with(&inner.base_url)
        && constant_eq(expected.as_bytes(), req.transmission_sig.as_bytes());
    let verdict = if ok { "SUCCESS" } else { "FAILURE" };
    json_response(200, json!({"verification_status": verdict}).to_string())
}

/// Compares without stopping at the first difference.
fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn truth(State(s): State<AppState>) -> Response {
    let moved = lock(&s.inner).moved();
    json_response(200, serde_json::to_string(&moved).unwrap_or_default())
}

async fn set_faults(State(s): State<AppState>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => {
            let mut inner = lock(&s.inner);
            inner.dice = Dice::new(faults.seed);
            inner.faults = faults;
            json_response(204, "")
        }
        Err(e) => json_response(400, json!({"error": e.to_string()}).to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct AdvanceBody {
    provider_ref: String,
    status: String,
}

async fn advance_route(State(s): State<AppState>, body: Bytes) -> Response {
    match serde_json::from_slice::<AdvanceBody>(&body) {
        Ok(a) if advance(&s.inner, &s.outbox, &a.provider_ref, &a.status) => json_response(204, ""),
        Ok(a) => json_response(
            404,
            json!({"error": format!("no batch {}", a.provider_ref)}).to_string(),
        ),
        Err(e) => json_response(400, json!({"error": e.to_string()}).to_string()),
    }
}

async fn expire_route(State(s): State<AppState>) -> Response {
    let now = Instant::now();
    for expiry in lock(&s.inner).tokens.values_mut() {
        *expiry = now;
    }
    json_response(204, "")
}

async fn unknown_route(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    simple(
        404,
        "RESOURCE_NOT_FOUND",
        &format!(
            "The specified resource does not exist ({method} {}).",
            uri.path()
        ),
    )
}
