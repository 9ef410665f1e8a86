//! The mock's router and its read-only and `/__mock` control endpoints. Wise's error bodies
//! and Bearer auth are in `reply.rs`, the fault decisions around money-moving requests in
//! `faults.rs`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use serde::Deserialize;

use super::funding::fund_transfer;
use super::quotes::{create_quote, get_quote, transfer_requirements};
use super::records;
use super::reply::{authorized, body_of, not_found, system, validation};
use super::state::{Shared, advance, moved};
use super::transfers::{cancel_transfer, create_transfer, get_transfer, list_transfers};
use crate::providers::wise::wire::{Account, Profile};
use crate::sim::kit::{Dice, Faults, json_response, lock};

pub(super) fn router(inner: Shared) -> Router {
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

pub(super) async fn profiles(State(shared): State<Shared>, headers: HeaderMap) -> Response {
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
pub(super) struct AccountQuery {
    profile: Option<u64>,
    currency: Option<String>,
}

pub(super) async fn list_accounts(
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

pub(super) async fn get_account(
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

pub(super) async fn truth(State(shared): State<Shared>) -> Response {
    body_of(200, &moved(&lock(&shared)))
}

pub(super) async fn set_faults(State(shared): State<Shared>, body: Bytes) -> Response {
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
pub(super) struct AdvanceBody {
    transfer_id: String,
    status: String,
}

pub(super) async fn control_advance(State(shared): State<Shared>, body: Bytes) -> Response {
    match serde_json::from_slice::<AdvanceBody>(&body) {
        Ok(a) if advance(&mut lock(&shared), &a.transfer_id, &a.status) => json_response(204, ""),
        Ok(a) => not_found(&a.transfer_id),
        Err(e) => validation(400, "NOT_VALID", &e.to_string(), None),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ClockBody {
    offset_secs: i64,
}

pub(super) async fn control_clock(State(shared): State<Shared>, body: Bytes) -> Response {
    match serde_json::from_slice::<ClockBody>(&body) {
        Ok(c) => {
            lock(&shared).clock_offset = chrono::Duration::seconds(c.offset_secs);
            json_response(204, "")
        }
        Err(e) => validation(400, "NOT_VALID", &e.to_string(), None),
    }
}

pub(super) async fn unknown_route(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    system(
        404,
        "Not Found",
        &format!("No handler for {method} {}", uri.path()),
        uri.path(),
    )
}
