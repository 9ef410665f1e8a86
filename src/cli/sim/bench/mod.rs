//! Throughput benchmarks, printed as figures (never pass/fail: these machines are noisy).
//!
//! `bench accrual` builds a synthetic data set on a fresh SQLite database: referrers, referred
//! accounts with their referrals (through the normal ingest path), a few creator templates,
//! and many usage events generated deterministically in bounded chunks. The same usage rows
//! are bulk inserted twice with the same method (multi-row INSERTs in large transactions):
//! first into `usage_raw`, a copy of the `usage` table with the same columns and indexes, as
//! the baseline, then into `usage` itself. Then `Store::reaccrue_all` is timed over all of
//! it, twice (the second pass must post nothing), and its rate is set beside the baseline.
//!
//! `bench run` (run.rs) times a scheduled payout run's eligibility pass over many payees
//! written with bulk SQL (fixture.rs); `bench execution` (execution.rs) times payouts paid end
//! to end by the worker against the Stripe mock, beside the database's raw commit rate; `bench
//! http` (http.rs) times balance reads and withdrawals through the HTTP API served in process,
//! under concurrent load from a loopback client.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Subcommand;

use crate::cli::render;

mod accrual;
mod execution;
mod fixture;
mod http;
mod ingest;
mod ingest_http;
mod reconcile;
mod retention;
mod run;
mod served;
mod synthetic;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Accrual over a synthetic data set, beside a plain bulk insert of the same rows.
    Accrual {
        /// Referred accounts (each referred once, under vast or runpod).
        #[arg(long, default_value_t = 100_000)]
        accounts: usize,
        /// Usage events spread over the referred accounts.
        #[arg(long, default_value_t = 10_000_000)]
        events: usize,
        /// Referrers the referrals are spread over.
        #[arg(long, default_value_t = 1_000)]
        referrers: usize,
        /// Directory for the database file (bench.db); by default a temporary directory that
        /// is removed afterwards.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print the figures as one JSON object (progress goes to standard error).
        #[arg(long)]
        json: bool,
    },
    /// The eligibility pass of a scheduled payout run over many payees (dry, then for real).
    Run {
        /// Payees written with bulk SQL; one in five is skipped for one of four reasons.
        #[arg(long, default_value_t = 1_000_000)]
        payees: usize,
        /// Directory for the database file (bench.db); by default a temporary directory that
        /// is removed afterwards.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Run on PostgreSQL instead: a server URL such as postgres://postgres@127.0.0.1:5432,
        /// on which a fresh database is created and dropped afterwards.
        #[arg(long)]
        postgres: Option<String>,
        /// Time the eligibility pass only; skip creating the payouts.
        #[arg(long)]
        dry_run_only: bool,
        /// Print the figures as one JSON object (progress goes to standard error).
        #[arg(long)]
        json: bool,
    },
    /// Payout execution end to end against the loopback Stripe mock, per worker count,
    /// beside the raw commit rate of the same database.
    Execution {
        /// Payouts queued by one run and paid by the worker, per worker count.
        #[arg(long, default_value_t = 2_000)]
        payouts: usize,
        /// Worker concurrencies to measure, each on a fresh database.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4])]
        workers: Vec<usize>,
        /// Run on PostgreSQL instead: a server URL such as postgres://postgres@127.0.0.1:5432,
        /// on which a fresh database per worker count is created and dropped afterwards.
        #[arg(long)]
        postgres: Option<String>,
        /// Print the figures as one JSON object (progress goes to standard error).
        #[arg(long)]
        json: bool,
    },
    /// `payouts ingest` of a generated file of usage events (with the accruals they cause),
    /// run as a user runs it, beside the engine's own bulk load of the same rows (COPY on
    /// PostgreSQL; the sqlite3 shell's .import, or without it a prepared insert loop in one
    /// transaction, on SQLite): both rates, their ratio and the ingest's peak RSS.
    Ingest(ingest::IngestOptions),
    /// Table sizes after a run of payouts paid end to end (events delivered, the day
    /// reconciled), then after a prune a year later; fails if a book lost a row.
    Retention(retention::RetentionOptions),
    /// The HTTP API under concurrent load from a loopback client in the same process: balance
    /// reads, then withdrawals, each phase's requests/s and latencies (client and server share
    /// the machine's cores).
    Http {
        /// Concurrent client tasks, each sending its next request once the last is answered,
        /// over one shared HTTP client with a connection per task.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Balance reads (`GET /v1/accounts/{account}/balance`), spread over the payees.
        #[arg(long, default_value_t = 50_000)]
        requests: usize,
        /// Withdrawals of $1.00 (`POST /v1/accounts/{account}/withdrawals`), each with a new
        /// Idempotency-Key, spread over the payees (at most 7 per payee: the poorest can
        /// cash out $7.50).
        #[arg(long, default_value_t = 5_000)]
        withdrawals: usize,
        /// Payees written with bulk SQL, every one eligible to withdraw.
        #[arg(long, default_value_t = 10_000)]
        payees: usize,
        /// Run on PostgreSQL instead: a server URL such as postgres://postgres@127.0.0.1:5432,
        /// on which a fresh database is created and dropped afterwards.
        #[arg(long)]
        postgres: Option<String>,
        /// Print the figures as one JSON object (progress goes to standard error).
        #[arg(long)]
        json: bool,
    },
    /// One reconciliation of a Stripe statement against a day of paid payouts, every kind of
    /// discrepancy injected: records/s, peak memory, and whether exactly the injected ones
    /// were found (the command fails otherwise).
    Reconcile {
        /// Paid Stripe payouts written with bulk SQL, created over today; the statement holds
        /// one transfer per payout, discrepancies aside.
        #[arg(long, default_value_t = 1_000_000)]
        payouts: usize,
        /// Fraction of the payouts given each kind of discrepancy (seven kinds, each on
        /// payouts of its own).
        #[arg(long, default_value_t = 0.001)]
        rate: f64,
        /// Directory for the statement file (and the SQLite database, bench.db); by default a
        /// temporary directory that is removed afterwards.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Run on PostgreSQL instead: a server URL such as postgres://postgres@127.0.0.1:5432,
        /// on which a fresh database is created and dropped afterwards.
        #[arg(long)]
        postgres: Option<String>,
        /// Keep the database and the statement afterwards (for EXPLAIN), and say where.
        #[arg(long)]
        keep: bool,
        /// Print the figures as one JSON object (progress goes to standard error).
        #[arg(long)]
        json: bool,
    },
}

