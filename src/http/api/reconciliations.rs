//! Reconciliation over HTTP, for finance: start a run (it works in the background; poll it),
//! read runs, their exceptions and the HTML report, and resolve exceptions with a note.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracing::error;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::domain::api_key::Action;
use crate::domain::ids::Rail;
use crate::domain::reconcile::{ExceptionId, Period, PeriodError, Resolution};
use crate::reconcile::report::{self, ExplainedException, Report};
use crate::reconcile::{
    Quiet, ReconcileError, ReconcileRequest, RecordsFrom, begin, finish, new_run_id, rails_to_read,
};
use crate::storage::{ReconRun, Trigger};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartReconciliation {
    /// First day, UTC.
    #[schema(value_type = chrono::NaiveDate, example = "2026-11-01")]
    pub from: String,
    /// Last day, included.
    #[schema(value_type = chrono::NaiveDate, example = "2026-11-30")]
    pub to: String,
    /// Rails to read; default every rail this server is configured for.
    #[serde(default)]
    pub rails: Vec<Rail>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Started {
    pub id: String,
    #[schema(example = "running")]
    pub status: &'static str,
    /// Where to poll for the result.
    #[schema(example = "/v1/reconciliations/rr_01JD…")]
    pub href: String,
}

fn unknown_run(id: &str) -> ApiError {
    ApiError::not_found(
        "unknown_reconciliation",
        format!("no reconciliation run {id}; GET /v1/reconciliations lists them"),
    )
}

/// `POST /v1/reconciliations`
#[utoipa::path(
    post, path = "/reconciliations", tag = "reconciliation",
    summary = "Reconcile a period against the providers' records (runs in the background)",
    request_body = StartReconciliation,
    responses(
        (status = 202, body = Started, description = "The run started; poll its href"),
        (status = "4XX", body = ErrorBody, description = "Bad period, unknown or unconfigured rail, or key"),
    ),
    security(("api_key" = []))
)]
pub async fn start(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<StartReconciliation>,
) -> Result<
    (
        StatusCode,
        [(header::HeaderName, HeaderValue); 1],
        Json<Started>,
    ),
    ApiError,
