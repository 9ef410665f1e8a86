//! The apalis worker on the store's queue (SQLite or PostgreSQL), with the settings
//! docs/apalis.md asks for ("Workers", "Polling", "Heartbeats and crashed workers", "Retries
//! and attempts"): a unique name per process start, bounded concurrency with a batch at least
//! as large, no `.timeout()` layer, explicit heartbeats (a dead process's jobs go back to the
//! queue after 3 missed 5 s beats), a short poll (plus LISTEN/NOTIFY on PostgreSQL), and
//! retries scheduled by the payout state machine rather than by apalis (which re-runs
//! failures at once).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::{Config as PgConfig, PostgresStorage};
use apalis_sqlite::{Config as SqliteConfig, SqliteStorage};
use tracing::{error, info, warn};

use super::payout_step::{PayoutDeps, advance_payout};
use crate::domain::payout::PayoutStatus;
use crate::storage::queue::{PAYOUT_QUEUE, PayoutJob};
use crate::storage::{Store, StoreResult};

/// How often a worker tells the queue it is alive, and how many beats it may miss before
/// the queue hands its jobs to another worker.
const HEARTBEAT: Duration = Duration::from_secs(5);
const MISSED_HEARTBEATS: usize = 3;

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub concurrency: usize,
    /// Stop once no payout is waiting for a worker (all paid, failed, or with an operator).
    pub until_idle: bool,
    /// How often the safety-net sweep looks for payouts whose job went missing.
    pub sweep_every: Duration,
    /// How late a payout's step may be before the sweep re-enqueues it.
    pub sweep_grace: Duration,
    /// When set, payout runs are made on this cron schedule (see `jobs::schedule`).
    pub schedule: Option<cron::Schedule>,
    /// When set, the previous day is reconciled on this schedule (see `reconcile::schedule`).
    pub reconcile: Option<(cron::Schedule, crate::domain::reconcile::Tolerances)>,
    /// When set, what is kept only for a while is pruned on this schedule (`jobs::prune`).
    pub prune: Option<(cron::Schedule, crate::domain::retention::Retention)>,
    /// After a shutdown signal, how long jobs in hand may take to finish. Past it the worker
    /// exits anyway: their leases expire and whoever takes them over looks up first.
    pub shutdown_deadline: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: 4,
            until_idle: false,
            sweep_every: Duration::from_secs(5),
            sweep_grace: Duration::from_secs(10),
            schedule: None,
            reconcile: None,
            prune: None,
            shutdown_deadline: Duration::from_secs(30),
        }
    }
}

/// The apalis handler: advance the payout named by the job. A database error is returned so
/// apalis re-runs the job (bounded by the task's max attempts); the sweep covers the rest.
///
/// The step runs in a task of its own, counted in `in_hand`: the queue may let go of a job's
/// future when it stops, and a step cut off between the provider's answer and our record of it
/// would leave a payment unrecorded until a takeover looks it up. Shutdown waits for the count
/// instead (see [`InHand`]).
async fn handle(
    job: PayoutJob,
    deps: Data<Arc<PayoutDeps>>,
    in_hand: Data<InHand>,
) -> Result<(), BoxDynError> {
    let id = job.payout_id.parse().map_err(|e| {
        error!(payout = %job.payout_id, error = %e, "job names an invalid payout id");
        Box::new(e) as BoxDynError
    })?;
    let Some(guard) = in_hand.enter() else {
        // Shutting down: the step is left to the next worker (the sweep finds the payout due).
        return Err("worker shutting down: this payout's step is left for another worker".into());
    };
    let deps = Arc::clone(&deps);
    tokio::spawn(async move {
        let _guard = guard;
        advance_payout(&deps, &id).await.map(|_| ())
    })
    .await??;
    Ok(())
}

