//! The mock's router: transfer creation up to the point it executes (rate limiting, the
//! idempotency check, late commits), and the read-only and `/__mock` control routes. Stripe's
//! error body, Bearer auth and stored answers are in `reply.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};

use super::execute::{execute, idempotency_check};
use super::params::parse_create;
use super::reply::{authorized, replay, stripe_error};
use super::{Inner, records, reverse_transfer};
use crate::providers::stripe::wire::IDEMPOTENCY_KEY;
use crate::sim::kit;
use crate::sim::kit::{Dice, Faults, dropped_connection, lock};

pub(super) fn router(inner: Arc<Mutex<Inner>>) -> Router {
    let gate = lock(&inner).gate.clone();
    Router::new()
        .route(
            "/v1/transfers",
            post(create_transfer).get(records::list_transfers),
        )
        .route("/v1/transfers/{id}", get(get_transfer))
        .route(
            "/v1/payouts",
            post(records::create_payout).get(records::list_payouts),
        )
        .route("/v1/payouts/{id}", get(records::get_payout))
        .route("/v1/balance", get(get_balance))
        .route("/__mock/transfers", get(truth))
        .route("/__mock/faults", post(set_faults))
        .route("/__mock/transfers/{id}/reverse", post(reverse_route))
        .route("/__mock/transfers/{id}", delete(records::forget_route))
        .route("/__mock/tamper", post(records::tamper_route))
        .route("/__mock/clock", post(records::clock_route))
        .route("/__mock/statement.csv", get(records::statement_route))
        .fallback(unknown_route)
        .layer(axum::middleware::from_fn_with_state(
            inner.clone(),
            enforce_limit,
        ))
        .with_state(inner)
        .merge(gate.routes())
}

async fn create_transfer(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = Arc::clone(&inner);
    lock(&inner).requests += 1;
    if let Err(r) = authorized(&inner, &headers) {
        return *r;
    }
    let params = match parse_create(&body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    // Rate limiting runs before the idempotency layer: a 429 is never stored.
    let (latency, gate, first_seen, late) = {
        let mut guard = lock(&inner);
        let inner = &mut *guard;
        let first = inner.limited_first < inner.faults.rate_limit_first;
        if first {
            inner.limited_first += 1;
        }
        let limited = first || inner.dice.roll(inner.faults.rate_limit_rate);
        if limited {
            kit::injected(kit::RATE_LIMITED);
            return too_many_requests();
        }
        let mut first_seen = true;
        if let Some(key) = &key {
            if let Some(r) = idempotency_check(inner, key, &params.fingerprint) {
                return r;
            }
        } else {
            first_seen = false;
        }
        let late = inner
            .dice
            .fault(kit::LATE_COMMIT, inner.faults.late_commit_rate);
        let late = late.then(|| Duration::from_millis(inner.faults.late_commit_ms));
        (
            inner.faults.latency_ms,
            inner.gate.clone(),
            first_seen,
            late,
        )
    };
    // The request executes on its own task, as at Stripe: a client that disconnects (or
    // gave up) does not stop it, and its key is settled when it finishes.
    let work = tokio::spawn(async move {
        let _passage = gate.pass().await;
        let wait = Duration::from_millis(latency) + late.unwrap_or_default();
        if !wait.is_zero() {
            crate::clock::sleep(wait).await;
        }
        execute(&shared, params, key, first_seen)
    });
    if late.is_some() {
        return dropped_connection();
    }
    match work.await {
        Ok((_, _, true)) => dropped_connection(),
        Ok((status, body, false)) => replay(status, body, false),
        Err(_) => stripe_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            None,
            "The mock's request task failed.",
            None,
        ),
    }
}

async fn get_transfer(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorized(&inner, &headers) {
        return *r;
    }
    let found = lock(&inner).transfers.iter().find(|t| t.id == id).cloned();
    match found {
        Some(t) => Json(t).into_response(),
        None => stripe_error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such transfer: '{id}'"),
            Some("id"),
        ),
    }
}

async fn get_balance(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&inner, &headers) {
        return *r;
    }
    let guard = lock(&inner);
    let available: Vec<serde_json::Value> = guard
        .balance
        .iter()
        .map(|(c, a)| serde_json::json!({"amount": a, "currency": c}))
        .collect();
    Json(serde_json::json!({"object": "balance", "available": available, "pending": [], "livemode": false})).into_response()
}

async fn truth(State(inner): State<Arc<Mutex<Inner>>>) -> Response {
    Json(lock(&inner).transfers.clone()).into_response()
}

async fn set_faults(
    State(inner): State<Arc<Mutex<Inner>>>,
    Json(faults): Json<Faults>,
) -> Response {
    let mut guard = lock(&inner);
    guard.dice = Dice::new(faults.seed);
    guard.faults = faults;
    StatusCode::NO_CONTENT.into_response()
}

async fn unknown_route(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    stripe_error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        None,
        &format!("Unrecognized request URL ({method}: {}).", uri.path()),
        None,
    )
}

async fn reverse_route(State(inner): State<Arc<Mutex<Inner>>>, Path(id): Path<String>) -> Response {
    if reverse_transfer(&inner, &id) {
        StatusCode::OK.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// `Faults::limit_per_sec` over every API request (the mock's own routes are exempt), before
/// anything else, as Stripe's limiter runs before the idempotency layer.
async fn enforce_limit(
    State(inner): State<Arc<Mutex<Inner>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.uri().path().starts_with("/v1/") {
        let admitted = {
            let mut guard = lock(&inner);
            let per_second = guard.faults.limit_per_sec;
            guard.limit.admit(per_second, crate::clock::instant())
        };
        if !admitted {
            return too_many_requests();
        }
    }
    next.run(request).await
}

/// Stripe's 429, with the `Retry-After` its limiter sends.
fn too_many_requests() -> Response {
    let mut r = stripe_error(
        StatusCode::TOO_MANY_REQUESTS,
        "invalid_request_error",
        Some("rate_limit"),
        "Too many requests hit the API too quickly.",
        None,
    );
    r.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        HeaderValue::from_static("1"),
    );
    r
}
