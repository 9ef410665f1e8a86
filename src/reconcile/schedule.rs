//! The daily reconciliation inside the worker: on each tick (`PAYOUTS_RECONCILE_SCHEDULE`,
//! default 02:30 UTC) the previous UTC day is reconciled over every configured rail. Several
//! workers tick alike; each day is claimed once (`recon_claim_day`), so one of them runs it.

use std::future::Future;

use apalis::prelude::*;
use apalis_cron::{CronScheduler, Tick};
use chrono::{Duration, TimeZone, Utc};
use tracing::{error, info};

use super::{Quiet, ReconcileError, ReconcileRequest, RecordsFrom, reconcile};
use crate::domain::reconcile::{Period, Tolerances};
use crate::providers::rail::Rails;
use crate::storage::{Store, Trigger};

/// What a tick needs.
#[derive(Clone)]
pub struct DailyReconciliation {
    pub store: Store,
    pub rails: Rails,
    pub tolerances: Tolerances,
}

/// The day a tick at `timestamp` (seconds) reconciles: the one before it, in UTC.
pub fn day_before(timestamp: u64) -> Period {
    let at = i64::try_from(timestamp)
        .ok()
        .and_then(|t| Utc.timestamp_opt(t, 0).single())
        .unwrap_or_default();
    Period::day((at - Duration::days(1)).date_naive())
}

async fn on_tick(tick: Tick, daily: Data<DailyReconciliation>) -> Result<(), BoxDynError> {
    reconcile_day(&daily, tick.get_timestamp()).await?;
    Ok(())
}

/// What a tick at `timestamp` (seconds) does: reconciles the day before, unless another
/// worker has claimed it.
pub async fn reconcile_day(
    daily: &DailyReconciliation,
    timestamp: u64,
) -> Result<(), ReconcileError> {
    let period = day_before(timestamp);
    if !daily.store.recon_claim_day(period.from).await? {
        info!(%period, "daily reconciliation already made by another worker");
        return Ok(());
    }
    let request = ReconcileRequest {
        period,
        rails: Vec::new(),
        from: RecordsFrom::Api,
        trigger: Trigger::Schedule,
        tolerances: daily.tolerances,
        run_id: None,
    };
    match reconcile(&daily.store, &daily.rails, &request, &Quiet).await {
        Ok(run) if run.exceptions.open_critical > 0 => {
            error!(run = %run.id, %period, critical = run.exceptions.open_critical,
                open = run.exceptions.open, "daily reconciliation found critical exceptions");
        }
        Ok(run) => info!(run = %run.id, %period, open = run.exceptions.open,
            "daily reconciliation done"),
        Err(e) => {
            error!(%period, error = %e, "daily reconciliation failed");
            return Err(e);
        }
    }
    Ok(())
}

/// Ticks on `schedule` until `stop` resolves.
pub async fn run_daily(
    daily: DailyReconciliation,
    schedule: cron::Schedule,
    name: String,
    stop: impl Future<Output = Result<(), std::io::Error>> + Send + 'static,
) -> Result<(), WorkerError> {
    info!(worker = %name, %schedule, "daily reconciliation schedule starting");
    WorkerBuilder::new(name)
        .backend(CronScheduler::new(schedule))
        .data(daily)
        .build(on_tick)
        .run_until(stop)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_reconciles_the_day_before() {
        // 2026-11-21T02:30:00Z
        assert_eq!(day_before(1_795_228_200).to_string(), "2026-11-20");
    }
}
