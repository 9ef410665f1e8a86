//! The daily prune inside the worker (`PAYOUTS_PRUNE_SCHEDULE`, default 03:45 UTC): what is
//! kept only for a while goes after its age. Several workers may tick alike; a prune that
//! finds nothing left deletes nothing, so no claim is needed.

use std::future::Future;

use apalis::prelude::*;
use apalis_cron::{CronScheduler, Tick};
use tracing::{error, info};

use crate::domain::retention::Retention;
use crate::storage::Store;

#[derive(Clone)]
struct Prune {
    store: Store,
    retention: Retention,
}

async fn on_tick(_tick: Tick, prune: Data<Prune>) -> Result<(), BoxDynError> {
    match prune
        .store
        .prune(&prune.retention, crate::clock::now(), false)
        .await
    {
        Ok(report) => {
            for t in report.tables.iter().filter(|t| t.deleted > 0) {
                info!(
                    table = t.table,
                    deleted = t.deleted,
                    left = t.after,
                    "pruned"
                );
            }
            Ok(())
        }
        Err(e) => {
            error!(error = %e, "prune failed; the next tick tries again");
            Err(Box::new(e))
        }
    }
}

/// Prunes on `schedule` until `stop` resolves.
pub async fn run_prune(
    store: Store,
    retention: Retention,
    schedule: cron::Schedule,
    name: String,
    stop: impl Future<Output = Result<(), std::io::Error>> + Send + 'static,
) -> Result<(), WorkerError> {
    info!(worker = %name, %schedule, "prune schedule starting");
    WorkerBuilder::new(name)
        .backend(CronScheduler::new(schedule))
        .data(Prune { store, retention })
        .build(on_tick)
        .run_until(stop)
        .await
}
