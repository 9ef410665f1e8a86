//! `bench reconcile`: one reconciliation of a Stripe statement against a day of payouts, with
//! every kind of discrepancy injected, checked to be found exactly.
//!
//! `--payouts` paid Stripe payouts are written with set-based SQL on a fresh database, created
//! over today (UTC), each with its posted hold and one landed attempt whose `rail_ref` is the
//! payout id (Stripe's transfer_group). Then a Stripe transfers export is streamed to a file,
//! one transfer per payout (every other row carries the payout id in its metadata column, the
//! rest only the transfer group, so both links are exercised), except on `--rate` × payouts
//! of each kind of discrepancy, each kind on its own payouts:
//!
//! - unknown_at_provider: an extra transfer whose group and metadata name no payout;
//! - duplicate_at_provider: a second transfer for the payout (one exception naming both);
//! - missing_at_provider: the payout's transfer left out;
//! - amount_mismatch (one cent more), currency_mismatch (EUR), payee_mismatch (another
//!   account), status_mismatch (the transfer reversed while our payout is paid).
//!
//! `payouts::reconcile::reconcile` is then timed over the file for today, the process's peak
//! resident memory measured over that call alone (VmHWM after resetting it), and the run's
//! exceptions compared with what was injected: any injected discrepancy missed or any other
//! exception found makes the command fail (after printing its figures).

mod plan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use payouts::domain::ids::Rail;
use payouts::domain::reconcile::{Period, Tolerances};
use payouts::providers::rail::Rails;
use payouts::reconcile::{ReconcileRequest, RecordsFrom, reconcile};
use payouts::storage::{ReconRun, Store, Trigger};
use serde::Serialize;

use super::fixture::{BenchDb, BenchDir};
use super::{Progress, group, peak_rss_kib, rate, render, rss_text};
use plan::{INJECTED, Plan, key, seed, write_file};

pub(super) struct ReconcileOptions {
    pub(super) payouts: usize,
    pub(super) rate: f64,
    pub(super) dir: Option<PathBuf>,
    pub(super) postgres: Option<String>,
    pub(super) keep: bool,
    pub(super) json: bool,
}

/// The targets for 1,000,000 records on this kind of machine: 10 s on PostgreSQL, 30 s on
/// SQLite.
fn target_secs_per_million(backend: &str) -> f64 {
    if backend == "postgres" { 10.0 } else { 30.0 }
}

/// Resets the process's peak resident set size (VmHWM) to its current size: Linux only.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Notes when matching starts and shows reading progress.
struct Phases<'a> {
    progress: &'a Progress,
    matching_at: Mutex<Option<Instant>>,
    shown: AtomicU64,
}

impl payouts::reconcile::Progress for Phases<'_> {
    fn records_read(&self, _rail: Rail, total: u64) {
        let step = 250_000;
        if total / step > self.shown.load(Ordering::Relaxed) / step {
            self.shown.store(total, Ordering::Relaxed);
            self.progress.say(&format!(
                "reconcile: {} records read and stored",
                group(total)
            ));
        }
    }

    fn matching(&self, records: u64) {
        if let Ok(mut at) = self.matching_at.lock() {
            *at = Some(Instant::now());
        }
        self.progress.say(&format!(
            "reconcile: {} records stored; matching",
            group(records)
        ));
    }
}

/// Found against expected, for one kind.
#[derive(Debug, Default, Serialize)]
struct KindFigures {
    expected: u64,
    found: u64,
    missed: u64,
    unexpected: u64,
}

#[derive(Debug, Serialize)]
struct Figures {
    backend: &'static str,
    payouts: usize,
    rate: f64,
    /// Discrepancies injected of each kind (one exception each).
    injected_per_kind: usize,
    statement_records: u64,
    statement_bytes: u64,
    setup_secs: f64,
    statement_secs: f64,
    /// `reconcile` end to end: reading, storing, matching, the run read back.
    reconcile_secs: f64,
    read_store_secs: f64,
    match_secs: f64,
    records_per_sec: f64,
    target_secs: f64,
    /// VmHWM over the reconcile call alone; `null` where it cannot be reset (not Linux).
    peak_rss_kib: Option<u64>,
    /// Records linked to a payout, by how.
    matched_by: BTreeMap<String, i64>,
    kinds: BTreeMap<&'static str, KindFigures>,
    exceptions: u64,
    all_found: bool,
    nothing_unexpected: bool,
    /// A few of the missed and unexpected, to start looking.
    samples: Vec<String>,
    database_bytes: u64,
    total_secs: f64,
}

