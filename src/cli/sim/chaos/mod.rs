//! `payouts sim`: the whole payout engine under a deterministic simulator. Each seed draws a
//! world (payees, rails, provider faults, workers) and plays it out on a simulated clock with
//! crashes, stalls and webhook chaos; the same seed plays the same run, so a failure is
//! replayed exactly with `payouts sim --seed S`. See docs/simulation.md.

mod checks;
mod fresh;
mod run;
mod setup;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use fresh::Backend;

/// What every run of an invocation shares.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    backend: Backend,
    stray: bool,
}
use run::Outcome;

#[derive(Debug, Args)]
pub struct SimOptions {
    /// Play this one seed and print its trace.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Play this many seeds, starting at --first.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    #[arg(long, default_value_t = 1)]
    first: u64,
    /// Threads, each playing one seed at a time.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Also play every seed listed in this file (one per line, `#` comments): the seeds that
    /// once failed, kept as regression cases.
    #[arg(long)]
    regressions: Option<PathBuf>,
    /// Play on PostgreSQL (a server URL such as postgres://postgres@127.0.0.1:5432); a fresh
    /// database per seed, dropped afterwards.
    #[arg(long)]
    postgres: Option<String>,
    /// Also pay a stray transfer at the Stripe mock that no payout asked for: each run must
    /// then report it (a proof that the checks catch money we did not send).
    #[arg(long)]
    stray: bool,
}

pub async fn sim(opts: SimOptions) -> Result<i32> {
    let mut seeds: Vec<u64> = match opts.seed {
        Some(seed) => vec![seed],
        None => (opts.first..opts.first.saturating_add(opts.seeds)).collect(),
    };
    if let Some(file) = &opts.regressions {
        seeds.extend(regression_seeds(file)?);
    }
    let backend = match opts.postgres {
        Some(url) => Backend::Postgres(url.trim_end_matches('/').to_string()),
        None => Backend::Sqlite,
    };
    let single = opts.seed.is_some();
    let jobs = opts.jobs.max(1);
    let plan = Plan {
        backend,
        stray: opts.stray,
    };
    tokio::task::spawn_blocking(move || play(seeds, jobs, plan, single))
        .await
        .context("the simulator's threads")?
}

fn regression_seeds(file: &PathBuf) -> Result<Vec<u64>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading regression seeds from {}", file.display()))?;
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.parse::<u64>()
                .with_context(|| format!("{}: {l:?} is not a seed", file.display()))
        })
        .collect()
}

/// Plays `seeds` on `jobs` threads; prints each violation as found and the summary.
fn play(seeds: Vec<u64>, jobs: usize, plan: Plan, single: bool) -> Result<i32> {
    let started = Instant::now();
    let seeds = Arc::new(seeds);
    let next = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<Outcome>();
    let mut threads = Vec::new();
    for _ in 0..jobs.min(seeds.len().max(1)) {
        let (seeds, next, tx, plan) = (
            Arc::clone(&seeds),
            Arc::clone(&next),
            tx.clone(),
            plan.clone(),
        );
        threads.push(std::thread::spawn(move || {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&seed) = seeds.get(i) else { return };
                let outcome = std::panic::catch_unwind(|| run::run_seed(seed, &plan))
                    .unwrap_or_else(|_| Outcome {
                        seed,
                        violations: vec!["the run panicked (its message is above)".into()],
                        ..Outcome::default()
                    });
                if tx.send(outcome).is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    let mut summary = Summary::default();
    for outcome in rx {
        if single {
            for line in &outcome.trace {
                outln!("{line}");
            }
            outln!("trace {}", outcome.trace_hash);
        }
        if !outcome.violations.is_empty() {
            report_violation(&outcome);
        }
        summary.add(&outcome);
        if !single && summary.runs % 500 == 0 {
            eprintln!(
                "[{:>6.1}s] {} runs, {} violations",
                started.elapsed().as_secs_f64(),
                summary.runs,
                summary.violating
            );
        }
    }
    for thread in threads {
        let _ = thread.join();
    }
    summary.print(started.elapsed().as_secs_f64());
    Ok(if summary.violating == 0 { 0 } else { 1 })
}

fn report_violation(outcome: &Outcome) {
    eprintln!("\nseed {} broke:", outcome.seed);
    for v in &outcome.violations {
        eprintln!("  - {v}");
    }
    eprintln!("last {} trace lines:", outcome.trace.len().min(50));
    for line in outcome.trace.iter().rev().take(50).rev() {
        eprintln!("  {line}");
    }
    eprintln!("replay: payouts sim --seed {}\n", outcome.seed);
}

#[derive(Debug, Default)]
struct Summary {
    runs: u64,
    violating: u64,
    payouts: u64,
    tally: BTreeMap<&'static str, u64>,
}

impl Summary {
    fn add(&mut self, outcome: &Outcome) {
        self.runs += 1;
        self.payouts += outcome.payouts as u64;
        if !outcome.violations.is_empty() {
            self.violating += 1;
        }
        for (kind, n) in &outcome.tally {
            *self.tally.entry(kind).or_default() += n;
        }
    }

    fn print(&self, secs: f64) {
        outln!("runs      {}", self.runs);
        outln!("payouts   {}", self.payouts);
        outln!("time      {secs:.1} s");
        for (kind, n) in &self.tally {
            outln!("{kind:<34} {n}");
        }
        outln!("{} runs, {} violations", self.runs, self.violating);
    }
}
