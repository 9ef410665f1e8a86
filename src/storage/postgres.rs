//! The PostgreSQL backend: several worker processes on several machines share one database.
//!
//! PostgreSQL runs writers concurrently, so each [`WriteLock`] becomes transaction-scoped
//! advisory locks: what SQLite gets from its single writer, taken here only where two writers
//! could otherwise both read a balance and both spend it.

use std::sync::Arc;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::queue::{PAYOUT_QUEUE, QueuedTask, task_key};
use super::{MIGRATIONS_TABLE, StoreResult, WriteLock};
use crate::domain::program::ProgramSet;

pub(crate) type Db = sqlx::Postgres;
pub(crate) type Pool = sqlx::PgPool;
pub(crate) type Conn = sqlx::PgConnection;
/// The job queue's table (apalis).
pub(crate) const JOBS_TABLE: &str = "apalis.jobs";
/// A finished job's `done_at` before `$1` (Unix seconds): apalis stores seconds on SQLite
/// and a timestamp on PostgreSQL.
pub(crate) const JOBS_DONE_BEFORE: &str = "done_at < to_timestamp($1)";
pub(crate) type Tx = sqlx::Transaction<'static, Db>;
/// Run before matching, in its transaction: statistics for the records just copied in (the
/// planner would otherwise expect a few thousand rows and pick a million index probes over
/// hash joins), sort memory for the classification's window functions, and no JIT (it
/// compiled about a hundred functions for one query, for less than it saved).
pub(crate) const RECON_PREPARE: &[&str] = &[
    "SET LOCAL work_mem = '64MB'",
    "SET LOCAL jit = off",
    // Only the columns matching filters and joins on: the others' statistics cost time. The
    // plans need row counts and rough shares (every join is hashed over the whole run), so
    // a small sample serves as well as the default one at a tenth of the reads (a million
    // records: 0.29 s with the default sample).
    "SET LOCAL default_statistics_target = 10",
    "ANALYZE recon_records (run_id, payout_id, kind, state, currency, created_at)",
];
/// Run at the start of a payout run's transaction: its many short range queries would each
/// pay the JIT compiler more (about 15 ms a query on a million payees) than they run.
pub(crate) const RUN_PREPARE: &[&str] = &["SET LOCAL jit = off"];
/// Bulk reads come as plain rows: the wire protocol streams them cheaply, and packing them
/// in the server costs more than it saves (a run over 1,000,000 payees: 7.4 s packed, 4.9 s not).
pub(crate) const PACKED_READS: bool = false;
/// `expr` (text) as hex, to pack free text into a tab-separated line (see `storage::packed`).
pub(crate) fn hex_text(expr: &str) -> String {
    format!("encode(convert_to({expr}, 'UTF8'), 'hex')")
}

// The same queries as the other backend, compiled with this one's types (see sql/mod.rs):
// loading the file twice is the point.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
pub(crate) mod sql;
pub use sql::Store;

/// Connections per process: workers, the sweep, the cron and the HTTP edge share them.
const MAX_CONNECTIONS: u32 = 16;

/// Connects to `url` and brings the schema up to date: apalis's `apalis` schema first, then
/// ours. Both migrators take a database-wide lock, so processes starting together are safe.
pub(crate) async fn open(url: &str, programs: Arc<ProgramSet>) -> StoreResult<Store> {
    let options: PgConnectOptions = url.parse()?;
    let options = options
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(5))
        .application_name("payouts");
    let pool = PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(Duration::from_secs(30))
        // The probe below also proves the connection alive: no second round trip.
        .test_before_acquire(false)
        .before_acquire(|conn, _| {
            Box::pin(async move {
                // Outside a transaction each statement is its own, so its start is the
                // transaction's; inside one left open, the transaction began earlier. Only
                // the simple query protocol starts both at once: over the extended one (a
                // prepared statement) the statement's clock restarts at Bind, so the two
                // differ by microseconds and every connection would look dirty.
                let row = sqlx::raw_sql("SELECT now() = statement_timestamp()")
                    .fetch_one(&mut *conn)
                    .await?;
                let clean: bool = sqlx::Row::try_get(&row, 0)?;
                if !clean {
                    tracing::error!(
                        "a pooled connection came back inside an open transaction; it is closed, never reused"
                    );
                }
                Ok(clean)
            })
        })
        .connect_with(options)
        .await?;
    apalis_postgres::PostgresStorage::setup(&pool).await?;
    let mut migrator = sqlx::migrate!("./migrations/postgres");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator.run(&pool).await?;
    Ok(Store::new(pool.clone(), pool, programs))
}

