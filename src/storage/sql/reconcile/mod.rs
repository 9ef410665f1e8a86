//! Reconciliation, set-based: provider records are streamed into `recon_records` in batches,
//! then a handful of statements link them to payouts (by hint, by reference, then by amount,
//! payee and date) and one query classifies every disagreement. Nothing here holds more than
//! one batch of records in memory, whatever the period's length.

use std::collections::BTreeMap;

use chrono::Utc;
use sqlx::Row;

use super::{Store, StoreError, StoreResult, from_millis, parse_code, parse_stored, to_millis};
use crate::domain::ids::Rail;
use crate::domain::money::{Currency, Money};
use crate::domain::payout::PayoutStatus;
use crate::domain::reconcile::{
    Exception, ExceptionId, ExceptionKind, ProviderRecord, Resolution, Severity, Side, Tolerances,
    money_left, status_agrees, status_severity,
};
use crate::domain::tracking::RailState;
use crate::storage::reconcile::{ExceptionCounts, NewRun, RailTotals, ReconRun, Trigger};
use crate::storage::sums::{join, wide_sum};

/// One provider record in its stored form.
pub(crate) struct RecordRow {
    pub seq: i64,
    pub rail: &'static str,
    pub kind: &'static str,
    pub record_id: String,
    pub reference: Option<String>,
    pub payout_hint: Option<String>,
    pub group_id: Option<String>,
    /// Lower-cased, as payees are compared.
    pub payee: String,
    pub currency: &'static str,
    pub units: i64,
    pub state: &'static str,
    pub provider_status: String,
    pub created_at: i64,
}

impl RecordRow {
    fn new(seq: i64, r: &ProviderRecord) -> StoreResult<Self> {
        Ok(RecordRow {
            seq,
            rail: r.rail.as_str(),
            kind: r.kind.code(),
            record_id: r.record_id.clone(),
            reference: r.reference.clone(),
            payout_hint: r.payout_hint.clone(),
            group_id: r.group_id.clone(),
            payee: r.payee.trim().to_lowercase(),
            currency: r.amount.currency().code(),
            units: r.amount.to_units()?,
            state: r.state.code(),
            provider_status: r.provider_status.clone(),
            created_at: to_millis(r.created_at),
        })
    }
}

/// SQL literal tables built from the domain's rules, so the set-based statements apply the
/// same rules the unit tests pin down. Only our own enum codes and integers go in them.
fn rule_tables(tolerances: &Tolerances) -> String {
    let tol: Vec<String> = Currency::all()
        .map(|c| {
            // A tolerance that does not fit in units is no tolerance a person meant.
            let units = tolerances.amount(c).to_units().unwrap_or(i64::MAX);
            format!("('{}', {units})", c.code())
        })
        .collect();
    let mut rules = Vec::new();
    for ours in PayoutStatus::ALL {
        for theirs in RailState::ALL {
            if !status_agrees(ours, theirs) {
                rules.push(format!(
                    "('{}', '{}', '{}')",
                    ours.code(),
                    theirs.code(),
                    status_severity(ours, theirs).code()
                ));
            }
        }
    }
    format!(
        "tol (currency, units) AS (VALUES {}), \
         rules (ours, theirs, severity) AS (VALUES {})",
        tol.join(", "),
        rules.join(", ")
    )
}