pub(super) async fn reconcile_bench(opts: ReconcileOptions) -> Result<i32> {
    let today = Utc::now().date_naive();
    let period = Period::day(today);
    let plan = Plan::new(opts.payouts, opts.rate, period.start())?;
    let progress = Progress {
        started: Instant::now(),
        to_stderr: opts.json,
    };
    // The statement goes in the database's directory: --dir, or a temporary one.
    let files = BenchDir::new(opts.dir.as_ref())?;
    let db = BenchDb::create(Some(&files.path), opts.postgres.as_deref()).await?;
    let store = db.open().await?;
    progress.say(&format!(
        "bench reconcile: {} payouts, {} of each of {} discrepancy kinds; database {}",
        group(plan.payouts as u64),
        group(plan.per_kind as u64),
        INJECTED.len(),
        db.describe()
    ));

    let t = Instant::now();
    seed(&store, &plan, &progress).await?;
    let setup = t.elapsed();

    let path = files.path.join("stripe-transfers.csv");
    let t = Instant::now();
    let statement_bytes = write_file(&plan, &path)?;
    let statement_time = t.elapsed();
    progress.say(&format!(
        "statement: {} records, {} MiB in {:.2} s ({})",
        group(plan.statement_records()),
        group(statement_bytes / (1024 * 1024)),
        statement_time.as_secs_f64(),
        path.display()
    ));

    let timed = TimedRun::reconcile(&store, period, &path, &progress).await?;
    let run = &timed.run;
    let (kinds, samples, exceptions) = compare(&store, run, &plan).await?;
    let matched_by = matched_by(&store, &run.id).await?;
    let size = db.size_bytes(&store).await;
    store.close().await;
    let backend = db.backend();
    if opts.keep {
        progress.say(&format!(
            "kept: database {}, statement {}",
            db.describe(),
            path.display()
        ));
        std::mem::forget(db);
        std::mem::forget(files);
    } else {
        db.remove().await?;
    }

    let all_found = kinds.values().all(|k| k.missed == 0);
    let nothing_unexpected = kinds.values().all(|k| k.unexpected == 0);
    let figures = Figures {
        backend,
        payouts: plan.payouts,
        rate: opts.rate,
        injected_per_kind: plan.per_kind,
        statement_records: plan.statement_records(),
        statement_bytes,
        setup_secs: setup.as_secs_f64(),
        statement_secs: statement_time.as_secs_f64(),
        reconcile_secs: timed.took.as_secs_f64(),
        read_store_secs: timed.read_store.as_secs_f64(),
        match_secs: timed.matching.as_secs_f64(),
        records_per_sec: rate(plan.statement_records() as usize, timed.took),
        target_secs: target_secs_per_million(backend) * plan.statement_records() as f64 / 1e6,
        peak_rss_kib: timed.peak,
        matched_by,
        kinds,
        exceptions,
        all_found,
        nothing_unexpected,
        samples,
        database_bytes: size,
        total_secs: progress.started.elapsed().as_secs_f64(),
    };
    if opts.json {
        outln!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        outln!();
        outln!("{}", report(&figures));
    }
    if all_found && nothing_unexpected {
        Ok(0)
    } else {
        eprintln!(
            "bench reconcile: the run did not find exactly what was injected (see the figures)"
        );
        Ok(1)
    }
}

/// The timed reconciliation, split where matching started.
struct TimedRun {
    run: ReconRun,
    took: Duration,
    read_store: Duration,
    matching: Duration,
    /// VmHWM over the call alone, where it can be reset.
    peak: Option<u64>,
}

impl TimedRun {
    /// Reconciles the statement at `path` for `period`; fails unless the run completed.
    async fn reconcile(
        store: &Store,
        period: Period,
        path: &Path,
        progress: &Progress,
    ) -> Result<TimedRun> {
        let request = ReconcileRequest {
            period,
            rails: Vec::new(),
            from: RecordsFrom::Statement {
                rail: Rail::Stripe,
                path: path.to_path_buf(),
            },
            trigger: Trigger::Cli,
            tolerances: Tolerances::default(),
            run_id: None,
        };
        let phases = Phases {
            progress,
            matching_at: Mutex::new(None),
            shown: AtomicU64::new(0),
        };
        let measured = reset_peak_rss();
        let t = Instant::now();
        let run = reconcile(store, &Rails::default(), &request, &phases)
            .await
            .context("reconcile")?;
        let took = t.elapsed();
        let peak = if measured { peak_rss_kib() } else { None };
        let matching_at = phases.matching_at.lock().ok().and_then(|at| *at);
        let read_store = matching_at.map_or(took, |at| at.duration_since(t));
        let matching = took.saturating_sub(read_store);
        progress.say(&format!(
            "reconcile: {} in {:.2} s (read and store {:.2} s, match {:.2} s); {} exceptions",
            run.status,
            took.as_secs_f64(),
            read_store.as_secs_f64(),
            matching.as_secs_f64(),
            group(run.exceptions.total)
        ));
        anyhow::ensure!(
            run.status == "completed",
            "the run ended {}: {}",
            run.status,
            run.error.as_deref().unwrap_or("no reason given")
        );
        Ok(TimedRun {
            run,
            took,
            read_store,
            matching,
            peak,
        })
    }
}

