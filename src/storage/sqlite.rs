//! The embedded SQLite backend: one file, one machine, the default.
//!
//! SQLite has a single writer, so `BEGIN IMMEDIATE` (take the write lock up front) is all
//! the serialisation any [`WriteLock`] needs: a transaction that reads a balance and then
//! writes a hold can never be overtaken by another writer in between. Within one process,
//! write transactions start on a pool of one connection and so queue in order for it: a
//! writer waiting on the file lock instead sleeps in steps of up to 100 ms, which made the
//! slowest of 64 concurrent withdrawals wait seconds.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::queue::{PAYOUT_QUEUE, QueuedTask};
use super::{MIGRATIONS_TABLE, StoreResult, WriteLock};
use crate::domain::program::ProgramSet;

pub(crate) type Db = sqlx::Sqlite;
pub(crate) type Pool = sqlx::SqlitePool;
pub(crate) type Conn = sqlx::SqliteConnection;
/// Nothing to prepare before matching: SQLite's planner uses the indexes as they are.
pub(crate) const RECON_PREPARE: &[&str] = &[];
/// Nothing to prepare before a payout run either.
pub(crate) const RUN_PREPARE: &[&str] = &[];
/// Bulk reads of narrow rows come packed, one value per chunk (see `storage::packed`): sqlx
/// hands each SQLite row across threads at about 5 µs.
pub(crate) const PACKED_READS: bool = true;
/// `expr` (text) as hex, to pack free text into a tab-separated line (see `storage::packed`).
pub(crate) fn hex_text(expr: &str) -> String {
    format!("hex({expr})")
}
/// The job queue's table (apalis).
pub(crate) const JOBS_TABLE: &str = "Jobs";
/// A finished job's `done_at` before `$1` (Unix seconds): apalis stores seconds on SQLite
/// and a timestamp on PostgreSQL.
pub(crate) const JOBS_DONE_BEFORE: &str = "done_at < $1";
pub(crate) type Tx = sqlx::Transaction<'static, Db>;

// The same queries as the other backend, compiled with this one's types (see sql/mod.rs):
// loading the file twice is the point.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
pub(crate) mod sql;
pub use sql::Store;

/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// Opens (creating if needed) the database at `path` and brings its schema up to date: the
/// job queue's tables first, then ours.
pub(crate) async fn open(path: &Path, programs: Arc<ProgramSet>) -> StoreResult<Store> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // Money: a committed transaction must survive a power cut.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        // 64 MiB of page cache per connection: accrual reads whole tables.
        .pragma("cache_size", "-65536")
        .foreign_keys(true);

    // apalis's setup() switches `synchronous` OFF on whatever connection it uses, so it runs
    // on a throwaway pool and never on a connection that later writes money.
    let setup_pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await?;
    apalis_sqlite::SqliteStorage::setup(&setup_pool).await?;
    // The stock LIdx index makes every ack scan all jobs a worker ever ran (docs/apalis.md,
    // "SQLite backend").
    sqlx::query("DROP INDEX IF EXISTS LIdx")
        .execute(&setup_pool)
        .await?;
    setup_pool.close().await;

    let pool = pool_options(8).connect_with(options.clone()).await?;
    let writer = pool_options(1).connect_with(options).await?;
    let mut migrator = sqlx::migrate!("./migrations/sqlite");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator.run(&pool).await?;
    Ok(Store::new(pool, writer, programs))
}

/// A pool of `max` connections that never hands out one left inside a transaction.
fn pool_options(max: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max)
        // As long as a writer from another process may make us wait (the busy timeout).
        .acquire_timeout(BUSY_TIMEOUT)
        .before_acquire(|conn, _| {
            Box::pin(async move {
                // A connection handed back inside an open transaction (a cancelled future, a
                // library's raw BEGIN) would hide every later write in it and hold the write
                // lock. ROLLBACK fails harmlessly when no transaction is open.
                if sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await.is_ok() {
                    tracing::error!(
                        "a pooled connection came back inside an open transaction; it was rolled back"
                    );
                }
                Ok(true)
            })
        })
}

