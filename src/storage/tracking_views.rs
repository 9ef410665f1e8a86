//! What applying an observation did, shared by both storage backends.

use crate::domain::payout::PayoutStatus;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What an observation did to a payout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Applied {
    /// The payout moved, with the ledger following.
    Moved {
        from: PayoutStatus,
        to: PayoutStatus,
    },
    /// Same state; the provider's wording was recorded if it changed.
    Unchanged { status: PayoutStatus },
    /// A worker step owns the payout right now (it is being sent or resolved); it was nudged
    /// to look again instead.
    Deferred { status: PayoutStatus },
    /// The reading was about another provider object that names the payout (a possible
    /// duplicate payment): recorded as evidence, the payout and the ledger left alone.
    Duplicate {
        status: PayoutStatus,
        object: String,
    },
}

/// A provider object that names a payout but is not the payment its state rests on
/// (`domain::object_match`), as last read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuplicateEvidence {
    pub payout_id: String,
    pub rail: String,
    /// The provider's id for the other object.
    pub object_ref: String,
    /// `domain::tracking::RailState` code of the last reading.
    pub state: String,
    pub provider_status: String,
    /// Where it was read: webhook (or poll).
    pub source: String,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// How an operator booked it (`owed` or `loss`, by resolve-duplicate); open while unset.
    pub booked: Option<String>,
}
