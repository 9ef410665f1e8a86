//! Payout types shared by both storage backends.

use crate::domain::ids::{AccountId, IdempotencyKey, PayoutId, ProgramId, Rail};
use crate::domain::money::{Currency, Money};
use crate::domain::payout::PayoutStatus;
use crate::domain::withdrawal::Refusal;
use crate::storage::StoreError;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;

/// A referrer's request to cash out.
#[derive(Debug, Clone)]
pub struct WithdrawalRequest {
    pub account: AccountId,
    pub program: ProgramId,
    pub rail: Rail,
    pub amount: Money,
    pub idempotency_key: IdempotencyKey,
}

#[derive(Debug, thiserror::Error)]
pub enum WithdrawError {
    #[error("account {0} is not known")]
    UnknownAccount(AccountId),
    #[error("{account} has no {rail} payout method; add one with a payout_method record")]
    NoPayoutMethod { account: AccountId, rail: Rail },
    #[error("{account} has no {program} balance in {currency}")]
    NoBalance {
        account: AccountId,
        program: ProgramId,
        currency: Currency,
    },
    #[error("{program} pays through {allowed}, not {rail}")]
    RailNotAllowed {
        program: ProgramId,
        rail: Rail,
        allowed: String,
    },
    #[error("{account} may not cash out: {reason}")]
    Ineligible { account: AccountId, reason: String },
    #[error("requested {requested} but only {available} is available to cash out")]
    InsufficientFunds { requested: Money, available: Money },
    #[error(
        "idempotency key {key:?} was already used for a different withdrawal ({existing}); use a new key for a new request"
    )]
    IdempotencyConflict { key: String, existing: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WithdrawError {
    /// The error a person reads for a refusal the domain made.
    pub fn refused(req: &WithdrawalRequest, refusal: Refusal) -> Self {
        match refusal {
            Refusal::NoBalance => WithdrawError::NoBalance {
                account: req.account.clone(),
                program: req.program.clone(),
                currency: req.amount.currency(),
            },
            Refusal::RailNotAllowed { allowed } => WithdrawError::RailNotAllowed {
                program: req.program.clone(),
                rail: req.rail,
                allowed,
            },
            Refusal::Ineligible { reason } => WithdrawError::Ineligible {
                account: req.account.clone(),
                reason,
            },
            Refusal::NoPayoutMethod => WithdrawError::NoPayoutMethod {
                account: req.account.clone(),
                rail: req.rail,
            },
            Refusal::InsufficientFunds { available } => WithdrawError::InsufficientFunds {
                requested: req.amount,
                available,
            },
        }
    }
}

impl From<sqlx::Error> for WithdrawError {
    fn from(e: sqlx::Error) -> Self {
        WithdrawError::Store(e.into())
    }
}

/// A payout as the outside world sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PayoutView {
    pub id: PayoutId,
    pub account: AccountId,
    pub program: ProgramId,
    pub rail: Rail,
    pub destination: String,
    pub amount: Money,
    pub status: PayoutStatus,
    pub attempts: u32,
    pub provider_ref: Option<String>,
    /// The provider's own word for the payment's state, as last observed.
    pub provider_status: Option<String>,
    pub provider_status_at: Option<DateTime<Utc>>,
    /// Polls of the provider while processing, for back-off.
    pub polls: u32,
    /// Lookups or polls in a row that could not reach the provider.
    pub lookup_failures: u32,
    /// A paid payout is polled for money coming back until then.
    pub watch_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub idempotency_key: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the worker will next act on it (a cooling-off hold, a retry or a poll); none
    /// once final or waiting for an operator.
    pub next_step_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WithdrawalOutcome {
    pub payout: PayoutView,
    /// True when the idempotency key matched an earlier identical request.
    pub replayed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PayoutEvent {
    pub at: DateTime<Utc>,
    pub from: Option<String>,
    pub to: String,
    pub attempt: Option<u32>,
    pub worker: Option<String>,
    pub reason: String,
    /// Where the transition came from: submit, lookup, poll, webhook, worker.
    pub source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    pub attempt: u32,
    pub provider_key: String,
    pub outcome: String,
    pub provider_ref: Option<String>,
    pub detail: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PayoutDetail {
    pub payout: PayoutView,
    /// Why the payout is in its current state: the reason its last event gave.
    pub status_reason: Option<String>,
    pub attempts: Vec<AttemptView>,
    pub events: Vec<PayoutEvent>,
    /// Why it is or was held (review rules, a missing tax form), each with its evidence and
    /// how it was cleared.
    pub flags: Vec<FlagView>,
}

/// One reason a payout was held, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FlagView {
    pub rule: crate::domain::review::Rule,
    pub evidence: String,
    pub raised_at: DateTime<Utc>,
    /// Open while `None`.
    pub cleared_at: Option<DateTime<Utc>>,
    /// The operator (or `platform` for a tax form on file) who cleared it.
    pub cleared_by: Option<String>,
    /// `approved`, `rejected` or `form_received`.
    pub decision: Option<String>,
    /// The operator's reason.
    pub note: Option<String>,
}

/// A payout held for review or a tax form, with its open flags: the review queue's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HeldPayout {
    pub payout: PayoutView,
    pub flags: Vec<FlagView>,
}

/// Proof of holding a payout's lease; every fenced write takes one. A write succeeds only
/// while the lease is ours (same fence and owner) and unexpired: a step whose renewals failed
/// cannot prove it still holds the payout, so it stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub payout_id: PayoutId,
    pub owner: String,
    pub fence: i64,
    /// How long a renewal makes it last.
    pub ttl: Duration,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Acquired {
        lease: Lease,
        payout: Box<PayoutView>,
    },
    /// Final or waiting for an operator: nothing to do.
    Settled(PayoutStatus),
    /// Another worker holds a live lease until this time.
    Busy { until: DateTime<Utc> },
    /// The next step is not due yet.
    NotDue { at: DateTime<Utc> },
}

pub(crate) fn lease_lost(lease: &Lease) -> StoreError {
    StoreError::LeaseLost {
        payout: lease.payout_id.to_string(),
        fence: lease.fence,
    }
}

/// Where a page of an account's payouts (newest first) ended. Opaque to API callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutCursor {
    pub created_at: i64,
    pub id: String,
}

impl PayoutCursor {
    pub fn encode(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}.{}", self.created_at, self.id))
    }

    /// `None` for anything [`PayoutCursor::encode`] did not make.
    pub fn decode(text: &str) -> Option<PayoutCursor> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (at, id) = raw.split_once('.')?;
        let id = crate::domain::ids::PayoutId::parse(id).ok()?;
        Some(PayoutCursor {
            created_at: at.parse().ok()?,
            id: id.to_string(),
        })
    }
}

/// One page of an account's payouts, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PayoutPage {
    pub payouts: Vec<PayoutView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let c = PayoutCursor {
            created_at: 1_763_000_000_123,
            id: "po_01JZ".into(),
        };
        assert_eq!(PayoutCursor::decode(&c.encode()), Some(c));
        for bad in ["", "not base64!", "bm9kb3Q", "eC5wb18x"] {
            assert_eq!(PayoutCursor::decode(bad), None, "{bad}");
        }
    }
}
