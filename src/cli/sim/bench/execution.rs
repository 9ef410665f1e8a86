//! `bench execution`: payouts paid end to end (job pickup, lease, attempt, provider call to the
//! loopback Stripe mock with no latency and no faults, result, ledger post) by the real apalis
//! worker, once per worker count, each on a fresh database (SQLite, or PostgreSQL with
//! `--postgres`); beside the raw commit rate of the same database and the write transactions
//! each payout costs.
//!
//! Write transactions are counted without touching the code under test. On SQLite, with the
//! commit hook set on every connection of the store's pools before the worker starts: it fires
//! once per committed write transaction (explicit or autocommit) on that pool, whoever ran it:
//! payout steps and the queue's fetch, ack and heartbeat writes alike; reads are not counted.
//! On PostgreSQL, with the server's next transaction id (`pg_snapshot_xmax`), which advances
//! once for every transaction that writes (reads take none), the queue's included; the bench
//! database is the only one being written. The same counter also counts the commit-rate loop,
//! as a check that it sees every commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use payouts::domain::payout::RetryPolicy;
use payouts::domain::payout_run::RunPeriod;
use payouts::jobs::{PayoutDeps, WorkerOptions, run_worker};
use payouts::on_backend;
use payouts::providers::rail::Rails;
use payouts::providers::stripe::{StripeAdapter, StripeConfig};
use payouts::sim::stripe::{MockConfig, MockStripe};
use payouts::storage::{Store, WriteLock, to_millis};
use secrecy::SecretString;
use serde::Serialize;

use super::fixture::{BenchDb, bulk_payees};
use super::{Progress, group, render};

pub(super) struct ExecutionOptions {
    pub(super) payouts: usize,
    pub(super) workers: Vec<usize>,
    pub(super) postgres: Option<String>,
    pub(super) json: bool,
}

/// How long the raw commit loop runs.
const COMMIT_LOOP: Duration = Duration::from_secs(2);
/// The target for payouts/s against what the commit rate allows.
const TARGET_RATIO: f64 = 0.30;
/// Exactly what `commits_per_payout` counts, printed with the figures.
const COMMITS_COUNT: &str = "write transactions committed while the worker ran (SQLite: commit \
    hook on every pooled connection; PostgreSQL: transaction ids assigned), payout steps and the \
    job queue's fetch/ack/heartbeat writes alike, divided by the payouts paid";

/// The figures of one worker count.
#[derive(Debug, Serialize)]
struct Measured {
    workers: usize,
    payouts: usize,
    setup_secs: f64,
    run_payouts_secs: f64,
    /// From the worker's start to the last payout's change to paid (its `updated_at`).
    paid_secs: f64,
    /// From the worker's start until `run_worker` returned (its idle check runs every 500 ms).
    worker_secs: f64,
    payouts_per_sec: f64,
    commits: u64,
    commits_per_payout: f64,
    payout_events_per_payout: f64,
    attempts_per_payout: f64,
    commit_loop_commits: u64,
    commit_loop_secs: f64,
    commits_per_sec: f64,
    /// The loop's commits as the hook counted them; equal to `commit_loop_commits` when the
    /// hook sees every commit.
    commit_loop_hooked: u64,
    /// payouts/s ÷ (commits/s ÷ commits per payout).
    ratio: f64,
    paid: i64,
    transfers: usize,
    exactly_one_transfer_each: bool,
    ledger_problems: usize,
    /// Pool connections still carrying the commit hook after the worker ran, of all.
    hooked_connections_after_run: u32,
    pool_connections: u32,
}

/// Counts committed write transactions into `counter` on every connection of the store's
/// pool, and marks each with a temporary table (temporary tables are per connection).
async fn count_commits(store: &Store, counter: &Arc<AtomicU64>) -> Result<()> {
    let Store::Sqlite(store) = store else {
        return Ok(());
    };
    let mut held = Vec::new();
    for pool in store.pools() {
        for _ in 0..pool.options().get_max_connections() {
            held.push(pool.acquire().await?);
        }
    }
    for conn in &mut held {
        sqlx::query("CREATE TEMP TABLE IF NOT EXISTS bench_hooked (x INTEGER)")
            .execute(&mut **conn)
            .await?;
        let c = Arc::clone(counter);
        conn.lock_handle().await?.set_commit_hook(move || {
            c.fetch_add(1, Ordering::Relaxed);
            true
        });
    }
    Ok(())
}

