//! What every inbound webhook verifier produces, whatever the provider's scheme.
//!
//! Verification lives in each provider's `webhook.rs`; the HTTP edge only routes deliveries
//! there and applies the result. A delivery is only ever a hint about state: it is applied
//! through `domain::tracking::track`, which ignores stale and repeated readings.

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
