//! What every provider mock shares: fault injection, a seeded dice, a connection that breaks
//! after the server committed, server start-up, and a webhook outbox.
//!
//! Each mock keeps its own record of the money it really moved; this module holds only the
//! plumbing, so the four mocks differ exactly where the providers differ.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::domain::settle::SettleTiming;
use crate::domain::tracking::RailState;

/// The kinds of fault the mocks count (see [`injected`]).
pub const REFUSED_5XX: &str = "5xx before commit";
pub const FAILED_AFTER_COMMIT: &str = "5xx after commit";
pub const DROPPED_AFTER_COMMIT: &str = "commit then drop";
pub const RATE_LIMITED: &str = "429 with Retry-After";
pub const LATE_COMMIT: &str = "late commit";
pub const LIST_LAG: &str = "listing lagged a write";
pub const KEY_EXPIRED: &str = "idempotency key expired";

/// Fault injection settings, the same for every mock. Rates are probabilities in `[0, 1]`
/// per money-moving request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Delay before each money-moving request executes. For a test that must act while a
    /// request is in flight, hold the mock's [`Gate`] instead: a delay is a guess.
    pub latency_ms: u64,
    /// 500 after the request reached execution (Stripe stores it under the key; others
    /// answer 500 without committing).
    pub error_rate: f64,
    /// 429 with `Retry-After` before execution; nothing is stored.
    pub rate_limit_rate: f64,
    /// 429 (as above) to the first this many money-moving requests, whatever the dice say.
    /// Implemented by the Stripe mock.
    pub rate_limit_first: u32,
    /// Commit the payment, then drop the connection before the response.
    pub drop_after_commit_rate: f64,
    /// Commit-then-drop on the first request of every idempotency token.
    pub drop_first_attempt: bool,
    /// Answer 500 *after* committing (the "we did it but said we failed" case).
    pub error_after_commit_rate: f64,
    /// How long the mock remembers idempotency tokens, in ms. 0 = for ever. Lets tests show
    /// that an expired window still cannot make us pay twice.
    pub key_ttl_ms: u64,
    /// Share of money-moving requests that commit late: the client's connection drops at
    /// once (it gave up), and the payment still lands `late_commit_ms` after the request
    /// arrived, as a provider finishing a request after our timeout does.
    pub late_commit_rate: f64,
    /// How long after arrival a late request commits, in ms. Set it beyond the settle delay:
    /// that is the case a listing cannot see.
    pub late_commit_ms: u64,
    /// List endpoints show an object only this long (ms) after it was written; reads by id
    /// or key see it at once.
    pub list_lag_ms: u64,
    /// The provider's own rate limit over every API request: a bucket of this many requests
    /// a second with a burst of as many; beyond it 429 with `Retry-After: 1`. 0: none.
    /// Implemented by the Stripe mock.
    pub limit_per_sec: u32,
    /// Seed for the fault dice, so a run can be repeated.
    pub seed: u64,
}

/// A provider's rate limit as a mock enforces it: a token bucket, refusing what is over.
#[derive(Debug, Default)]
pub struct Limit {
    tokens: f64,
    at: Option<std::time::Instant>,
    /// When each request arrived (with a limit set), and how many were refused.
    pub arrivals: Vec<std::time::Instant>,
    pub refused: u64,
}

impl Limit {
    /// Whether a request arriving `now` is within `per_second` (false: answer 429).
    pub fn admit(&mut self, per_second: u32, now: std::time::Instant) -> bool {
        if per_second == 0 {
            return true;
        }
        self.arrivals.push(now);
        let rate = f64::from(per_second);
        let elapsed = self.at.map_or(rate, |at| {
            now.saturating_duration_since(at).as_secs_f64() * rate
        });
        self.tokens = (self.tokens + elapsed).min(rate);
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.refused += 1;
            false
        }
    }
}

/// Slack on the mock's own delays when an adapter is told them: a sleeping task on a busy
/// machine wakes late.
const MOCK_DELAY_SLACK: Duration = Duration::from_secs(2);

impl Faults {
    /// Whether something written at `at` is in listings yet.
    pub fn listed(&self, at: std::time::Instant) -> bool {
        let listed = crate::clock::elapsed(at) >= Duration::from_millis(self.list_lag_ms);
        if !listed {
            injected(LIST_LAG);
        }
        listed
    }

    /// What an adapter may assume about a mock with these faults, from the rail's real
    /// `base`: the mock's list lag, its longest execution (if the rail relies on one), and,
    /// where the rail settles by replaying a key (`replays`), no longer a window than the
    /// mock remembers keys.
    pub fn settle_timing(&self, base: SettleTiming, replays: bool) -> SettleTiming {
        let ms = Duration::from_millis;
        let window = match self.key_ttl_ms {
            ttl if replays && ttl > 0 => base.window.min(ms(ttl)),
            _ => base.window,
        };
        let execution = ms(self.latency_ms.saturating_add(self.late_commit_ms));
        SettleTiming {
            window,
            list_lag: ms(self.list_lag_ms),
            max_execution: base.max_execution.map(|_| execution + MOCK_DELAY_SLACK),
        }
    }
}

