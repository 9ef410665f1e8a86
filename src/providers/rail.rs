//! The one abstraction every payout rail implements.
//!
//! A rail does four things: submit an attempt under an idempotency token, settle what an
//! uncertain attempt did, read the current state of something it sent, and say how long the
//! provider remembers a token. Everything else (retry timing, ledger, states) lives in the
//! payout job and the domain, so the adapters stay small and alike.

use std::fmt::Debug;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::ProviderError;
use crate::domain::ids::{PayoutId, Rail};
use crate::domain::money::Money;
use crate::domain::payout::{LookupFinding, SendDecision};
use crate::domain::tracking::Observation;

pub use super::RailFuture;

/// One attempt at paying a payout.
#[derive(Debug, Clone)]
pub struct Submission<'a> {
    pub payout_id: &'a PayoutId,
    /// 1-based attempt number.
    pub attempt: u32,
    /// The rail-specific destination, already validated at withdrawal time (acct_ id, email,
    /// recipient id, partner key).
    pub destination: &'a str,
    pub amount: Money,
    /// Deterministic per attempt (`domain::payout::attempt_key`), persisted before any request
    /// leaves. Rails derive their own token from it (PayPal sender_batch_id, Wise
    /// customerTransactionId UUID, PartnerStack transaction key).
    pub idempotency_key: &'a str,
    /// What an earlier run of this same attempt saved through [`Checkpoints`], if anything.
    pub checkpoint: Option<Value>,
    /// When settling: the latest a request of this attempt can have left, which is when its
    /// sender's lease lapsed (no request leaves later: `providers::sending_until`). A rail
    /// that proves absence by time counts from here, not from the attempt's start. `None`
    /// when sending.
    pub left_by: Option<chrono::DateTime<chrono::Utc>>,
}

pub use crate::domain::step::PastAttempt;

/// Durable progress inside one attempt, for rails whose submit is several calls (Wise: quote,
/// transfer, fund). A rail saves after each call that created something, so a crash resumes
/// from there instead of creating it again.
pub trait Checkpoints: Send + Sync {
    fn save<'a>(&'a self, state: &'a Value) -> RailFuture<'a, Result<(), ProviderError>>;
}

/// Discards checkpoints: for rails and tests that have nothing to resume.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCheckpoints;

impl Checkpoints for NoCheckpoints {
    fn save<'a>(&'a self, _state: &'a Value) -> RailFuture<'a, Result<(), ProviderError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Everything a rail does: pay (below), list what it moved for reconciliation
/// ([`super::records::RecordSource`]), and authenticate its webhooks
/// ([`super::webhook::WebhookReceiver`]). What needs no configuration (destination grammar,
/// references, statement format) is in the rail's [`super::RailFacts`].
pub trait PayoutRail:
    super::records::RecordSource + super::webhook::WebhookReceiver + Send + Sync + Debug
{
    fn rail(&self) -> Rail;

    /// How long the provider is known to deduplicate a token. Past it, re-sending the same
    /// token could pay twice, so `resolve` must not re-send an attempt older than this.
    /// `None`: the rail never re-sends to resolve (it looks up by listing instead).
    fn dedupe_window(&self) -> Option<Duration>;

    /// Sends (or, given a checkpoint, continues) one attempt and classifies the answer.
    /// `Landed` carries the provider's state: landing is not the same as being paid.
    fn submit<'a>(
        &'a self,
        submission: &'a Submission<'a>,
        checkpoints: &'a dyn Checkpoints,
    ) -> RailFuture<'a, SendDecision>;

    /// Settles what the attempts of an uncertain payout did. `last` is the attempt whose
    /// outcome is unknown; `earlier` are the ones before it. A rail either lists what exists
    /// under its tokens, or re-sends `last` unchanged where the provider deduplicates it and
    /// `dedupe_window` has not passed. An answer that cannot be proven is
    /// `LookupFinding::Unprovable`, never a guess.
    fn resolve<'a>(
        &'a self,
        last: &'a Submission<'a>,
        earlier: &'a [PastAttempt],
        last_started: DateTime<Utc>,
        checkpoints: &'a dyn Checkpoints,
    ) -> RailFuture<'a, Result<LookupFinding, ProviderError>>;

    /// The current state of something this rail sent, by the provider's id for it.
    fn status<'a>(
        &'a self,
        provider_ref: &'a str,
    ) -> RailFuture<'a, Result<Observation, ProviderError>>;
}

/// The rails this process can pay through, by rail.
#[derive(Debug, Clone, Default)]
pub struct Rails {
    by_rail: std::collections::BTreeMap<Rail, std::sync::Arc<dyn PayoutRail>>,
}

impl Rails {
    pub fn with(mut self, rail: std::sync::Arc<dyn PayoutRail>) -> Self {
        self.by_rail.insert(PayoutRail::rail(&*rail), rail);
        self
    }

    pub fn get(&self, rail: Rail) -> Option<&std::sync::Arc<dyn PayoutRail>> {
        self.by_rail.get(&rail)
    }

    /// The rails configured, in order.
    pub fn configured(&self) -> Vec<Rail> {
        self.by_rail.keys().copied().collect()
    }
}