/// Payout steps in hand, counted by the worker itself rather than by the queue's bookkeeping.
///
/// Shutdown first stops taking steps and waits for these to finish, and only then stops the
/// queue: on SQLite the queue's own bookkeeping writes share the database's one write lock,
/// and a queue stopped first can leave such a write unfinished (its future no longer polled)
/// while a step waits behind it for the lock.
#[derive(Debug, Clone, Default)]
pub struct InHand(Arc<InHandState>);

#[derive(Debug, Default)]
pub struct InHandState {
    count: AtomicUsize,
    stopping: AtomicBool,
    changed: tokio::sync::Notify,
}

/// One step in hand; dropping it (however the step ends) counts it out.
#[derive(Debug)]
pub struct InHandGuard(InHand);

impl InHand {
    /// Counts a step in, unless the worker is stopping. Counted before the flag is read, so a
    /// step either sees the stop or is seen by [`InHand::stop_and_drain`].
    pub fn enter(&self) -> Option<InHandGuard> {
        self.0.count.fetch_add(1, SeqCst);
        let guard = InHandGuard(self.clone());
        (!self.0.stopping.load(SeqCst)).then_some(guard)
    }

    pub fn count(&self) -> usize {
        self.0.count.load(SeqCst)
    }

    /// Refuses new steps from now on and resolves once none is in hand.
    pub async fn stop_and_drain(&self) {
        self.0.stopping.store(true, SeqCst);
        self.drained().await;
    }

