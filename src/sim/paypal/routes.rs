//! The mock's router, OAuth tokens, the read-only batch and item endpoints, item
//! cancellation, webhook signature verification, and the `/__mock` control endpoints.
//! Creating a batch is in `create.rs`; error bodies and Bearer auth in `reply.rs`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use super::engine::now_text;
use super::reply::{authorized, error, simple};
use super::{AppState, advance, create, deliver, records};
use crate::providers::paypal::wire::{
    self, ErrorBody, ErrorDetail, PayoutBatch, PayoutItem, VerifyRequest,
};
use crate::sim::kit::{Dice, Faults, json_response, lock};

pub(super) fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/oauth2/token", post(token))
        .route("/v1/payments/payouts", post(create::create))
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
    inner
        .tokens
        .insert(access.clone(), crate::clock::instant() + ttl);
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
    let now = crate::clock::instant();
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