/// `'paid', 'in_flight', ...`: the provider states in which money is with the payee.
fn money_left_states() -> String {
    RailState::ALL
        .into_iter()
        .filter(|s| money_left(*s))
        .map(|s| format!("'{}'", s.code()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rail_list(rails: &[Rail]) -> String {
    rails
        .iter()
        .map(|r| format!("'{}'", r.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What classification found, before ids are derived.
struct Found {
    kind: String,
    severity: String,
    rail: String,
    payout_id: Option<String>,
    seq: Option<i64>,
    record_id: Option<String>,
}

impl Store {
    pub async fn recon_begin(&self, run: &NewRun) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO recon_runs (id, started_at, period_from, period_to, rails, source, \
               trigger, status, amount_tolerance_minor, date_tolerance_hours) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $9)",
        )
        .bind(&run.id)
        .bind(to_millis(Utc::now()))
        .bind(run.period.from.to_string())
        .bind(run.period.to.to_string())
        .bind(
            run.rails
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(","),
        )
        .bind(&run.source)
        .bind(run.trigger.code())
        .bind(run.tolerances.amount_minor)
        .bind(run.tolerances.date.num_hours())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores one batch of provider records; `first_seq` numbers them within the run.
    pub async fn recon_add_records(
        &self,
        run_id: &str,
        first_seq: i64,
        records: &[ProviderRecord],
    ) -> StoreResult<()> {
        let rows = records
            .iter()
            .enumerate()
            .map(|(i, r)| RecordRow::new(first_seq + i as i64, r))
            .collect::<StoreResult<Vec<_>>>()?;
        let mut conn = self.pool.acquire().await?;
        super::insert_recon_records(&mut conn, run_id, &rows).await
    }

    /// Links records to payouts and classifies every disagreement; marks the run completed.
    pub async fn recon_match(&self, run: &NewRun) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for statement in super::RECON_PREPARE {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        let id = run.id.as_str();
        let tables = rule_tables(&run.tolerances);
        let money = money_left_states();
        // 1. Our payout id echoed item by item (PayPal sender_item_id, Stripe metadata) is the
        //    most specific link: one PayPal batch may carry several payouts.
        sqlx::query(
            "UPDATE recon_records SET payout_id = p.id, matched_by = 'payout_id' \
             FROM payouts p \
             WHERE recon_records.run_id = $1 AND recon_records.payout_hint = p.id \
               AND p.rail = recon_records.rail",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        // 2. Our attempt token (transfer_group, sender_batch_id, customerTransactionId, key).
        sqlx::query(
            "UPDATE recon_records SET payout_id = a.payout_id, matched_by = 'reference' \
             FROM payout_attempts a JOIN payouts p ON p.id = a.payout_id \
             WHERE recon_records.run_id = $1 AND recon_records.payout_id IS NULL \
               AND a.rail_ref = recon_records.reference AND p.rail = recon_records.rail",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        // 3. No reference: same rail, payee and currency, amount and date within tolerance,
        //    each record and each payout used once, nearest in time first.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH {tables}, cand AS ( \
               SELECT r.seq AS seq, p.id AS payout_id, \
                 ROW_NUMBER() OVER (PARTITION BY r.seq \
                   ORDER BY ABS(r.created_at - p.created_at), p.id) AS rn_r, \
                 ROW_NUMBER() OVER (PARTITION BY p.id \
                   ORDER BY ABS(r.created_at - p.created_at), r.seq) AS rn_p \
               FROM recon_records r \
               JOIN tol t ON t.currency = r.currency \
               JOIN payouts p ON p.rail = r.rail AND lower(p.destination) = lower(r.payee) \
                 AND p.currency = r.currency \
               WHERE r.run_id = $1 AND r.payout_id IS NULL AND r.kind <> 'bank_payout' \
                 AND ABS(CAST(p.units AS BIGINT) - CAST(r.units AS BIGINT)) <= t.units \
                 AND ABS(r.created_at - p.created_at) <= $2 \
                 AND NOT EXISTS (SELECT 1 FROM recon_records o \
                                  WHERE o.run_id = $1 AND o.payout_id = p.id)) \
             UPDATE recon_records SET payout_id = cand.payout_id, matched_by = 'amount_date' \
             FROM cand \
             WHERE recon_records.run_id = $1 AND recon_records.seq = cand.seq \
               AND cand.rn_r = 1 AND cand.rn_p = 1"
        )))
        .bind(id)
        .bind(run.tolerances.date.num_milliseconds())
        .execute(&mut *tx)
        .await?;
        // 4. Classify. One row per disagreement; ids are derived below. Objects a webhook
        //    showed naming a payout without being its payment (payout_duplicates) are
        //    duplicates too, whether or not this run's records still carry money for them.
        let rails = rail_list(&run.rails);
        let found: Vec<Found> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH {tables}, linked AS ( \
               SELECT r.seq, r.rail, r.record_id, r.payout_id, r.state, r.payee, r.currency, \
                 CAST(r.units AS BIGINT) AS units, \
                 SUM(CASE WHEN r.state IN ({money}) THEN 1 ELSE 0 END) \
                   OVER (PARTITION BY r.payout_id) AS n_money, \
                 ROW_NUMBER() OVER (PARTITION BY r.payout_id ORDER BY \
                   CASE WHEN r.state IN ({money}) THEN 0 ELSE 1 END, \
                   r.created_at DESC, r.seq DESC) AS rn \
               FROM recon_records r \
               WHERE r.run_id = $1 AND r.payout_id IS NOT NULL AND r.kind <> 'bank_payout'), \
             pairs AS ( \
               SELECT l.*, p.currency AS p_currency, CAST(p.units AS BIGINT) AS p_units, \
                 lower(p.destination) AS p_payee, p.status AS p_status \
               FROM linked l JOIN payouts p ON p.id = l.payout_id \
               WHERE l.rn = 1 AND l.n_money <= 1) \
             SELECT 'duplicate_at_provider' AS kind, 'critical' AS severity, rail, payout_id, \
               seq, record_id FROM linked WHERE n_money > 1 AND state IN ({money}) \
             UNION ALL \
             SELECT 'currency_mismatch', 'high', rail, payout_id, seq, record_id \
               FROM pairs WHERE currency <> p_currency \
             UNION ALL \
             SELECT 'amount_mismatch', 'high', x.rail, x.payout_id, x.seq, x.record_id \
               FROM pairs x JOIN tol t ON t.currency = x.p_currency \
               WHERE x.currency = x.p_currency AND ABS(x.units - x.p_units) > t.units \
             UNION ALL \
             SELECT 'payee_mismatch', 'high', rail, payout_id, seq, record_id \
               FROM pairs WHERE payee <> p_payee \
             UNION ALL \
             SELECT 'status_mismatch', s.severity, x.rail, x.payout_id, x.seq, x.record_id \
               FROM pairs x JOIN rules s ON s.ours = x.p_status AND s.theirs = x.state \
             UNION ALL \
             SELECT 'missing_at_provider', 'high', p.rail, p.id, CAST(NULL AS BIGINT), \
               CAST(NULL AS TEXT) \
               FROM payouts p \
               WHERE p.rail IN ({rails}) AND p.status IN ('processing', 'paid', 'returned') \
                 AND p.created_at >= $2 AND p.created_at < $3 \
                 AND NOT EXISTS (SELECT 1 FROM recon_records r \
                                  WHERE r.run_id = $1 AND r.payout_id = p.id) \
             UNION ALL \
             SELECT 'duplicate_at_provider', 'critical', d.rail, d.payout_id, \
               CAST(NULL AS BIGINT), d.object_ref FROM payout_duplicates d \
               WHERE d.rail IN ({rails}) AND d.first_seen_at >= $2 AND d.first_seen_at < $3 \
             UNION ALL \
             SELECT 'unknown_at_provider', 'critical', r.rail, CAST(NULL AS TEXT), r.seq, \
               r.record_id \
               FROM recon_records r \
               WHERE r.run_id = $1 AND r.payout_id IS NULL AND r.kind <> 'bank_payout' \
                 AND r.state IN ({money}) AND r.created_at >= $2 AND r.created_at < $3"
        )))
        .bind(id)
        .bind(to_millis(run.period.start()))
        .bind(to_millis(run.period.end()))
        .try_map(|row: <super::Db as sqlx::Database>::Row| {
            Ok(Found {
                kind: row.try_get(0)?,
                severity: row.try_get(1)?,
                rail: row.try_get(2)?,
                payout_id: row.try_get(3)?,
                seq: row.try_get(4)?,
                record_id: row.try_get(5)?,
            })
        })
        .fetch_all(&mut *tx)
        .await?;
        let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
        for chunk in found.chunks(super::BATCH_ROWS) {
            let mut insert = sqlx::QueryBuilder::<super::Db>::new(
                "INSERT INTO recon_exceptions (run_id, id, kind, severity, rail, payout_id, \
                 record_seq, record_id) ",
            );
            insert.push_values(chunk, |mut b, f| {
                let kind = ExceptionKind::from_code(&f.kind);
                let rail = f.rail.parse::<Rail>().ok();
                let exception_id = match (kind, rail) {
                    (Some(k), Some(r)) => {
                        ExceptionId::derive(k, r, f.payout_id.as_deref(), f.record_id.as_deref())
                            .to_string()
                    }
                    // Our own SQL produced the codes; an unknown one is kept visible.
                    _ => format!("rx_invalid_{}_{}", f.kind, f.seq.unwrap_or(-1)),
                };
                *by_kind.entry(f.kind.clone()).or_default() += 1;
                b.push_bind(id)
                    .push_bind(exception_id)
                    .push_bind(&f.kind)
                    .push_bind(&f.severity)
                    .push_bind(&f.rail)
                    .push_bind(&f.payout_id)
                    .push_bind(f.seq)
                    .push_bind(&f.record_id);
            });
            // Two rules can describe one pair twice only through a bug; keep the first.
            insert.push(" ON CONFLICT (run_id, id) DO NOTHING");
            insert.build().execute(&mut *tx).await?;
        }
        // 5. Totals per rail and currency.
        // Money totals summed exactly (see `storage::sums`): a period's can pass the cap.
        let record_totals = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT r.rail, r.currency, COUNT(*), {}, \
               SUM(CASE WHEN r.payout_id IS NOT NULL THEN 1 ELSE 0 END), \
               SUM(CASE WHEN r.payout_id IS NOT NULL AND x.record_seq IS NULL \
                   THEN 1 ELSE 0 END) \
             FROM recon_records r \
             LEFT JOIN (SELECT DISTINCT record_seq FROM recon_exceptions \
                         WHERE run_id = $1 AND record_seq IS NOT NULL) x \
               ON x.record_seq = r.seq \
             WHERE r.run_id = $1 GROUP BY r.rail, r.currency",
            wide_sum("r.units")
        )))
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let payout_totals = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT p.rail, p.currency, COUNT(*), {} \
             FROM payouts p \
             WHERE p.rail IN ({rails}) AND p.status IN ('processing', 'paid', 'returned') \
               AND p.created_at >= $1 AND p.created_at < $2 \
             GROUP BY p.rail, p.currency",
            wide_sum("p.units")
        )))
        .bind(to_millis(run.period.start()))
        .bind(to_millis(run.period.end()))
        .fetch_all(&mut *tx)
        .await?;
        let mut totals: BTreeMap<(String, String), RailTotalsAcc> = BTreeMap::new();
        for row in record_totals {
            let key = (row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?);
            let acc = totals.entry(key).or_default();
            acc.records = row.try_get::<i64, _>(2)?;
            acc.record_units = join(row.try_get(3)?, row.try_get(4)?);
            acc.linked = row.try_get::<Option<i64>, _>(5)?.unwrap_or(0);
            acc.matched = row.try_get::<Option<i64>, _>(6)?.unwrap_or(0);
        }
        for row in payout_totals {
            let key = (row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?);
            let acc = totals.entry(key).or_default();
            acc.payouts = row.try_get::<i64, _>(2)?;
            acc.payout_units = join(row.try_get(3)?, row.try_get(4)?);
        }
        let totals = totals
            .into_iter()
            .map(|((rail, currency), acc)| acc.finish(&rail, &currency))
            .collect::<StoreResult<Vec<_>>>()?;
        let summary = Summary {
            totals,
            by_kind,
            total: found.len() as u64,
        };
        let summary = serde_json::to_string(&summary)
            .map_err(|e| StoreError::Corrupt(format!("run summary: {e}")))?;
        sqlx::query(
            "UPDATE recon_runs SET status = 'completed', finished_at = $2, summary = $3 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(to_millis(Utc::now()))
        .bind(summary)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks a run failed with the reason, keeping what it read for inspection.
    pub async fn recon_fail(&self, run_id: &str, error: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE recon_runs SET status = 'failed', finished_at = $2, error = $3 WHERE id = $1",
        )
        .bind(run_id)
        .bind(to_millis(Utc::now()))
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

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
               COALESCE(r.record_id, e.record_id) AS record_id, \
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
        let now = Utc::now();
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

    /// Fills the attempt tokens of attempts made before the column existed.
    pub async fn recon_backfill_references(&self) -> StoreResult<u64> {
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
                let reference = crate::domain::reconcile::rail_reference(
                    parse_stored("rail", rail)?,
                    &payout_id,
                    key,
                );
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

/// The part of a run written when it completes.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Summary {
    totals: Vec<RailTotals>,
    by_kind: BTreeMap<String, u64>,
    total: u64,
}

#[derive(Default)]
struct RailTotalsAcc {
    records: i64,
    record_units: i128,
    linked: i64,
    matched: i64,
    payouts: i64,
    payout_units: i128,
}

impl RailTotalsAcc {
    fn finish(self, rail: &str, currency: &str) -> StoreResult<RailTotals> {
        let currency: Currency = parse_stored("currency", currency)?;
        let amount = |u| Money::from_total_units(u, currency).map(|m| m.display_amount());
        Ok(RailTotals {
            rail: parse_stored("rail", rail)?,
            currency,
            provider_records: self.records as u64,
            provider_amount: amount(self.record_units)?,
            linked: self.linked as u64,
            matched: self.matched as u64,
            payouts_expected: self.payouts as u64,
            payouts_amount: amount(self.payout_units)?,
        })
    }
}
