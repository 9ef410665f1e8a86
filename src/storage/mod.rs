//! Storage: the only module that speaks SQL.
//!
//! Today the backend is embedded SQLite. The PostgreSQL backend (issue 5) fits behind the same
//! [`Store`] methods: queries use `$N` placeholders, `ON CONFLICT` and `RETURNING`, which both
//! databases accept, and write transactions go through [`Store::begin_write`], the one place
//! that knows how each backend serialises writers.

mod accrual;
pub mod affiliate;
pub mod balances;
mod ingest;
pub mod ledger;
pub mod payout_runs;
pub mod payouts;
pub mod queue;
pub mod templates;
pub mod tracking;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::domain::ledger::LedgerError;
use crate::domain::money::MoneyError;
use crate::domain::program::ProgramSet;

pub use balances::{AccountBalance, ProgramBalance, ReferralNote};
pub use ledger::LedgerCheck;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("job queue error: {0}")]
    Queue(#[from] apalis_sqlite::Error),
    #[error(transparent)]
    Money(#[from] MoneyError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("account {0} is not known; ingest an account record for it first")]
    UnknownAccount(String),
    #[error("payout {0} does not exist")]
    UnknownPayout(String),
    #[error("lost the lease on payout {payout} (fence {fence}): another worker took it over")]
    LeaseLost { payout: String, fence: i64 },
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Handle to the database and the programs whose rules it accrues. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    programs: Arc<ProgramSet>,
}

/// The table our own migrations are tracked in, apart from apalis's `_sqlx_migrations`.
const MIGRATIONS_TABLE: &str = "_payouts_migrations";

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and brings its schema up to
    /// date: the job queue's tables first, then ours.
    pub async fn open_sqlite(path: &Path, programs: Arc<ProgramSet>) -> StoreResult<Store> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Money: a committed transaction must survive a power cut.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(15))
            // 64 MiB of page cache per connection: accrual reads whole tables.
            .pragma("cache_size", "-65536")
            .foreign_keys(true);

        // apalis's setup() switches `synchronous` OFF on whatever connection it uses, so it
        // runs on a throwaway pool and never on a connection that later writes money.
        let setup_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        apalis_sqlite::SqliteStorage::setup(&setup_pool).await?;
        // The stock LIdx index makes every ack scan all jobs a worker ever ran (apalis notes §3).
        sqlx::query("DROP INDEX IF EXISTS LIdx")
            .execute(&setup_pool)
            .await?;
        setup_pool.close().await;

        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        migrator.run(&pool).await?;
        Ok(Store { pool, programs })
    }

    /// Opens a database from a URL such as `sqlite://payouts.db` or a plain path.
    pub async fn open(url: &str, programs: Arc<ProgramSet>) -> StoreResult<Store> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Err(StoreError::Corrupt(
                "PostgreSQL is not supported yet; use a sqlite:// URL or a file path".into(),
            ));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let path = path.split('?').next().unwrap_or(path);
        Store::open_sqlite(Path::new(path), programs).await
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The programs this store accrues and pays by.
    pub fn programs(&self) -> &ProgramSet {
        &self.programs
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so a transaction that reads a balance and then writes a hold can
    /// never be overtaken by another writer in between.
    pub async fn begin_write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Milliseconds since the epoch, the stored form of a time.
pub fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_millis(ms: i64) -> DateTime<Utc> {
    // Out-of-range values cannot come from to_millis; fall back to the epoch rather than panic.
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Parses a stored enum code, turning an unknown one into a clear error.
pub(crate) fn parse_code<T>(
    what: &str,
    code: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> StoreResult<T> {
    parse(code).ok_or_else(|| StoreError::Corrupt(format!("unknown {what} {code:?}")))
}

pub(crate) fn parse_stored<T: FromStr>(what: &str, value: &str) -> StoreResult<T>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("{what} {value:?}: {e}")))
}

/// Rows per multi-row INSERT: well under SQLite's 32,766 bound parameters.
pub(crate) const BATCH_ROWS: usize = 500;
