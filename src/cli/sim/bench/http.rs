//! `bench http`: the HTTP API under concurrent load from a loopback client in this process.
//!
//! Payees are written with bulk SQL on a fresh database (see `fixture`, every payee eligible),
//! an operator key is created, and the real API router (`payouts::http::app`, rate limiting
//! off so the figures are the server's, not the limiter's) is served on 127.0.0.1. Then two
//! phases, each driven by `--connections` client tasks sharing one HTTP client, every task
//! sending its next request as soon as the previous one is answered:
//!
//! 1. balance reads, `GET /v1/accounts/{account}/balance`, spread over every payee;
//! 2. withdrawals, `POST /v1/accounts/{account}/withdrawals` for $1.00 each with a fresh
//!    `Idempotency-Key`, spread over every payee; then the payouts in the database are counted
//!    against the 201 answers.
//!
//! On PostgreSQL the fresh tables are analyzed after the bulk load, as autovacuum would have
//! done on a live server (see [`analyze`]). No worker runs: the withdrawals stay queued. Client
//! and server share the machine's cores, so the figures are of both together.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use payouts::domain::api_key::Scope;
use payouts::domain::ids::AccountId;
use payouts::domain::money::{Currency, Money};
use payouts::storage::Store;
use serde::Serialize;
use tokio::task::JoinSet;

use super::fixture::{BenchDb, bulk_payees};
use super::served::{Served, client};
use super::{Progress, group, rate, render};

pub(super) struct HttpOptions {
    pub(super) connections: usize,
    pub(super) requests: usize,
    pub(super) withdrawals: usize,
    pub(super) payees: usize,
    pub(super) postgres: Option<String>,
    pub(super) json: bool,
}

/// What each withdrawal asks for, in cents: small, so every payee can take several.
const WITHDRAWAL_CENTS: i64 = 100;

/// The fixture's first payee: it earned the least ($10.00, so $7.50 cashable), so if it can pay
/// for its share of the withdrawals, every payee can.
const POOREST_PAYEE: usize = 0;

/// The fixture's account ids carry the payee's number in seven digits.
const MAX_PAYEES: usize = 10_000_000;

/// The fixture's account id of payee `i` (`'bench-p' || {n7}` in fixture.rs).
fn payee_id(i: usize) -> String {
    format!("bench-p{i:07}")
}

/// Which requests a phase sends.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Reads,
    Withdrawals,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Reads => "balance reads",
            Phase::Withdrawals => "withdrawals",
        }
    }
}

/// What every client task needs to build its requests.
struct Target {
    client: reqwest::Client,
    base: String,
    key: String,
    payees: usize,
    /// Makes this run's idempotency keys unique across runs on a kept database.
    run: String,
    withdrawal_body: String,
}

impl Target {
    /// Request `i` of `phase`, on payee `i % payees` so that consecutive requests (the ones in
    /// flight together) touch different accounts.
    fn request(&self, phase: Phase, i: usize) -> reqwest::RequestBuilder {
        let account = payee_id(i % self.payees);
        let builder = match phase {
            Phase::Reads => self
                .client
                .get(format!("{}/v1/accounts/{account}/balance", self.base)),
            Phase::Withdrawals => self
                .client
                .post(format!("{}/v1/accounts/{account}/withdrawals", self.base))
                .header("Idempotency-Key", format!("bench-{}-{i}", self.run))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(self.withdrawal_body.clone()),
        };
        builder.bearer_auth(&self.key)
    }
}

/// One client task's answers: every latency (failed requests included) and the status codes.
#[derive(Debug, Default)]
struct Tally {
    latencies: Vec<Duration>,
    statuses: BTreeMap<u16, u64>,
    /// Requests that got no HTTP answer at all (connection refused, reset, ...).
    transport_errors: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
    }
}

