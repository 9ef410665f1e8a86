//! The queries, written once and compiled once per backend.
//!
//! `sqlite.rs` and `postgres.rs` each include this directory as a module after defining the
//! backend's types (`Db`, `Pool`, `Conn`, `Tx`) and its few dialect functions: how a write
//! transaction serialises ([`WriteLock`]) and how jobs are enqueued. The SQL text itself is
//! shared: `$N` placeholders, `ON CONFLICT`, `RETURNING` and `CAST(.. AS BIGINT)` mean the
//! same on both, so a behaviour test that passes on one backend exercises the same statements
//! on the other.

pub mod accounting;
mod accrual;
pub mod affiliate;
mod api_keys;
pub mod balances;
mod bonus;
mod book_balances;
mod console;
mod deliveries;
mod duplicates;
mod events;
mod evidence;
mod idempotency;
mod ingest;
pub mod ledger;
mod metrics;
mod new_payouts;
mod operator;
mod payable;
pub mod payout_methods;
pub mod payout_runs;
pub mod payouts;
mod rail_pauses;
pub mod recon_daily;
pub mod reconcile;
mod retention;
mod review;
mod statements;
mod steps;
mod tax;
pub mod tax_holds;
pub mod templates;
pub mod tracking;

use std::sync::Arc;
use std::time::Duration;

pub(crate) use super::{
    COPY_SUPPORTED, Conn, Db, JOBS_DONE_BEFORE, JOBS_TABLE, PACKED_READS, Pool, RECON_PREPARE,
    RECORDS_LINKED_ON_STORE, RUN_PREPARE, Tx, copy_escape, copy_rows, hashes_by_id, hex_text,
    insert_recon_records, lock_payouts, push_fresh_tasks, push_tasks,
};
use crate::domain::cooling_off::Safeguards;
use crate::domain::ids::PayoutId;
use crate::domain::program::ProgramSet;
use crate::domain::tax::TaxRules;
pub(crate) use crate::storage::packed;
use crate::storage::queue::payout_task;
pub(crate) use crate::storage::{
    BATCH_ROWS, StoreError, StoreResult, WriteLock, from_millis, parse_code, parse_stored,
    to_millis,
};

/// One backend's handle: its pools and the programs it accrues by.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    /// Where write transactions ([`Store::begin_write`]) start: the same pool on PostgreSQL;
    /// on SQLite, which has one writer, a pool of one connection, so this process's writers
    /// queue for it in order instead of polling the file lock.
    writer: Pool,
    /// Where withdrawals queue for the group commit (SQLite; see `idempotency.rs`).
    group_commit: idempotency::GroupCommit,
    programs: Arc<ProgramSet>,
    safeguards: Safeguards,
    /// Which payouts wait for a tax form (`domain::tax::tax_flag`); off by default.
    tax_rules: Arc<TaxRules>,
}

impl Store {
    pub(crate) fn new(pool: Pool, writer: Pool, programs: Arc<ProgramSet>) -> Store {
        Store {
            pool,
            writer,
            group_commit: Default::default(),
            programs,
            safeguards: Safeguards::default(),
            tax_rules: Arc::default(),
        }
    }

    pub fn set_tax_rules(&mut self, rules: TaxRules) {
        self.tax_rules = Arc::new(rules);
    }

    pub fn tax_rules(&self) -> &TaxRules {
        &self.tax_rules
    }

    pub fn set_safeguards(&mut self, safeguards: Safeguards) {
        self.safeguards = safeguards;
    }

    pub fn safeguards(&self) -> Safeguards {
        self.safeguards
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Every pool this handle holds: the one for reads and the one writes begin on (the same
    /// pool on PostgreSQL).
    pub fn pools(&self) -> [&Pool; 2] {
        [&self.pool, &self.writer]
    }

    pub fn programs(&self) -> &ProgramSet {
        &self.programs
    }

    /// Starts a transaction that will write, serialised against the writers named by `lock`.
    pub async fn begin_write(&self, lock: WriteLock<'_>) -> StoreResult<Tx> {
        simulated_outage("a transaction's start")?;
        super::begin_write(&self.writer, lock).await
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}

/// Commits a transaction of the payout path. The crash points around it are where the
/// simulator kills a worker: before the commit (its writes roll back) and after it (they
/// stand, and nothing after them ran).
///
/// The database may also fail there under the simulator: busy or gone before the commit (the
/// transaction rolls back as it is dropped), or gone after it, the answer lost (the writes
/// stand, the caller hears an error): a caller can never tell which.
pub(crate) async fn commit(tx: Tx) -> StoreResult<()> {
    crate::clock::crash_point("before a commit").await;
    simulated_outage("a commit")?;
    tx.commit().await?;
    simulated_outage("a commit's answer")?;
    crate::clock::crash_point("after a commit").await;
    Ok(())
}

/// The database fault the simulator injects at `at`, as the driver reports it: a pool timing
/// out when busy, a refused or reset connection when gone. Always `Ok` in production.
fn simulated_outage(at: &'static str) -> StoreResult<()> {
    use crate::clock::DatabaseFault;
    use std::io::{Error, ErrorKind};
    let gone = |kind| Err(sqlx::Error::Io(Error::new(kind, "the database is unreachable")).into());
    match crate::clock::database_point(at) {
        None => Ok(()),
        // Once a commit was sent, only a lost connection keeps its answer from coming back.
        Some(_) if at == "a commit's answer" => gone(ErrorKind::ConnectionReset),
        Some(DatabaseFault::Busy) => Err(sqlx::Error::PoolTimedOut.into()),
        Some(DatabaseFault::Unreachable) => gone(ErrorKind::ConnectionRefused),
    }
}

/// The payouts that hold a job a worker will fetch: pending, or failed with attempts left
/// (apalis fetches both). A job taken by a worker (queued or running) is not counted: if the
/// worker died, the job waits for apalis's orphan rescue, and the payout's lapsed lease and
/// overdue step already say nobody is on it.
pub(crate) async fn runnable_job_payouts(
    tx: &mut Tx,
) -> StoreResult<std::collections::HashSet<String>> {
    let sql = format!(
        "SELECT idempotency_key FROM {JOBS_TABLE} \
         WHERE job_type = $1 AND idempotency_key IS NOT NULL \
           AND (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))"
    );
    let keys: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(crate::storage::queue::PAYOUT_QUEUE)
        .fetch_all(&mut **tx)
        .await?;
    Ok(keys
        .iter()
        .filter_map(|k| crate::storage::queue::payout_of_key(k))
        .map(str::to_owned)
        .collect())
}

/// Enqueues a job to advance `payout` after `delay`. `dedupe` names the reason; the queue
/// drops a second job with the same name, so a step never schedules its follow-up twice.
pub(crate) async fn enqueue_payout_job(
    tx: &mut Tx,
    payout: &PayoutId,
    delay: Duration,
    dedupe: &str,
) -> StoreResult<()> {
    // The payout's finished jobs go as its next one comes: a paid payout watched for a
    // month keeps a job row or two, not one per poll. Their keys were one-off (fenced or
    // timed), and a job that ran twice finds the payout claimed or not due.
    let sql = format!(
        "DELETE FROM {JOBS_TABLE} WHERE job_type = $1 \
           AND idempotency_key >= $2 AND idempotency_key < $3 \
           AND (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts))"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(crate::storage::queue::PAYOUT_QUEUE)
        .bind(format!("payout:{payout}:"))
        .bind(format!("payout:{payout};"))
        .execute(&mut **tx)
        .await?;
    super::push_tasks(tx, vec![payout_task(payout, delay, dedupe)?]).await
}
