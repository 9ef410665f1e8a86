//! The versioned JSON API under `/v1`. Every route but health (and the providers' webhooks)
//! needs an API key ([`auth::Caller`]); errors share one shape ([`error::ApiError`]); request
//! bodies are strict ([`extract::ApiJson`]). Routes are registered with their OpenAPI
//! description ([`utoipa_axum::routes!`]), so the document served at `/openapi.json` is built
//! from the very handlers the server runs.

pub mod accounts;
pub mod affiliate;
pub mod auth;
pub mod error;
pub mod events;
pub mod extract;
pub mod ingest;
pub mod limits;
pub mod methods;
pub mod metrics;
pub mod payout_actions;
pub mod rails;
pub mod reconciliations;
pub mod runs;
pub mod schema;
pub mod statements;
pub mod withdrawals;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::api_key::ConfiguredKey;
use crate::storage::Store;
use error::{ApiError, ErrorBody};
use limits::RateLimiter;

/// How the API guards itself. `Default` suits tests and the demo; `serve` reads the
/// environment (`app::config::ApiSettings::from_env`).
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Keys from configuration (`PAYOUTS_API_KEYS`), beside the database's.
    pub configured_keys: Vec<ConfiguredKey>,
    /// Requests per second per key; 0 turns limiting off.
    pub rate_per_second: u32,
    /// Requests a quiet key may send at once.
    pub rate_burst: u32,
    /// A request taking longer is abandoned with 503 `timeout`.
    pub request_timeout: Duration,
    /// Largest request body, except ingest's.
    pub body_limit: usize,
    pub ingest_body_limit: usize,
    /// An Idempotency-Key claimed this long ago with no response is taken over by a retry.
    pub idempotency_stale_after: Duration,
    /// How far a provider record may differ from a payout in reconciliations started here.
    pub recon_tolerances: crate::domain::reconcile::Tolerances,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            configured_keys: Vec::new(),
            rate_per_second: 50,
            rate_burst: 100,
            request_timeout: Duration::from_secs(30),
            body_limit: 64 * 1024,
            ingest_body_limit: 16 * 1024 * 1024,
            idempotency_stale_after: Duration::from_secs(60),
            recon_tolerances: crate::domain::reconcile::Tolerances::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiState {
    pub store: Store,
    /// The rails reconciliations read from (the same adapters the webhooks use).
    pub rails: crate::providers::rail::Rails,
    pub settings: Arc<ApiSettings>,
    pub limiter: Arc<RateLimiter>,
}

impl ApiState {
    pub fn new(
        store: Store,
        rails: crate::providers::rail::Rails,
        settings: ApiSettings,
    ) -> ApiState {
        let limiter = RateLimiter::new(settings.rate_per_second, settings.rate_burst);
        ApiState {
            store,
            rails,
            settings: Arc::new(settings),
            limiter: Arc::new(limiter),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "payouts",
        description = "Payout orchestration for the referral, affiliate and creator programs of GPU clouds: \
                       ingest platform events, read balances, withdraw, run payouts, receive provider webhooks.",
    ),
    modifiers(&BearerKeys),
    tags(
        (name = "ingest", description = "The platform's records"),
        (name = "accounts", description = "Balances, payout methods and opt-ins"),
        (name = "payouts", description = "Withdrawals and payouts"),
        (name = "runs", description = "Scheduled payout runs"),
        (name = "reconciliation", description = "Finance: every provider record against our payouts"),
        (name = "operations", description = "Health and metrics"),
        (name = "rails", description = "Operators: pause and resume a rail"),
        (name = "events", description = "Signed events for the platform: endpoints, delivery log, replays"),
        (name = "webhooks", description = "Provider callbacks, authenticated by each provider's own scheme"),
    )
)]
pub struct ApiDoc;

/// API keys travel as bearer tokens.
struct BearerKeys;

impl utoipa::Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from `payouts keys create` or PAYOUTS_API_KEYS",
                    ))
                    .build(),
            ),
        );
    }
}

/// The API's routes with their OpenAPI description, relative to `/v1`.
pub fn router(state: ApiState) -> OpenApiRouter {
    let settings = state.settings.clone();
    let ingest = OpenApiRouter::new()
        .routes(routes!(ingest::ingest))
        .layer(DefaultBodyLimit::max(settings.ingest_body_limit));
    let router = OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
        .routes(routes!(metrics::metrics))
        .routes(routes!(accounts::balance))
        .routes(routes!(statements::balance_at))
        .routes(routes!(statements::statement));
    methods::routes(router)
        .routes(routes!(accounts::payouts))
        .routes(routes!(withdrawals::create))
        .routes(routes!(accounts::payout))
        .routes(routes!(payout_actions::retry))
        .routes(routes!(payout_actions::cancel))
        .routes(routes!(payout_actions::mark_paid))
        .routes(routes!(payout_actions::release_hold))
        .routes(routes!(payout_actions::review_approve))
        .routes(routes!(payout_actions::review_reject))
        .routes(routes!(payout_actions::reviews))
        .routes(routes!(payout_actions::resolve_dispute))
        .routes(routes!(payout_actions::resolve_duplicate))
        .routes(routes!(payout_actions::bulk))
        .routes(routes!(payout_actions::approvals))
        .routes(routes!(payout_actions::approve))
        .routes(routes!(payout_actions::reject))
        .routes(routes!(rails::list))
        .routes(routes!(rails::pause))
        .routes(routes!(rails::resume))
        .routes(routes!(affiliate::opt_in))
        .routes(routes!(runs::start))
        .routes(routes!(runs::report))
        .routes(routes!(reconciliations::start, reconciliations::list))
        .routes(routes!(reconciliations::show))
        .routes(routes!(reconciliations::exceptions))
        .routes(routes!(reconciliations::html))
        .routes(routes!(reconciliations::resolve))
        .routes(routes!(events::add_endpoint, events::list_endpoints))
        .routes(routes!(events::remove_endpoint))
        .routes(routes!(events::list))
        .routes(routes!(events::show))
        .routes(routes!(events::replay_one))
        .routes(routes!(events::replay_since))
        .layer(DefaultBodyLimit::max(settings.body_limit))
        .merge(ingest)
        .layer(axum::middleware::from_fn_with_state(
            settings.request_timeout,
            limits::deadline,
        ))
        .with_state(state)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The process answers.
#[utoipa::path(
    get, path = "/health/live", tag = "operations",
    summary = "Liveness: the process answers (no key needed)",
    responses((status = 200, body = Health))
)]
async fn live() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The process answers and its database does.
#[utoipa::path(
    get, path = "/health/ready", tag = "operations",
    summary = "Readiness: the database answers too (no key needed)",
    responses(
        (status = 200, body = Health),
        (status = 503, body = ErrorBody, description = "The database does not answer"),
    )
)]
async fn ready(State(state): State<ApiState>) -> Result<Json<Health>, ApiError> {
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness: the database does not answer");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database does not answer",
        )
    })?;
    Ok(Json(Health { status: "ready" }))
}
