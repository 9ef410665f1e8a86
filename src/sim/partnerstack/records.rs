//! The mock PartnerStack's records side: the rewards export, and test controls that change
//! the mock's own records silently (no webhook), so reconciliation has something to find.
//! The listing's `min_created`/`max_created` (inclusive, epoch ms), `limit` (1–250) and
//! `starting_after` are served by the rewards list in `routes.rs`.
//!
//! - `GET /__mock/statement.csv?from=YYYY-MM-DD&to=YYYY-MM-DD[&test=true]`: the rewards export
//!   ([`crate::providers::partnerstack::statement::FORMAT`]) of the rewards created on those UTC days, both
//!   inclusive (either bound may be left out), oldest first. Production-pair rewards unless
//!   `test=true`.
//! - `POST /__mock/tamper` `{"key": "…", "amount": 1234, "currency": "EUR", "partner_key":
//!   "pk_bob", "payment_status": "failed"}` (every field but `key` optional): overwrites those
//!   fields of every reward under the key, without an event or a new `updated_at`; the
//!   scripted progression carries on from a new payment status. 200 with the rewards, 404 if
//!   there is none.
//! - `DELETE /__mock/rewards/{key}`: the mock forgets every reward under the key, and the key
//!   itself (a new reward may then be made under it). 204, 404 if there is none.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use chrono::{NaiveDate, TimeZone, Utc};
use serde::Deserialize;

use super::Shared;
use super::reply::{error, ok};
use super::state::Mode;
use crate::providers::partnerstack::records::reward_record;
use crate::providers::partnerstack::statement;
use crate::providers::records::write_statement;
use crate::sim::kit::lock;

#[derive(Debug, Deserialize)]
pub(super) struct StatementQuery {
    from: Option<String>,
    to: Option<String>,
    #[serde(default)]
    test: bool,
}

/// The first millisecond of a `YYYY-MM-DD` UTC day, and of the day after it.
fn day_bounds(text: &str) -> Option<(i64, i64)> {
    let day = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()?;
    let start = Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0)?);
    Some((
        start.timestamp_millis(),
        (start + chrono::Duration::days(1)).timestamp_millis(),
    ))
}

/// `GET /__mock/statement.csv?from=&to=&test=`.
pub(super) async fn statement_csv(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<StatementQuery>,
) -> Response {
    let bound = |name: &'static str, v: &Option<String>| match v.as_deref() {
        None | Some("") => Ok(None),
        Some(v) => day_bounds(v).map(Some).ok_or(name),
    };
    let (start, end) = match (bound("from", &q.from), bound("to", &q.to)) {
        (Ok(s), Ok(e)) => (s.map(|(first, _)| first), e.map(|(_, next)| next)),
        (Err(name), _) | (_, Err(name)) => {
            return error(400, &format!("{name} must be a date as YYYY-MM-DD"));
        }
    };
    let mode = if q.test { Mode::Test } else { Mode::Prod };
    let rows = {
        let inner = lock(&shared.inner);
        let mut rows = Vec::new();
        for s in inner.rewards.iter().filter(|s| {
            s.mode == mode
                && start.is_none_or(|m| s.reward.created_at >= m)
                && end.is_none_or(|m| s.reward.created_at < m)
        }) {
            match reward_record(&s.reward) {
                Ok(record) => {
                    let mut row = statement::to_row(&record);
                    fill(&mut row, statement::STATUS, &s.reward.status);
                    if let Some(d) = &s.reward.description {
                        fill(&mut row, statement::DESCRIPTION, d);
                    }
                    rows.push(row);
                }
                Err(e) => return error(500, &e.to_string()),
            }
        }
        rows
    };
    let mut csv = Vec::new();
    if let Err(e) = write_statement(&statement::FORMAT, rows, &mut csv) {
        return error(500, &e.to_string());
    }
    let mut response = Response::new(Body::from(csv));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    response
}

/// Sets a column the record does not carry (the export has more than a record needs).
fn fill(row: &mut [String], column: &str, value: &str) {
    if let Some(cell) = statement::FORMAT
        .columns
        .iter()
        .position(|c| *c == column)
        .and_then(|i| row.get_mut(i))
    {
        *cell = value.to_string();
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Tamper {
    key: String,
    amount: Option<i64>,
    currency: Option<String>,
    partner_key: Option<String>,
    payment_status: Option<String>,
}

/// `POST /__mock/tamper`.
pub(super) async fn tamper(State(shared): State<Arc<Shared>>, Json(t): Json<Tamper>) -> Response {
    let mut inner = lock(&shared.inner);
    let mut changed = Vec::new();
    for s in inner.rewards.iter_mut().filter(|s| s.reward.key == t.key) {
        let r = &mut s.reward;
        if let Some(a) = t.amount {
            r.amount = a;
        }
        if let Some(c) = &t.currency {
            r.currency = c.trim().to_ascii_uppercase();
        }
        if let Some(p) = &t.partner_key {
            r.partner_key = p.clone();
        }
        if let Some(p) = &t.payment_status {
            r.payment_status = p.trim().to_string();
        }
        changed.push(r.clone());
    }
    if changed.is_empty() {
        return error(404, &format!("reward {:?} not found", t.key));
    }
    ok(changed)
}

/// `DELETE /__mock/rewards/{key}`.
pub(super) async fn forget(State(shared): State<Arc<Shared>>, Path(key): Path<String>) -> Response {
    let mut inner = lock(&shared.inner);
    let before = inner.rewards.len();
    inner.rewards.retain(|s| s.reward.key != key);
    if inner.rewards.len() == before {
        return error(404, &format!("reward {key:?} not found"));
    }
    inner.remembered.retain(|(_, k), _| *k != key);
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_whole_utc_days() {
        let (start, next) = day_bounds("2025-03-04").unwrap();
        assert_eq!(next - start, 86_400_000);
        assert_eq!(
            Utc.timestamp_millis_opt(start).unwrap().to_rfc3339(),
            "2025-03-04T00:00:00+00:00"
        );
        assert!(day_bounds("04/03/2025").is_none());
    }
}