/// SQLite serialises every writer: the lock's scope does not matter.
pub(crate) async fn begin_write(pool: &Pool, _lock: WriteLock<'_>) -> StoreResult<Tx> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

/// SQLite's single writer already excludes every other payout writer.
pub(crate) async fn lock_payouts(_tx: &mut Tx, _ids: &[String]) -> StoreResult<()> {
    Ok(())
}

/// Enqueues in the caller's transaction. The queue silently drops a task whose idempotency
/// key it already holds.
/// The same as `push_tasks` here: SQLite's insert ignores a key already queued.
pub(crate) async fn push_fresh_tasks(tx: &mut Tx, tasks: Vec<QueuedTask>) -> StoreResult<()> {
    push_tasks(tx, tasks).await
}

pub(crate) async fn push_tasks(tx: &mut Tx, tasks: Vec<QueuedTask>) -> StoreResult<()> {
    apalis_sqlite::queries::push_tasks(&mut **tx, PAYOUT_QUEUE, &tasks).await?;
    Ok(())
}

/// Stores reconciliation records with multi-row INSERTs (14 values a row, well under
/// SQLite's bound-parameter limit per statement).
/// SQLite has no COPY: bulk loads are prepared multi-row inserts.
pub(crate) const COPY_SUPPORTED: bool = false;

/// Withdrawals commit in groups: one writer, and an fsync per commit (see `sql/idempotency.rs`).
pub(crate) const GROUP_COMMIT: bool = true;

/// Never called on SQLite (`COPY_SUPPORTED` is false); says so if it were.
pub(crate) async fn copy_rows(_tx: &mut Tx, _copy: &str, _data: String) -> StoreResult<()> {
    Err(crate::storage::StoreError::Corrupt(
        "COPY is PostgreSQL's; SQLite loads with multi-row inserts".into(),
    ))
}

/// SQLite has no array parameter: `None`, and the caller looks keys up in bounded IN lists.
pub(crate) async fn hashes_by_id(
    _tx: &mut Tx,
    _table: &str,
    _keys: &[String],
) -> StoreResult<Option<Vec<(String, String)>>> {
    Ok(None)
}

/// COPY's text escapes (unused on SQLite, which has no COPY).
pub(crate) fn copy_escape(out: &mut String, value: &str) {
    out.push_str(value);
}

/// One writer: a second bulk load at once would only wait for the first.
pub(crate) const BULK_WRITERS: usize = 1;

/// Records are stored as read; matching links them all.
pub(crate) const RECORDS_LINKED_ON_STORE: bool = false;

pub(crate) async fn insert_recon_records(
    conn: &mut Conn,
    run_id: &str,
    rows: &[sql::reconcile::RecordRow],
) -> StoreResult<()> {
    for chunk in rows.chunks(2000) {
        let mut insert = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO recon_records (run_id, seq, rail, kind, record_id, reference, \
             payout_hint, group_id, payee, currency, units, state, provider_status, created_at) ",
        );
        insert.push_values(chunk, |mut b, r| {
            b.push_bind(run_id)
                .push_bind(r.seq)
                .push_bind(r.rail)
                .push_bind(r.kind)
                .push_bind(&r.record_id)
                .push_bind(&r.reference)
                .push_bind(&r.payout_hint)
                .push_bind(&r.group_id)
                .push_bind(&r.payee)
                .push_bind(r.currency)
                .push_bind(r.units)
                .push_bind(r.state)
                .push_bind(&r.provider_status)
                .push_bind(r.created_at);
        });
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// A fresh database in a temporary directory, for the storage layer's own tests.
#[cfg(test)]
pub(crate) async fn test_store() -> (Store, impl Drop) {
    test_store_with(Arc::new(ProgramSet::default())).await
}

/// [`test_store`] under `programs`.
#[cfg(test)]
pub(crate) async fn test_store_with(programs: Arc<ProgramSet>) -> (Store, impl Drop) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(&dir.path().join("unit.db"), programs)
        .await
        .expect("open a test database");
    (store, dir)
}