/// One payment as a mock's own books see it: the truth tests compare our ledger against.
/// Every mock lists these from `moved()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedMoney {
    /// Our payout id, as the request carried it (metadata, sender_item_id, reference, key).
    pub payout_id: String,
    /// The mock's id for the payment (tr_…, batch id, transfer id, reward key).
    pub provider_ref: String,
    /// ISO currency code, upper case.
    pub currency: String,
    pub minor: i64,
    /// Where the money is now: only `Paid` counts as money that left and stayed out.
    pub state: RailState,
}

thread_local! {
    static INJECTED: std::cell::RefCell<std::collections::BTreeMap<&'static str, u64>> =
        const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
}

/// Counts a fault a mock injected, by kind, on this thread: the simulator runs the mocks on
/// its own thread and reads them after each run with [`take_injected`].
pub fn injected(kind: &'static str) {
    INJECTED.with(|i| *i.borrow_mut().entry(kind).or_default() += 1);
}

/// The faults injected on this thread since the last call, by kind.
pub fn take_injected() -> std::collections::BTreeMap<&'static str, u64> {
    INJECTED.with(|i| std::mem::take(&mut *i.borrow_mut()))
}

/// Seeded randomness for fault decisions.
#[derive(Debug)]
pub struct Dice(StdRng);

impl Dice {
    pub fn new(seed: u64) -> Self {
        Dice(StdRng::seed_from_u64(seed))
    }

    /// True with probability `p` (clamped to `[0, 1]`).
    pub fn roll(&mut self, p: f64) -> bool {
        p > 0.0 && self.0.random_bool(p.clamp(0.0, 1.0))
    }

    /// Rolls for fault `kind` with probability `p`, counting it (see [`injected`]) if it
    /// comes up.
    pub fn fault(&mut self, kind: &'static str, p: f64) -> bool {
        let hit = self.roll(p);
        if hit {
            injected(kind);
        }
        hit
    }

    pub fn pick(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { self.0.random_range(0..n) }
    }
}

/// Locks a mock's state. Every critical section in the mocks is a handful of inserts that
/// cannot leave money half-moved, so a poisoned lock is still safe to use.
pub fn lock<T>(inner: &Mutex<T>) -> MutexGuard<'_, T> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

/// A response whose body fails mid-flight: the server committed, the client sees a broken
/// connection instead of an answer.
pub fn dropped_connection() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "mock: connection dropped after commit",
        ))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        axum::http::header::CONTENT_LENGTH,
        HeaderValue::from_static("512"),
    );
    response
}

/// A JSON response with the given status.
pub fn json_response(status: u16, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Adds `Retry-After: secs` to a response.
pub fn with_retry_after(mut response: Response, secs: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, v);
    }
    response
}

