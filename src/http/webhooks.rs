//! The webhook receiver: one route, `POST /webhooks/{rail}`, for every rail. The rail's
//! adapter authenticates and reads the delivery (`providers::webhook::WebhookReceiver`, found
//! through the registry of configured rails), then [`accept`], the same for all,
//! de-duplicates by event id, finds the payout, and applies the observation through
//! `domain::tracking::track` (stale and repeated readings change nothing) when it is about the
//! payment the payout rests on; an event about another object that names the payout is kept
//! as duplicate evidence and changes nothing (`domain::object_match`).
//!
//! Answers: 2xx once the delivery is recorded (also for duplicates and for events about no
//! payout of ours, so the provider stops retrying); 409 while a worker step owns the payout
//! (every provider redelivers non-2xx answers); 401 for a delivery that fails
//! authentication; 400 for one that cannot be read; 404 for a rail we do not know; 503 when
//! the rail is not configured here or our database is unavailable, so the provider retries
//! later.

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;
use tracing::{info, warn};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::ids::Rail;
use crate::domain::object_match::Reading;
use crate::http::api::limits::RateLimiter;
use crate::providers::rail::{PayoutRail, Rails};
use crate::providers::webhook::{Checked, Confirmed, InboundEvent, WebhookError};
use crate::storage::Store;
use crate::storage::tracking_views::Applied;

/// What the receiver needs: the store, and the configured rails, which hold each provider's
/// verification material and re-read a payment's state when an event does not carry it.
#[derive(Clone)]
pub struct WebhookState {
    pub store: Store,
    pub rails: Rails,
    /// How long a payout a webhook makes paid is still polled for returns.
    pub watch_for: Option<std::time::Duration>,
    /// Bounds the calls unauthenticated deliveries can make us send to a provider (PayPal's
    /// verification postback, PartnerStack's reward read), per rail.
    pub verify_limit: Arc<RateLimiter>,
}

/// Outbound verifications per second and burst, per rail, unless configured
/// (`PAYOUTS_WEBHOOK_VERIFY_PER_SEC`). Real providers deliver far below this.
pub const VERIFY_PER_SECOND: u32 = 20;

/// The limiter receivers use when nothing else is configured.
pub fn default_verify_limit() -> Arc<RateLimiter> {
    Arc::new(RateLimiter::new(VERIFY_PER_SECOND, VERIFY_PER_SECOND * 2))
}

impl std::fmt::Debug for WebhookState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookState")
            .field("rails", &self.rails.configured())
            .finish_non_exhaustive()
    }
}

/// The receiver with its OpenAPI description, relative to where it is nested.
pub fn router(state: WebhookState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(receive))
        .with_state(state)
}

/// What a receiver answers; the body is for people reading delivery logs.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct WebhookAnswer {
    pub result: Option<String>,
    pub error: Option<String>,
}

#[utoipa::path(
    post, path = "/{rail}", tag = "webhooks",
    summary = "A payout rail's webhook",
    description = "Each provider is configured with its own path, `/webhooks/{rail}`. The \
                   delivery is authenticated by the provider's own scheme (a signature, or a \
                   confirmation from the provider's API for providers that sign nothing \
                   checkable here); `docs/providers/` describes each.",
    params(("rail" = Rail, Path, description = "The rail the delivery comes from")),
    request_body(content = String, description = "The provider's event, as it sent it", content_type = "application/json"),
    responses(
        (status = 200, body = WebhookAnswer, description = "Recorded (also duplicates and events about no payout of ours)"),
        (status = 400, body = WebhookAnswer, description = "Unreadable delivery"),
        (status = 401, body = WebhookAnswer, description = "Failed the provider's authentication"),
        (status = 404, body = WebhookAnswer, description = "No such rail"),
        (status = 413, body = WebhookAnswer, description = "Larger than any delivery the provider sends"),
        (status = 409, body = WebhookAnswer, description = "A worker step owns the payout; deliver again later"),
        (status = 503, body = WebhookAnswer, description = "Not configured here, cannot verify or store now, or too many deliveries to verify; deliver again later"),
    )
)]
async fn receive(
    State(state): State<WebhookState>,
    Path(rail): Path<String>,
    headers: HeaderMap,
    WebhookBody(body): WebhookBody,
) -> Response {
    let Ok(rail) = rail.parse::<Rail>() else {
        return answer(StatusCode::NOT_FOUND, "error", "no such rail");
    };
    let Some(adapter) = state.rails.get(rail).cloned() else {
        let why = format!("{rail} webhooks are not configured on this server");
        return accept(&state, rail, Err(WebhookError::Unverifiable(why))).await;
    };
    match adapter.check(&headers, &body, crate::clock::now()) {
        Err(e) => refused(rail, e),
        Ok(Checked::Verified(event)) => accept(&state, rail, Ok(event)).await,
        Ok(Checked::Unconfirmed(hint)) => {
            if let Some(answer) = before_calling_out(&state, rail, &hint).await {
                return answer;
            }
            confirmed(&state, &*adapter, &headers, &body, hint).await
        }
    }
}