/// Takes the advisory locks `lock` names, for the life of the transaction.
pub(crate) async fn begin_write(pool: &Pool, lock: WriteLock<'_>) -> StoreResult<Tx> {
    let mut tx = pool.begin().await?;
    let (shared, exclusive): (Option<&str>, String) = match lock {
        WriteLock::Accrual => (None, "payouts:accrual".into()),
        WriteLock::Run => (None, "payouts:balances".into()),
        WriteLock::Account(id) => (Some("payouts:balances"), format!("account:{id}")),
        WriteLock::Payout(id) => (None, format!("payout:{id}")),
        WriteLock::Sweep => (None, "payouts:sweep".into()),
    };
    // Shared before exclusive (one statement, its targets evaluated left to right), so two
    // lockers never wait on each other in a cycle.
    let locked = match shared {
        Some(shared) => sqlx::query(
            "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0)), \
                    pg_advisory_xact_lock(hashtextextended($2, 0))",
        )
        .bind(shared)
        .bind(exclusive),
        None => {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(exclusive)
        }
    };
    locked.execute(&mut *tx).await?;
    Ok(tx)
}

/// Takes the payout locks of `ids` (as `WriteLock::Payout` does), in id order so that two
/// lockers of overlapping sets never wait on each other in a cycle.
pub(crate) async fn lock_payouts(tx: &mut Tx, ids: &[String]) -> StoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut keys: Vec<String> = ids.iter().map(|id| format!("payout:{id}")).collect();
    keys.sort();
    keys.dedup();
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) \
         FROM unnest($1::text[]) WITH ORDINALITY AS u(k, n) ORDER BY n",
    )
    .bind(&keys)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Enqueues jobs whose keys name payouts created in this very transaction: no job can hold
/// such a key yet, so the lookup `push_tasks` makes first would only cost a round trip.
pub(crate) async fn push_fresh_tasks(tx: &mut Tx, tasks: Vec<QueuedTask>) -> StoreResult<()> {
    if !tasks.is_empty() {
        apalis_postgres::queries::push_tasks(&mut **tx, PAYOUT_QUEUE, tasks).await?;
    }
    Ok(())
}

/// Enqueues in the caller's transaction, dropping tasks whose idempotency key the queue
/// already holds (as SQLite's queue does; PostgreSQL's would abort the transaction instead).
///
/// The check cannot race: a job key names its payout and its reason, and every transaction
/// that enqueues for a payout holds that payout's lock (steps, checks), or the sweep's lock
/// (sweep keys), or creates the payout (runs, withdrawals). If that discipline were ever
/// broken, the duplicate makes the whole transaction fail loudly and roll back: nothing is
/// half-written and nothing is paid twice.
pub(crate) async fn push_tasks(tx: &mut Tx, mut tasks: Vec<QueuedTask>) -> StoreResult<()> {
    let keys: Vec<String> = tasks
        .iter()
        .filter_map(|t| task_key(t).map(str::to_owned))
        .collect();
    let held: Vec<String> = sqlx::query_scalar(
        "SELECT idempotency_key FROM apalis.jobs \
         WHERE job_type = $1 AND idempotency_key = ANY($2)",
    )
    .bind(PAYOUT_QUEUE)
    .bind(&keys)
    .fetch_all(&mut **tx)
    .await?;
    tasks.retain(|t| task_key(t).is_none_or(|k| !held.iter().any(|h| h == k)));
    if !tasks.is_empty() {
        apalis_postgres::queries::push_tasks(&mut **tx, PAYOUT_QUEUE, tasks).await?;
    }
    Ok(())
}

