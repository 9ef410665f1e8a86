//! `POST /v1/ingest`: the platform's records over HTTP, the same records and rules as
//! `payouts ingest`, with a result per record so a partly bad batch says which ones.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiJson;
use crate::domain::api_key::Action;
use crate::ingest::{IngestReport, LineError, Numbered, Record};

/// Records per request; more is a 413 (send several batches).
pub const MAX_RECORDS: usize = 10_000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestBody {
    /// Records as in the NDJSON format (`type`: account, referral, usage, refund, purchase,
    /// payout_method, link, template, affiliate_opt_in, tax_profile). Idempotent by record id. Any JSON
    /// value is taken: each is judged on its own, and one that is not a valid record is
    /// `rejected` in `results` with the reason while the others go in (unless `strict`).
    #[schema(value_type = Vec<serde_json::Value>)]
    pub records: Vec<Box<RawValue>>,
    /// All or nothing: any bad record rolls the whole batch back.
    #[serde(default)]
    pub strict: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordResult {
    /// The record's position in `records`, from 0.
    pub index: usize,
    /// accepted (new, updated or unchanged), rejected, or rolled_back (strict batches).
    #[schema(example = "rejected")]
    pub status: &'static str,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestResponse {
    pub accepted: usize,
    pub rejected: usize,
    /// True when `strict` met a bad record and nothing was written.
    pub rolled_back: bool,
    pub results: Vec<RecordResult>,
    /// Counts per record type, referrals judged and commission entries posted.
    pub report: IngestReport,
}

/// `POST /v1/ingest`
#[utoipa::path(
    post, path = "/ingest", tag = "ingest",
    summary = "Feed platform records: accounts, referrals, usage, refunds, payout methods, links, opt-ins",
    request_body = IngestBody,
    responses(
        (status = 200, body = IngestResponse, description = "Every record's result; check `rejected`"),
        (status = 413, body = ErrorBody, description = "Too many records or too large a body"),
        (status = "4XX", body = ErrorBody, description = "Bad JSON or key"),
    ),
    security(("api_key" = []))
)]
pub async fn ingest(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<IngestBody>,
) -> Result<Json<IngestResponse>, ApiError> {
    caller.allow(Action::Ingest, || caller.forbidden())?;
    if body.records.len() > MAX_RECORDS {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_records",
            format!(
                "{} records in one request; send at most {MAX_RECORDS} per request",
                body.records.len()
            ),
        ));
    }
    // Records number from 1, as lines do in a file; results speak in indexes from 0.
    let mut parsed = Vec::with_capacity(body.records.len());
    let mut unparsed = Vec::new();
    for (index, raw) in body.records.iter().enumerate() {
        match Record::parse_line(raw.get()) {
            Ok(record) => parsed.push(Numbered {
                line: index + 1,
                record,
            }),
            Err(e) => unparsed.push(LineError {
                line: index + 1,
                message: e.to_string(),
            }),
        }
    }
    let report = state
        .store
        .ingest_parsed(parsed, unparsed, body.strict)
        .await?;
    let rolled_back = report.rolled_back;
    let mut errors: std::collections::BTreeMap<usize, String> = Default::default();
    for e in &report.rejected {
        errors
            .entry(e.line)
            .and_modify(|m| {
                m.push_str("; ");
                m.push_str(&e.message);
            })
            .or_insert_with(|| e.message.clone());
    }
    let results: Vec<RecordResult> = (0..body.records.len())
        .map(|index| {
            let error = errors.remove(&(index + 1));
            let status = match (&error, rolled_back) {
                (Some(_), _) => "rejected",
                (None, true) => "rolled_back",
                (None, false) => "accepted",
            };
            RecordResult {
                index,
                status,
                error,
            }
        })
        .collect();
    let rejected = results.iter().filter(|r| r.error.is_some()).count();
    Ok(Json(IngestResponse {
        accepted: if rolled_back {
            0
        } else {
            results.len() - rejected
        },
        rejected,
        rolled_back,
        results,
        report,
    }))
}
