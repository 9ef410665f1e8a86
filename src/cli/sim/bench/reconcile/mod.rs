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
//! - duplicate_at_provider: a second transfer for the payout (two exceptions: one per record);
//! - missing_at_provider: the payout's transfer left out;
//! - amount_mismatch (one cent more), currency_mismatch (EUR), payee_mismatch (another
//!   account), status_mismatch (the transfer reversed while our payout is paid).
//!
//! `payouts::reconcile::reconcile` is then timed over the file for today, the process's peak
//! resident memory measured over that call alone (VmHWM after resetting it), and the run's
//! exceptions compared with what was injected: any injected discrepancy missed or any other
//! exception found makes the command fail (after printing its figures).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use payouts::domain::ids::Rail;
use payouts::domain::money::{Currency, Money};
use payouts::domain::reconcile::{
    Exception, ExceptionKind, Period, ProviderRecord, RecordKind, Tolerances,
};
use payouts::domain::tracking::RailState;
use payouts::providers::rail::Rails;
use payouts::providers::records::write_statement;
use payouts::providers::stripe::statement::{FORMAT, to_row};
use payouts::reconcile::{ReconcileRequest, RecordsFrom, reconcile};
use payouts::storage::{ReconRun, Store, Trigger, WriteLock, from_millis, to_millis};
use serde::Serialize;

use super::fixture::{BenchDb, BenchDir};
use super::{Progress, group, peak_rss_kib, rate, render, rss_text};

pub(super) struct ReconcileOptions {
    pub(super) payouts: usize,
    pub(super) rate: f64,
    pub(super) dir: Option<PathBuf>,
    pub(super) postgres: Option<String>,
    pub(super) keep: bool,
    pub(super) json: bool,
}

/// The target for 1,000,000 records on PostgreSQL on this kind of machine.
const TARGET_SECS_PER_MILLION: f64 = 10.0;

/// Payouts written per transaction (and per progress line).
const CHUNK: usize = 100_000;

/// Payout numbers are written with eight digits.
const MAX_PAYOUTS: usize = 100_000_000;

/// Units per cent (amounts are stored at 10 decimal places).
const UNITS_PER_CENT: i64 = 100_000_000;

const DAY_SECS: i64 = 86_400;

/// The injected kinds, in the order of their offset inside each slot of payouts.
const INJECTED: [ExceptionKind; 7] = [
    ExceptionKind::UnknownAtProvider,
    ExceptionKind::DuplicateAtProvider,
    ExceptionKind::MissingAtProvider,
    ExceptionKind::AmountMismatch,
    ExceptionKind::CurrencyMismatch,
    ExceptionKind::PayeeMismatch,
    ExceptionKind::StatusMismatch,
];

/// Which payouts get which discrepancy, and every id and amount of the data set. Payouts are
/// cut into `per_kind` slots of `slot` payouts; the first seven payouts of a slot carry one
/// kind each (the first one keeps its own transfer and gets an unknown one beside it).
struct Plan {
    payouts: usize,
    per_kind: usize,
    slot: usize,
    day_start_ms: i64,
}

impl Plan {
    fn new(payouts: usize, rate: f64, day_start: DateTime<Utc>) -> Result<Plan> {
        anyhow::ensure!(
            (1..MAX_PAYOUTS).contains(&payouts),
            "--payouts must be between 1 and {}",
            MAX_PAYOUTS - 1
        );
        anyhow::ensure!(
            rate.is_finite() && rate >= 0.0,
            "--rate must be a fraction such as 0.001"
        );
        let per_kind = (rate * payouts as f64).round() as usize;
        anyhow::ensure!(
            per_kind * INJECTED.len() <= payouts,
            "--rate {rate} injects {per_kind} discrepancies of each of {} kinds, more than \
             {payouts} payouts can carry (each kind needs payouts of its own)",
            INJECTED.len()
        );
        Ok(Plan {
            payouts,
            per_kind,
            slot: payouts.checked_div(per_kind).unwrap_or(payouts),
            day_start_ms: to_millis(day_start),
        })
    }

    /// The discrepancy payout `i` carries, if any.
    fn injected(&self, i: usize) -> Option<ExceptionKind> {
        if i / self.slot >= self.per_kind {
            return None;
        }
        INJECTED.get(i % self.slot).copied()
    }

    /// Payout `i`'s creation time (whole seconds, spread over the day), in ms.
    fn created_ms(&self, i: usize) -> i64 {
        self.day_start_ms + (i as i64 * DAY_SECS / self.payouts as i64) * 1000
    }

    fn payout_id(i: usize) -> String {
        format!("po_bench{i:08}")
    }

    fn cents(i: usize) -> i64 {
        1000 + (i % 1000) as i64
    }