/// Stores reconciliation records with COPY straight into `recon_records`, each already
/// linked to its payout (`link_batch`): a million rows in seconds, where row-by-row INSERTs,
/// or a staging table and an `INSERT ... SELECT` joining payouts, would dominate a run.
pub(crate) async fn insert_recon_records(
    conn: &mut Conn,
    run_id: &str,
    rows: &[sql::reconcile::RecordRow],
) -> StoreResult<()> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    // A batch's commit need not wait for its WAL flush: if the server crashed before the
    // flush, the batch would be lost with a run that never completed (a failed run). The
    // run completes in a later, synchronous commit, which flushes every batch before it.
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    let links = link_batch(&mut tx, rows).await?;
    let mut data = String::with_capacity(rows.len() * 180);
    for (r, link) in rows.iter().zip(&links) {
        let fields: [Option<&str>; 16] = [
            Some(run_id),
            Some(&r.seq.to_string()),
            Some(r.rail),
            Some(r.kind),
            Some(&r.record_id),
            r.reference.as_deref(),
            r.payout_hint.as_deref(),
            r.group_id.as_deref(),
            Some(&r.payee),
            Some(r.currency),
            Some(&r.units.to_string()),
            Some(r.state),
            Some(&r.provider_status),
            Some(&r.created_at.to_string()),
            link.as_ref().map(|(payout, _)| payout.as_str()),
            link.as_ref().map(|(_, by)| *by),
        ];
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                data.push('\t');
            }
            match field {
                Some(v) => copy_escape(&mut data, v),
                None => data.push_str("\\N"),
            }
        }
        data.push('\n');
    }
    let copy = "COPY recon_records (run_id, seq, rail, kind, record_id, reference, payout_hint, \
                group_id, payee, currency, units, state, provider_status, created_at, payout_id, \
                matched_by) FROM STDIN";
    let mut sink = tx.copy_in_raw(copy).await?;
    sink.send(data.into_bytes()).await?;
    sink.finish().await?;
    tx.commit().await?;
    Ok(())
}

/// Each record's payout and how it was found, most specific first: our payout id echoed back
/// (on the same rail), else our attempt token (the lowest payout id holding it on the same
/// rail). Each lookup is one array of keys and reads only the attempts' indexes (an
/// attempt's payout, token and rail); a third, for payout ids no attempt knows, is rare.
async fn link_batch(
    conn: &mut sqlx::PgConnection,
    rows: &[sql::reconcile::RecordRow],
) -> StoreResult<Vec<Option<(String, &'static str)>>> {
    let hints: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.payout_hint.as_deref())
        .collect();
    // A payout a provider knows was attempted: its attempts' index answers for nearly every
    // hint without reading a row; only hints it does not know are looked up in payouts (a
    // payout never sent is still the one a record naming it is judged against).
    let mut by_id: std::collections::HashSet<(String, String)> =
        sqlx::query_as("SELECT payout_id, rail FROM payout_attempts WHERE payout_id = ANY($1)")
            .bind(&hints)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
    let known: std::collections::HashSet<&str> = by_id.iter().map(|(id, _)| id.as_str()).collect();
    let unknown: Vec<&str> = hints
        .iter()
        .copied()
        .filter(|h| !known.contains(h))
        .collect();
    if !unknown.is_empty() {
        let never_sent: Vec<(String, String)> =
            sqlx::query_as("SELECT id, rail FROM payouts WHERE id = ANY($1)")
                .bind(&unknown)
                .fetch_all(&mut *conn)
                .await?;
        by_id.extend(never_sent);
    }
    let hinted = |r: &sql::reconcile::RecordRow| {
        r.payout_hint
            .clone()
            .filter(|h| by_id.contains(&(h.clone(), r.rail.to_string())))
    };
    let references: Vec<&str> = rows
        .iter()
        .filter(|r| hinted(r).is_none())
        .filter_map(|r| r.reference.as_deref())
        .collect();
    // The lowest payout per token and rail is picked here: grouping in the server sorted
    // every batch's rows for it (a fifth of the lookup's time).
    let mut by_reference: std::collections::HashMap<(String, String), String> =
        std::collections::HashMap::new();
    let found: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT rail_ref, rail, payout_id FROM payout_attempts WHERE rail_ref = ANY($1)",
    )
    .bind(&references)
    .fetch_all(&mut *conn)
    .await?;
    for (reference, rail, payout) in found {
        by_reference
            .entry((reference, rail))
            .and_modify(|lowest| {
                if payout < *lowest {
                    lowest.clone_from(&payout);
                }
            })
            .or_insert(payout);
    }
    let links = rows
        .iter()
        .map(|r| {
            if let Some(hint) = hinted(r) {
                return Some((hint, "payout_id"));
            }
            let reference = r.reference.clone()?;
            by_reference
                .get(&(reference, r.rail.to_string()))
                .map(|payout| (payout.clone(), "reference"))
        })
        .collect::<Vec<_>>();
    Ok(links)
}

