//! The mock Stripe's listings and reconciliation hooks (a child of `mock`, sharing its state):
//! transfer and payout lists with Stripe's filters and pagination, a minimal platform payout,
//! silent tampering for tests that need the provider's books to disagree with ours, and the
//! dashboard's transfers export.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::Deserialize;

use super::Inner;
use super::reply::{authorized, stripe_error};
use crate::domain::money::Currency;
use crate::providers::records::write_statement;
use crate::providers::stripe::records::transfer_record;
use crate::providers::stripe::statement::{FORMAT, to_row};
use crate::providers::stripe::wire::{List, Payout, Transfer};
use crate::sim::kit::lock;

type Shared = Arc<Mutex<Inner>>;

/// Query of `GET /v1/transfers` and `GET /v1/payouts`.
#[derive(Debug, Deserialize)]
pub(super) struct ListParams {
    limit: Option<String>,
    starting_after: Option<String>,
    ending_before: Option<String>,
    transfer_group: Option<String>,
    destination: Option<String>,
    status: Option<String>,
    created: Option<i64>,
    #[serde(rename = "created[gt]")]
    created_gt: Option<i64>,
    #[serde(rename = "created[gte]")]
    created_gte: Option<i64>,
    #[serde(rename = "created[lt]")]
    created_lt: Option<i64>,
    #[serde(rename = "created[lte]")]
    created_lte: Option<i64>,
}

impl ListParams {
    fn created_matches(&self, created: i64) -> bool {
        self.created.is_none_or(|c| created == c)
            && self.created_gt.is_none_or(|c| created > c)
            && self.created_gte.is_none_or(|c| created >= c)
            && self.created_lt.is_none_or(|c| created < c)
            && self.created_lte.is_none_or(|c| created <= c)
    }
}

fn invalid(code: Option<&str>, message: &str, param: Option<&str>) -> Response {
    stripe_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        code,
        message,
        param,
    )
}

/// One page of `matching` (newest first) as Stripe's list envelope: `limit` 1–100 (default
/// 10), `starting_after` or `ending_before` naming an object of the list.
fn page<T: Clone + serde::Serialize>(
    matching: Vec<&T>,
    id: impl Fn(&T) -> &str,
    params: &ListParams,
    what: &str,
    url: &str,
) -> Response {
    let limit = match params.limit.as_deref().map(str::parse::<usize>) {
        None => 10,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => {
            return invalid(
                Some("parameter_invalid_integer"),
                "limit must be between 1 and 100",
                Some("limit"),
            );
        }
    };
    let missing = |cursor: &str, param| {
        invalid(
            Some("resource_missing"),
            &format!("No such {what}: '{cursor}'"),
            Some(param),
        )
    };
    let window: Vec<&T> = match (&params.starting_after, &params.ending_before) {
        (Some(_), Some(_)) => {
            return invalid(
                None,
                "You may only specify one of these parameters: ending_before, starting_after.",
                None,
            );
        }
        (Some(after), None) => match matching.iter().position(|t| id(t) == after) {
            Some(i) => matching[i + 1..].to_vec(),
            None => return missing(after, "starting_after"),
        },
        (None, Some(before)) => match matching.iter().position(|t| id(t) == before) {
            Some(i) => {
                let first = i.saturating_sub(limit);
                // Everything newer than the cursor, the `limit` closest to it.
                let has_more = first > 0;
                let data: Vec<T> = matching[first..i].iter().map(|t| (*t).clone()).collect();
                return list(data, has_more, url);
            }
            None => return missing(before, "ending_before"),
        },
        (None, None) => matching,
    };
    let has_more = window.len() > limit;
    let data: Vec<T> = window.into_iter().take(limit).cloned().collect();
    list(data, has_more, url)
}

fn list<T: serde::Serialize>(data: Vec<T>, has_more: bool, url: &str) -> Response {
    Json(List {
        object: "list".into(),
        data,
        has_more,
        url: url.into(),
    })
    .into_response()
}