pub async fn bench(command: BenchCommand) -> Result<i32> {
    match command {
        BenchCommand::Accrual {
            accounts,
            events,
            referrers,
            dir,
            json,
        } => {
            accrual::accrual(accrual::AccrualOptions {
                accounts,
                events,
                referrers,
                dir,
                json,
            })
            .await
        }
        BenchCommand::Run {
            payees,
            dir,
            postgres,
            dry_run_only,
            json,
        } => {
            run::run(run::RunOptions {
                payees,
                dir,
                postgres,
                dry_run_only,
                json,
            })
            .await
        }
        BenchCommand::Ingest(options) => ingest::ingest(options).await,
        BenchCommand::Retention(options) => retention::retention(options).await,
        BenchCommand::Execution {
            payouts,
            workers,
            postgres,
            json,
        } => {
            execution::execution(execution::ExecutionOptions {
                payouts,
                workers,
                postgres,
                json,
            })
            .await
        }
        BenchCommand::Http {
            connections,
            requests,
            withdrawals,
            payees,
            postgres,
            json,
        } => {
            http::http(http::HttpOptions {
                connections,
                requests,
                withdrawals,
                payees,
                postgres,
                json,
            })
            .await
        }
        BenchCommand::Reconcile {
            payouts,
            rate,
            dir,
            postgres,
            keep,
            json,
        } => {
            reconcile::reconcile_bench(reconcile::ReconcileOptions {
                payouts,
                rate,
                dir,
                postgres,
                keep,
                json,
            })
            .await
        }
    }
}

/// The bonus seed used when RUNPOD_BONUS_SEED is not set. Public: bench data only.
const BENCH_BONUS_SEED: &str = "bench-seed-public-never-use-in-production";

/// Prints progress: to standard output, or to standard error when stdout carries JSON.
struct Progress {
    started: Instant,
    to_stderr: bool,
}

impl Progress {
    fn say(&self, text: &str) {
        let line = format!("[{:>7.1}s] {text}", self.started.elapsed().as_secs_f64());
        if self.to_stderr {
            eprintln!("{line}");
        } else {
            outln!("{line}");
        }
    }
}

/// Peak resident set size so far (VmHWM), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn rss_text(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "n/a".into(),
        |k| format!("{} MiB", group(k.div_ceil(1024))),
    )
}

/// Bytes of the database file and its WAL.
fn db_bytes(db: &Path) -> u64 {
    let wal = db.with_extension("db-wal");
    [db, wal.as_path()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

fn rate(rows: usize, took: Duration) -> f64 {
    let secs = took.as_secs_f64();
    if secs > 0.0 { rows as f64 / secs } else { 0.0 }
}

/// 1234567 -> "1,234,567".
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
