//! The data set of `bench reconcile`: which payouts carry which discrepancy, the payouts
//! written with set-based SQL, and the Stripe statement streamed to a file.

use std::collections::HashSet;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use payouts::domain::ids::Rail;
use payouts::domain::money::{Currency, Money};
use payouts::domain::reconcile::{Exception, ExceptionKind, ProviderRecord, RecordKind};
use payouts::domain::tracking::RailState;
use payouts::providers::records::write_statement;
use payouts::providers::stripe::statement::{FORMAT, to_row};
use payouts::storage::{Store, WriteLock, from_millis, to_millis};

use super::super::{Progress, group};

/// Payouts written per transaction (and per progress line).
const CHUNK: usize = 100_000;

/// Payout numbers are written with eight digits.
const MAX_PAYOUTS: usize = 100_000_000;

/// Units per cent (amounts are stored at 10 decimal places).
const UNITS_PER_CENT: i64 = 100_000_000;

const DAY_SECS: i64 = 86_400;

/// The injected kinds, in the order of their offset inside each slot of payouts.
pub(super) const INJECTED: [ExceptionKind; 7] = [
    ExceptionKind::UnknownAtProvider,
    ExceptionKind::DuplicateAtProvider,
    ExceptionKind::MissingAtProvider,
    ExceptionKind::AmountMismatch,
    ExceptionKind::CurrencyMismatch,
    ExceptionKind::PayeeMismatch,
    ExceptionKind::StatusMismatch,
];

/// Which payouts get which discrepancy, and every id and amount of the data set. Payouts are
/// cut into `per_kind` slots of `slot` payouts; the first seven payouts of a slot carry one
/// kind each (the first one keeps its own transfer and gets an unknown one beside it).
pub(super) struct Plan {
    pub(super) payouts: usize,
    pub(super) per_kind: usize,
    slot: usize,
    day_start_ms: i64,
}

impl Plan {
    pub(super) fn new(payouts: usize, rate: f64, day_start: DateTime<Utc>) -> Result<Plan> {
        anyhow::ensure!(
            (1..MAX_PAYOUTS).contains(&payouts),
            "--payouts must be between 1 and {}",
            MAX_PAYOUTS - 1
        );
        anyhow::ensure!(
            rate.is_finite() && rate >= 0.0,
            "--rate must be a fraction such as 0.001"
        );
        let per_kind = (rate * payouts as f64).round() as usize;
        anyhow::ensure!(
            per_kind * INJECTED.len() <= payouts,
            "--rate {rate} injects {per_kind} discrepancies of each of {} kinds, more than \
             {payouts} payouts can carry (each kind needs payouts of its own)",
            INJECTED.len()
        );
        Ok(Plan {
            payouts,
            per_kind,
            slot: payouts.checked_div(per_kind).unwrap_or(payouts),
            day_start_ms: to_millis(day_start),
        })
    }

    /// The discrepancy payout `i` carries, if any.
    fn injected(&self, i: usize) -> Option<ExceptionKind> {
        if i / self.slot >= self.per_kind {
            return None;
        }
        INJECTED.get(i % self.slot).copied()
    }

    /// Payout `i`'s creation time (whole seconds, spread over the day), in ms.
    fn created_ms(&self, i: usize) -> i64 {
        self.day_start_ms + (i as i64 * DAY_SECS / self.payouts as i64) * 1000
    }

    fn payout_id(i: usize) -> String {
        format!("po_bench{i:08}")
    }

    fn cents(i: usize) -> i64 {
        1000 + (i % 1000) as i64
    }

    /// The transfer Stripe holds for payout `i`, as our books expect it.
    fn transfer(&self, i: usize) -> ProviderRecord {
        let payout = Self::payout_id(i);
        ProviderRecord {
            rail: Rail::Stripe,
            kind: RecordKind::Transfer,
            record_id: format!("tr_bench{i:08}"),
            reference: Some(payout.clone()),
            // Every other row without the metadata column's payout id: linked by its group.
            payout_hint: i.is_multiple_of(2).then_some(payout),
            group_id: None,
            payee: format!("acct_1bench{i:08}"),
            amount: Money::from_minor_units(Self::cents(i), Currency::Usd),
            state: RailState::Paid,
            provider_status: "transferred".into(),
            created_at: from_millis(self.created_ms(i)),
        }
    }