> {
    caller.allow(Action::Reconcile, || caller.forbidden())?;
    // A malformed date breaks the document (400); a real date outside the rules is refused
    // by them (422).
    let period = Period::parse(&body.from, &body.to).map_err(|e| match e {
        PeriodError::NotADate(_) => ApiError::bad_request("invalid_period", e.to_string()),
        _ => ApiError::unprocessable("invalid_period", e.to_string()),
    })?;
    let id = new_run_id();
    let request = ReconcileRequest {
        period,
        rails: body.rails,
        from: RecordsFrom::Api,
        trigger: Trigger::Api,
        tolerances: state.settings.recon_tolerances,
        run_id: Some(id.clone()),
    };
    rails_to_read(&state.rails, &request)
        .map_err(|e| ApiError::unprocessable("rail_not_configured", e.to_string()))?;
    let started = begin(&state.store, &state.rails, &request)
        .await
        .map_err(|e| match e {
            ReconcileError::Store(e) => ApiError::from(e),
            other => ApiError::unprocessable("rail_not_configured", other.to_string()),
        })?;
    let store = state.store.clone();
    let rails = state.rails.clone();
    // The run outlives the request: a month of records can take longer than a client waits.
    // Its outcome, failures included, is stored with the run.
    tokio::spawn(async move {
        if let Err(e) = finish(&store, &rails, &started, &Quiet).await {
            error!(run = %started.run.id, error = %e, "reconciliation failed");
        }
    });
    let href = format!("/v1/reconciliations/{id}");
    // The href is ASCII we made (a ULID and a fixed path); a failure would be a bug, so
    // it is reported as one rather than unwrapped.
    let location = HeaderValue::from_str(&href).map_err(|_| ApiError::internal())?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(Started {
            id,
            status: "running",
            href,
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListRuns {
    /// At most this many, newest first (1–200, default 20).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// `GET /v1/reconciliations`
#[utoipa::path(
    get, path = "/reconciliations", tag = "reconciliation",
    summary = "The latest reconciliation runs, newest first",
    params(ListRuns),
    responses((status = 200, body = Vec<ReconRun>), (status = "4XX", body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListRuns>,
) -> Result<Json<Vec<ReconRun>>, ApiError> {
    caller.allow(Action::ReadOperations, || caller.forbidden())?;
    let limit = query.limit.unwrap_or(20);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be 1 to 200, not {limit}"),
        ));
    }
    Ok(Json(state.store.recon_runs(limit).await?))
}

/// `GET /v1/reconciliations/{id}`
#[utoipa::path(
    get, path = "/reconciliations/{id}", tag = "reconciliation",
    summary = "One run: its status, totals per rail and currency, and exception counts",
    params(("id" = String, Path, description = "The run id (rr_…)")),
    responses((status = 200, body = ReconRun), (status = "4XX", body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ReconRun>, ApiError> {
    caller.allow(Action::ReadOperations, || caller.forbidden())?;
    state
        .store
        .recon_run(&id)
        .await?
        .map(Json)
        .ok_or_else(|| unknown_run(&id))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExceptionFilter {
    /// Only the exceptions nobody has resolved yet.
    #[serde(default)]
    pub open: bool,
}

/// `GET /v1/reconciliations/{id}/exceptions`
#[utoipa::path(
    get, path = "/reconciliations/{id}/exceptions", tag = "reconciliation",
    summary = "A run's exceptions, critical first, each with both sides and an explanation",
    params(("id" = String, Path, description = "The run id (rr_…)"), ExceptionFilter),
    responses((status = 200, body = Vec<ExplainedException>), (status = "4XX", body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn exceptions(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(filter): ApiQuery<ExceptionFilter>,
) -> Result<Json<Vec<ExplainedException>>, ApiError> {
    caller.allow(Action::ReadOperations, || caller.forbidden())?;
    if state.store.recon_run(&id).await?.is_none() {
        return Err(unknown_run(&id));
    }
    let found = state.store.recon_exceptions(&id, filter.open).await?;
    Ok(Json(found.into_iter().map(Into::into).collect()))
}

/// `GET /v1/reconciliations/{id}/report.html`
#[utoipa::path(
    get, path = "/reconciliations/{id}/report.html", tag = "reconciliation",
    summary = "The run as one self-contained HTML page for finance",
    params(("id" = String, Path, description = "The run id (rr_…)")),
    responses(
        (status = 200, content_type = "text/html", body = String),
        (status = "4XX", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn html(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.allow(Action::ReadOperations, || caller.forbidden())?;
    let run = state
        .store
        .recon_run(&id)
        .await?
        .ok_or_else(|| unknown_run(&id))?;
    let found = state.store.recon_exceptions(&id, false).await?;
    let page = report::html(&Report::new(run, found));
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    /// What was done about it, for whoever reads the books later.
    #[schema(
        min_length = 1,
        example = "Test transfer by finance; reversed in the provider's dashboard"
    )]
    pub note: String,
}

/// `POST /v1/reconciliation-exceptions/{id}/resolution`
#[utoipa::path(
    post, path = "/reconciliation-exceptions/{id}/resolution", tag = "reconciliation",
    summary = "Resolve an exception with a note; it stays resolved in later runs",
    params(("id" = inline(super::schema::ExceptionIdText), Path, description = "The exception id (rx_…)")),
    request_body = Resolve,
    responses((status = 200, body = Resolution), (status = "4XX", body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn resolve(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Resolve>,
) -> Result<Json<Resolution>, ApiError> {
    caller.allow(Action::Reconcile, || caller.forbidden())?;
    let id = ExceptionId::parse(&id).map_err(|e| ApiError::bad_request("invalid_path", e))?;
    let note = body.note.trim();
    if note.is_empty() || note.len() > 2000 {
        return Err(ApiError::unprocessable(
            "invalid_note",
            "say what was done in note (1 to 2000 characters)",
        ));
    }
    let by = format!("key {}", caller.0.key_id);
    state
        .store
        .recon_resolve(&id, note, &by)
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_exception",
                format!("no reconciliation run has found an exception {id}"),
            )
        })
}
