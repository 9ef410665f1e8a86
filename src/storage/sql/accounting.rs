//! Accounting exports: the trial balance as of an instant and the journal of a period, as
//! set-based queries (see `storage/accounting.rs` for which postings count and when).

use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

pub(crate) use crate::storage::accounting_views::*;

use super::{Store, StoreError, StoreResult, from_millis, parse_stored, to_millis};
use crate::domain::accounting::{book_from_parts, gl_account};
use crate::domain::ledger::Book;
use crate::domain::money::{Currency, Money};
use crate::storage::sums::{join, wide_sum};

/// A transaction is *posted at* `$1` when it is posted and took effect before `$1`; it is
/// *pending at* `$1` when it existed then and was not yet resolved (still pending, or resolved
/// at or after `$1`: a hold later posted or voided).
const POSTED_AT: &str = "t.status = 'posted' AND COALESCE(t.resolved_at, t.created_at) < $1";
const PENDING_AT: &str = "t.created_at < $1 AND (t.status = 'pending' OR t.resolved_at >= $1)";

/// Posted and pending sums per book in one statement, so both come from the same snapshot;
/// each summed exactly (see `storage::sums`), as a book's total can pass one amount's cap.
fn trial_balance_sql() -> String {
    format!(
        "SELECT p.book, p.holder, p.program, p.rail, p.currency, {}, {} \
         FROM ledger_postings p JOIN ledger_transactions t ON t.id = p.txn_id \
         WHERE t.created_at < $1 \
         GROUP BY p.book, p.holder, p.program, p.rail, p.currency",
        wide_sum(&format!("CASE WHEN {POSTED_AT} THEN p.units END")),
        wide_sum(&format!("CASE WHEN {PENDING_AT} THEN p.units END")),
    )
}

const JOURNAL_SQL: &str = "SELECT t.id AS txn_id, t.kind, \
        CAST(COALESCE(t.resolved_at, t.created_at) AS BIGINT) AS effective, \
        t.note, t.payout_id, t.stream, t.subject, \
        CAST(p.id AS BIGINT) AS posting_id, p.book, p.holder, p.program, p.rail, p.currency, \
        CAST(p.units AS BIGINT) AS units \
     FROM ledger_transactions t JOIN ledger_postings p ON p.txn_id = t.id \
     WHERE t.status = 'posted' \
       AND COALESCE(t.resolved_at, t.created_at) >= $1 \
       AND COALESCE(t.resolved_at, t.created_at) < $2 \
     ORDER BY effective, t.id, p.id";

/// book, holder, program, rail, currency, posted units and pending units (each in halves).
type BookRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
    i64,
    i64,
    i64,
);

#[derive(sqlx::FromRow)]
struct JournalRow {
    txn_id: String,
    kind: String,
    effective: i64,
    note: Option<String>,
    payout_id: Option<String>,
    stream: Option<String>,
    subject: Option<String>,
    posting_id: i64,
    book: String,
    holder: Option<String>,
    program: Option<String>,
    rail: Option<String>,
    currency: String,
    units: i64,
}

impl JournalRow {
    fn line(&self) -> StoreResult<JournalLine> {
        let currency: Currency = parse_stored("currency", &self.currency)?;
        Ok(JournalLine {
            posting_id: self.posting_id,
            book: stored_book(
                &self.book,
                self.holder.as_deref(),
                self.program.as_deref(),
                self.rail.as_deref(),
            )?,
            amount: Money::from_units(self.units, currency),
        })
    }

    fn start_entry(&self) -> StoreResult<JournalEntry> {
        Ok(JournalEntry {
            id: self.txn_id.clone(),
            kind: self.kind.clone(),
            effective_at: from_millis(self.effective),
            memo: entry_memo(
                &self.kind,
                self.note.as_deref(),
                self.payout_id.as_deref(),
                self.stream.as_deref(),
                self.subject.as_deref(),
            ),
            lines: vec![self.line()?],
        })
    }
}

fn stored_book(
    code: &str,
    holder: Option<&str>,
    program: Option<&str>,
    rail: Option<&str>,
) -> StoreResult<Book> {
    book_from_parts(code, holder, program, rail).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Account code, then sub-account name, then currency: the order finance reads a chart in.
fn sort_by_account(balances: &mut [BookBalance]) {
    balances.sort_by_cached_key(|b| {
        let account = gl_account(&b.book);
        (account.code, account.name, b.balance.currency())
    });
}

impl Store {
    /// The trial balance as of `until` (exclusive): every book's posted balance, and the holds
    /// pending at that instant as a memo.
    pub async fn trial_balance(&self, until: DateTime<Utc>) -> StoreResult<TrialBalance> {
        let at = to_millis(until);
        let mut read = self.pool.begin().await?;
        let rows: Vec<BookRow> = sqlx::query_as(sqlx::AssertSqlSafe(trial_balance_sql()))
            .bind(at)
            .fetch_all(&mut *read)
            .await?;
        let pending_holds: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM ledger_transactions t WHERE {PENDING_AT}"
        )))
        .bind(at)
        .fetch_one(&mut *read)
        .await?;
        read.commit().await?;

        let mut posted = Vec::new();
        let mut pending = Vec::new();
        for (code, holder, program, rail, currency, posted_hi, posted_lo, pending_hi, pending_lo) in
            rows
        {
            let (posted_units, pending_units) =
                (join(posted_hi, posted_lo), join(pending_hi, pending_lo));
            let book = stored_book(
                &code,
                holder.as_deref(),
                program.as_deref(),
                rail.as_deref(),
            )?;
            let currency: Currency = parse_stored("currency", &currency)?;
            if posted_units != 0 {
                posted.push(BookBalance {
                    book: book.clone(),
                    balance: Money::from_total_units(posted_units, currency)?,
                });
            }
            if pending_units != 0 {
                pending.push(BookBalance {
                    book,
                    balance: Money::from_total_units(pending_units, currency)?,
                });
            }
        }
        sort_by_account(&mut posted);
        sort_by_account(&mut pending);
        Ok(TrialBalance {
            until,
            posted,
            pending,
            pending_holds,
        })
    }

    /// See [`crate::storage::Store::journal`].
    pub fn journal(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> BoxStream<'_, StoreResult<JournalEntry>> {
        let rows = sqlx::query_as::<_, JournalRow>(JOURNAL_SQL)
            .bind(to_millis(from))
            .bind(to_millis(until))
            .fetch(&self.pool)
            .map_err(StoreError::from);
        // Rows arrive grouped by transaction; an entry ends where the next one's first row
        // begins, which is carried over to start the next entry.
        stream::try_unfold(
            (rows, None::<JournalRow>),
            |(mut rows, carried)| async move {
                let first = match carried {
                    Some(row) => row,
                    None => match rows.try_next().await? {
                        Some(row) => row,
                        None => return Ok(None),
                    },
                };
                let mut entry = first.start_entry()?;
                let mut next = None;
                while let Some(row) = rows.try_next().await? {
                    if row.txn_id != entry.id {
                        next = Some(row);
                        break;
                    }
                    entry.lines.push(row.line()?);
                }
                Ok(Some((entry, (rows, next))))
            },
        )
        .boxed()
    }
}
