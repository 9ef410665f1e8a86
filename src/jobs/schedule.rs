//! Scheduled payout runs inside the worker: every `payouts work` process ticks on the
//! configured cron schedule (`PAYOUTS_RUN_SCHEDULE`, apalis-cron) and asks for that tick's run.
//! A run is idempotent by its period, which is the tick's time, so however many processes
//! tick, the first creates the run and the others find it done (docs/apalis.md, "Cron":
//! every process running a scheduler gets every tick).

use std::future::Future;

use apalis::prelude::*;
use apalis_cron::{CronScheduler, Tick};
use chrono::{TimeZone, Utc};
use tracing::{error, info};

use crate::domain::payout_run::RunPeriod;
use crate::storage::Store;

/// The period of the tick at `timestamp` (seconds since the epoch), e.g. `2026-11-21T0600Z`.
pub fn period_of(timestamp: u64) -> RunPeriod {
    let at = i64::try_from(timestamp)
        .ok()
        .and_then(|t| Utc.timestamp_opt(t, 0).single())
        .unwrap_or_default();
    // The format only yields digits, '-', 'T' and 'Z', which a period accepts.
    RunPeriod::parse(&at.format("%Y-%m-%dT%H%M%SZ").to_string())
        .unwrap_or_else(|_| RunPeriod::day_of(crate::clock::now()))
}

async fn on_tick(tick: Tick, store: Data<Store>) -> Result<(), BoxDynError> {
    let period = period_of(tick.get_timestamp());
    match store.run_payouts(&period, false).await {
        Ok(report) if report.already_ran => {
            info!(
                period = period.as_str(),
                "scheduled run already made by another worker"
            );
        }
        Ok(report) => info!(
            period = period.as_str(),
            created = report.created,
            considered = report.considered,
            "scheduled payout run made"
        ),
        Err(e) => {
            error!(period = period.as_str(), error = %e, "scheduled payout run failed");
            return Err(Box::new(e));
        }
    }
    Ok(())
}

/// Ticks on `schedule` until `stop` resolves.
pub async fn run_schedule(
    store: Store,
    schedule: cron::Schedule,
    name: String,
    stop: impl Future<Output = Result<(), std::io::Error>> + Send + 'static,
) -> Result<(), WorkerError> {
    info!(worker = %name, %schedule, "payout run schedule starting");
    WorkerBuilder::new(name)
        .backend(CronScheduler::new(schedule))
        .data(store)
        .build(on_tick)
        .run_until(stop)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_names_its_period_to_the_second() {
        assert_eq!(period_of(1_795_219_200).as_str(), "2026-11-21T000000Z");
        assert_eq!(period_of(1_795_219_201).as_str(), "2026-11-21T000001Z");
    }
}
