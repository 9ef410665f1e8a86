//! What applying an observation did, shared by both storage backends.

use crate::domain::payout::PayoutStatus;
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
}