/// How many of the pool's connections carry the hook (the pool replaces a connection whose
/// query was cancelled, and the new one has none): (hooked, all).
async fn hooked_connections(store: &Store) -> Result<(u32, u32)> {
    let Store::Sqlite(store) = store else {
        return Ok((0, 0));
    };
    let mut held = Vec::new();
    let (mut hooked, mut all) = (0, 0);
    for pool in store.pools() {
        for _ in 0..pool.options().get_max_connections() {
            let mut conn = pool.acquire().await?;
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM temp.sqlite_master WHERE name = 'bench_hooked'",
            )
            .fetch_one(&mut *conn)
            .await?;
            hooked += u32::from(n > 0);
            all += 1;
            held.push(conn);
        }
    }
    Ok((hooked, all))
}

/// Trivial single-row write transactions for `COMMIT_LOOP`: (commits, seconds).
async fn commit_loop(store: &Store) -> Result<(u64, f64)> {
    on_backend!(store, s => {
    sqlx::query("CREATE TABLE bench_commit (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)")
        .execute(s.pool())
        .await?;
    sqlx::query("INSERT INTO bench_commit (id, n) VALUES (1, 0)")
        .execute(s.pool())
        .await?;
    let t = Instant::now();
    let mut commits = 0u64;
    while t.elapsed() < COMMIT_LOOP {
        let mut tx = s.begin_write(WriteLock::Accrual).await?;
        sqlx::query("UPDATE bench_commit SET n = n + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        commits += 1;
    }
    Ok((commits, t.elapsed().as_secs_f64()))
    })
}

/// Write transactions so far: the hook's count, or PostgreSQL's next transaction id.
async fn commits_now(store: &Store, counter: &Arc<AtomicU64>) -> Result<u64> {
    match store {
        Store::Sqlite(_) => Ok(counter.load(Ordering::Relaxed)),
        Store::Postgres(s) => {
            // xid8 has no Rust decoder; its text form is the number.
            let next: String =
                sqlx::query_scalar("SELECT CAST(pg_snapshot_xmax(pg_current_snapshot()) AS TEXT)")
                    .fetch_one(s.pool())
                    .await?;
            Ok(next.parse()?)
        }
    }
}

/// One worker count on a fresh database: queue every payout, pay them all against the
/// Stripe mock, then time a raw commit loop on the same database to compare with.
async fn one(
    payouts: usize,
    workers: usize,
    postgres: Option<&str>,
    progress: &Progress,
) -> Result<Measured> {
    let db = BenchDb::create(None, postgres).await?;
    let store = db.open().await?;
    let (setup_secs, run_payouts_secs) = queue_payouts(&store, payouts, progress).await?;

    let mock = MockStripe::start("127.0.0.1:0".parse()?, MockConfig::default())
        .await
        .context("starting the Stripe mock")?;
    let deps = payout_deps(&store, &mock, workers)?;
    let counter = Arc::new(AtomicU64::new(0));
    count_commits(&store, &counter).await?;
    progress.say(&format!(
        "{workers} worker(s): paying {} payouts",
        group(payouts as u64)
    ));

    let before = commits_now(&store, &counter).await?;
    let start_ms = to_millis(chrono::Utc::now());
    let t = Instant::now();
    pay_until_idle(deps, workers).await?;
    let worker_secs = t.elapsed().as_secs_f64();
    let commits = commits_now(&store, &counter).await?.saturating_sub(before);

    let outcome = Outcome::read(&store, start_ms, worker_secs).await?;
    let (transfers, exactly_one_transfer_each) = transfers_per_payout(&store, &mock).await?;
    mock.stop();
    let ledger_problems = store.check_ledger().await?.problems.len();
    let raw = RawCommits::measure(&store, &counter).await?;
    store.close().await;
    db.remove().await?;

    let n = payouts as f64;
    let paid_secs = outcome.paid_secs;
    let payouts_per_sec = if paid_secs > 0.0 { n / paid_secs } else { 0.0 };
    let commits_per_payout = commits as f64 / n;
    let commits_per_sec = if raw.secs > 0.0 {
        raw.commits as f64 / raw.secs
    } else {
        0.0
    };
    let ratio = if commits_per_sec > 0.0 {
        payouts_per_sec * commits_per_payout / commits_per_sec
    } else {
        0.0
    };
    progress.say(&format!(
        "{workers} worker(s): {} paid in {paid_secs:.2} s, {:.1} payouts/s, {:.1} commits/payout, \
         {} commits/s raw",
        group(u64::try_from(outcome.paid).unwrap_or(0)),
        payouts_per_sec,
        commits_per_payout,
        group(commits_per_sec as u64)
    ));
    Ok(Measured {
        workers,
        payouts,
        setup_secs,
        run_payouts_secs,
        paid_secs,
        worker_secs,
        payouts_per_sec,
        commits,
        commits_per_payout,
        payout_events_per_payout: outcome.events as f64 / n,
        attempts_per_payout: outcome.attempts as f64 / n,
        commit_loop_commits: raw.commits,
        commit_loop_secs: raw.secs,
        commits_per_sec,
        commit_loop_hooked: raw.hooked_commits,
        ratio,
        paid: outcome.paid,
        transfers,
        exactly_one_transfer_each,
        ledger_problems,
        hooked_connections_after_run: raw.hooked_connections,
        pool_connections: raw.connections,
    })
}

/// Writes the payees in bulk, then queues one payout each with a payout run: (setup
/// seconds, run seconds).
pub(super) async fn queue_payouts(
    store: &Store,
    payouts: usize,
    progress: &Progress,
) -> Result<(f64, f64)> {
    let t = Instant::now();
    bulk_payees(store, payouts, false, progress).await?;
    let setup_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let run = store
        .run_payouts(&RunPeriod::parse("bench-execution")?, false)
        .await
        .context("queueing the payouts")?;
    let run_payouts_secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        run.created == u64::try_from(payouts)?,
        "the run created {} payouts, not {payouts}",
        run.created
    );
    Ok((setup_secs, run_payouts_secs))
}

