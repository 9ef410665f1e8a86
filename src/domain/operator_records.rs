//! What operator actions leave on record (no I/O): an action's state and stored request,
//! what it did, rail pauses, and the filter of bulk actions. Re-exported by
//! `domain::operator`.

use chrono::{DateTime, Utc};

use super::{ActionRequest, PayoutStatus};
use crate::domain::ids::Rail;
use crate::domain::money::Money;
/// Where an action's request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionState {
    Done,
    /// Above the four-eyes amount: nothing changes until a second operator approves.
    PendingApproval,
    Rejected,
}

impl ActionState {
    pub fn code(self) -> &'static str {
        match self {
            ActionState::Done => "done",
            ActionState::PendingApproval => "pending_approval",
            ActionState::Rejected => "rejected",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        [
            ActionState::Done,
            ActionState::PendingApproval,
            ActionState::Rejected,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }
}

/// An action request as stored: one waiting for a second operator, or one already decided.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PendingApproval {
    pub action_id: String,
    #[schema(value_type = String)]
    pub payout: crate::domain::ids::PayoutId,
    pub account: String,
    pub amount: Money,
    #[serde(skip)]
    pub request: ActionRequest,
    pub requested_at: DateTime<Utc>,
    pub state: ActionState,
    /// The payout's status when the action was asked for (or done).
    pub from: PayoutStatus,
    /// Where the action left it, once done.
    pub to: Option<PayoutStatus>,
}

impl PendingApproval {
    /// What was asked, by whom and why, for lists.
    pub fn describe(&self) -> String {
        format!(
            "{} {} of {} for {}, asked by {}: {}",
            self.action_id,
            self.request.action,
            self.payout,
            self.amount,
            self.request.actor,
            self.request.reason
        )
    }
}

/// What an action did, as the CLI and the API report it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Acted {
    /// The action's record (`oa_…`); the id to approve it by while it is pending.
    pub action_id: String,
    pub state: ActionState,
    pub payout_id: String,
    pub action: String,
    pub from: PayoutStatus,
    pub to: PayoutStatus,
    /// The line written to the payout's history.
    pub summary: String,
    /// The same action had already been done and nothing changed since: nothing was done
    /// again.
    pub replayed: bool,
}

/// A paused rail: it sends nothing new until resumed; its payouts wait (their jobs are
/// delayed, never failed) and work already on the wire finishes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RailPause {
    pub rail: Rail,
    pub reason: String,
    pub paused_by: String,
    pub paused_at: DateTime<Utc>,
}

impl RailPause {
    /// What a payout waiting for the rail says about itself.
    pub fn note(&self) -> String {
        format!(
            "waiting: the {} rail is paused by {} since {} ({}); nothing new is sent until it is resumed",
            self.rail,
            self.paused_by,
            self.paused_at.format("%Y-%m-%d %H:%M UTC"),
            self.reason
        )
    }
}

/// How often a payout waiting for a paused rail looks again (resuming wakes them at once).
pub const PAUSE_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Which payouts a bulk action is about; every part given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayoutFilter {
    pub rail: Option<Rail>,
    pub status: Option<PayoutStatus>,
    /// Words in the payout's last error (case-insensitive).
    pub reason: Option<String>,
    /// Created at least this long ago.
    pub older_than: Option<std::time::Duration>,
    pub account: Option<crate::domain::ids::AccountId>,
}

impl PayoutFilter {
    /// A bulk action needs at least one condition: "every payout" is never meant.
    pub fn is_empty(&self) -> bool {
        *self == PayoutFilter::default()
    }
}

/// The most payouts one bulk action touches; narrow the filter for more.
pub const BULK_LIMIT: u32 = 1000;
