//! Ledger types shared by both storage backends.

use crate::domain::ids::Rail;
use crate::domain::money::Money;
use serde::Serialize;

/// Identity and provenance of a ledger transaction.
#[derive(Debug, Clone)]
pub struct TxnMeta {
    pub id: String,
    pub source_id: Option<String>,
    pub referral_id: Option<String>,
    pub payout_id: Option<String>,
    /// The earning stream (`domain::program::earnings::Stream`) of a commission.
    pub stream: Option<&'static str>,
    /// The stream's subject: a referral id or a template id.
    pub subject: Option<String>,
    /// Why it was posted, in words.
    pub note: Option<String>,
}

impl TxnMeta {
    /// A transaction that belongs to a payout.
    pub fn for_payout(id: String, payout_id: String) -> Self {
        TxnMeta {
            id,
            source_id: None,
            referral_id: None,
            payout_id: Some(payout_id),
            stream: None,
            subject: None,
            note: None,
        }
    }
}

/// The result of checking the ledger's invariants.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LedgerCheck {
    pub transactions: i64,
    pub postings: i64,
    /// Every violation found, in words. Empty means the ledger is sound.
    pub problems: Vec<String>,
}

impl LedgerCheck {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Money that left through one rail and stayed out: posted payouts minus returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RailTotal {
    pub rail: Rail,
    pub amount: Money,
    pub payouts: i64,
}