/// Asks the provider about a delivery it must vouch for, and applies what it says.
async fn confirmed(
    state: &WebhookState,
    adapter: &dyn PayoutRail,
    headers: &HeaderMap,
    body: &[u8],
    hint: InboundEvent,
) -> Response {
    let rail = PayoutRail::rail(adapter);
    match adapter.confirm(headers, body, hint).await {
        Ok(Confirmed::Event(event)) => accept(state, rail, Ok(event)).await,
        Ok(Confirmed::Unknown(why)) => answer(StatusCode::OK, "result", &why),
        Err(e) => accept(state, rail, Err(e)).await,
    }
}

/// The shared second half of every receiver.
pub async fn accept(
    state: &WebhookState,
    rail: Rail,
    verified: Result<InboundEvent, WebhookError>,
) -> Response {
    let event = match verified {
        Ok(e) => e,
        Err(e) => return refused(rail, e),
    };
    match apply(state, rail, &event).await {
        Ok(Handled::Done(outcome)) => {
            info!(%rail, event = %event.event_id, %outcome, "webhook applied");
            (StatusCode::OK, axum::Json(json!({"result": outcome}))).into_response()
        }
        Ok(Handled::Later(why)) => {
            info!(%rail, event = %event.event_id, %why, "webhook deferred; the provider will redeliver");
            (StatusCode::CONFLICT, axum::Json(json!({"error": why}))).into_response()
        }
        Err(e) => {
            warn!(%rail, event = %event.event_id, error = %e, "webhook could not be applied; the provider will retry");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": "temporarily unable to process; retry later"})),
            )
                .into_response()
        }
    }
}

/// A delivery that failed verification, answered so the provider's log says why.
fn refused(rail: Rail, e: WebhookError) -> Response {
    warn!(%rail, error = %e, "webhook delivery refused");
    let (status, reason) = match e {
        WebhookError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed"),
        WebhookError::Unverifiable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unverifiable"),
        _ => (StatusCode::UNAUTHORIZED, "unauthenticated"),
    };
    super::telemetry::webhook_rejected(rail, reason);
    answer(status, "error", &e.to_string())
}

fn answer(status: StatusCode, field: &str, text: &str) -> Response {
    (status, axum::Json(json!({ field: text }))).into_response()
}