/// The worker's dependencies: the store and a Stripe rail pointed at the mock.
pub(super) fn payout_deps(
    store: &Store,
    mock: &MockStripe,
    workers: usize,
) -> Result<Arc<PayoutDeps>> {
    let adapter = StripeAdapter::new(StripeConfig {
        api_base: mock.base_url(),
        secret_key: SecretString::from("sk_test_mock"),
        timeout: Duration::from_secs(5),
        list_lag: payouts::providers::stripe::SETTLE.list_lag,
        webhook_secrets: Vec::new(),
    })
    .map_err(|e| anyhow::anyhow!("the Stripe adapter: {e}"))?;
    Ok(Arc::new(PayoutDeps {
        store: store.clone(),
        rails: Rails::default().with(Arc::new(adapter)),
        policy: RetryPolicy::default(),
        lease_ttl: Duration::from_secs(60),
        worker_id: format!("bench-{workers}-{}", ulid::Ulid::generate()),
    }))
}

/// Runs the worker until nothing waits.
pub(super) async fn pay_until_idle(deps: Arc<PayoutDeps>, workers: usize) -> Result<()> {
    // The sweep (a safety net for lost jobs) is kept out of the way: every job is in the queue.
    run_worker(
        deps,
        WorkerOptions {
            concurrency: workers,
            until_idle: true,
            sweep_every: Duration::from_secs(3600),
            sweep_grace: Duration::from_secs(3600),
            schedule: None,
            ..WorkerOptions::default()
        },
        tokio::time::sleep(Duration::from_secs(1800)),
        |_| {},
    )
    .await
    .map_err(|e| anyhow::anyhow!("the worker: {e}"))
}

/// What the database says the worker did.
struct Outcome {
    paid: i64,
    /// From the worker's start to the last payout's change to paid.
    paid_secs: f64,
    /// Payout events the worker wrote (the run's own are left out).
    events: i64,
    attempts: i64,
}

impl Outcome {
    async fn read(store: &Store, start_ms: i64, worker_secs: f64) -> Result<Outcome> {
        let (paid, last_paid, events, attempts): (i64, Option<i64>, i64, i64) = on_backend!(store, s => sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM payouts WHERE status = 'paid'), \
                    (SELECT MAX(updated_at) FROM payouts WHERE status = 'paid'), \
                    (SELECT COUNT(*) FROM payout_events WHERE source IS DISTINCT FROM 'payout_run'), \
                    (SELECT COUNT(*) FROM payout_attempts)",
        )
        .fetch_one(s.pool())
        .await)?;
        let paid_secs = last_paid.map_or(worker_secs, |ms| (ms - start_ms) as f64 / 1000.0);
        Ok(Outcome {
            paid,
            paid_secs,
            events,
            attempts,
        })
    }
}

/// The transfers the mock made, and whether each payout got exactly one (its id is the
/// transfer group).
async fn transfers_per_payout(store: &Store, mock: &MockStripe) -> Result<(usize, bool)> {
    let ids: Vec<String> = on_backend!(store, s => {
        sqlx::query_scalar("SELECT id FROM payouts")
            .fetch_all(s.pool())
            .await
    })?;
    let transfers = mock.transfers();
    let mut per_group: HashMap<&str, usize> = HashMap::new();
    for t in &transfers {
        if let Some(g) = t.transfer_group.as_deref() {
            *per_group.entry(g).or_default() += 1;
        }
    }
    let exactly_one_each = transfers.len() == ids.len()
        && ids
            .iter()
            .all(|id| per_group.get(id.as_str()).copied() == Some(1));
    Ok((transfers.len(), exactly_one_each))
}