/// The run's exceptions against the injected ones, per kind; a few samples of what differs.
async fn compare(
    store: &Store,
    run: &ReconRun,
    plan: &Plan,
) -> Result<(BTreeMap<&'static str, KindFigures>, Vec<String>, u64)> {
    let mut expected = plan.expected();
    let mut kinds: BTreeMap<&'static str, KindFigures> = INJECTED
        .iter()
        .map(|k| (k.code(), KindFigures::default()))
        .collect();
    for (kind, _) in &expected {
        kinds.entry(kind.code()).or_default().expected += 1;
    }
    let found = store.recon_exceptions(&run.id, false).await?;
    let mut samples = Vec::new();
    for e in &found {
        let k = key(e);
        let figures = kinds.entry(e.kind.code()).or_default();
        if expected.remove(&k) {
            figures.found += 1;
        } else {
            figures.unexpected += 1;
            if samples.len() < 10 {
                samples.push(format!(
                    "unexpected {} (payout {}, record {})",
                    e.kind.code(),
                    e.payout_id.as_deref().unwrap_or("-"),
                    e.record_id.as_deref().unwrap_or("-")
                ));
            }
        }
    }
    let mut missed: Vec<_> = expected.into_iter().collect();
    missed.sort();
    for (kind, id) in &missed {
        kinds.entry(kind.code()).or_default().missed += 1;
        if samples.len() < 20 {
            samples.push(format!("missed {} ({id})", kind.code()));
        }
    }
    Ok((kinds, samples, found.len() as u64))
}

/// How the run's records were linked to payouts (`none`: not linked).
async fn matched_by(store: &Store, run_id: &str) -> Result<BTreeMap<String, i64>> {
    let rows: Vec<(Option<String>, i64)> = payouts::on_backend!(store, s => {
        sqlx::query_as(
            "SELECT matched_by, COUNT(*) FROM recon_records WHERE run_id = $1 \
             GROUP BY matched_by",
        )
        .bind(run_id)
        .fetch_all(s.pool())
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(|(by, n)| (by.unwrap_or_else(|| "none".into()), n))
        .collect())
}

fn report(f: &Figures) -> String {
    let secs = |s: f64| format!("{s:.2} s");
    let mut rows = vec![
        vec![
            "setup: bulk SQL payouts".into(),
            secs(f.setup_secs),
            format!(
                "{} paid Stripe payouts over today, with holds and landed attempts",
                group(f.payouts as u64)
            ),
        ],
        vec![
            "statement written".into(),
            secs(f.statement_secs),
            format!(
                "{} records, {} MiB (Stripe transfers export)",
                group(f.statement_records),
                group(f.statement_bytes / (1024 * 1024))
            ),
        ],
        vec![
            "reconcile".into(),
            secs(f.reconcile_secs),
            format!(
                "{} records/s (target on {}: {:.2} s)",
                group(f.records_per_sec as u64),
                f.backend,
                f.target_secs
            ),
        ],
        vec![
            "  read and store".into(),
            secs(f.read_store_secs),
            "parse the CSV, store records in batches".into(),
        ],
        vec![
            "  match and classify".into(),
            secs(f.match_secs),
            format!(
                "linked by {}",
                f.matched_by
                    .iter()
                    .map(|(by, n)| format!("{by}: {}", group(u64::try_from(*n).unwrap_or(0))))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ],
    ];
    rows.push(vec![
        "exceptions found / injected".into(),
        String::new(),
        format!("{} in all", group(f.exceptions)),
    ]);
    for (kind, k) in &f.kinds {
        let mut text = format!("{} / {} found", group(k.found), group(k.expected));
        if k.missed > 0 {
            text.push_str(&format!(", {} MISSED", group(k.missed)));
        }
        if k.unexpected > 0 {
            text.push_str(&format!(", {} UNEXPECTED", group(k.unexpected)));
        }
        rows.push(vec![format!("  {kind}"), String::new(), text]);
    }
    rows.push(vec![
        "check: exactly the injected found".into(),
        String::new(),
        match (f.all_found, f.nothing_unexpected) {
            (true, true) => format!("yes ({} exceptions)", group(f.exceptions)),
            _ => format!("NO: {}", f.samples.join("; ")),
        },
    ]);
    rows.push(vec![
        "peak RSS during reconcile (VmHWM)".into(),
        String::new(),
        rss_text(f.peak_rss_kib),
    ]);
    rows.push(vec![
        "database size".into(),
        String::new(),
        format!("{} MiB", group(f.database_bytes / (1024 * 1024))),
    ]);
    rows.push(vec!["total".into(), secs(f.total_secs), String::new()]);
    format!(
        "{}\n\nbackend {}; {} of each kind injected (rate {}).",
        render::table(&["phase", "time", "figures"], &rows),
        f.backend,
        group(f.injected_per_kind as u64),
        f.rate
    )
}
