//! Payees for the payout benchmarks, written with direct bulk SQL (`INSERT ... SELECT` over a
//! generated sequence) on a fresh store: an account, a Stripe payout method and one posted
//! referral accrual per payee, without going through ingest or accrual.
//!
//! With `mixed`, one payee in five is skipped by a run, each for a different reason (by `i %
//! 20`): 0 has automatic payouts off, 1 has no payout method, 2 earned less than a cent, 3 spent
//! more on its own usage than it earned (Vast's spend gate). The rest, and every payee without
//! `mixed`, are paid.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use payouts::domain::program::ProgramSet;
use payouts::storage::{Store, to_millis};

use super::{BENCH_BONUS_SEED, Progress, group};

/// Payees written per transaction (and per progress line).
const PAYEE_CHUNK: usize = 100_000;

/// Units per cent (amounts are stored at 10 decimal places).
const UNITS_PER_CENT: i64 = 100_000_000;

/// What the fixture expects a run to do with `payees` payees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Expected {
    pub(super) eligible: u64,
    pub(super) auto_payout_off: u64,
    pub(super) no_method: u64,
    pub(super) nothing_available: u64,
    pub(super) spend_gate: u64,
}

impl Expected {
    pub(super) fn of(payees: usize, mixed: bool) -> Expected {
        let mut e = Expected::default();
        for i in 0..payees {
            match (mixed, i % 20) {
                (true, 0) => e.auto_payout_off += 1,
                (true, 1) => e.no_method += 1,
                (true, 2) => e.nothing_available += 1,
                (true, 3) => e.spend_gate += 1,
                _ => e.eligible += 1,
            }
        }
        e
    }
}

/// A database directory: the given one, or a temporary one removed when this is dropped.
pub(super) struct BenchDir {
    _temp: Option<tempfile::TempDir>,
    pub(super) path: PathBuf,
}

impl BenchDir {
    pub(super) fn new(dir: Option<&PathBuf>) -> Result<BenchDir> {
        match dir {
            Some(d) => {
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
                Ok(BenchDir {
                    _temp: None,
                    path: d.clone(),
                })
            }
            None => {
                let t = tempfile::tempdir().context("creating a temporary directory")?;
                let path = t.path().to_path_buf();
                Ok(BenchDir {
                    _temp: Some(t),
                    path,
                })
            }
        }
    }
}

/// Opens a fresh store (the file must not exist yet) under both presets.
pub(super) async fn fresh_store(db: &std::path::Path) -> Result<Store> {
    anyhow::ensure!(
        !db.exists(),
        "{} already exists; the benchmark needs a fresh database (remove it or pick another --dir)",
        db.display()
    );
    let programs = ProgramSet::load(&["vast".into(), "runpod".into()], &|name| {
        std::env::var(name)
            .ok()
            .or_else(|| (name == "RUNPOD_BONUS_SEED").then(|| BENCH_BONUS_SEED.to_string()))
    })
    .context("loading the vast and runpod presets")?;
    Store::open_sqlite(db, Arc::new(programs))
        .await
        .with_context(|| format!("opening {}", db.display()))
}

