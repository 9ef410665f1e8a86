//! Rails over HTTP: which are paused (`GET /v1/rails`, operators and finance), and pausing or
//! resuming one (`POST /v1/rails/{rail}/pause|resume`, operators). A paused rail sends
//! nothing new: its payouts wait, never fail, and say why.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, id_error};
use super::payout_actions::{Reason, refused};
use crate::domain::api_key::Action as Permission;
use crate::domain::ids::Rail;
use crate::domain::operator::RailPause;
use crate::storage::StoreError;

/// One rail as an operator sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RailView {
    pub rail: Rail,
    /// Its credentials are set on this server.
    pub configured: bool,
    /// Set while the rail is paused.
    pub paused: Option<RailPause>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RailsView {
    pub rails: Vec<RailView>,
}

/// `GET /v1/rails`
#[utoipa::path(
    get, path = "/rails", tag = "rails",
    summary = "Every rail: configured here or not, paused or not",
    responses(
        (status = 200, body = RailsView),
        (status = "4XX", body = ErrorBody, description = "Bad key"),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<RailsView>, ApiError> {
    caller.allow(Permission::ReadOperations, || caller.forbidden())?;
    let paused = state.store.rail_pauses().await?;
    let configured = state.rails.configured();
    Ok(Json(RailsView {
        rails: Rail::ALL
            .into_iter()
            .map(|rail| RailView {
                rail,
                configured: configured.contains(&rail),
                paused: paused.iter().find(|p| p.rail == rail).cloned(),
            })
            .collect(),
    }))
}

/// `POST /v1/rails/{rail}/pause`
#[utoipa::path(
    post, path = "/rails/{rail}/pause", tag = "rails",
    summary = "Pause a rail: nothing new is sent; its payouts wait and work on the wire finishes",
    params(("rail" = Rail, Path, description = "The rail")),
    request_body = Reason,
    responses(
        (status = 200, body = RailView, description = "Paused (or already paused: the live pause)"),
        (status = "4XX", body = ErrorBody, description = "Unknown rail, no reason, or a key that is not an operator's"),
    ),
    security(("api_key" = []))
)]
pub async fn pause(
    state: State<ApiState>,
    caller: Caller,
    rail: ApiPath<String>,
    body: ApiJson<Reason>,
) -> Result<Json<RailView>, ApiError> {
    switch(state, caller, rail, body, Switch::Pause).await
}

/// `POST /v1/rails/{rail}/resume`
#[utoipa::path(
    post, path = "/rails/{rail}/resume", tag = "rails",
    summary = "Resume a paused rail; the payouts that waited for it go at once",
    params(("rail" = Rail, Path, description = "The rail")),
    request_body = Reason,
    responses(
        (status = 200, body = RailView, description = "Sending (whether or not it was paused)"),
        (status = "4XX", body = ErrorBody, description = "Unknown rail, no reason, or a key that is not an operator's"),
    ),
    security(("api_key" = []))
)]
pub async fn resume(
    state: State<ApiState>,
    caller: Caller,
    rail: ApiPath<String>,
    body: ApiJson<Reason>,
) -> Result<Json<RailView>, ApiError> {
    switch(state, caller, rail, body, Switch::Resume).await
}

enum Switch {
    Pause,
    Resume,
}

/// Pause and resume share their checks and their answer: the rail as it now stands.
async fn switch(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(rail): ApiPath<String>,
    ApiJson(body): ApiJson<Reason>,
    switch: Switch,
) -> Result<Json<RailView>, ApiError> {
    caller.allow(Permission::OperatePayouts, || caller.forbidden())?;
    let rail: Rail = rail.parse().map_err(id_error("invalid_path"))?;
    let (store, actor) = (&state.store, &caller.0.name);
    let paused = match switch {
        Switch::Pause => store
            .pause_rail(rail, &body.reason, actor)
            .await
            .map(|(pause, _)| Some(pause)),
        Switch::Resume => store
            .resume_rail(rail, &body.reason, actor)
            .await
            .map(|_| None),
    };
    match paused {
        Ok(paused) => Ok(Json(RailView {
            rail,
            configured: state.rails.get(rail).is_some(),
            paused,
        })),
        Err(StoreError::Operator(refusal)) => Err(refused(&refusal)),
        Err(e) => Err(e.into()),
    }
}