/// Records are linked by payout id and attempt token as they are stored (see
/// `insert_recon_records`); matching links the rest.
pub(crate) const RECORDS_LINKED_ON_STORE: bool = true;

/// Bulk loads of one job that may run at once, each on its own connection (a server backend,
/// a core each): two keep a small server busy while the client parses the next batch.
pub(crate) const BULK_WRITERS: usize = 2;

/// Withdrawals commit one by one: PostgreSQL groups concurrent commits' WAL flushes itself.
pub(crate) const GROUP_COMMIT: bool = false;

/// Bulk loads go through COPY on PostgreSQL (`copy_rows`).
pub(crate) const COPY_SUPPORTED: bool = true;

/// Loads `data` (COPY's text format, a row per line) with `copy` (a `COPY ... FROM STDIN`),
/// in the caller's transaction.
pub(crate) async fn copy_rows(tx: &mut Tx, copy: &str, data: String) -> StoreResult<()> {
    let mut sink = (**tx).copy_in_raw(copy).await?;
    sink.send(data.into_bytes()).await?;
    sink.finish().await?;
    Ok(())
}

/// The stored content hash of each `keys` row of `table` (keyed by `id`), in one round
/// trip: the keys go as one array parameter.
pub(crate) async fn hashes_by_id(
    tx: &mut Tx,
    table: &str,
    keys: &[String],
) -> StoreResult<Option<Vec<(String, String)>>> {
    let sql = format!("SELECT id, content_hash FROM {table} WHERE id = ANY($1)");
    Ok(Some(
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(keys)
            .fetch_all(&mut **tx)
            .await?,
    ))
}

/// COPY's text format: backslash, tab, newline and carriage return are escaped.
pub(crate) fn copy_escape(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// A fresh database on the test server (`PAYOUTS_TEST_PG`, default the local one), dropped
/// when the returned guard is, for the storage layer's own tests. No server: the test fails.
#[cfg(test)]
pub(crate) async fn test_store() -> (Store, impl Drop) {
    test_store_with(Arc::new(ProgramSet::default())).await
}

/// [`test_store`] under `programs`.
#[cfg(test)]
pub(crate) async fn test_store_with(programs: Arc<ProgramSet>) -> (Store, impl Drop) {
    use sqlx::Connection;
    struct Dropped(String, String);
    impl Drop for Dropped {
        fn drop(&mut self) {
            let (server, db) = (self.0.clone(), self.1.clone());
            // A thread with its own runtime: this may run inside a runtime being shut down.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(mut c) =
                        sqlx::PgConnection::connect(&format!("{server}/postgres")).await
                    {
                        let drop = format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut c).await;
                    }
                });
            })
            .join();
        }
    }
    let server = std::env::var("PAYOUTS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let db = format!(
        "payouts_unit_{}",
        crate::clock::ulid().to_string().to_lowercase()
    );
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("no PostgreSQL server at {server} for the storage tests: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    let store = open(&format!("{server}/{db}"), programs)
        .await
        .expect("open the test database");
    (store, Dropped(server, db))
}