pub(super) async fn list_transfers(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Response {
    if let Err(r) = authorized(&inner, &headers) {
        return *r;
    }
    let guard = lock(&inner);
    let matching: Vec<&Transfer> = guard
        .transfers
        .iter()
        .rev()
        .filter(|t| {
            guard
                .written
                .get(&t.id)
                .is_none_or(|at| guard.faults.listed(*at))
        })
        .filter(|t| {
            params
                .transfer_group
                .as_ref()
                .is_none_or(|g| t.transfer_group.as_ref() == Some(g))
        })
        .filter(|t| {
            params
                .destination
                .as_ref()
                .is_none_or(|d| t.destination == *d)
        })
        .filter(|t| params.created_matches(t.created))
        .collect();
    page(matching, |t| &t.id, &params, "transfer", "/v1/transfers")
}

pub(super) async fn list_payouts(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Response {
    if let Err(r) = authorized(&inner, &headers) {
        return *r;
    }
    let guard = lock(&inner);
    let matching: Vec<&Payout> = guard
        .payouts
        .iter()
        .rev()
        .filter(|p| params.status.as_ref().is_none_or(|s| p.status == *s))
        .filter(|p| {
            params
                .destination
                .as_ref()
                .is_none_or(|d| p.destination.as_ref() == Some(d))
        })
        .filter(|p| params.created_matches(p.created))
        .collect();
    page(matching, |p| &p.id, &params, "payout", "/v1/payouts")
}

pub(super) async fn get_payout(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorized(&inner, &headers) {
        return *r;
    }
    let found = lock(&inner).payouts.iter().find(|p| p.id == id).cloned();
    match found {
        Some(p) => Json(p).into_response(),
        None => stripe_error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such payout: '{id}'"),
            Some("id"),
        ),
    }
}

/// `POST /v1/payouts` on the platform itself: amount, currency, optional destination (the
/// default bank account otherwise), description, metadata. No idempotency layer and no
/// webhooks: the mock's payouts exist only to be listed. `pending`, then `paid` after
/// `late_after_ms`.
pub(super) async fn create_payout(
    State(inner): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = authorized(&inner, &headers) {
        return *r;
    }
    let form = match PayoutForm::parse(&body) {
        Ok(form) => form,
        Err(r) => return *r,
    };
    let payout = {
        let mut guard = lock(&inner);
        let payout = match record_payout(&mut guard, form) {
            Ok(payout) => payout,
            Err(r) => return *r,
        };
        pay_later(&inner, payout.id.clone(), guard.late_after_ms);
        payout
    };
    Json(payout).into_response()
}

/// The checked form body of `POST /v1/payouts`.
struct PayoutForm {
    amount: i64,
    currency: String,
    fields: BTreeMap<String, String>,
    metadata: BTreeMap<String, String>,
}

impl PayoutForm {
    /// Refuses unknown parameters, a non-positive amount and an unsupported or upper-case
    /// currency, with Stripe's 400s.
    fn parse(body: &Bytes) -> Result<PayoutForm, Box<Response>> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|e| {
            Box::new(invalid(
                Some("parameter_invalid"),
                &format!("Invalid form body: {e}"),
                Some("body"),
            ))
        })?;
        let mut fields = BTreeMap::new();
        let mut metadata = BTreeMap::new();
        for (k, v) in pairs {
            if let Some(key) = k
                .strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
            {
                metadata.insert(key.to_string(), v);
            } else if matches!(
                k.as_str(),
                "amount" | "currency" | "destination" | "description" | "method"
            ) {
                fields.insert(k, v);
            } else {
                return Err(Box::new(invalid(
                    Some("parameter_unknown"),
                    &format!("Received unknown parameter: {k}"),
                    Some(&k),
                )));
            }
        }
        let Some(amount) = fields
            .get("amount")
            .and_then(|a| a.parse::<i64>().ok())
            .filter(|a| *a > 0)
        else {
            return Err(Box::new(invalid(
                Some("parameter_invalid_integer"),
                "amount must be a positive integer",
                Some("amount"),
            )));
        };
        let currency = fields.get("currency").cloned().unwrap_or_default();
        if currency.parse::<Currency>().is_err() || currency.to_ascii_lowercase() != currency {
            return Err(Box::new(invalid(
                Some("parameter_invalid"),
                &format!("Invalid currency: {currency}"),
                Some("currency"),
            )));
        }
        Ok(PayoutForm {
            amount,
            currency,
            fields,
            metadata,
        })
    }
}

/// Takes the amount from the platform balance (400 `balance_insufficient` if short) and
/// stores the new `pending` payout.
fn record_payout(state: &mut Inner, form: PayoutForm) -> Result<Payout, Box<Response>> {
    let PayoutForm {
        amount,
        currency,
        fields,
        metadata,
    } = form;
    let default = state.default_balance;
    let available = *state.balance.entry(currency.clone()).or_insert(default);
    if available < amount {
        return Err(Box::new(invalid(
            Some("balance_insufficient"),
            "You have insufficient funds in your Stripe account for this transfer.",
            None,
        )));
    }
    state.balance.insert(currency.clone(), available - amount);
    let n = state.next_id;
    state.next_id += 1;
    let created = crate::clock::now().timestamp() + state.clock_offset_secs;
    let payout = Payout {
        id: format!("po_mock{n:010}"),
        object: "payout".into(),
        amount,
        arrival_date: Some(created + 2 * 86_400),
        automatic: false,
        balance_transaction: Some(format!("txn_mock{n:010}")),
        created,
        currency,
        description: fields.get("description").cloned(),
        destination: Some(
            fields
                .get("destination")
                .cloned()
                .unwrap_or_else(|| "ba_mock_platform".into()),
        ),
        failure_code: None,
        failure_message: None,
        livemode: false,
        metadata,
        method: Some(
            fields
                .get("method")
                .cloned()
                .unwrap_or_else(|| "standard".into()),
        ),
        statement_descriptor: None,
        status: "pending".into(),
        kind: Some("bank_account".into()),
    };
    state.payouts.push(payout.clone());
    Ok(payout)
}