/// Gates the call a delivery would make us send to its provider to be believed: only a
/// delivery about a payout of ours is worth one (anything else could change nothing, so it
/// is answered 200 and not recorded), and only as many per second as [`VERIFY_PER_SECOND`]
/// (beyond that 503 with Retry-After; providers redeliver). `None`: go ahead.
async fn before_calling_out(
    state: &WebhookState,
    rail: Rail,
    hint: &InboundEvent,
) -> Option<Response> {
    let ours = state
        .store
        .payout_for_event(
            rail,
            hint.provider_ref.as_deref(),
            hint.our_token.as_deref(),
        )
        .await;
    match ours {
        Ok(Some(_)) => {}
        Ok(None) => {
            super::telemetry::webhook_rejected(rail, "not_ours");
            return Some(answer(StatusCode::OK, "result", "no matching payout"));
        }
        Err(e) => {
            warn!(%rail, error = %e, "webhook: cannot look the payout up; the provider will retry");
            return Some(answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "error",
                "temporarily unable to process; retry later",
            ));
        }
    }
    let wait = state.verify_limit.check(rail.as_str()).err()?;
    super::telemetry::webhook_rejected(rail, "verify_rate");
    let mut response = answer(
        StatusCode::SERVICE_UNAVAILABLE,
        "error",
        "too many deliveries to verify at once; deliver again later",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait.max(1)));
    Some(response)
}

/// A webhook's raw body; a body over the limit or unreadable is answered in the receivers'
/// JSON shape, like every other answer they give.
pub struct WebhookBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for WebhookBody {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(WebhookBody)
            .map_err(|e| {
                let status = e.status();
                let text = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "the delivery is larger than any this receiver accepts".to_string()
                } else {
                    e.body_text()
                };
                answer(status, "error", &text)
            })
    }
}

#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error(transparent)]
    Store(#[from] crate::storage::StoreError),
    #[error("could not read the payment's state from the provider: {0}")]
    Provider(#[from] crate::providers::ProviderError),
}

enum Handled {
    Done(String),
    /// Not recorded: answered with a non-2xx so the provider delivers it again.
    Later(String),
}

async fn apply(
    state: &WebhookState,
    rail: Rail,
    event: &InboundEvent,
) -> Result<Handled, ApplyError> {
    let store = &state.store;
    if store.delivery_seen(rail, &event.event_id).await? {
        return Ok(Handled::Done("duplicate delivery; already applied".into()));
    }
    let payout = store
        .payout_for_event(
            rail,
            event.provider_ref.as_deref(),
            event.our_token.as_deref(),
        )
        .await?;
    let Some(payout) = payout else {
        store
            .record_delivery(rail, &event.event_id, None, "no matching payout")
            .await?;
        return Ok(Handled::Done("no matching payout".into()));
    };
    // An event that does not say the state (or whose provider cannot sign it) is a hint:
    // the provider's API is asked instead.
    let observation = match (
        &event.observation,
        &event.provider_ref,
        state.rails.get(rail),
    ) {
        (Some(o), _, _) => o.clone(),
        (None, Some(provider_ref), Some(adapter)) => adapter.status(provider_ref).await?,
        (None, _, _) => {
            store
                .record_delivery(rail, &event.event_id, Some(&payout), "nothing to apply")
                .await?;
            return Ok(Handled::Done("nothing to apply".into()));
        }
    };
    // Applied only if it is about the payment the payout rests on; a reading about another
    // object naming the payout is kept as duplicate evidence (`domain::object_match`).
    let reading = Reading {
        provider_ref: event.provider_ref.as_deref(),
        our_token: event.our_token.as_deref(),
    };
    let applied = store
        .apply_observation(&payout, reading, &observation, "webhook", state.watch_for)
        .await?;
    if let Applied::Duplicate { object, .. } = &applied {
        warn!(%rail, event = %event.event_id, %payout, %object, "provider event about another object naming the payout: possible duplicate payment, recorded for an operator");
    }
    if let Applied::Deferred { status } = applied {
        // A worker step owns the payout (it is being sent or resolved). Recording the event
        // now would lose it if that step ends in a state this event should move on from.
        return Ok(Handled::Later(format!(
            "payout {payout} is {status} and being worked on; deliver again later"
        )));
    }
    let outcome = serde_json::to_value(&applied)
        .map(|v| v.to_string())
        .unwrap_or_default();
    store
        .record_delivery(rail, &event.event_id, Some(&payout), &outcome)
        .await?;
    Ok(Handled::Done(outcome))
}