/// The figures of one phase.
#[derive(Debug, Serialize)]
struct PhaseFigures {
    requests: usize,
    secs: f64,
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Answers with a 2xx status.
    ok: u64,
    /// Answers with any other status, by status code.
    non_2xx: BTreeMap<u16, u64>,
    transport_errors: u64,
    /// 201 answers (withdrawals created).
    created: u64,
}

impl PhaseFigures {
    fn of(mut tally: Tally, took: Duration) -> PhaseFigures {
        tally.latencies.sort_unstable();
        let requests = tally.latencies.len();
        let (ok, non_2xx): (BTreeMap<u16, u64>, BTreeMap<u16, u64>) = tally
            .statuses
            .iter()
            .partition(|(status, _)| (200..300).contains(*status));
        PhaseFigures {
            requests,
            secs: took.as_secs_f64(),
            requests_per_sec: rate(requests, took),
            p50_ms: percentile_ms(&tally.latencies, 50),
            p99_ms: percentile_ms(&tally.latencies, 99),
            max_ms: tally.latencies.last().map_or(0.0, ms),
            ok: ok.values().sum(),
            created: tally.statuses.get(&201).copied().unwrap_or(0),
            non_2xx,
            transport_errors: tally.transport_errors,
        }
    }

    /// "none", or "12 × 422, 1 × 500" and the transport errors.
    fn failures_text(&self) -> String {
        let mut parts: Vec<String> = self
            .non_2xx
            .iter()
            .map(|(status, n)| format!("{} × {status}", group(*n)))
            .collect();
        if self.transport_errors > 0 {
            parts.push(format!("{} transport errors", group(self.transport_errors)));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

fn ms(d: &Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The nearest-rank percentile of sorted latencies, in milliseconds.
fn percentile_ms(sorted: &[Duration], pct: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (sorted.len() * pct).div_ceil(100).max(1);
    ms(&sorted[rank - 1])
}

/// Sends one request and reads its whole body: the answer's status, or a transport error.
async fn send(request: reqwest::RequestBuilder) -> Result<u16, reqwest::Error> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    response.bytes().await?;
    Ok(status)
}

/// One connection's loop: takes the next request number until `total` are taken.
async fn client_loop(
    target: Arc<Target>,
    phase: Phase,
    total: usize,
    next: Arc<AtomicUsize>,
) -> Tally {
    let mut tally = Tally::default();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            return tally;
        }
        let t = Instant::now();
        let outcome = send(target.request(phase, i)).await;
        tally.latencies.push(t.elapsed());
        match outcome {
            Ok(status) => *tally.statuses.entry(status).or_default() += 1,
            Err(_) => tally.transport_errors += 1,
        }
    }
}

/// Sends `total` requests of `phase` over `connections` concurrent client tasks.
async fn drive(
    target: &Arc<Target>,
    phase: Phase,
    total: usize,
    connections: usize,
) -> Result<PhaseFigures> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        tasks.spawn(client_loop(
            Arc::clone(target),
            phase,
            total,
            Arc::clone(&next),
        ));
    }
    let mut tally = Tally::default();
    while let Some(done) = tasks.join_next().await {
        tally.merge(done.context("a client task")?);
    }
    Ok(PhaseFigures::of(tally, started.elapsed()))
}

/// Opens the client's connections before timing (one `/health` per connection, all at once),
/// so the first phase does not pay for the TCP handshakes.
async fn warm_up(target: &Target, connections: usize) -> Result<()> {
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        let health = target.client.get(format!("{}/health", target.base));
        tasks.spawn(send(health));
    }
    while let Some(done) = tasks.join_next().await {
        let status = done.context("a warm-up task")?.context("warming up")?;
        anyhow::ensure!(status == 200, "GET /health answered {status}");
    }
    Ok(())
}

