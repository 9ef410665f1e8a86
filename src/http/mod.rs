//! The HTTP edge: the versioned API under `/v1`, the providers' webhooks beside it, the
//! OpenAPI document of both at `/openapi.json`, and the operator console under `/console`.

pub mod api;
pub mod console;
pub mod telemetry;
pub mod webhooks;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use api::{ApiSettings, ApiState};
pub use webhooks::WebhookState;

use api::error::ApiError;

/// The router `serve` runs, with default API settings (tests and the demo).
pub fn router(webhooks: WebhookState) -> Router {
    app(webhooks, ApiSettings::default())
}

/// The whole server: `/v1/...` (API and webhooks), `/openapi.json`, and the webhook receivers'
/// first home, `/webhooks/<rail>`, kept for providers configured before `/v1` existed.
pub fn app(webhooks: WebhookState, settings: ApiSettings) -> Router {
    let api = ApiState::new(webhooks.store.clone(), webhooks.rails.clone(), settings);
    let console = console::router(api.clone());
    let (router, doc) = openapi_router(api, webhooks.clone()).split_for_parts();
    let doc = Arc::new(doc);
    router
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .route("/health", get(|| async { "ok" }))
        // The operator console: HTML for people, outside the OpenAPI document.
        .merge(console)
        .nest("/webhooks", webhooks::router(webhooks).split_for_parts().0)
        .fallback(|| async {
            ApiError::not_found("not_found", "no such endpoint; see /openapi.json")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method; see /openapi.json",
            )
        })
}

/// Every documented route, under `/v1`.
pub fn openapi_router(api: ApiState, webhooks: WebhookState) -> OpenApiRouter {
    OpenApiRouter::with_openapi(api::ApiDoc::openapi()).nest(
        "/v1",
        api::router(api).nest("/webhooks", webhooks::router(webhooks)),
    )
}
