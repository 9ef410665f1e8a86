//! The HTTP edge. For now it hosts the providers' webhooks (and a health check); the full API
//! comes later and mounts beside them.

pub mod webhooks;

use axum::Router;
use axum::routing::get;

pub use webhooks::WebhookState;

/// The router the `serve` command (and tests) run.
pub fn router(webhooks: WebhookState) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .nest("/webhooks", webhooks::router(webhooks))
}