/// The statements that write payees `lo..hi` (`seq` yields `i` from `$1` to `$2` - 1 and the
/// time `$3` as `now`). `{mix}` is replaced by 1 (mixed) or 0; `E` is what the payee earned, in units: 3/4 of it
/// cashable, 1/4 credit, and the commission expense the negated sum, so every accrual balances.
const PAYEE_SQL: [&str; 7] = [
    "INSERT INTO accounts (id, created_at, email, email_normalized, content_hash) \
     SELECT printf('bench-p%07d', i), now, printf('p%d@payees.bench.example', i), \
            printf('p%d@payees.bench.example', i), 'bench' FROM seq",
    "INSERT INTO payout_methods (account_id, rail, destination, content_hash, updated_at, auto_payout) \
     SELECT printf('bench-p%07d', i), 'stripe', printf('acct_1bench%07d', i), 'bench', now, \
            CASE WHEN {mix} AND i % 20 = 0 THEN 0 ELSE 1 END \
     FROM seq WHERE NOT ({mix} AND i % 20 = 1)",
    "INSERT INTO ledger_transactions \
       (id, kind, status, referral_id, stream, subject, note, created_at, resolved_at) \
     SELECT printf('bench-lt%07d', i), 'accrual', 'posted', printf('bench-ref%07d', i), \
            'referral', printf('bench-ref%07d', i), 'bench fixture', now, now FROM seq",
    "INSERT INTO ledger_postings (txn_id, book, holder, program, currency, units) \
     SELECT printf('bench-lt%07d', i), 'referrer_cashable', printf('bench-p%07d', i), 'vast', 'USD', \
            E * 3 / 4 FROM amounts",
    "INSERT INTO ledger_postings (txn_id, book, holder, program, currency, units) \
     SELECT printf('bench-lt%07d', i), 'referrer_credit', printf('bench-p%07d', i), 'vast', 'USD', \
            E - E * 3 / 4 FROM amounts",
    "INSERT INTO ledger_postings (txn_id, book, holder, program, currency, units) \
     SELECT printf('bench-lt%07d', i), 'commission_expense', NULL, 'vast', 'USD', -E FROM amounts",
    // $5,000 of its own spend: more than any payee here earns.
    "INSERT INTO usage (id, account_id, at, category, units, currency, content_hash) \
     SELECT printf('bench-pu%07d', i), printf('bench-p%07d', i), now, 'instance', \
            5000 * 100 * {cent}, 'USD', 'bench' FROM seq WHERE {mix} AND i % 20 = 3",
];

/// Writes `payees` payees on `store`, `PAYEE_CHUNK` per transaction.
pub(super) async fn bulk_payees(
    store: &Store,
    payees: usize,
    mixed: bool,
    progress: &Progress,
) -> Result<()> {
    let now = to_millis(chrono::Utc::now());
    let mix = if mixed { "1" } else { "0" };
    // Earned: $10.00 to $19.99 (a multiple of 4 units, so the 3/4 split is exact); payees
    // under 2 (mixed) earned $0.004, so $0.003 is cashable: less than a cent.
    let amounts = format!(
        "amounts(i, E) AS (SELECT i, CASE WHEN {mix} AND i % 20 = 2 THEN 4 * {tenth} \
         ELSE (1000 + i % 1000) * {cent} END FROM seq)",
        tenth = UNITS_PER_CENT / 10,
        cent = UNITS_PER_CENT,
    );
    let mut start = 0;
    while start < payees {
        let end = (start + PAYEE_CHUNK).min(payees);
        payouts::on_backend!(store, s => {
        let mut tx = s.begin_write(payouts::storage::WriteLock::Accrual).await?;
        for sql in PAYEE_SQL {
            let body = sql
                .replace("{mix}", mix)
                .replace("{cent}", &UNITS_PER_CENT.to_string());
            let full = format!(
                "WITH RECURSIVE seq(i, now) AS (SELECT $1, $3 UNION ALL SELECT i + 1, now FROM seq WHERE i + 1 < $2), \
                 {amounts} {body}"
            );
            sqlx::query(sqlx::AssertSqlSafe(full))
                .bind(i64::try_from(start)?)
                .bind(i64::try_from(end)?)
                .bind(now)
                .execute(&mut *tx)
                .await
                .with_context(|| format!("writing payees {start}..{end}"))?;
        }
        tx.commit().await?;
        anyhow::Ok(())
        })?;
        start = end;
        if end == payees || end.is_multiple_of(PAYEE_CHUNK * 5) {
            progress.say(&format!(
                "setup: {} / {} payees written",
                group(end as u64),
                group(payees as u64)
            ));
        }
    }
    Ok(())
}