/// Fails early, with the reason, unless the poorest payee is eligible and can pay for its share
/// of the withdrawals (each payee gets at most `per_payee`).
async fn check_payable(store: &Store, per_payee: usize) -> Result<()> {
    let account = AccountId::parse(&payee_id(POOREST_PAYEE))?;
    let balance = store.balance(&account).await?;
    let vast = balance
        .program("vast", Currency::Usd)
        .with_context(|| format!("{account} has no vast USD balance"))?;
    anyhow::ensure!(
        vast.eligible,
        "{account} may not withdraw: {}",
        vast.reason.as_deref().unwrap_or("no reason given")
    );
    let needed =
        Money::from_minor_units(WITHDRAWAL_CENTS * i64::try_from(per_payee)?, Currency::Usd);
    anyhow::ensure!(
        vast.payable_now.amount() >= needed.amount(),
        "{account} can pay {} but would get {per_payee} withdrawals of {} ({needed}): \
         raise --payees or lower --withdrawals",
        vast.payable_now,
        Money::from_minor_units(WITHDRAWAL_CENTS, Currency::Usd),
    );
    Ok(())
}

/// Gives PostgreSQL's planner statistics on the bulk-loaded tables. A live server's autovacuum
/// analyzes tables this size within a minute or so of such a load, but the bench starts at
/// once: without statistics the planner joins a balance's postings to a sequential scan of
/// every ledger transaction (about 10 ms per read at 10,000 payees) instead of using the
/// primary key, and the figures would be of that. SQLite plans these queries by its indexes
/// without statistics, so it is left as it is.
async fn analyze(store: &Store) -> Result<()> {
    if let Store::Postgres(s) = store {
        sqlx::query("ANALYZE")
            .execute(s.pool())
            .await
            .context("ANALYZE after the bulk load")?;
    }
    Ok(())
}

async fn count_payouts(store: &Store) -> Result<i64> {
    let n = payouts::on_backend!(store, s => {
        sqlx::query_scalar("SELECT COUNT(*) FROM payouts")
            .fetch_one(s.pool())
            .await
    })?;
    Ok(n)
}

fn withdrawal_body() -> Result<String> {
    let amount = Money::from_minor_units(WITHDRAWAL_CENTS, Currency::Usd).display_amount();
    Ok(serde_json::to_string(&serde_json::json!({
        "program": "vast",
        "rail": "stripe",
        "amount": amount,
        "currency": "USD",
    }))?)
}

