//! The mock PayPal's reporting side (a child of `mock`, sharing its state): the Transaction
//! Search API, where every payout batch shows up as one Mass Payment row, and the payouts
//! report export.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use super::AppState;
use super::engine::Batch;
use super::reply::{authorized, detail, error, simple};
use crate::providers::paypal::records::{item_record, report_time};
use crate::providers::paypal::statement::{FORMAT, to_row};
use crate::providers::paypal::wire::{
    ErrorBody, PAYOUT_EVENT_CODE, PayoutBatch, ReportAmount, SEARCH_MAX_DAYS, SEARCH_PAGE_SIZE,
    TransactionDetail, TransactionInfo, TransactionSearch,
};
use crate::providers::records::write_statement;
use crate::sim::kit::{json_response, lock};

/// PayPal's reporting time form, `2024-06-01T12:00:00+0000`.
fn report_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%z").to_string()
}

fn created(batch: &Batch) -> Option<DateTime<Utc>> {
    batch.header.time_created.as_deref().and_then(report_time)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct SearchQuery {
    start_date: Option<String>,
    end_date: Option<String>,
    page_size: Option<String>,
    page: Option<String>,
}

fn invalid(field: &str, issue: &str) -> Response {
    let mut b = ErrorBody::new(
        "INVALID_REQUEST",
        "Request is not well-formed, syntactically incorrect, or violates schema.",
    );
    let mut d = detail(field, issue);
    d.location = Some("query".into());
    b.details.push(d);
    error(400, &b)
}

/// `GET /v1/reporting/transactions?start_date&end_date&page_size&page`: one `T0001` row per
/// payout batch created in `[start_date, end_date)` (at most 31 days), oldest first, with the
/// batch id as `paypal_reference_id` and the batch total as a negative amount.
pub(super) async fn search(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<SearchQuery>,
) -> Response {
    let inner = lock(&s.inner);
    if let Err(r) = authorized(&inner, &headers) {
        return *r;
    }
    let date = |v: &Option<String>, field: &str| match v.as_deref() {
        None => Err(Box::new(invalid(field, "MISSING_REQUIRED_PARAMETER"))),
        Some(v) => {
            report_time(v).ok_or_else(|| Box::new(invalid(field, "INVALID_PARAMETER_SYNTAX")))
        }
    };
    let (start, end) = match (
        date(&q.start_date, "start_date"),
        date(&q.end_date, "end_date"),
    ) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(r), _) | (_, Err(r)) => return *r,
    };
    if end < start || end - start > chrono::Duration::days(SEARCH_MAX_DAYS) {
        return invalid("end_date", "INVALID_DATE_RANGE");
    }
    let number = |v: &Option<String>, default: u64, max: u64, field: &str| match v.as_deref() {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| Box::new(invalid(field, "INVALID_PARAMETER_SYNTAX"))),
    };
    let (size, page) = match (
        number(&q.page_size, 100, u64::from(SEARCH_PAGE_SIZE), "page_size"),
        number(&q.page, 1, u64::MAX, "page"),
    ) {
        (Ok(s), Ok(p)) => (s, p),
        (Err(r), _) | (_, Err(r)) => return *r,
    };
    let found: Vec<(&Batch, DateTime<Utc>)> = inner
        .batches
        .iter()
        .filter_map(|b| created(b).map(|t| (b, t)))
        .filter(|(_, t)| *t >= start && *t < end)
        .collect();
    let total = found.len() as u64;
    let rows = found
        .into_iter()
        .skip(((page - 1).saturating_mul(size)) as usize)
        .take(size as usize)
        .map(|(b, t)| {
            let status = match b.header.batch_status.as_str() {
                "SUCCESS" => "S",
                "DENIED" | "CANCELED" => "D",
                _ => "P",
            };
            TransactionDetail {
                transaction_info: TransactionInfo {
                    transaction_id: Some(format!("MOCKTX{}", b.header.payout_batch_id)),
                    paypal_reference_id: Some(b.header.payout_batch_id.clone()),
                    paypal_reference_id_type: Some("PAYOUT".into()),
                    transaction_event_code: Some(PAYOUT_EVENT_CODE.into()),
                    transaction_initiation_date: Some(report_text(t)),
                    transaction_updated_date: Some(report_text(t)),
                    transaction_amount: b.header.amount.as_ref().map(|a| ReportAmount {
                        currency_code: a.currency.clone(),
                        value: format!("-{}", a.value),
                    }),
                    transaction_status: Some(status.into()),
                },
            }
        })
        .collect();
    let answer = TransactionSearch {
        transaction_details: rows,
        account_number: Some("MOCKACCOUNT01".into()),
        start_date: Some(report_text(start)),
        end_date: Some(report_text(end)),
        last_refreshed_datetime: Some(report_text(crate::clock::now())),
        page,
        total_items: total,
        total_pages: total.div_ceil(size),
        links: vec![inner.self_link("/v1/reporting/transactions")],
    };
    json_response(200, serde_json::to_string(&answer).unwrap_or_default())
}

#[derive(Debug, Deserialize)]
pub(super) struct Days {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /__mock/statement.csv?from=YYYY-MM-DD&to=YYYY-MM-DD`: the payouts report of every
/// item of the batches created on those days (UTC, both inclusive; absent = unbounded).
pub(super) async fn statement(State(s): State<AppState>, Query(days): Query<Days>) -> Response {
    let day = |d: &Option<String>, field: &str| match d.as_deref() {
        None => Ok(None),
        Some(v) => NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .map(|d| Some(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()))
            .map_err(|_| Box::new(invalid(field, "INVALID_PARAMETER_SYNTAX"))),
    };
    let (from, to) = match (day(&days.from, "from"), day(&days.to, "to")) {
        (Ok(f), Ok(t)) => (f, t.map(|t| t + chrono::Duration::days(1))),
        (Err(r), _) | (_, Err(r)) => return *r,
    };
    let mut rows = Vec::new();
    {
        let inner = lock(&s.inner);
        for b in &inner.batches {
            let Some(t) = created(b) else { continue };
            if from.is_some_and(|f| t < f) || to.is_some_and(|e| t >= e) {
                continue;
            }
            let batch = PayoutBatch {
                batch_header: b.header.clone(),
                items: b.items.iter().map(|i| i.item.clone()).collect(),
                total_items: None,
                total_pages: None,
                links: Vec::new(),
            };
            for item in &batch.items {
                match item_record(&batch, item) {
                    Ok(r) => rows.push(to_row(&r)),
                    Err(e) => return simple(500, "INTERNAL_ERROR", &e.to_string()),
                }
            }
        }
    }
    let mut out = Vec::new();
    if let Err(e) = write_statement(&FORMAT, rows, &mut out) {
        return simple(500, "INTERNAL_ERROR", &e.to_string());
    }
    let mut response = out.into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    response
}
