//! Reading runs and their exceptions back, resolving exceptions, and backfilling the
//! references older records were stored without.

use sqlx::Row;

use super::super::{
    Store, StoreError, StoreResult, from_millis, parse_code, parse_stored, to_millis,
};
use super::Summary;
use crate::domain::ids::{PayoutId, Rail};
use crate::domain::money::Money;
use crate::domain::reconcile::{Exception, ExceptionId, ExceptionKind, Resolution, Severity, Side};
use crate::storage::reconcile_views::{ExceptionCounts, ReconRun, Trigger};

impl Store {
    pub async fn recon_run(&self, run_id: &str) -> StoreResult<Option<ReconRun>> {
        let rows = self.recon_run_rows(Some(run_id), 1).await?;
        Ok(rows.into_iter().next())
    }

    /// The latest runs, newest first.
    pub async fn recon_runs(&self, limit: i64) -> StoreResult<Vec<ReconRun>> {
        self.recon_run_rows(None, limit).await
    }

    async fn recon_run_rows(&self, id: Option<&str>, limit: i64) -> StoreResult<Vec<ReconRun>> {
        let rows = sqlx::query(
            "SELECT id, status, trigger, period_from, period_to, rails, source, \
               amount_tolerance_minor, date_tolerance_hours, started_at, finished_at, error, \
               summary, \
               (SELECT COUNT(*) FROM recon_exceptions e \
                 WHERE e.run_id = recon_runs.id AND NOT EXISTS ( \
                   SELECT 1 FROM recon_resolutions s WHERE s.exception_id = e.id)) AS open, \
               (SELECT COUNT(*) FROM recon_exceptions e \
                 WHERE e.run_id = recon_runs.id AND e.severity = 'critical' AND NOT EXISTS ( \
                   SELECT 1 FROM recon_resolutions s WHERE s.exception_id = e.id)) AS critical \
             FROM recon_runs WHERE ($1 IS NULL OR id = $1) \
             ORDER BY started_at DESC, id DESC LIMIT $2",
        )
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let rails: String = row.try_get("rails")?;
                let summary: Option<String> = row.try_get("summary")?;
                let summary: Summary = match summary {
                    Some(s) => serde_json::from_str(&s)
                        .map_err(|e| StoreError::Corrupt(format!("run summary: {e}")))?,
                    None => Summary::default(),
                };
                let open = row.try_get::<i64, _>("open")? as u64;
                let trigger: String = row.try_get("trigger")?;
                Ok(ReconRun {
                    id: row.try_get("id")?,
                    status: row.try_get("status")?,
                    trigger: parse_code("run trigger", &trigger, Trigger::from_code)?,
                    period_from: parse_stored("period", &row.try_get::<String, _>("period_from")?)?,
                    period_to: parse_stored("period", &row.try_get::<String, _>("period_to")?)?,
                    rails: rails
                        .split(',')
                        .filter(|r| !r.is_empty())
                        .map(|r| parse_stored("rail", r))
                        .collect::<StoreResult<_>>()?,
                    source: row.try_get("source")?,
                    amount_tolerance_minor: row.try_get("amount_tolerance_minor")?,
                    date_tolerance_hours: row.try_get("date_tolerance_hours")?,
                    started_at: from_millis(row.try_get("started_at")?),
                    finished_at: row
                        .try_get::<Option<i64>, _>("finished_at")?
                        .map(from_millis),
                    error: row.try_get("error")?,
                    totals: summary.totals,
                    exceptions: ExceptionCounts {
                        total: summary.total,
                        open,
                        open_critical: row.try_get::<i64, _>("critical")? as u64,
                        resolved: summary.total.saturating_sub(open),
                        by_kind: summary.by_kind,
                    },
                })
            })
            .collect()
    }

    /// A run's exceptions, critical first, with both sides and any resolution.
    /// `open_only` leaves out the resolved ones.
    pub async fn recon_exceptions(
        &self,
        run_id: &str,
        open_only: bool,
    ) -> StoreResult<Vec<Exception>> {
        let rows = sqlx::query(
            "SELECT e.id, e.kind, e.severity, e.rail, e.payout_id, \
               COALESCE(r.record_id, e.record_id) AS record_id, e.records, \
               CAST(p.units AS BIGINT) AS p_units, p.currency AS p_currency, \
               p.destination AS p_payee, p.status AS p_status, p.created_at AS p_at, \
               CAST(r.units AS BIGINT) AS r_units, r.currency AS r_currency, \
               r.payee AS r_payee, r.provider_status AS r_status, r.created_at AS r_at, \
               s.note, s.resolved_by, s.resolved_at \
             FROM recon_exceptions e \
             LEFT JOIN recon_records r ON r.run_id = e.run_id AND r.seq = e.record_seq \
             LEFT JOIN payouts p ON p.id = e.payout_id \
             LEFT JOIN recon_resolutions s ON s.exception_id = e.id \
             WHERE e.run_id = $1 AND ($2 = 0 OR s.exception_id IS NULL) \
             ORDER BY e.severity, e.kind, e.id",
        )
        .bind(run_id)
        .bind(i64::from(open_only))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let side = |units: &str, currency: &str, payee: &str, status: &str, at: &str| {
                    let units: Option<i64> = row.try_get(units)?;
                    let currency: Option<String> = row.try_get(currency)?;
                    Ok::<_, StoreError>(match (units, currency) {
                        (Some(u), Some(c)) => Some(Side {
                            amount: Money::from_units(u, parse_stored("currency", &c)?),
                            payee: row.try_get(payee)?,
                            status: row.try_get(status)?,
                            at: from_millis(row.try_get(at)?),
                        }),
                        _ => None,
                    })
                };
                let kind: String = row.try_get("kind")?;
                let severity: String = row.try_get("severity")?;
                let resolution = match row.try_get::<Option<String>, _>("note")? {
                    Some(note) => Some(Resolution {
                        note,
                        by: row.try_get("resolved_by")?,
                        at: from_millis(row.try_get("resolved_at")?),
                    }),
                    None => None,
                };
                Ok(Exception {
                    id: ExceptionId::parse(&row.try_get::<String, _>("id")?)
                        .map_err(StoreError::Corrupt)?,
                    kind: parse_code("exception kind", &kind, ExceptionKind::from_code)?,
                    severity: parse_code("severity", &severity, Severity::from_code)?,
                    rail: parse_stored("rail", &row.try_get::<String, _>("rail")?)?,
                    payout_id: row.try_get("payout_id")?,
                    record_id: row.try_get("record_id")?,
                    records: match row.try_get::<Option<String>, _>("records")? {
                        Some(json) => serde_json::from_str(&json)
                            .map_err(|e| StoreError::Corrupt(format!("exception records: {e}")))?,
                        None => Vec::new(),
                    },
                    ours: side("p_units", "p_currency", "p_payee", "p_status", "p_at")?,
                    theirs: side("r_units", "r_currency", "r_payee", "r_status", "r_at")?,
                    resolution,
                })
            })
            .collect()
    }

    /// Resolves an exception for good: this run and every later run that finds the same
    /// disagreement show it resolved. `None` when no run ever found that exception.
    pub async fn recon_resolve(
        &self,
        id: &ExceptionId,
        note: &str,
        by: &str,
    ) -> StoreResult<Option<Resolution>> {
        let mut tx = self.pool.begin().await?;
        let known: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(1 AS BIGINT) FROM recon_exceptions WHERE id = $1 LIMIT 1",
        )
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if known.is_none() {
            return Ok(None);
        }
        let now = crate::clock::now();
        sqlx::query(
            "INSERT INTO recon_resolutions (exception_id, note, resolved_by, resolved_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (exception_id) DO UPDATE SET note = excluded.note, \
               resolved_by = excluded.resolved_by, resolved_at = excluded.resolved_at",
        )
        .bind(id.as_str())
        .bind(note)
        .bind(by)
        .bind(to_millis(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(Resolution {
            note: note.to_string(),
            by: by.to_string(),
            at: from_millis(to_millis(now)),
        }))
    }

    /// Fills the attempt tokens of attempts made before the column existed; the caller
    /// says how each rail derives its token.
    pub async fn recon_backfill_references(
        &self,
        rail_reference: fn(Rail, &PayoutId, &str) -> String,
    ) -> StoreResult<u64> {
        let mut filled = 0u64;
        loop {
            let rows: Vec<(String, i64, String, String)> = sqlx::query_as(
                "SELECT a.payout_id, a.attempt_no, a.provider_key, p.rail \
                 FROM payout_attempts a JOIN payouts p ON p.id = a.payout_id \
                 WHERE a.rail_ref IS NULL LIMIT 1000",
            )
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                return Ok(filled);
            }
            let mut tx = self.pool.begin().await?;
            for (payout, attempt, key, rail) in &rows {
                let payout_id = parse_stored("payout id", payout)?;
                let reference = rail_reference(parse_stored("rail", rail)?, &payout_id, key);
                sqlx::query(
                    "UPDATE payout_attempts SET rail_ref = $3 \
                     WHERE payout_id = $1 AND attempt_no = $2",
                )
                .bind(payout)
                .bind(attempt)
                .bind(reference)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            filled += rows.len() as u64;
        }
    }
}