fn check_options(opts: &HttpOptions) -> Result<()> {
    anyhow::ensure!(opts.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(opts.requests > 0, "--requests must be at least 1");
    anyhow::ensure!(opts.withdrawals > 0, "--withdrawals must be at least 1");
    anyhow::ensure!(
        (1..MAX_PAYEES).contains(&opts.payees),
        "--payees must be between 1 and {}",
        MAX_PAYEES - 1
    );
    Ok(())
}

/// Everything the report prints.
#[derive(Debug, Serialize)]
struct Figures {
    backend: &'static str,
    cores: usize,
    connections: usize,
    payees: usize,
    setup_secs: f64,
    reads: PhaseFigures,
    withdrawals: PhaseFigures,
    payouts_in_db: i64,
    payouts_match_created: bool,
}

pub(super) async fn http(opts: HttpOptions) -> Result<i32> {
    check_options(&opts)?;
    let progress = Progress {
        started: Instant::now(),
        to_stderr: opts.json,
    };
    let db = BenchDb::create(None, opts.postgres.as_deref()).await?;
    let store = db.open().await?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    progress.say(&format!(
        "bench http: {} payees, {} connections, {} reads, {} withdrawals; database {}; \
         client and server share {cores} cores",
        group(opts.payees as u64),
        opts.connections,
        group(opts.requests as u64),
        group(opts.withdrawals as u64),
        db.describe()
    ));

    let t = Instant::now();
    bulk_payees(&store, opts.payees, false, &progress).await?;
    analyze(&store).await?;
    let setup_secs = t.elapsed().as_secs_f64();
    check_payable(&store, opts.withdrawals.div_ceil(opts.payees)).await?;
    let (_, key) = store
        .create_api_key("bench", Scope::Operator, None)
        .await
        .context("creating the operator key")?;

    let served = Served::start(&store).await?;
    progress.say(&format!("serving the API on {}/v1", served.base));
    let target = Arc::new(Target {
        client: client(opts.connections)?,
        base: served.base.clone(),
        key,
        payees: opts.payees,
        run: ulid::Ulid::generate().to_string(),
        withdrawal_body: withdrawal_body()?,
    });
    warm_up(&target, opts.connections).await?;

    let reads = run_phase(&target, Phase::Reads, opts.requests, &opts, &progress).await?;
    let withdrawals = run_phase(
        &target,
        Phase::Withdrawals,
        opts.withdrawals,
        &opts,
        &progress,
    )
    .await?;
    drop(target);
    served.stop().await?;

    let payouts_in_db = count_payouts(&store).await?;
    let payouts_match_created = u64::try_from(payouts_in_db).ok() == Some(withdrawals.created);
    progress.say(&format!(
        "check: {} payouts in the database, {} withdrawals answered 201",
        group(u64::try_from(payouts_in_db).unwrap_or(0)),
        group(withdrawals.created)
    ));
    store.close().await;
    let backend = db.backend();
    db.remove().await?;

    let figures = Figures {
        backend,
        cores,
        connections: opts.connections,
        payees: opts.payees,
        setup_secs,
        reads,
        withdrawals,
        payouts_in_db,
        payouts_match_created,
    };
    if opts.json {
        outln!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        outln!();
        outln!("{}", report(&figures));
    }
    Ok(0)
}

/// Runs one phase between two progress lines.
async fn run_phase(
    target: &Arc<Target>,
    phase: Phase,
    total: usize,
    opts: &HttpOptions,
    progress: &Progress,
) -> Result<PhaseFigures> {
    progress.say(&format!(
        "{}: {} requests over {} connections",
        phase.name(),
        group(total as u64),
        opts.connections
    ));
    let figures = drive(target, phase, total, opts.connections).await?;
    progress.say(&format!(
        "{}: {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms; not 2xx: {}",
        phase.name(),
        figures.requests_per_sec,
        figures.p50_ms,
        figures.p99_ms,
        figures.failures_text()
    ));
    Ok(figures)
}

/// The figures as a table, with the check and the caveat about shared cores.
fn report(f: &Figures) -> String {
    let row = |name: &str, p: &PhaseFigures| {
        vec![
            name.to_string(),
            group(p.requests as u64),
            format!("{:.2} s", p.secs),
            group(p.requests_per_sec as u64),
            format!("{:.2}", p.p50_ms),
            format!("{:.2}", p.p99_ms),
            format!("{:.2}", p.max_ms),
            p.failures_text(),
        ]
    };
    let rows = vec![
        row("GET balance", &f.reads),
        row("POST withdrawal ($1.00)", &f.withdrawals),
    ];
    let table = render::table(
        &[
            "phase", "requests", "time", "req/s", "p50 ms", "p99 ms", "max ms", "not 2xx",
        ],
        &rows,
    );
    let analyzed = if f.backend == "postgres" {
        ", tables analyzed"
    } else {
        ""
    };
    let check = if f.payouts_match_created { "yes" } else { "NO" };
    format!(
        "{table}\n\n\
         backend {}; {} payees (setup {:.2} s{analyzed}); {} client connections; rate limiting off; no worker.\n\
         check: payouts in the database ({}) equal the 201 answers ({}): {check}\n\
         client and server run in one process and share this machine's {} cores: \
         the figures are of both together.",
        f.backend,
        group(f.payees as u64),
        f.setup_secs,
        f.connections,
        group(u64::try_from(f.payouts_in_db).unwrap_or(0)),
        group(f.withdrawals.created),
        f.cores,
    )
}
