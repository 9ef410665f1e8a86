//! Payout methods as the outside world sees them (shared by both backends).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::ids::Rail;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PayoutMethodView {
    pub rail: Rail,
    pub destination: String,
    /// Whether scheduled payout runs may pay through this method.
    pub auto_payout: bool,
    pub updated_at: DateTime<Utc>,
    /// When the destination last changed (or the method was added beside another one).
    pub changed_at: Option<DateTime<Utc>>,
    /// Payouts through this method wait until then (cooling-off after a change).
    pub held_until: Option<DateTime<Utc>>,
}
