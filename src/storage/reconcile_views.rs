//! What a reconciliation run stored: its settings, its totals, and the exceptions it found.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::ids::Rail;
use crate::domain::money::Currency;
use crate::domain::reconcile::{Period, Tolerances};

/// Who started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Cli,
    Schedule,
    Api,
}

impl Trigger {
    pub fn code(self) -> &'static str {
        match self {
            Trigger::Cli => "cli",
            Trigger::Schedule => "schedule",
            Trigger::Api => "api",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        [Trigger::Cli, Trigger::Schedule, Trigger::Api]
            .into_iter()
            .find(|t| t.code() == code)
    }
}

/// A run about to read provider records.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub period: Period,
    pub rails: Vec<Rail>,
    /// `api`, or `statement:<file name>`.
    pub source: String,
    pub trigger: Trigger,
    pub tolerances: Tolerances,
}

/// Totals of one rail and currency in one run. Amounts are decimal strings in the currency's
/// major unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RailTotals {
    pub rail: Rail,
    #[schema(value_type = String, example = "USD")]
    pub currency: Currency,
    /// Records the provider holds for the window (bank payouts included).
    pub provider_records: u64,
    pub provider_amount: String,
    /// Provider records found to be one of our payouts.
    pub linked: u64,
    /// Linked records with no disagreement at all.
    pub matched: u64,
    /// Our payouts in the period that should be at the provider.
    pub payouts_expected: u64,
    pub payouts_amount: String,
}

/// Exceptions of a run by kind, and how many are still open.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExceptionCounts {
    pub total: u64,
    pub open: u64,
    pub open_critical: u64,
    pub resolved: u64,
    /// Kind code → count.
    pub by_kind: std::collections::BTreeMap<String, u64>,
}

/// One reconciliation run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReconRun {
    pub id: String,
    pub status: String,
    pub trigger: Trigger,
    pub period_from: chrono::NaiveDate,
    pub period_to: chrono::NaiveDate,
    pub rails: Vec<Rail>,
    pub source: String,
    pub amount_tolerance_minor: i64,
    pub date_tolerance_hours: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub totals: Vec<RailTotals>,
    pub exceptions: ExceptionCounts,
}

impl ReconRun {
    /// Whether every record and every payout matched and nothing is open.
    pub fn all_matched(&self) -> bool {
        self.status == "completed" && self.exceptions.open == 0
    }

    pub fn period(&self) -> Period {
        Period {
            from: self.period_from,
            to: self.period_to,
        }
    }
}