/// Marks the payout `paid` after `after_ms`, unless something else changed it first.
fn pay_later(inner: &Shared, id: String, after_ms: u64) {
    let later = Arc::clone(inner);
    tokio::spawn(async move {
        crate::clock::sleep(Duration::from_millis(after_ms)).await;
        if let Some(p) = lock(&later).payouts.iter_mut().find(|p| p.id == id)
            && p.status == "pending"
        {
            p.status = "paid".into();
        }
    });
}

/// Body of `POST /__mock/tamper`: what to change on a stored transfer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tamper {
    pub id: String,
    /// New amount, minor units.
    pub amount: Option<i64>,
    /// New currency, lower case (`eur`).
    pub currency: Option<String>,
    pub destination: Option<String>,
}

pub(super) fn tamper(inner: &Mutex<Inner>, change: &Tamper) -> bool {
    let mut guard = lock(inner);
    let Some(t) = guard.transfers.iter_mut().find(|t| t.id == change.id) else {
        return false;
    };
    if let Some(a) = change.amount {
        t.amount = a;
    }
    if let Some(c) = &change.currency {
        t.currency = c.to_ascii_lowercase();
    }
    if let Some(d) = &change.destination {
        t.destination = d.clone();
    }
    true
}

pub(super) fn forget(inner: &Mutex<Inner>, id: &str) -> bool {
    let mut guard = lock(inner);
    let before = guard.transfers.len();
    guard.transfers.retain(|t| t.id != id);
    guard.transfers.len() != before
}

fn no_such_transfer(id: &str) -> Response {
    stripe_error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such transfer: '{id}'"),
        Some("id"),
    )
}

/// `POST /__mock/tamper` → 200 with the changed transfer, 404 if unknown.
pub(super) async fn tamper_route(State(inner): State<Shared>, body: Bytes) -> Response {
    let change: Tamper = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return invalid(None, &format!("tamper body: {e}"), None),
    };
    if !tamper(&inner, &change) {
        return no_such_transfer(&change.id);
    }
    let t = lock(&inner)
        .transfers
        .iter()
        .find(|t| t.id == change.id)
        .cloned();
    Json(t).into_response()
}

/// `DELETE /__mock/transfers/{id}` → 204, 404 if unknown.
pub(super) async fn forget_route(State(inner): State<Shared>, Path(id): Path<String>) -> Response {
    if forget(&inner, &id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        no_such_transfer(&id)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Clock {
    offset_secs: i64,
}

/// `POST /__mock/clock {"offset_secs": -86400}` → 204.
pub(super) async fn clock_route(State(inner): State<Shared>, Json(c): Json<Clock>) -> Response {
    lock(&inner).clock_offset_secs = c.offset_secs;
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct Days {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /__mock/statement.csv?from=YYYY-MM-DD&to=YYYY-MM-DD`: the dashboard's transfers
/// export of the transfers created on those days (UTC, both inclusive; absent = unbounded),
/// oldest first.
pub(super) async fn statement_route(
    State(inner): State<Shared>,
    Query(days): Query<Days>,
) -> Response {
    let day = |d: &Option<String>, param| match d {
        None => Ok(None),
        Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| {
                Box::new(invalid(
                    None,
                    &format!("{param} must be YYYY-MM-DD, not {d:?}"),
                    Some(param),
                ))
            }),
    };
    let (from, to) = match (day(&days.from, "from"), day(&days.to, "to")) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(r), _) | (_, Err(r)) => return *r,
    };
    let start = from.map(|d| {
        d.and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp()
    });
    let end = to.and_then(|d| d.succ_opt()).map(|d| {
        d.and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp()
    });
    let transfers: Vec<Transfer> = lock(&inner)
        .transfers
        .iter()
        .filter(|t| start.is_none_or(|s| t.created >= s) && end.is_none_or(|e| t.created < e))
        .cloned()
        .collect();
    let mut rows = Vec::with_capacity(transfers.len());
    for t in &transfers {
        match transfer_record(t) {
            Ok(r) => rows.push(to_row(&r)),
            Err(e) => {
                return stripe_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "api_error",
                    None,
                    &e.to_string(),
                    None,
                );
            }
        }
    }
    let mut out = Vec::new();
    if let Err(e) = write_statement(&FORMAT, rows, &mut out) {
        return stripe_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            None,
            &e.to_string(),
            None,
        );
    }
    let mut response = out.into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    response
}
