//! Transfers: creation from a quote (deduplicated by `customerTransactionId`), listing,
//! lookup and cancellation.

use std::collections::VecDeque;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

use super::RepeatMode;
use super::faults::{after_commit, before_execution};
use super::reply::{CreatedRange, authorized, body_of, not_found, validation};
use super::state::{Inner, MockTransfer, Shared, deliver, find, mock_now, set_status};
use crate::providers::wise::classify::QUOTE_EXPIRED;
use crate::providers::wise::wire::{Quote, Transfer, TransferDetails, TransferRequest, WAITING};
use crate::sim::kit::lock;

/// The transfer an earlier request made under `ctid`, while the mock still remembers it.
fn by_ctid(inner: &Inner, ctid: &str) -> Option<usize> {
    let ttl = inner.faults.key_ttl_ms;
    let same = |t: &&_| {
        let t: &MockTransfer = t;
        t.transfer.customer_transaction_id.as_deref() == Some(ctid)
    };
    let fresh = |t: &MockTransfer| {
        ttl == 0 || crate::clock::elapsed(t.ctid_at) < Duration::from_millis(ttl)
    };
    let found = inner.transfers.iter().position(|t| same(&t) && fresh(t));
    if found.is_none() && inner.transfers.iter().any(|t| same(&t)) {
        crate::sim::kit::injected(crate::sim::kit::KEY_EXPIRED);
    }
    found
}

pub(super) async fn create_transfer(
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
        return repeated(inner, i);
    }
    let (id, quote) = match use_quote(inner, &req) {
        Ok(used) => used,
        Err(r) => return *r,
    };
    let transfer = new_transfer(id, &quote, &req, inner.profile_id);
    inner.transfers.push(MockTransfer {
        transfer: transfer.clone(),
        funded_minor: None,
        refunded: false,
        failure_code: None,
        script: VecDeque::new(),
        ctid_at: crate::clock::instant(),
    });
    deliver(inner, &transfer, None);
    let ok = body_of(200, &transfer);
    after_commit(inner, true, ok, PATH)
}

/// The answer to a `customerTransactionId` seen before: never a second transfer.
fn repeated(inner: &Inner, i: usize) -> Response {
    match inner.repeat_mode {
        RepeatMode::SameTransfer => body_of(200, &inner.transfers[i].transfer),
        RepeatMode::Conflict => validation(
            409,
            "transfer.duplicate",
            "A transfer with this customerTransactionId already exists",
            Some("customerTransactionId"),
        ),
    }
}

/// Checks the quote can still make this transfer (known, unexpired, unused, same recipient),
/// then marks it used by a newly allocated transfer id.
fn use_quote(inner: &mut Inner, req: &TransferRequest) -> Result<(u64, Quote), Box<Response>> {
    let now = mock_now(inner);
    let Some(quote) = inner.quotes.get_mut(&req.quote_uuid) else {
        return Err(Box::new(validation(
            400,
            "error.quote.not.found",
            "Quote not found",
            Some("quoteUuid"),
        )));
    };
    if quote.expires <= now {
        return Err(Box::new(validation(
            422,
            QUOTE_EXPIRED,
            "Quote has expired",
            Some("quoteUuid"),
        )));
    }
    if quote.used_by.is_some() {
        return Err(Box::new(validation(
            422,
            "error.quote.already.used",
            "Quote already used for a transfer",
            Some("quoteUuid"),
        )));
    }
    if quote
        .target_account
        .is_some_and(|a| a != req.target_account)
    {
        return Err(Box::new(validation(
            422,
            "NOT_VALID",
            "targetAccount differs from the quote's",
            Some("targetAccount"),
        )));
    }
    let id = inner.next_id;
    inner.next_id += 1;
    quote.used_by = Some(id);
    Ok((id, quote.quote.clone()))
}

/// A new transfer, awaiting funding, for the amounts and rate of its quote.
fn new_transfer(id: u64, q: &Quote, req: &TransferRequest, profile_id: u64) -> Transfer {
    Transfer {
        id,
        user: Some(9_000_001),
        target_account: req.target_account,
        source_account: None,
        quote_uuid: Some(q.id.clone()),
        status: WAITING.into(),
        reference: None,
        rate: q.rate,
        created: crate::clock::now().format("%Y-%m-%d %H:%M:%S").to_string(),
        business: Some(profile_id),
        details: TransferDetails {
            reference: req.details.reference.clone(),
        },
        has_active_issues: false,
        source_currency: q.source_currency.clone(),
        source_value: q.source_amount,
        target_currency: q.target_currency.clone(),
        target_value: q.target_amount,
        customer_transaction_id: Some(req.customer_transaction_id.clone()),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    profile: Option<u64>,
    status: Option<String>,
    /// `YYYY-MM-DD` (inclusive) or an ISO 8601 time: see `reply::CreatedRange`.
    #[serde(rename = "createdDateStart")]
    created_date_start: Option<String>,
    #[serde(rename = "createdDateEnd")]
    created_date_end: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

pub(super) async fn list_transfers(
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
    let created = match CreatedRange::parse(
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

pub(super) async fn get_transfer(
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

pub(super) async fn cancel_transfer(
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