    /// The transfer Stripe holds for payout `i`, as our books expect it.
    fn transfer(&self, i: usize) -> ProviderRecord {
        let payout = Self::payout_id(i);
        ProviderRecord {
            rail: Rail::Stripe,
            kind: RecordKind::Transfer,
            record_id: format!("tr_bench{i:08}"),
            reference: Some(payout.clone()),
            // Every other row without the metadata column's payout id: linked by its group.
            payout_hint: i.is_multiple_of(2).then_some(payout),
            group_id: None,
            payee: format!("acct_1bench{i:08}"),
            amount: Money::from_minor_units(Self::cents(i), Currency::Usd),
            state: RailState::Paid,
            provider_status: "transferred".into(),
            created_at: from_millis(self.created_ms(i)),
        }
    }

    /// The statement rows for payout `i` (none, one, or two), discrepancies applied.
    fn records(&self, i: usize) -> Vec<ProviderRecord> {
        let mut r = self.transfer(i);
        match self.injected(i) {
            None => vec![r],
            Some(ExceptionKind::UnknownAtProvider) => {
                let unknown = ProviderRecord {
                    record_id: format!("tr_benchx{i:08}"),
                    reference: Some(format!("po_unknown{i:08}")),
                    payout_hint: Some(format!("po_unknown{i:08}")),
                    payee: format!("acct_1unknown{i:08}"),
                    amount: Money::from_minor_units(2500, Currency::Usd),
                    ..r.clone()
                };
                vec![r, unknown]
            }
            Some(ExceptionKind::DuplicateAtProvider) => {
                let second = ProviderRecord {
                    record_id: format!("tr_bench{i:08}dup"),
                    ..r.clone()
                };
                vec![r, second]
            }
            Some(ExceptionKind::MissingAtProvider) => Vec::new(),
            Some(ExceptionKind::AmountMismatch) => {
                r.amount = Money::from_minor_units(Self::cents(i) + 1, Currency::Usd);
                vec![r]
            }
            Some(ExceptionKind::CurrencyMismatch) => {
                r.amount = Money::from_minor_units(Self::cents(i), Currency::Eur);
                vec![r]
            }
            Some(ExceptionKind::PayeeMismatch) => {
                r.payee = format!("acct_1other{i:08}");
                vec![r]
            }
            Some(ExceptionKind::StatusMismatch) => {
                r.state = RailState::Returned;
                r.provider_status = "reversed".into();
                vec![r]
            }
        }
    }

    /// Every exception the run must find, as (kind, key): the record id for the kinds found
    /// per record (unknown, duplicate), the payout id for the others.
    fn expected(&self) -> HashSet<(ExceptionKind, String)> {
        let mut expected = HashSet::new();
        for s in 0..self.per_kind {
            for (offset, kind) in INJECTED.iter().enumerate() {
                let i = s * self.slot + offset;
                let records = self.records(i);
                match kind {
                    ExceptionKind::UnknownAtProvider => {
                        expected.insert((*kind, records[1].record_id.clone()));
                    }
                    ExceptionKind::DuplicateAtProvider => {
                        for r in records {
                            expected.insert((*kind, r.record_id));
                        }
                    }
                    _ => {
                        expected.insert((*kind, Self::payout_id(i)));
                    }
                }
            }
        }
        expected
    }

    /// The statement's rows, generated one payout at a time.
    fn rows(&self) -> impl Iterator<Item = Vec<String>> + '_ {
        (0..self.payouts).flat_map(|i| self.records(i).into_iter().map(|r| to_row(&r)))
    }

    fn statement_records(&self) -> u64 {
        // One per payout, less the missing, plus the duplicates' and the unknown ones.
        (self.payouts + self.per_kind) as u64
    }
}

/// The key an exception is compared by (see [`Plan::expected`]).
fn key(e: &Exception) -> (ExceptionKind, String) {
    let id = match e.kind {
        ExceptionKind::UnknownAtProvider | ExceptionKind::DuplicateAtProvider => {
            e.record_id.clone()
        }
        _ => e.payout_id.clone(),
    };
    (e.kind, id.unwrap_or_default())
}

/// `i` as eight zero-padded digits, in SQL both SQLite and PostgreSQL accept.
const N8: &str = "substr(CAST(100000000 + i AS TEXT), 2)";

/// The statements that write payouts `$1..$2` created over the day from `$3` (ms), of `$4`
/// payouts in all: the posted hold, the paid payout, its landed attempt.
const PAYOUT_SQL: [&str; 3] = [
    "INSERT INTO ledger_transactions (id, kind, status, payout_id, note, created_at, resolved_at) \
     SELECT 'bench-hold' || {n8}, 'payout', 'posted', 'po_bench' || {n8}, 'bench fixture', \
            {at}, {at} FROM seq",
    "INSERT INTO payouts (id, account_id, program, rail, destination, currency, units, status, \
       idempotency_key, request_hash, hold_txn_id, attempts, provider_ref, provider_status, \
       created_at, updated_at) \
     SELECT 'po_bench' || {n8}, 'bench-p' || {n8}, 'vast', 'stripe', 'acct_1bench' || {n8}, \
            'USD', (1000 + i % 1000) * {cent}, 'paid', 'bench-recon-' || {n8}, 'bench', \
            'bench-hold' || {n8}, 1, 'tr_bench' || {n8}, 'transferred', {at}, {at} FROM seq",
    "INSERT INTO payout_attempts (payout_id, attempt_no, provider_key, outcome, provider_ref, \
       started_at, finished_at, rail_ref) \
     SELECT 'po_bench' || {n8}, 1, 'po_bench' || {n8} || '-attempt-1', 'landed', \
            'tr_bench' || {n8}, {at}, {at}, 'po_bench' || {n8} FROM seq",
];