    /// Resolves once no step is in hand.
    pub async fn drained(&self) {
        loop {
            let notified = self.0.changed.notified();
            tokio::pin!(notified);
            // Registered before the count is read, so a step ending in between still wakes us.
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InHandGuard {
    fn drop(&mut self) {
        (self.0).0.count.fetch_sub(1, SeqCst);
        (self.0).0.changed.notify_waiters();
    }
}

/// Counts of payouts a worker still has to act on, by status.
pub async fn active_payouts(store: &Store) -> StoreResult<i64> {
    Ok(store
        .payout_status_counts()
        .await?
        .into_iter()
        .filter(|(s, _)| s.is_active())
        .map(|(_, n)| n)
        .sum())
}

/// Runs the worker until `shutdown` resolves, or, with `until_idle`, until no payout is
/// active. `on_progress` is called about twice a second with the status counts.
///
/// The queue's monitor, its workers and the sweep make one future of hundreds of KiB (more
/// in debug builds, where each poll copies parts of it to the stack); it lives on the heap
/// so that no caller's stack (2 MiB on spawned and test threads) has to carry it.
pub async fn run_worker(
    deps: Arc<PayoutDeps>,
    options: WorkerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_progress: impl Fn(&[(PayoutStatus, i64)]) + Send + Sync + 'static,
) -> Result<(), WorkerError> {
    Box::pin(run_worker_on_heap(deps, options, shutdown, on_progress)).await
}

async fn run_worker_on_heap(
    deps: Arc<PayoutDeps>,
    options: WorkerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_progress: impl Fn(&[(PayoutStatus, i64)]) + Send + Sync + 'static,
) -> Result<(), WorkerError> {
    let concurrency = options.concurrency.max(1);
    let name = deps.worker_id.clone();
    info!(worker = %name, concurrency, "worker starting");

    let store = deps.store.clone();
    let schedule_store = deps.store.clone();
    // Both workers (payouts, and the schedule when configured) stop on the same signal.
    let (stopped, on_stop) = tokio::sync::watch::channel(false);
    let schedule = options.schedule.clone();
    let reconcile = options.reconcile.clone();
    let reconcile_store = deps.store.clone();
    let reconcile_rails = deps.rails.clone();
    let prune = options.prune.clone();
    let prune_store = deps.store.clone();
    let events_store = deps.store.clone();
    let in_hand = InHand::default();
    let draining = in_hand.clone();
    let deadline = options.shutdown_deadline;
    let stop = async move {
        let watch = watch_progress(&store, &options, &on_progress);
        stop_and_drain(watch, shutdown, draining, deadline, stopped).await
    };

    let queue_store = deps.store.clone();
    let waiting = in_hand.clone();
    // The queue's future is the bulk of the worker's: boxed, so that the steps around it
    // (and debug builds' copies of it) do not carry it on the stack.
    let payouts = Box::pin(run_payout_queue(
        &queue_store,
        name.clone(),
        deps,
        in_hand,
        concurrency,
        stop,
    ));
    let payouts = within_deadline(payouts, waiting, on_stop.clone(), deadline);
    // The schedules stop with the payout worker.
    let ticking = |suffix: &str| {
        let mut on_stop = on_stop.clone();
        let name = format!("{name}-{suffix}");
        let stop = async move {
            let _ = on_stop.wait_for(|stopped| *stopped).await;
            Ok::<(), std::io::Error>(())
        };
        (name, stop)
    };
    let runs = async {
        match schedule {
            Some(schedule) => {
                let (name, stop) = ticking("schedule");
                super::schedule::run_schedule(schedule_store, schedule, name, stop).await
            }
            None => Ok(()),
        }
    };
    let reconciliations = async {
        match reconcile {
            Some((schedule, tolerances)) => {
                let (name, stop) = ticking("reconcile");
                let daily = crate::reconcile::schedule::DailyReconciliation {
                    store: reconcile_store,
                    rails: reconcile_rails,
                    tolerances,
                };
                crate::reconcile::schedule::run_daily(daily, schedule, name, stop).await
            }
            None => Ok(()),
        }
    };
    let prunes = async {
        match prune {
            Some((schedule, retention)) => {
                let (name, stop) = ticking("prune");
                super::prune::run_prune(prune_store, retention, schedule, name, stop).await
            }
            None => Ok(()),
        }
    };
    // Outgoing events go out from every worker until the payouts stop, then once more.
    let events = async {
        match super::events::EventSender::new(events_store) {
            Ok(sender) => sender.run(on_stop.clone()).await,
            Err(e) => error!(error = %e, "outgoing events cannot be sent by this worker"),
        }
    };
    let (paid, ticked, reconciled, pruned, ()) =
        tokio::join!(payouts, runs, reconciliations, prunes, events);
    paid.and(ticked).and(reconciled).and(pruned)
}

/// Sweeps for payouts whose job went missing every `sweep_every` and reports the status
/// counts about twice a second. Never returns unless `until_idle`: then once no payout is
/// active, or only payouts on a cooling-off hold remain.
async fn watch_progress(
    store: &Store,
    options: &WorkerOptions,
    on_progress: &(impl Fn(&[(PayoutStatus, i64)]) + Sync),
) {
    // The first sweep runs at once: a worker that follows short-lived ones picks up
    // the payouts whose jobs they took without waiting a whole interval.
    let mut last_sweep: Option<tokio::time::Instant> = None;
    let mut first = true;
    loop {
        if !first {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        first = false;
        if last_sweep.is_none_or(|at| at.elapsed() >= options.sweep_every) {
            last_sweep = Some(tokio::time::Instant::now());
            match store.enqueue_overdue(options.sweep_grace).await {
                Ok(0) => {}
                Ok(n) => info!(count = n, "re-enqueued overdue payouts"),
                Err(e) => error!(error = %e, "sweep failed"),
            }
            match store.settle_holds().await {
                Ok(0) => {}
                Ok(n) => info!(count = n, "released held payouts nothing holds any more"),
                Err(e) => error!(error = %e, "settling held payouts failed"),
            }
        }
        match store.payout_status_counts().await {
            Ok(counts) => {
                on_progress(&counts);
                let active: i64 = counts
                    .iter()
                    .filter(|(s, _)| s.is_active())
                    .map(|(_, n)| n)
                    .sum();
                if options.until_idle && active == 0 {
                    return;
                }
                if options.until_idle {
                    // Payouts on a cooling-off hold are due in hours or days: nothing
                    // a worker waiting for idleness should wait for.
                    match store.held_payouts().await {
                        Ok(held) if held == active => {
                            info!(held, "only payouts on a cooling-off hold remain");
                            return;
                        }
                        Ok(_) => {}
                        Err(e) => error!(error = %e, "cannot count held payouts"),
                    }
                }
            }
            Err(e) => error!(error = %e, "cannot read payout progress"),
        }
    }
}

/// The queue's stop signal: once idle (`watch` returned) or asked to shut down, steps in
/// hand finish (for up to `deadline`) while the queue still runs; then everything stops.
async fn stop_and_drain(
    watch: impl Future<Output = ()>,
    shutdown: impl Future<Output = ()>,
    draining: InHand,
    deadline: Duration,
    stopped: tokio::sync::watch::Sender<bool>,
) -> Result<(), std::io::Error> {
    tokio::select! {
        () = watch => info!("idle: no payout is waiting for a worker"),
        () = shutdown => info!("shutdown requested; finishing jobs in hand"),
    }
    // Steps in hand finish while the queue still runs; then the queue stops.
    if tokio::time::timeout(deadline, draining.stop_and_drain())
        .await
        .is_err()
    {
        warn!(
            ?deadline,
            "shutdown deadline passed with jobs in hand; their leases will expire and the next holder looks them up first"
        );
    }
    let _ = stopped.send(true);
    Ok(())
}

/// Runs the payout queue's worker until `stop` resolves. SQLite is polled; PostgreSQL also
/// wakes the worker with NOTIFY for new jobs, and polls for delayed ones.
async fn run_payout_queue(
    queue_store: &Store,
    name: String,
    deps: Arc<PayoutDeps>,
    in_hand: InHand,
    concurrency: usize,
    stop: impl Future<Output = Result<(), std::io::Error>> + Send + 'static,
) -> Result<(), WorkerError> {
    let batch = concurrency.max(10);
    let worker = WorkerBuilder::new(name);
    match queue_store {
        Store::Sqlite(s) => {
            let config = SqliteConfig::default()
                .queue(PAYOUT_QUEUE)
                .batch_size(batch)
                .heartbeat_interval(HEARTBEAT)
                .missed_heartbeats(MISSED_HEARTBEATS);
            let backend = SqliteStorage::<PayoutJob>::new(s.pool())
                .with_config(config)
                .poll_with_interval(Duration::from_millis(250));
            worker
                .backend(backend)
                .data(deps)
                .data(in_hand)
                .concurrency(concurrency)
                .build(handle)
                .run_until(stop)
                .await
        }
        Store::Postgres(s) => {
            let config = PgConfig::default()
                .queue(PAYOUT_QUEUE)
                .batch_size(batch)
                .heartbeat_interval(HEARTBEAT)
                .missed_heartbeats(MISSED_HEARTBEATS);
            // NOTIFY wakes a worker at once for new jobs; the poll picks up delayed ones.
            let backend = PostgresStorage::<PayoutJob>::new(s.pool())
                .with_config(config)
                .with_pubsub()
                .poll_with_strategy(Strategy::new().interval(Duration::from_millis(500)));
            worker
                .backend(backend)
                .data(deps)
                .data(in_hand)
                .concurrency(concurrency)
                .build(handle)
                .run_until(stop)
                .await
        }
    }
}

/// The queue's run, then the steps it started finishing and recording what they did; but
/// jobs in hand get only until `deadline` once the stop signal came.
async fn within_deadline(
    payouts: impl Future<Output = Result<(), WorkerError>>,
    waiting: InHand,
    mut deadline_watch: tokio::sync::watch::Receiver<bool>,
    deadline: Duration,
) -> Result<(), WorkerError> {
    tokio::select! {
        finished = async {
            let finished = payouts.await;
            // The queue has stopped; the steps it started finish and record what they did.
            waiting.drained().await;
            finished
        } => finished,
        () = async {
            let _ = deadline_watch.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(deadline).await;
        } => {
            warn!(?deadline, "shutdown deadline passed with jobs in hand; their leases will expire and the next holder looks them up first");
            Ok(())
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