    /// The statement rows for payout `i` (none, one, or two), discrepancies applied.
    fn records(&self, i: usize) -> Vec<ProviderRecord> {
        let mut r = self.transfer(i);
        match self.injected(i) {
            None => vec![r],
            Some(ExceptionKind::UnknownAtProvider) => {
                let unknown = ProviderRecord {
                    record_id: format!("tr_benchx{i:08}"),
                    reference: Some(format!("po_unknown{i:08}")),
                    payout_hint: Some(format!("po_unknown{i:08}")),
                    payee: format!("acct_1unknown{i:08}"),
                    amount: Money::from_minor_units(2500, Currency::Usd),
                    ..r.clone()
                };
                vec![r, unknown]
            }
            Some(ExceptionKind::DuplicateAtProvider) => {
                let second = ProviderRecord {
                    record_id: format!("tr_bench{i:08}dup"),
                    ..r.clone()
                };
                vec![r, second]
            }
            Some(ExceptionKind::MissingAtProvider) => Vec::new(),
            Some(ExceptionKind::AmountMismatch) => {
                r.amount = Money::from_minor_units(Self::cents(i) + 1, Currency::Usd);
                vec![r]
            }
            Some(ExceptionKind::CurrencyMismatch) => {
                r.amount = Money::from_minor_units(Self::cents(i), Currency::Eur);
                vec![r]
            }
            Some(ExceptionKind::PayeeMismatch) => {
                r.payee = format!("acct_1other{i:08}");
                vec![r]
            }
            Some(ExceptionKind::StatusMismatch) => {
                r.state = RailState::Returned;
                r.provider_status = "reversed".into();
                vec![r]
            }
        }
    }

    /// Every exception the run must find, as (kind, key): the record id for an unknown
    /// record, the payout id for the others (a duplicate is one exception per payout).
    pub(super) fn expected(&self) -> HashSet<(ExceptionKind, String)> {
        let mut expected = HashSet::new();
        for s in 0..self.per_kind {
            for (offset, kind) in INJECTED.iter().enumerate() {
                let i = s * self.slot + offset;
                let records = self.records(i);
                match kind {
                    ExceptionKind::UnknownAtProvider => {
                        expected.insert((*kind, records[1].record_id.clone()));
                    }
                    _ => {
                        expected.insert((*kind, Self::payout_id(i)));
                    }
                }
            }
        }
        expected
    }

    /// The statement's rows, generated one payout at a time.
    fn rows(&self) -> impl Iterator<Item = Vec<String>> + '_ {
        (0..self.payouts).flat_map(|i| self.records(i).into_iter().map(|r| to_row(&r)))
    }

    pub(super) fn statement_records(&self) -> u64 {
        // One per payout, less the missing, plus the duplicates' and the unknown ones.
        (self.payouts + self.per_kind) as u64
    }
}

/// The key an exception is compared by (see [`Plan::expected`]).
pub(super) fn key(e: &Exception) -> (ExceptionKind, String) {
    let id = match e.kind {
        ExceptionKind::UnknownAtProvider => e.record_id.clone(),
        _ => e.payout_id.clone(),
    };
    (e.kind, id.unwrap_or_default())
}

/// `i` as eight zero-padded digits, in SQL both SQLite and PostgreSQL accept.
const N8: &str = "substr(CAST(100000000 + i AS TEXT), 2)";

