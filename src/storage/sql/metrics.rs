//! The counts behind `/v1/metrics`: a handful of grouped queries, each one pass over a table.

use sqlx::Row;

use super::{JOBS_TABLE, Store, StoreResult};
use crate::storage::metrics_views::{AttemptLatency, LATENCY_BUCKETS, MetricsSnapshot};

/// Payouts waiting for a person, per rail and why, with the oldest wait: attempts used up or
/// records disagreeing (`needs_operator`), a review rule or a missing tax form (`held`), an
/// action waiting for a second operator (`awaiting_approval`).
const NEEDS_HUMAN: &str = "SELECT rail, why, CAST(SUM(n) AS BIGINT), CAST(($1 - MIN(since)) / 1000 AS BIGINT) FROM ( \
       SELECT rail, 'needs_operator' AS why, COUNT(*) AS n, MIN(updated_at) AS since \
       FROM payouts WHERE status = 'needs_operator' GROUP BY rail \
       UNION ALL \
       SELECT rail, 'held', COUNT(*), MIN(created_at) \
       FROM payouts WHERE status = 'held' GROUP BY rail \
       UNION ALL \
       SELECT p.rail, 'awaiting_approval', COUNT(*), MIN(a.requested_at) \
       FROM operator_actions a JOIN payouts p ON p.id = a.payout_id \
       WHERE a.state = 'pending_approval' GROUP BY p.rail) w \
     GROUP BY rail, why ORDER BY rail, why";

impl Store {
    pub async fn metrics_snapshot(&self) -> StoreResult<MetricsSnapshot> {
        let mut conn = self.pool.acquire().await?;
        let payouts = sqlx::query_as(
            "SELECT rail, status, CAST(COUNT(*) AS BIGINT) FROM payouts \
             GROUP BY rail, status ORDER BY rail, status",
        )
        .fetch_all(&mut *conn)
        .await?;
        let attempts = sqlx::query_as(
            "SELECT p.rail, a.outcome, CAST(COUNT(*) AS BIGINT) \
             FROM payout_attempts a JOIN payouts p ON p.id = a.payout_id \
             GROUP BY p.rail, a.outcome ORDER BY p.rail, a.outcome",
        )
        .fetch_all(&mut *conn)
        .await?;
        let retries = sqlx::query_as(
            "SELECT p.rail, CAST(COUNT(*) AS BIGINT) \
             FROM payout_attempts a JOIN payouts p ON p.id = a.payout_id \
             WHERE a.attempt_no > 1 GROUP BY p.rail ORDER BY p.rail",
        )
        .fetch_all(&mut *conn)
        .await?;

        // One SUM(CASE ..) per bucket: cumulative counts in one pass.
        let buckets: Vec<String> = LATENCY_BUCKETS
            .iter()
            .map(|le| {
                let ms = (le * 1000.0).round() as i64;
                format!(
                    "CAST(SUM(CASE WHEN a.finished_at - a.started_at <= {ms} THEN 1 ELSE 0 END) AS BIGINT)"
                )
            })
            .collect();
        let sql = format!(
            "SELECT p.rail, {}, CAST(COUNT(*) AS BIGINT), \
               CAST(SUM(a.finished_at - a.started_at) AS BIGINT) \
             FROM payout_attempts a JOIN payouts p ON p.id = a.payout_id \
             WHERE a.finished_at IS NOT NULL GROUP BY p.rail ORDER BY p.rail",
            buckets.join(", ")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await?;
        let n = LATENCY_BUCKETS.len();
        let mut latency = Vec::with_capacity(rows.len());
        for row in rows {
            let mut buckets = Vec::with_capacity(n);
            for i in 0..n {
                buckets.push(row.try_get::<i64, _>(i + 1)?);
            }
            let sum_ms: i64 = row.try_get(n + 2)?;
            latency.push(AttemptLatency {
                rail: row.try_get(0)?,
                buckets,
                count: row.try_get(n + 1)?,
                sum_seconds: sum_ms as f64 / 1000.0,
            });
        }

        let queue = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT status, CAST(COUNT(*) AS BIGINT) FROM {JOBS_TABLE} GROUP BY status ORDER BY status"
        )))
        .fetch_all(&mut *conn)
        .await?;
        let webhook_deliveries = sqlx::query_as(
            "SELECT provider, outcome, CAST(COUNT(*) AS BIGINT) FROM webhook_deliveries \
             GROUP BY provider, outcome ORDER BY provider, outcome",
        )
        .fetch_all(&mut *conn)
        .await?;
        let needs_human = sqlx::query_as(NEEDS_HUMAN)
            .bind(crate::storage::to_millis(crate::clock::now()))
            .fetch_all(&mut *conn)
            .await?;
        let event_deliveries = sqlx::query_as(
            "SELECT state, CAST(COUNT(*) AS BIGINT) FROM event_deliveries \
             GROUP BY state ORDER BY state",
        )
        .fetch_all(&mut *conn)
        .await?;
        Ok(MetricsSnapshot {
            payouts,
            attempts,
            retries,
            latency,
            queue,
            webhook_deliveries,
            needs_human,
            event_deliveries,
        })
    }
}
