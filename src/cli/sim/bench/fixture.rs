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
use payouts::storage::database_url::redact;
use payouts::storage::{DatabaseUrl, Store, to_millis};

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
    pub(super) below_minimum: u64,
    pub(super) spend_gate: u64,
}

impl Expected {
    pub(super) fn of(payees: usize, mixed: bool) -> Expected {
        let mut e = Expected::default();
        for i in 0..payees {
            match (mixed, i % 20) {
                (true, 0) => e.auto_payout_off += 1,
                (true, 1) => e.no_method += 1,
                (true, 2) => e.below_minimum += 1,
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

/// A benchmark's fresh database: a SQLite file (in `--dir` or a temporary directory), or a
/// new database on the PostgreSQL server given with `--postgres`, dropped by [`BenchDb::remove`].
pub(super) enum BenchDb {
    Sqlite { _dir: BenchDir, path: PathBuf },
    Postgres { server: String, name: String },
}

impl BenchDb {
    pub(super) async fn create(dir: Option<&PathBuf>, postgres: Option<&str>) -> Result<BenchDb> {
        let Some(server) = postgres else {
            let dir = BenchDir::new(dir)?;
            let path = dir.path.join("bench.db");
            anyhow::ensure!(
                !path.exists(),
                "{} already exists; the benchmark needs a fresh database (remove it or pick another --dir)",
                path.display()
            );
            return Ok(BenchDb::Sqlite { _dir: dir, path });
        };
        let server = server.trim_end_matches('/').to_string();
        let name = format!(
            "payouts_bench_{}",
            ulid::Ulid::generate().to_string().to_lowercase()
        );
        let mut admin = admin(&server).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating database {name} on {}", redact(&server)))?;
        Ok(BenchDb::Postgres { server, name })
    }

    /// Where the data is, for the report.
    pub(super) fn describe(&self) -> String {
        match self {
            BenchDb::Sqlite { path, .. } => format!("SQLite {}", path.display()),
            BenchDb::Postgres { server, name } => {
                let host = server.rsplit('@').next().unwrap_or(server);
                format!("PostgreSQL {host}/{name}")
            }
        }
    }

    pub(super) fn backend(&self) -> &'static str {
        match self {
            BenchDb::Sqlite { .. } => "sqlite",
            BenchDb::Postgres { .. } => "postgres",
        }
    }

    /// The database's URL, for a child process (`DATABASE_URL`).
    pub(super) fn url(&self) -> String {
        match self {
            BenchDb::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            BenchDb::Postgres { server, name } => format!("{server}/{name}"),
        }
    }

    pub(super) async fn open(&self) -> Result<Store> {
        match self {
            BenchDb::Sqlite { path, .. } => open_store(&path.display().to_string()).await,
            BenchDb::Postgres { server, name } => open_store(&format!("{server}/{name}")).await,
        }
    }

    /// Bytes on disk: the SQLite file and its WAL, or `pg_database_size`.
    pub(super) async fn size_bytes(&self, store: &Store) -> u64 {
        match (self, store) {
            (BenchDb::Sqlite { path, .. }, _) => super::db_bytes(path),
            (BenchDb::Postgres { .. }, Store::Postgres(s)) => {
                sqlx::query_scalar::<_, i64>("SELECT pg_database_size(current_database())")
                    .fetch_one(s.pool())
                    .await
                    .ok()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// Drops the database now (a SQLite temporary directory goes with its `BenchDir`).
    pub(super) async fn remove(mut self) -> Result<()> {
        if let BenchDb::Postgres { server, name } = &mut self {
            let name = std::mem::take(name);
            drop_database(server, &name).await?;
        }
        Ok(())
    }
}

/// A bench that fails or is interrupted still drops its PostgreSQL database.
impl Drop for BenchDb {
    fn drop(&mut self) {
        let BenchDb::Postgres { server, name } = self else {
            return;
        };
        if name.is_empty() {
            return;
        }
        let (server, name) = (server.clone(), std::mem::take(name));
        // Drop may run inside the runtime, so the cleanup gets a runtime of its own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let _ = rt.block_on(drop_database(&server, &name));
            }
        })
        .join();
    }
}

async fn drop_database(server: &str, name: &str) -> Result<()> {
    let mut admin = admin(server).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .with_context(|| format!("dropping database {name}"))?;
    Ok(())
}

async fn admin(server: &str) -> Result<sqlx::PgConnection> {
    use sqlx::Connection;
    sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .with_context(|| {
            format!("connecting to PostgreSQL at {} (pass a server URL such as postgres://postgres@127.0.0.1:5432)", redact(server))
        })
}

/// Opens the store under both presets.
async fn open_store(url: &str) -> Result<Store> {
    let programs = ProgramSet::load(&["vast".into(), "runpod".into()], &|name| {
        std::env::var(name)
            .ok()
            .or_else(|| (name == "RUNPOD_BONUS_SEED").then(|| BENCH_BONUS_SEED.to_string()))
    })
    .context("loading the vast and runpod presets")?;
    let url = DatabaseUrl::from(url);
    Store::open(&url, Arc::new(programs))
        .await
        .with_context(|| format!("opening {url}"))
}

/// The statements that write payees `lo..hi` (`seq` yields `i` from `$1` to `$2` - 1 and the
/// time `$3` as `now`). `{mix}` is replaced by 1 (mixed) or 0; `E` is what the payee earned, in units: 3/4 of it
/// cashable, 1/4 credit, and the commission expense the negated sum, so every accrual balances.
const PAYEE_SQL: [&str; 8] = [
    "INSERT INTO accounts (id, created_at, email, email_normalized, content_hash) \
     SELECT 'bench-p' || {n7}, now, 'p' || {n7} || '@payees.bench.example', \
            'p' || {n7} || '@payees.bench.example', 'bench' FROM seq",
    "INSERT INTO payout_methods (account_id, rail, destination, content_hash, updated_at, auto_payout) \
     SELECT 'bench-p' || {n7}, 'stripe', 'acct_1bench' || {n7}, 'bench', now, \
            CASE WHEN {mix} AND i % 20 = 0 THEN 0 ELSE 1 END \
     FROM seq WHERE NOT ({mix} AND i % 20 = 1)",
    "INSERT INTO ledger_transactions \
       (id, kind, status, referral_id, stream, subject, note, created_at, resolved_at) \
     SELECT 'bench-lt' || {n7}, 'accrual', 'posted', 'bench-ref' || {n7}, \
            'referral', 'bench-ref' || {n7}, 'bench fixture', now, now FROM seq",
    "INSERT INTO ledger_postings (txn_id, book, holder, program, currency, units) \
     SELECT 'bench-lt' || {n7}, 'referrer_cashable', 'bench-p' || {n7}, 'vast', 'USD', \
            E * 3 / 4 FROM amounts",
    "INSERT INTO ledger_postings (txn_id, book, holder, program, currency, units) \
     SELECT 'bench-lt' || {n7}, 'referrer_credit', 'bench-p' || {n7}, 'vast', 'USD', \
            E - E * 3 / 4 FROM amounts",
    "INSERT INTO ledger_postings (txn_id, book, holder, program, currency, units) \
     SELECT 'bench-lt' || {n7}, 'commission_expense', NULL, 'vast', 'USD', -E FROM amounts",
    // The maintained balance the postings above make (halves split at 2^32).
    "INSERT INTO book_balances (holder, program, currency, cashable_hi, cashable_lo, credit_hi, credit_lo) \
     SELECT 'bench-p' || {n7}, 'vast', 'USD', E * 3 / 4 / 4294967296, E * 3 / 4 % 4294967296, \
            (E - E * 3 / 4) / 4294967296, (E - E * 3 / 4) % 4294967296 FROM amounts",
    // $5,000 of its own spend: more than any payee here earns.
    "INSERT INTO usage (id, account_id, at, category, units, currency, content_hash) \
     SELECT 'bench-pu' || {n7}, 'bench-p' || {n7}, now, 'instance', \
            CAST(5000 AS BIGINT) * 100 * {cent}, 'USD', 'bench' FROM seq WHERE {mix} AND i % 20 = 3",
];

/// `i` as seven zero-padded digits, in SQL both SQLite and PostgreSQL accept.
const N7: &str = "substr(CAST(10000000 + i AS TEXT), 2)";

/// Writes `payees` payees on `store`, `PAYEE_CHUNK` per transaction.
pub(super) async fn bulk_payees(
    store: &Store,
    payees: usize,
    mixed: bool,
    progress: &Progress,
) -> Result<()> {
    let now = to_millis(chrono::Utc::now());
    let mix = if mixed { "TRUE" } else { "FALSE" };
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
                .replace("{n7}", N7)
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