/// The raw commit loop after the worker, and what the commit hook saw of it.
struct RawCommits {
    commits: u64,
    secs: f64,
    /// The loop's commits as the hook counted them.
    hooked_commits: u64,
    /// Pool connections still carrying the hook after the worker ran, of `connections`.
    hooked_connections: u32,
    connections: u32,
}

impl RawCommits {
    async fn measure(store: &Store, counter: &Arc<AtomicU64>) -> Result<RawCommits> {
        let (hooked_connections, connections) = hooked_connections(store).await?;
        // Connections replaced at the worker's shutdown carry no hook: hook them again.
        count_commits(store, counter).await?;
        let hooked_before = commits_now(store, counter).await?;
        let (commits, secs) = commit_loop(store).await?;
        // Two setup statements (CREATE, INSERT) commit before the loop.
        let hooked_commits = commits_now(store, counter)
            .await?
            .saturating_sub(hooked_before)
            .saturating_sub(2);
        Ok(RawCommits {
            commits,
            secs,
            hooked_commits,
            hooked_connections,
            connections,
        })
    }
}

pub(super) async fn execution(opts: ExecutionOptions) -> Result<i32> {
    anyhow::ensure!(opts.payouts > 0, "--payouts must be at least 1");
    anyhow::ensure!(
        !opts.workers.is_empty() && opts.workers.iter().all(|w| *w > 0),
        "--workers must list worker counts of at least 1"
    );
    let progress = Progress {
        started: Instant::now(),
        to_stderr: opts.json,
    };
    let backend = if opts.postgres.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    progress.say(&format!(
        "bench execution on {backend}: {} payouts per run, workers {:?}",
        group(opts.payouts as u64),
        opts.workers
    ));
    let mut results = Vec::new();
    for &w in &opts.workers {
        results.push(one(opts.payouts, w, opts.postgres.as_deref(), &progress).await?);
    }

    if opts.json {
        let figures = serde_json::json!({
            "backend": backend,
            "payouts": opts.payouts,
            "commits_per_payout_counts": COMMITS_COUNT,
            "ratio_is": "payouts_per_sec / (commits_per_sec / commits_per_payout)",
            "target_ratio": TARGET_RATIO,
            "results": results,
        });
        outln!("{}", serde_json::to_string_pretty(&figures)?);
        return Ok(0);
    }

    print_table(&results);
    Ok(0)
}

/// The human-readable report: one row per worker count, then the details of each.
fn print_table(results: &[Measured]) {
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|m| {
            vec![
                m.workers.to_string(),
                format!("{:.2} s", m.paid_secs),
                format!("{:.1}", m.payouts_per_sec),
                group(m.commits_per_sec as u64),
                format!("{:.2}", m.commits_per_payout),
                format!("{:.1}%", m.ratio * 100.0),
                format!(
                    "{} / {} paid, {} transfers, {}, ledger {}",
                    group(u64::try_from(m.paid).unwrap_or(0)),
                    group(m.payouts as u64),
                    group(m.transfers as u64),
                    if m.exactly_one_transfer_each {
                        "exactly one each"
                    } else {
                        "NOT exactly one each"
                    },
                    if m.ledger_problems == 0 {
                        "balanced".to_string()
                    } else {
                        format!("{} problems", m.ledger_problems)
                    }
                ),
            ]
        })
        .collect();
    outln!();
    outln!(
        "{}",
        render::table(
            &[
                "workers",
                "time to last paid",
                "payouts/s",
                "commits/s (raw)",
                "commits/payout",
                "ratio (target >= 30%)",
                "check",
            ],
            &rows
        )
    );
    outln!();
    outln!("commits/payout counts {COMMITS_COUNT}.");
    outln!("ratio = payouts/s / (commits/s / commits per payout).");
    for m in results {
        outln!(
            "{} worker(s): run_payouts {:.2} s; worker wall time {:.2} s; {:.2} payout events and \
             {:.2} attempts per payout; commit loop {} commits in {:.2} s ({} seen by the hook); \
             hook still on {} of {} pool connections after the worker",
            m.workers,
            m.run_payouts_secs,
            m.worker_secs,
            m.payout_events_per_payout,
            m.attempts_per_payout,
            group(m.commit_loop_commits),
            m.commit_loop_secs,
            group(m.commit_loop_hooked),
            m.hooked_connections_after_run,
            m.pool_connections
        );
    }
}
