//! What every inbound webhook verifier produces, whatever the provider's scheme.
//!
//! Verification lives in each provider's `webhook.rs`, behind [`WebhookReceiver`]; the HTTP
//! edge only routes deliveries there and applies the result. A delivery is only ever a hint about state: it is applied
//! through `domain::tracking::track`, which ignores stale and repeated readings.

use chrono::{DateTime, Utc};

use super::RailFuture;
use crate::domain::tracking::Observation;

/// A delivery that passed its provider's authenticity checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundEvent {
    /// The provider's id for the event (or delivery), for de-duplication.
    pub event_id: String,
    /// The provider's id for the payment it is about (tr_…, batch id, transfer id, key).
    pub provider_ref: Option<String>,
    /// Our own token if the event echoes it (transfer_group, sender_batch_id, reward key).
    pub our_token: Option<String>,
    /// The state the event reports, if it reports one. `None` for events that only say
    /// "something changed": the receiver then reads the state from the provider.
    pub observation: Option<Observation>,
}

/// Why a delivery was refused. Nothing about a refused delivery is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("signature does not match")]
    BadSignature,
    #[error("timestamp is {age_secs} s away from now, outside the {tolerance_secs} s tolerance")]
    Stale { age_secs: i64, tolerance_secs: i64 },
    #[error("malformed delivery: {0}")]
    Malformed(String),
    #[error("could not verify the delivery with the provider: {0}")]
    Unverifiable(String),
}

/// What a rail could tell about a delivery from the delivery alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Authenticated here (a signature): apply it.
    Verified(InboundEvent),
    /// Readable, but believed only once the provider confirms it
    /// ([`WebhookReceiver::confirm`]). It names the payment, so the receiver can first check
    /// that it is about a payout of ours and bound how many such calls strangers can cause.
    Unconfirmed(InboundEvent),
}

/// What the provider said about an unconfirmed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    /// The event to apply (its content as the provider has it now).
    Event(InboundEvent),
    /// The provider knows no such object: nothing to apply, and nothing to retry.
    Unknown(String),
}

/// How a rail's inbound deliveries are authenticated and read; part of
/// [`super::rail::PayoutRail`]. The HTTP receiver (`http::webhooks`) is the same for every
/// rail and dispatches here through the registry.
pub trait WebhookReceiver {
    /// Checks what can be checked locally (signature, token, age, shape) and reads the event.
    fn check(
        &self,
        headers: &axum::http::HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Checked, WebhookError>;

    /// Asks the provider to confirm a delivery [`Self::check`] left unconfirmed. Rails whose
    /// deliveries are verified locally never get here.
    fn confirm<'a>(
        &'a self,
        _headers: &'a axum::http::HeaderMap,
        _body: &'a [u8],
        _unconfirmed: InboundEvent,
    ) -> RailFuture<'a, Result<Confirmed, WebhookError>> {
        Box::pin(async {
            Err(WebhookError::Unverifiable(
                "this rail's deliveries are verified by their signature alone".into(),
            ))
        })
    }
}