/// Writes the plan's payouts, `CHUNK` per transaction; then gives PostgreSQL's planner its
/// statistics on the loaded tables, as autovacuum would on a live server within a minute of
/// such a load. `recon_records` is left as a fresh database has it: what the run stores is
/// for the run itself to deal with.
async fn seed(store: &Store, plan: &Plan, progress: &Progress) -> Result<()> {
    let seq = match store {
        Store::Postgres(_) => {
            "seq(i) AS (SELECT g FROM generate_series(CAST($1 AS BIGINT), \
             CAST($2 AS BIGINT) - 1) AS g)"
        }
        Store::Sqlite(_) => {
            "seq(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < $2)"
        }
    };
    let at = "($3 + (i * 86400 / $4) * 1000)";
    let mut start = 0;
    while start < plan.payouts {
        let end = (start + CHUNK).min(plan.payouts);
        payouts::on_backend!(store, s => {
            let mut tx = s.begin_write(WriteLock::Run).await?;
            for sql in PAYOUT_SQL {
                let body = sql
                    .replace("{n8}", N8)
                    .replace("{at}", at)
                    .replace("{cent}", &UNITS_PER_CENT.to_string());
                sqlx::query(sqlx::AssertSqlSafe(format!("WITH RECURSIVE {seq} {body}")))
                    .bind(i64::try_from(start)?)
                    .bind(i64::try_from(end)?)
                    .bind(plan.day_start_ms)
                    .bind(i64::try_from(plan.payouts)?)
                    .execute(&mut *tx)
                    .await
                    .with_context(|| format!("writing payouts {start}..{end}"))?;
            }
            tx.commit().await?;
            anyhow::Ok(())
        })?;
        start = end;
        if end == plan.payouts || end.is_multiple_of(CHUNK * 5) {
            progress.say(&format!(
                "setup: {} / {} payouts written",
                group(end as u64),
                group(plan.payouts as u64)
            ));
        }
    }
    if let Store::Postgres(s) = store {
        sqlx::query("ANALYZE ledger_transactions, payouts, payout_attempts")
            .execute(s.pool())
            .await
            .context("ANALYZE after the bulk load")?;
    }
    Ok(())
}

/// Streams the statement to `path`; returns its size in bytes.
fn write_file(plan: &Plan, path: &std::path::Path) -> Result<u64> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    write_statement(&FORMAT, plan.rows(), std::io::BufWriter::new(file))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(std::fs::metadata(path)?.len())
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
    /// Discrepancies injected of each kind (duplicates yield two exceptions each).
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

    let request = ReconcileRequest {
        period,
        rails: Vec::new(),
        from: RecordsFrom::Statement {
            rail: Rail::Stripe,
            path: path.clone(),
        },
        trigger: Trigger::Cli,
        tolerances: Tolerances::default(),
        run_id: None,
    };
    let phases = Phases {
        progress: &progress,
        matching_at: Mutex::new(None),
        shown: AtomicU64::new(0),
    };
    let measured = reset_peak_rss();
    let t = Instant::now();
    let run = reconcile(&store, &Rails::default(), &request, &phases)
        .await
        .context("reconcile")?;
    let reconcile_time = t.elapsed();
    let peak = if measured { peak_rss_kib() } else { None };
    let matching_at = phases.matching_at.lock().ok().and_then(|at| *at);
    let read_store = matching_at.map_or(reconcile_time, |at| at.duration_since(t));
    let matching = reconcile_time.saturating_sub(read_store);
    progress.say(&format!(
        "reconcile: {} in {:.2} s (read and store {:.2} s, match {:.2} s); {} exceptions",
        run.status,
        reconcile_time.as_secs_f64(),
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

    let (kinds, samples, exceptions) = compare(&store, &run, &plan).await?;
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
        reconcile_secs: reconcile_time.as_secs_f64(),
        read_store_secs: read_store.as_secs_f64(),
        match_secs: matching.as_secs_f64(),
        records_per_sec: rate(plan.statement_records() as usize, reconcile_time),
        target_secs: TARGET_SECS_PER_MILLION * plan.statement_records() as f64 / 1e6,
        peak_rss_kib: peak,
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
                "{} records/s (target on PostgreSQL: {:.2} s)",
                group(f.records_per_sec as u64),
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
