//! Reconciliation, set-based: provider records are streamed into `recon_records` in batches,
//! then a handful of statements link them to payouts (by hint, by reference, then by amount,
//! payee and date) and one query classifies every disagreement. Nothing here holds more than
//! one batch of records in memory, whatever the period's length.

mod matching;
mod runs;

use std::collections::BTreeMap;

use super::events::report_new_exceptions;
use super::{Store, StoreError, StoreResult, to_millis};
use crate::domain::reconcile::ProviderRecord;
use crate::storage::reconcile_views::{NewRun, RailTotals};

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

/// The part of a run written when it completes.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Summary {
    totals: Vec<RailTotals>,
    by_kind: BTreeMap<String, u64>,
    total: u64,
}

impl Store {
    pub async fn recon_begin(&self, run: &NewRun) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO recon_runs (id, started_at, period_from, period_to, rails, source, \
               trigger, status, amount_tolerance_minor, date_tolerance_hours) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $9)",
        )
        .bind(&run.id)
        .bind(to_millis(crate::clock::now()))
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
        matching::link_records(&mut tx, run).await?;
        let found = matching::classify(&mut tx, run).await?;
        let by_kind = matching::store_exceptions(&mut tx, &run.id, &found).await?;
        report_new_exceptions(&mut tx, &run.id).await?;
        matching::keep_duplicate_evidence(&mut tx, run).await?;
        let totals = matching::rail_totals(&mut tx, run).await?;
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
        .bind(&run.id)
        .bind(to_millis(crate::clock::now()))
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
        .bind(to_millis(crate::clock::now()))
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
