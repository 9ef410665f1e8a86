//! Outgoing events over HTTP: endpoints (`/v1/event-endpoints`, operators), the events and
//! their delivery log (`/v1/events`, operators and finance), and replays (operators). An
//! endpoint's signing secret is in the answer that makes it, and never again.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::domain::api_key::Action;
use crate::domain::events::{EndpointUrl, EventType, parse_instant};
use crate::storage::{EndpointView, EventView, ReplaySelector};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpointBody {
    /// https (plain http only to localhost), without credentials.
    #[schema(example = "https://platform.example/hooks/payouts")]
    pub url: String,
    /// The types to receive; absent or empty: every type.
    #[serde(default)]
    #[schema(value_type = Vec<String>, example = json!(["payout.paid", "payout.failed"]))]
    pub types: Vec<String>,
}

/// A new endpoint with its signing secret: store the secret now, it is not shown again.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedEndpoint {
    pub id: String,
    /// Verify each delivery's `Payouts-Signature` with it.
    pub secret: String,
    pub endpoint: EndpointView,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointList {
    pub endpoints: Vec<EndpointView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventList {
    pub events: Vec<EventView>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// RFC 3339 (default: the last 24 hours).
    #[param(value_type = Option<String>, format = DateTime, example = "2026-12-03T00:00:00Z")]
    pub since: Option<String>,
    /// At most this many (1 to 1000, default 100), oldest first.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayOne {
    /// Only to this endpoint (default: every live endpoint subscribed to the event's type).
    pub endpoint: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaySince {
    /// RFC 3339: every event from then on.
    #[schema(format = DateTime, example = "2026-12-03T00:00:00Z")]
    pub since: String,
    pub endpoint: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Replayed {
    /// Deliveries queued; the workers send them in order per subject.
    pub deliveries: u64,
}

/// `POST /v1/event-endpoints`
#[utoipa::path(
    post, path = "/event-endpoints", tag = "events",
    summary = "Register an endpoint for events; the answer holds its signing secret, once",
    request_body = NewEndpointBody,
    responses(
        (status = 201, body = CreatedEndpoint),
        (status = "4XX", body = ErrorBody, description = "Bad URL, unknown type, or a key that is not an operator's"),
    ),
    security(("api_key" = []))
)]
pub async fn add_endpoint(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewEndpointBody>,
) -> Result<(StatusCode, Json<CreatedEndpoint>), ApiError> {
    caller.allow(Action::ManageEvents, || caller.forbidden())?;
    let url = EndpointUrl::parse(&body.url)
        .map_err(|e| ApiError::unprocessable("invalid_url", e.to_string()))?;
    let types = EventType::parse_list(&body.types.join(","))
        .map_err(|e| ApiError::unprocessable("unknown_event_type", e.to_string()))?;
    let made = state
        .store
        .add_event_endpoint(&url, &types, &caller.0.name)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedEndpoint {
            id: made.endpoint.id.clone(),
            secret: made.secret.expose_secret().to_string(),
            endpoint: made.endpoint,
        }),
    ))
}

/// `GET /v1/event-endpoints`
#[utoipa::path(
    get, path = "/event-endpoints", tag = "events",
    summary = "The live endpoints (secrets are never shown again)",
    responses((status = 200, body = EndpointList), (status = "4XX", body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn list_endpoints(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<EndpointList>, ApiError> {
    caller.allow(Action::ManageEvents, || caller.forbidden())?;
    let endpoints = state.store.event_endpoints(false).await?;
    Ok(Json(EndpointList { endpoints }))
}

/// `DELETE /v1/event-endpoints/{id}`
#[utoipa::path(
    delete, path = "/event-endpoints/{id}", tag = "events",
    summary = "Stop sending to an endpoint; pending deliveries are cancelled, the log kept",
    params(("id" = String, Path, description = "The endpoint (we_...)")),
    responses((status = 200, body = EndpointView), (status = "4XX", body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn remove_endpoint(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EndpointView>, ApiError> {
    caller.allow(Action::ManageEvents, || caller.forbidden())?;
    Ok(Json(state.store.remove_event_endpoint(&id).await?))
}

/// `GET /v1/events`
#[utoipa::path(
    get, path = "/events", tag = "events",
    summary = "Events from a time on, oldest first, with every delivery's tries",
    params(EventsQuery),
    responses((status = 200, body = EventList), (status = "4XX", body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Json<EventList>, ApiError> {
    caller.allow(Action::ReadOperations, || caller.forbidden())?;
    let since = match query.since {
        Some(s) => {
            parse_instant(&s).map_err(|e| ApiError::bad_request("invalid_since", e.to_string()))?
        }
        None => crate::clock::now() - chrono::Duration::hours(24),
    };
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", "limit is 1 to 1000"));
    }
    let events = state.store.events_since(since, limit).await?;
    Ok(Json(EventList { events }))
}

/// `GET /v1/events/{id}`
#[utoipa::path(
    get, path = "/events/{id}", tag = "events",
    summary = "One event: its body and every delivery's tries",
    params(("id" = String, Path, description = "The event (evt_...)")),
    responses((status = 200, body = EventView), (status = "4XX", body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EventView>, ApiError> {
    caller.allow(Action::ReadOperations, || caller.forbidden())?;
    match state.store.event(&id).await? {
        Some(event) => Ok(Json(event)),
        None => Err(ApiError::not_found(
            "unknown_event",
            format!("event {id} does not exist (or was pruned)"),
        )),
    }
}

/// `POST /v1/events/{id}/replay`
#[utoipa::path(
    post, path = "/events/{id}/replay", tag = "events",
    summary = "Send one event again, under its own id (receivers dedupe by it)",
    params(("id" = String, Path, description = "The event (evt_...)")),
    request_body = ReplayOne,
    responses((status = 202, body = Replayed), (status = "4XX", body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn replay_one(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ReplayOne>,
) -> Result<(StatusCode, Json<Replayed>), ApiError> {
    caller.allow(Action::ManageEvents, || caller.forbidden())?;
    let which = ReplaySelector::One(id);
    replay(&state, &caller, &which, body.endpoint.as_deref()).await
}

/// `POST /v1/event-replays`
#[utoipa::path(
    post, path = "/event-replays", tag = "events",
    summary = "Send every event since a time again, in order per subject",
    request_body = ReplaySince,
    responses((status = 202, body = Replayed), (status = "4XX", body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn replay_since(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<ReplaySince>,
) -> Result<(StatusCode, Json<Replayed>), ApiError> {
    caller.allow(Action::ManageEvents, || caller.forbidden())?;
    let since = parse_instant(&body.since)
        .map_err(|e| ApiError::unprocessable("invalid_since", e.to_string()))?;
    let which = ReplaySelector::Since(since);
    replay(&state, &caller, &which, body.endpoint.as_deref()).await
}

async fn replay(
    state: &ApiState,
    caller: &Caller,
    which: &ReplaySelector,
    endpoint: Option<&str>,
) -> Result<(StatusCode, Json<Replayed>), ApiError> {
    let deliveries = state
        .store
        .replay_events(which, endpoint, &caller.0.name)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Replayed { deliveries })))
}
