//! Accounting exports' types, shared by both storage backends: a trial balance of the ledger
//! as of an instant, and the journal of a period as a stream of entries.
//!
//! # Which postings count, and when
//!
//! A ledger transaction is in the books once it is **posted**, and it counts from its
//! *effective time*: `resolved_at` when set, else `created_at`.
//! - Accruals and clawbacks are written posted; they count from when the ledger booked them
//!   (`created_at`), not from the usage they are about, so a period that was exported once
//!   never changes afterwards (late facts post in the period they arrive in).
//! - A payout is first a *pending* hold and is posted when the provider confirms delivery
//!   (`resolved_at`): that is when the money left, so that is when it counts. Returns and
//!   corrections are written posted (`created_at` = `resolved_at`).
//! - A voided hold (the payout failed) never took effect and is never exported.
//!
//! Pending holds are not final: the money has not left and is still owed to the payee, so
//! they are not in the balanced totals. They only reserve the payee's balance against a second
//! withdrawal, which is the ledger's business, not the general ledger's. The trial balance
//! lists the holds that were pending *at its instant* (created before it, resolved after it or
//! not yet) as a memo section; they balance among themselves, like any transaction.

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::Serialize;

use super::{Store, StoreResult};
use crate::domain::ledger::Book;
use crate::domain::money::Money;
use crate::on_backend;

/// One book's balance: the signed sum of its postings (positive is a credit balance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BookBalance {
    pub book: Book,
    pub balance: Money,
}

/// The ledger as of an instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrialBalance {
    /// Exclusive: transactions effective before this instant count.
    pub until: DateTime<Utc>,
    /// Every book with a non-zero posted balance, in account code order. Sums to zero per
    /// currency.
    pub posted: Vec<BookBalance>,
    /// Memo: what the holds pending at `until` would move, per book. Not in `posted`.
    pub pending: Vec<BookBalance>,
    /// How many holds were pending at `until`.
    pub pending_holds: i64,
}

/// One posted ledger transaction, with its postings at full precision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalEntry {
    /// The ledger transaction id.
    pub id: String,
    /// accrual, clawback, payout, payout_return, payout_correction, payout_duplicate or
    /// payout_partial_return.
    pub kind: String,
    /// When it took effect (see the module's documentation).
    pub effective_at: DateTime<Utc>,
    /// What it is, in words: the accrual's note, or the payout it belongs to.
    pub memo: String,
    /// In posting order. Sum to zero per currency.
    pub lines: Vec<JournalLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalLine {
    pub posting_id: i64,
    pub book: Book,
    /// Signed: positive credits the book.
    pub amount: Money,
}

impl Store {
    /// The posted journal entries effective in `[from, until)`, in order of effective time,
    /// then transaction id, then posting: streamed from one query, so a long period is never
    /// held in memory at once.
    pub fn journal(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> BoxStream<'_, StoreResult<JournalEntry>> {
        on_backend!(self, s => s.journal(from, until))
    }
}

/// The words for an entry: its note when it has one, else what it is and what it belongs to.
pub(crate) fn entry_memo(
    kind: &str,
    note: Option<&str>,
    payout: Option<&str>,
    stream: Option<&str>,
    subject: Option<&str>,
) -> String {
    let what = match (kind, payout) {
        ("payout", Some(p)) => format!("payout {p}"),
        ("payout_return", Some(p)) => format!("return of payout {p} (money came back)"),
        ("payout_correction", Some(p)) => {
            format!("correction of payout {p} (the provider says it was paid)")
        }
        ("payout_duplicate", Some(p)) => format!("duplicate payment of payout {p}"),
        ("payout_partial_return", Some(p)) => format!("part of payout {p} came back"),
        ("accrual", _) => "commission".to_string(),
        ("clawback", _) => "commission clawback".to_string(),
        (other, _) => other.to_string(),
    };
    let about = match (stream, subject) {
        (Some(s), Some(x)) => format!(" ({s} {x})"),
        _ => String::new(),
    };
    match note {
        Some(n) if !n.is_empty() => format!("{what}{about}: {n}"),
        _ => format!("{what}{about}"),
    }
}