/// The statements that write payouts `$1..$2` created over the day from `$3` (ms), of `$4`
/// payouts in all: the posted hold, the paid payout, its landed attempt.
const PAYOUT_SQL: [&str; 3] = [
    "INSERT INTO ledger_transactions (id, kind, status, payout_id, note, created_at, resolved_at) \
     SELECT 'bench-hold' || {n8}, 'payout', 'posted', 'po_bench' || {n8}, 'bench fixture', \
            {at}, {at} FROM seq",
    "INSERT INTO payouts (id, account_id, program, rail, destination, currency, units, status, \
       idempotency_key, request_hash, hold_txn_id, attempts, provider_ref, provider_status, \
       created_at, updated_at) \
     SELECT 'po_bench' || {n8}, 'bench-p' || {n8}, 'vast', 'stripe', 'acct_1bench' || {n8}, \
            'USD', (1000 + i % 1000) * {cent}, 'paid', 'bench-recon-' || {n8}, 'bench', \
            'bench-hold' || {n8}, 1, 'tr_bench' || {n8}, 'transferred', {at}, {at} FROM seq",
    "INSERT INTO payout_attempts (payout_id, attempt_no, provider_key, outcome, provider_ref, \
       started_at, finished_at, rail_ref, rail) \
     SELECT 'po_bench' || {n8}, 1, 'po_bench' || {n8} || '-attempt-1', 'landed', \
            'tr_bench' || {n8}, {at}, {at}, 'po_bench' || {n8}, 'stripe' FROM seq",
];

/// Writes the plan's payouts, `CHUNK` per transaction; then leaves the loaded tables on
/// PostgreSQL as autovacuum leaves a live server's within a minute of such a load: vacuumed
/// (rows marked visible, so the run's first read does not rewrite every page, and no
/// autovacuum worker takes a core from the timed run) and analysed. `recon_records` is left
/// as a fresh database has it: what the run stores is for the run itself to deal with.
pub(super) async fn seed(store: &Store, plan: &Plan, progress: &Progress) -> Result<()> {
    let seq = match store {
        Store::Postgres(_) => {
            "seq(i) AS (SELECT g FROM generate_series(CAST($1 AS BIGINT), \
             CAST($2 AS BIGINT) - 1) AS g)"
        }
        Store::Sqlite(_) => {
            "seq(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < $2)"
        }
    };
    let at = "($3 + (i * 86400 / $4) * 1000)";
    let mut start = 0;
    while start < plan.payouts {
        let end = (start + CHUNK).min(plan.payouts);
        payouts::on_backend!(store, s => {
            let mut tx = s.begin_write(WriteLock::Run).await?;
            for sql in PAYOUT_SQL {
                let body = sql
                    .replace("{n8}", N8)
                    .replace("{at}", at)
                    .replace("{cent}", &UNITS_PER_CENT.to_string());
                sqlx::query(sqlx::AssertSqlSafe(format!("WITH RECURSIVE {seq} {body}")))
                    .bind(i64::try_from(start)?)
                    .bind(i64::try_from(end)?)
                    .bind(plan.day_start_ms)
                    .bind(i64::try_from(plan.payouts)?)
                    .execute(&mut *tx)
                    .await
                    .with_context(|| format!("writing payouts {start}..{end}"))?;
            }
            tx.commit().await?;
            anyhow::Ok(())
        })?;
        start = end;
        if end == plan.payouts || end.is_multiple_of(CHUNK * 5) {
            progress.say(&format!(
                "setup: {} / {} payouts written",
                group(end as u64),
                group(plan.payouts as u64)
            ));
        }
    }
    if let Store::Postgres(s) = store {
        sqlx::query("VACUUM (ANALYZE) ledger_transactions, payouts, payout_attempts")
            .execute(s.pool())
            .await
            .context("VACUUM after the bulk load")?;
    }
    Ok(())
}

/// Streams the statement to `path`; returns its size in bytes.
pub(super) fn write_file(plan: &Plan, path: &std::path::Path) -> Result<u64> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    write_statement(&FORMAT, plan.rows(), std::io::BufWriter::new(file))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(std::fs::metadata(path)?.len())
}
