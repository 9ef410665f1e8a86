//! Pruning: the rows kept only for a while are deleted after their age, in batches of
//! `BATCH` (each its own short transaction, so no prune holds SQLite's one write lock for
//! long or loads rows into memory). The tables kept for good (ledger, payouts, payout
//! events, attempts, operator actions, reconciliation runs, exceptions and resolutions) are
//! named nowhere here.

use chrono::{DateTime, Utc};

use super::{JOBS_DONE_BEFORE, JOBS_TABLE, Store, StoreResult, to_millis};
use crate::domain::retention::{Kind, Retention};
use crate::storage::retention_views::{PruneReport, TablePruned};

/// Rows deleted per statement.
const BATCH: i64 = 5_000;

/// A table's rows past their age: how to count them and how to delete a batch of them.
/// `$1` is the cutoff (milliseconds, or seconds for the queue's own table), `$2` the batch.
struct Step {
    kind: Kind,
    table: &'static str,
    /// The predicate selecting the rows that go.
    old: String,
    /// The statement deleting up to `$2` of them.
    delete: String,
    /// The cutoff in seconds rather than milliseconds.
    seconds: bool,
}

fn steps() -> Vec<Step> {
    let finished =
        "(status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts))";
    let jobs_old = format!("{finished} AND {JOBS_DONE_BEFORE}");
    let webhooks_old = "received_at < $1".to_string();
    let idem_old = "COALESCE(completed_at, started_at) < $1".to_string();
    // An event goes with its log once nothing is pending for it.
    let events_old = "created_at < $1 AND NOT EXISTS (SELECT 1 FROM event_deliveries d \
                      WHERE d.event_seq = outgoing_events.seq AND d.state = 'pending')"
        .to_string();
    let records_old = "run_id IN (SELECT id FROM recon_runs WHERE started_at < $1 \
                         AND status <> 'running') \
                       AND NOT EXISTS (SELECT 1 FROM recon_exceptions x WHERE x.run_id = recon_records.run_id \
                         AND x.record_seq = recon_records.seq)"
        .to_string();
    vec![
        Step::by_key(Kind::Jobs, JOBS_TABLE, "id", jobs_old, true),
        Step::by_key(
            Kind::Webhooks,
            "webhook_deliveries",
            "provider, event_id",
            webhooks_old,
            false,
        ),
        Step::by_key(
            Kind::Idempotency,
            "api_idempotency",
            "scope, idempotency_key",
            idem_old,
            false,
        ),
        Step::by_key(
            Kind::ReconRecords,
            "recon_records",
            "run_id, seq",
            records_old,
            false,
        ),
        // Events go with their deliveries and tries: `Store::prune_events`.
        Step {
            kind: Kind::Events,
            table: "outgoing_events",
            delete: String::new(),
            old: events_old,
            seconds: false,
        },
    ]
}

impl Step {
    /// A table whose old rows are deleted by their key, `$2` at a time.
    fn by_key(kind: Kind, table: &'static str, key: &str, old: String, seconds: bool) -> Step {
        let delete = format!(
            "DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {old} LIMIT $2)"
        );
        Step {
            kind,
            table,
            old,
            delete,
            seconds,
        }
    }
}

impl Store {
    /// Deletes (or with `dry_run` counts) every row past its age at `now`; returns each
    /// table's rows before and after.
    pub async fn prune(
        &self,
        retention: &Retention,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> StoreResult<PruneReport> {
        let mut tables = Vec::new();
        for step in steps() {
            let cutoff = retention.cutoff(step.kind, now);
            let cutoff = if step.seconds {
                cutoff.timestamp()
            } else {
                to_millis(cutoff)
            };
            let before = self.count(step.table, "1 = 1", None).await?;
            let deleted = if dry_run {
                self.count(step.table, &step.old, Some(cutoff)).await?
            } else if step.kind == Kind::Events {
                self.prune_events(cutoff).await?
            } else {
                self.delete_in_batches(&step.delete, cutoff).await?
            };
            if step.kind == Kind::ReconRecords && !dry_run {
                self.mark_records_pruned(cutoff, now).await?;
            }
            tables.push(TablePruned {
                table: step.table,
                what: step.kind.to_string(),
                days: retention.days(step.kind),
                before,
                deleted,
                after: if dry_run {
                    before
                } else {
                    self.count(step.table, "1 = 1", None).await?
                },
            });
        }
        Ok(PruneReport { dry_run, tables })
    }

    async fn count(&self, table: &str, predicate: &str, cutoff: Option<i64>) -> StoreResult<i64> {
        let sql = format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {table} WHERE {predicate}");
        let query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql));
        let query = match cutoff {
            Some(c) => query.bind(c),
            None => query,
        };
        Ok(query.fetch_one(&self.pool).await?)
    }

    async fn delete_in_batches(&self, delete: &str, cutoff: i64) -> StoreResult<i64> {
        let mut deleted = 0;
        loop {
            let gone = sqlx::query(sqlx::AssertSqlSafe(delete.to_string()))
                .bind(cutoff)
                .bind(BATCH)
                .execute(&self.pool)
                .await?
                .rows_affected();
            deleted += i64::try_from(gone).unwrap_or(i64::MAX);
            if gone < BATCH.unsigned_abs() {
                return Ok(deleted);
            }
        }
    }

    /// Events with nothing pending, oldest first, each batch with its deliveries and tries
    /// in one transaction.
    async fn prune_events(&self, cutoff: i64) -> StoreResult<i64> {
        let mut deleted = 0;
        loop {
            let mut tx = self.pool.begin().await?;
            let seqs: Vec<i64> = sqlx::query_scalar(
                "SELECT seq FROM outgoing_events WHERE created_at < $1 \
                 AND NOT EXISTS (SELECT 1 FROM event_deliveries d \
                   WHERE d.event_seq = outgoing_events.seq AND d.state = 'pending') \
                 ORDER BY seq LIMIT $2",
            )
            .bind(cutoff)
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
            let (Some(first), Some(last)) = (seqs.first(), seqs.last()) else {
                return Ok(deleted);
            };
            // The batch's events that nothing is pending for (a replay may have come since).
            let settled = "SELECT seq FROM outgoing_events WHERE seq >= $1 AND seq <= $2 \
                AND created_at < $3 AND NOT EXISTS (SELECT 1 FROM event_deliveries d \
                WHERE d.event_seq = outgoing_events.seq AND d.state = 'pending')";
            for sql in [
                format!(
                    "DELETE FROM event_delivery_attempts WHERE delivery_id IN \
                     (SELECT id FROM event_deliveries WHERE event_seq IN ({settled}))"
                ),
                format!("DELETE FROM event_deliveries WHERE event_seq IN ({settled})"),
                "DELETE FROM outgoing_events WHERE seq >= $1 AND seq <= $2 AND created_at < $3 \
                   AND NOT EXISTS (SELECT 1 FROM event_deliveries d WHERE d.event_seq = outgoing_events.seq)"
                    .to_string(),
            ] {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(first)
                    .bind(last)
                    .bind(cutoff)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            deleted += i64::try_from(seqs.len()).unwrap_or(i64::MAX);
            if i64::try_from(seqs.len()).unwrap_or(0) < BATCH {
                return Ok(deleted);
            }
        }
    }

    async fn mark_records_pruned(&self, cutoff: i64, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "UPDATE recon_runs SET records_pruned_at = $2 \
             WHERE started_at < $1 AND status <> 'running' AND records_pruned_at IS NULL",
        )
        .bind(cutoff)
        .bind(to_millis(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
