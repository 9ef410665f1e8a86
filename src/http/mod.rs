//! The HTTP edge: the providers' webhooks, and the versioned API under `/v1` beside them.

pub mod api;
pub mod webhooks;

use axum::Router;
use axum::routing::get;

pub use webhooks::WebhookState;

/// The router the `serve` command (and tests) run.
pub fn router(webhooks: WebhookState) -> Router {
    let api = api::ApiState {
        store: webhooks.store.clone(),
    };
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .nest("/webhooks", webhooks::router(webhooks))
        .nest("/v1", api::router(api))
}
