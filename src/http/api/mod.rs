//! The versioned JSON API under `/v1`. Every route but health needs an API key
//! ([`auth::Caller`]); errors share one shape ([`error::ApiError`]).

pub mod accounts;
pub mod auth;
pub mod error;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::storage::Store;
use error::ApiError;

#[derive(Debug, Clone)]
pub struct ApiState {
    pub store: Store,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/accounts/{account}/balance", get(accounts::balance))
        .route("/payouts/{payout}", get(accounts::payout))
        .with_state(state)
}

/// The process answers.
async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// The process answers and its database does.
async fn ready(State(state): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness: the database does not answer");
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database does not answer",
        )
    })?;
    Ok(Json(serde_json::json!({ "status": "ready" })))
}