/// A running mock server.
#[derive(Debug, Clone)]
pub struct Running {
    pub addr: SocketAddr,
    /// The server, then any background task the mock runs (its progression ticker).
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Running {
    /// Binds `addr` (port 0 for an ephemeral port) and serves `app` until stopped.
    pub async fn start(addr: SocketAddr, app: Router, name: &'static str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, mock = name, "mock server stopped");
            }
        });
        Ok(Running {
            addr,
            tasks: Arc::new(Mutex::new(vec![task])),
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Ties a background task to the server: `stop` ends both.
    pub fn also_stops(&self, task: JoinHandle<()>) {
        lock(&self.tasks).push(task);
    }

    pub fn stop(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

/// A barrier for money-moving requests, so a test can act while a request is in flight at
/// the provider (kill the sender, start a rival, send SIGTERM) without guessing a latency.
///
/// Closed, it holds every money-moving request before it executes; `release` lets them go.
/// `in_flight` counts requests between arrival and their answer (held ones included), so a test
/// can wait for "a request reached the provider" and "every request has finished" as events.
#[derive(Debug, Clone)]
pub struct Gate {
    open: Arc<tokio::sync::watch::Sender<bool>>,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            open: Arc::new(tokio::sync::watch::Sender::new(true)),
            in_flight: Arc::default(),
        }
    }
}

/// One request's passage through a [`Gate`]: counted in flight until dropped.
#[derive(Debug)]
pub struct Passage(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Passage {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Gate {
    /// Counts the request in flight and waits while the gate is closed. Keep the passage
    /// until the request is answered.
    pub async fn pass(&self) -> Passage {
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let passage = Passage(Arc::clone(&self.in_flight));
        let mut open = self.open.subscribe();
        // The sender lives as long as the gate, so waiting cannot fail; if it somehow did,
        // letting the request through is what an open gate would do.
        let _ = open.wait_for(|open| *open).await;
        passage
    }

    pub fn hold(&self) {
        self.open.send_replace(false);
    }

    pub fn release(&self) {
        self.open.send_replace(true);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `POST /__mock/gate/hold`, `POST /__mock/gate/release` and `GET /__mock/gate`
    /// (`{"held": bool, "in_flight": n}`), to merge into a mock's router.
    pub fn routes(&self) -> Router {
        use axum::extract::State;
        use axum::routing::{get, post};
        async fn status(State(gate): State<Gate>) -> Response {
            let held = !*gate.open.borrow();
            json_response(
                200,
                serde_json::json!({ "held": held, "in_flight": gate.in_flight() }).to_string(),
            )
        }
        async fn hold(State(gate): State<Gate>) -> Response {
            gate.hold();
            status(State(gate)).await
        }
        async fn release(State(gate): State<Gate>) -> Response {
            gate.release();
            status(State(gate)).await
        }
        Router::new()
            .route("/__mock/gate", get(status))
            .route("/__mock/gate/hold", post(hold))
            .route("/__mock/gate/release", post(release))
            .with_state(self.clone())
    }
}

/// Deliveries per event before a mock gives up (real providers keep trying for days).
const REDELIVERIES: usize = 8;

/// Webhook deliveries from a mock to the system under test. Deliveries are sent in the
/// background and never block or fail the API call that caused them.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    target: Arc<Mutex<Option<String>>>,
    delivered: Arc<Mutex<Vec<Delivery>>>,
    http: reqwest::Client,
    /// When set, webhooks are kept here instead of sent: the simulator delivers them itself,
    /// losing, repeating, delaying and reordering them as its seed says.
    held: Arc<Mutex<Option<Vec<HeldWebhook>>>>,
}

/// A webhook a holding [`Outbox`] kept instead of sending.
#[derive(Debug, Clone)]
pub struct HeldWebhook {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One webhook delivery as sent: kept so tests can replay or forge it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// HTTP status the receiver answered, or None if unreachable / not yet answered.
    pub answered: Option<u16>,
}

impl Outbox {
    /// Sets (or clears) the URL deliveries go to.
    pub fn set_target(&self, url: Option<String>) {
        *lock(&self.target) = url;
    }

    pub fn target(&self) -> Option<String> {
        lock(&self.target).clone()
    }

    /// Every delivery made so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        lock(&self.delivered).clone()
    }

    /// Keeps every later webhook for [`Outbox::take_held`] instead of sending it.
    pub fn hold(&self) {
        lock(&self.held).get_or_insert_with(Vec::new);
    }

    /// The webhooks kept since the last call, oldest first.
    pub fn take_held(&self) -> Vec<HeldWebhook> {
        lock(&self.held)
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Posts `body` with `headers` to the target, if one is set; `delay` lets a mock deliver
    /// out of order. A holding outbox keeps it instead.
    pub fn send(&self, headers: Vec<(String, String)>, body: Vec<u8>, delay: Duration) {
        if let Some(held) = lock(&self.held).as_mut() {
            held.push(HeldWebhook { headers, body });
            return;
        }
        let Some(url) = self.target() else { return };
        let http = self.http.clone();
        let delivered = self.delivered.clone();
        tokio::spawn(async move {
            if !delay.is_zero() {
                crate::clock::sleep(delay).await;
            }
            // Like every provider, redeliver until a 2xx, backing off (shortened for tests).
            let mut wait = Duration::from_millis(100);
            for _ in 0..REDELIVERIES {
                let mut request = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .timeout(Duration::from_secs(10))
                    .body(body.clone());
                for (k, v) in &headers {
                    request = request.header(k.as_str(), v.as_str());
                }
                let answered = match request.send().await {
                    Ok(r) => Some(r.status().as_u16()),
                    Err(e) => {
                        tracing::warn!(error = %e, url, "mock webhook delivery failed");
                        None
                    }
                };
                lock(&delivered).push(Delivery {
                    headers: headers.clone(),
                    body: body.clone(),
                    answered,
                });
                if answered.is_some_and(|s| (200..300).contains(&s)) {
                    return;
                }
                crate::clock::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_is_repeatable_and_respects_bounds() {
        let mut a = Dice::new(7);
        let mut b = Dice::new(7);
        let ra: Vec<bool> = (0..32).map(|_| a.roll(0.5)).collect();
        let rb: Vec<bool> = (0..32).map(|_| b.roll(0.5)).collect();
        assert_eq!(ra, rb);
        assert!(!(0..100).any(|_| a.roll(0.0)));
        assert!((0..100).all(|_| a.roll(1.0)));
    }
}

#[cfg(test)]
mod limit_tests {
    use super::Limit;
    use std::time::{Duration, Instant};

    #[test]
    fn a_burst_past_the_bucket_is_refused_and_the_rate_refills_it() {
        let mut limit = Limit::default();
        let t0 = Instant::now();
        let admitted = (0..30).filter(|_| limit.admit(10, t0)).count();
        assert_eq!((admitted, limit.refused), (10, 20));
        assert!(limit.admit(10, t0 + Duration::from_millis(100)));
        assert!(!limit.admit(10, t0 + Duration::from_millis(100)));
        assert!(Limit::default().admit(0, t0), "0: no limit");
    }
}
