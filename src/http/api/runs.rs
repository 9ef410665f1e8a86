//! Payout runs over HTTP: start one (or a dry run) and read a run's report.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, id_error};
use crate::domain::api_key::Action;
use crate::domain::payout_run::{RunPeriod, RunReport};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// The period the run pays for (default: today, UTC). One run per period.
    #[schema(value_type = Option<crate::domain::payout_run::RunPeriod>, example = "2026-11-21")]
    pub period: Option<String>,
    /// Plan only: report what would be paid and skipped, change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /v1/runs`
#[utoipa::path(
    post, path = "/runs", tag = "runs",
    summary = "Start the payout run for a period, or plan it with dry_run",
    request_body = StartRun,
    responses(
        (status = 201, body = RunReport, description = "The run created its payouts"),
        (status = 200, body = RunReport, description = "A dry run, or the period had already run (already_ran)"),
        (status = "4XX", body = ErrorBody, description = "Bad period or key"),
    ),
    security(("api_key" = []))
)]
pub async fn start(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<StartRun>,
) -> Result<(StatusCode, Json<RunReport>), ApiError> {
    caller.allow(Action::RunPayouts, || caller.forbidden())?;
    let period = match body.period {
        Some(p) => RunPeriod::parse(&p).map_err(id_error("invalid_period"))?,
        None => RunPeriod::day_of(crate::clock::now()),
    };
    let report = state.store.run_payouts(&period, body.dry_run).await?;
    let status = if report.dry_run || report.already_ran {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(report)))
}

/// `GET /v1/runs/{period}`
#[utoipa::path(
    get, path = "/runs/{period}", tag = "runs",
    summary = "The report of a period's payout run",
    params(("period" = crate::domain::payout_run::RunPeriod, Path, description = "The run's period, e.g. 2026-11-21")),
    responses(
        (status = 200, body = RunReport),
        (status = "4XX", body = ErrorBody, description = "Bad period or key, or no run for the period"),
    ),
    security(("api_key" = []))
)]
pub async fn report(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(period): ApiPath<String>,
) -> Result<Json<RunReport>, ApiError> {
    caller.allow(Action::ReadOperations, || caller.forbidden())?;
    let period = RunPeriod::parse(&period).map_err(id_error("invalid_period"))?;
    state
        .store
        .run_report(&period)
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_run",
                format!("no payout run for period {} has been made", period.as_str()),
            )
        })
}
