//! The mock Wise's records side: the balance statement export, and test controls that change
//! the mock's own records silently (no webhook, no balance movement), so reconciliation has
//! something to find.
//!
//! - `GET /__mock/statement.csv?from=YYYY-MM-DD&to=YYYY-MM-DD`: the balance statement
//!   ([`crate::providers::wise::statement::FORMAT`]) of the funded transfers created on those UTC days,
//!   both inclusive (either bound may be left out). Unfunded transfers never took money from
//!   the balance, so a balance statement does not show them.
//! - `POST /__mock/tamper` `{"id": 50000001, "source_value": "12.34", "source_currency": "EUR",
//!   "target_account": 1002, "status": "funds_refunded"}` (every field but `id` optional):
//!   overwrites those fields of the transfer; a new status also stops its script. 200 with the
//!   transfer, 404 if unknown.
//! - `DELETE /__mock/transfers/{id}`: the mock forgets the transfer. 204, 404 if unknown.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Deserialize;

use super::reply::{CreatedRange, body_of, not_found, validation};
use super::state::{Shared, find};
use crate::providers::records::write_statement;
use crate::providers::wise::records::transfer_record;
use crate::providers::wise::statement;
use crate::providers::wise::wire::{Num, Transfer};
use crate::sim::kit::lock;

#[derive(Debug, Deserialize)]
pub(super) struct StatementQuery {
    from: Option<String>,
    to: Option<String>,
}

fn csv_response(bytes: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(bytes));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    response
}

/// `GET /__mock/statement.csv?from=&to=`.
pub(super) async fn statement_csv(
    State(shared): State<Shared>,
    Query(q): Query<StatementQuery>,
) -> Response {
    let day = |name: &'static str, v: &Option<String>| match v.as_deref() {
        None | Some("") => Ok(None),
        Some(v) => NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
            .map(Some)
            .map_err(|_| name),
    };
    let range = match (day("from", &q.from), day("to", &q.to)) {
        (Ok(start), Ok(end)) => CreatedRange::days(start, end),
        (Err(name), _) | (_, Err(name)) => {
            return validation(400, "NOT_VALID", "use YYYY-MM-DD", Some(name));
        }
    };
    let payee_name = statement::FORMAT
        .columns
        .iter()
        .position(|c| *c == statement::PAYEE_NAME);
    let rows = {
        let inner = lock(&shared);
        let mut rows = Vec::new();
        for t in inner
            .transfers
            .iter()
            .filter(|t| t.funded_minor.is_some() && range.contains(&t.transfer.created))
        {
            let record = match transfer_record(&t.transfer) {
                Ok(r) => r,
                Err(e) => {
                    return validation(500, "error.statement", &e.to_string(), None);
                }
            };
            let mut row = statement::to_row(&record);
            let holder = inner
                .accounts
                .iter()
                .find(|a| a.id == t.transfer.target_account);
            if let (Some(i), Some(a)) = (payee_name, holder)
                && let Some(cell) = row.get_mut(i)
            {
                cell.clone_from(&a.account_holder_name);
            }
            rows.push(row);
        }
        rows
    };
    let mut csv = Vec::new();
    match write_statement(&statement::FORMAT, rows, &mut csv) {
        Ok(()) => csv_response(csv),
        Err(e) => validation(500, "error.statement", &e.to_string(), None),
    }
}

/// A transfer id as a JSON number or string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IdValue {
    Number(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tamper {
    id: IdValue,
    source_value: Option<String>,
    source_currency: Option<String>,
    target_account: Option<u64>,
    status: Option<String>,
}

/// `POST /__mock/tamper`.
pub(super) async fn tamper(State(shared): State<Shared>, body: Bytes) -> Response {
    let t: Tamper = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => return validation(400, "NOT_VALID", &e.to_string(), None),
    };
    let id = match t.id {
        IdValue::Number(n) => n.to_string(),
        IdValue::Text(s) => s.trim().to_string(),
    };
    let value = match t.source_value.as_deref().map(str::trim) {
        None => None,
        Some(v) => match Decimal::from_str_exact(v) {
            Ok(d) if d > Decimal::ZERO => Some(d),
            _ => {
                return validation(
                    400,
                    "NOT_VALID",
                    "source_value must be a positive decimal string",
                    Some("source_value"),
                );
            }
        },
    };
    let mut inner = lock(&shared);
    let Some(i) = find(&inner, &id) else {
        return not_found(&id);
    };
    let entry = &mut inner.transfers[i];
    let transfer: &mut Transfer = &mut entry.transfer;
    if let Some(v) = value {
        transfer.source_value = Num(v);
    }
    if let Some(c) = t.source_currency {
        transfer.source_currency = c.trim().to_ascii_uppercase();
    }
    if let Some(a) = t.target_account {
        transfer.target_account = a;
    }
    if let Some(s) = t.status {
        transfer.status = s.trim().to_string();
        entry.script.clear();
    }
    body_of(200, &entry.transfer)
}

/// `DELETE /__mock/transfers/{id}`.
pub(super) async fn forget(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    let mut inner = lock(&shared);
    match find(&inner, &id) {
        Some(i) => {
            inner.transfers.remove(i);
            let mut response = Response::new(Body::empty());
            *response.status_mut() = axum::http::StatusCode::NO_CONTENT;
            response
        }
        None => not_found(&id),
    }
}
