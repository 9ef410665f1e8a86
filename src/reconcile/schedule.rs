//! The daily reconciliation inside the worker: on each tick (`PAYOUTS_RECONCILE_SCHEDULE`,
//! default 02:30 UTC) the previous UTC day is reconciled over every configured rail. Several
//! workers tick alike; each day is claimed (`recon_claim_day`), so one of them runs it. A run
//! that fails or dies gives its claim back (or lets it lapse), and a later tick runs the day
//! again, up to a week back.

use std::future::Future;

use apalis::prelude::*;
use apalis_cron::{CronScheduler, Tick};
use chrono::{Duration, TimeZone, Utc};
use tracing::{error, info, warn};

use super::{Quiet, ReconcileError, ReconcileRequest, RecordsFrom, new_run_id, reconcile};
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

/// How long a claim on a day lasts: longer than any run, so only a worker that died lets it
/// lapse before the run ends.
const CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// How far back a tick looks for days whose run failed or was cut off.
const RETRY_DAYS: u64 = 7;

/// What a tick at `timestamp` (seconds) does: reconciles the day before, and again any of the
/// days before that whose run failed or whose worker died, unless another worker has them.
pub async fn reconcile_day(
    daily: &DailyReconciliation,
    timestamp: u64,
) -> Result<(), ReconcileError> {
    let period = day_before(timestamp);
    let since = period.from - chrono::Days::new(RETRY_DAYS);
    let mut days = daily.store.recon_days_to_retry(since, period.from).await?;
    days.push(period.from);
    let mut first_error = None;
    for day in days {
        if let Err(e) = reconcile_one(daily, Period::day(day)).await {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn reconcile_one(daily: &DailyReconciliation, period: Period) -> Result<(), ReconcileError> {
    let run_id = new_run_id();
    if !daily
        .store
        .recon_claim_day(period.from, &run_id, CLAIM_TTL)
        .await?
    {
        info!(%period, "daily reconciliation already made, or under way on another worker");
        return Ok(());
    }
    let guard = ClaimGuard {
        store: daily.store.clone(),
        day: period.from,
        run_id: Some(run_id.clone()),
    };
    let request = ReconcileRequest {
        period,
        rails: Vec::new(),
        from: RecordsFrom::Api,
        trigger: Trigger::Schedule,
        tolerances: daily.tolerances,
        run_id: Some(run_id.clone()),
    };
    let result = reconcile(&daily.store, &daily.rails, &request, &Quiet).await;
    guard.disarm();
    match result {
        Ok(run) => {
            daily.store.recon_complete_day(period.from, &run_id).await?;
            if run.exceptions.open_critical > 0 {
                error!(run = %run.id, %period, critical = run.exceptions.open_critical,
                    open = run.exceptions.open, "daily reconciliation found critical exceptions");
            } else {
                info!(run = %run.id, %period, open = run.exceptions.open,
                    "daily reconciliation done");
            }
            Ok(())
        }
        Err(e) => {
            error!(%period, error = %e, "daily reconciliation failed; a later tick runs it again");
            daily
                .store
                .recon_abandon_day(period.from, &run_id, &e.to_string())
                .await?;
            Err(e)
        }
    }
}

/// A claimed day whose run is under way. Dropped while still armed (the task was cancelled or
/// panicked mid-run), it marks the run failed and gives the claim back, so no run is left
/// "running" and the next tick runs the day again. A process that dies outright cannot do
/// this: its claim lapses after [`CLAIM_TTL`] and the next claimant marks its run failed.
struct ClaimGuard {
    store: Store,
    day: chrono::NaiveDate,
    run_id: Option<String>,
}

impl ClaimGuard {
    fn disarm(mut self) {
        self.run_id = None;
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        let Some(run_id) = self.run_id.take() else {
            return;
        };
        let (store, day) = (self.store.clone(), self.day);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            warn!(run = %run_id, "reconciliation stopped outside a runtime; its claim lapses on its own");
            return;
        };
        runtime.spawn(async move {
            warn!(run = %run_id, %day, "daily reconciliation stopped before it finished");
            let reason = "the reconciliation task stopped before it finished";
            if let Err(e) = store.recon_abandon_day(day, &run_id, reason).await {
                error!(run = %run_id, error = %e, "cannot give back the stopped run's claim");
            }
        });
    }
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
