//! `bench accrual`: accrual over a synthetic data set, beside a plain bulk insert of the same
//! rows (see the module documentation of `bench`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use payouts::on_backend;
use payouts::storage::Store;
use payouts::storage::WriteLock;
use payouts::storage::ledger_views::LedgerCheck;
use sqlx::QueryBuilder;

use super::fixture::BenchDb;
use super::synthetic::{
    Frame, Rng, USAGE_SEED, UsageGen, UsageRow, referred_id, referrer_id, rfc3339, template_id,
};
use super::{Progress, group, peak_rss_kib, rate, render, rss_text};

/// Rows per multi-row INSERT, as `storage::BATCH_ROWS` (500) for ingest.
const STATEMENT_ROWS: usize = 500;
/// Progress is printed every this many rows.
const PROGRESS_ROWS: usize = 1_000_000;
/// Referred accounts (with their referrals) per ingest call during setup.
const SETUP_CHUNK: usize = 10_000;
/// Creator templates, capped by the number of referrers (their creators).
const TEMPLATES: usize = 50;

/// The same columns and indexes as `usage` after every migration (core, then programs).
const RAW_DDL: [&str; 3] = [
    "CREATE TABLE usage_raw (
        id           TEXT PRIMARY KEY,
        account_id   TEXT NOT NULL,
        at           INTEGER NOT NULL,
        category     TEXT NOT NULL,
        units        INTEGER NOT NULL CHECK (units > 0),
        currency     TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        template_id  TEXT,
        runtime_secs INTEGER NOT NULL DEFAULT 0 CHECK (runtime_secs >= 0)
    )",
    "CREATE INDEX usage_raw_account ON usage_raw (account_id)",
    "CREATE INDEX usage_raw_template ON usage_raw (template_id, at) WHERE template_id IS NOT NULL",
];

pub(super) struct AccrualOptions {
    pub(super) accounts: usize,
    pub(super) events: usize,
    pub(super) referrers: usize,
    pub(super) dir: Option<PathBuf>,
    pub(super) json: bool,
}

/// Inserts one chunk in one write transaction, `STATEMENT_ROWS` rows per INSERT.
async fn insert_chunk(store: &Store, table: &str, rows: &[UsageRow]) -> Result<()> {
    on_backend!(store, s => {
    let mut tx = s.begin_write(WriteLock::Accrual).await?;
    for part in rows.chunks(STATEMENT_ROWS) {
        let mut q = QueryBuilder::new(format!(
            "INSERT INTO {table} \
             (id, account_id, at, category, units, currency, content_hash, template_id, runtime_secs) "
        ));
        q.push_values(part, |mut b, r| {
            b.push_bind(r.id.as_str())
                .push_bind(r.account.as_str())
                .push_bind(r.at)
                .push_bind(r.category)
                .push_bind(r.units)
                .push_bind("USD")
                .push_bind(r.content_hash.as_str())
                .push_bind(r.template.as_deref())
                .push_bind(r.runtime_secs);
        });
        q.build()
            .execute(&mut *tx)
            .await
            .with_context(|| format!("inserting into {table}"))?;
    }
    tx.commit().await?;
    Ok(())
    })
}

/// Time spent generating and inserting.
struct LoadTimes {
    generate: Duration,
    insert: Duration,
}

/// Generates all usage rows and inserts them into `table`; only the inserts are timed as
/// insert time.
async fn load(
    store: &Store,
    table: &str,
    label: &str,
    opts: &AccrualOptions,
    templates: usize,
    frame: Frame,
    progress: &Progress,
) -> Result<LoadTimes> {
    let mut usage = UsageGen::new(opts.accounts, opts.events, templates, frame);
    let mut times = LoadTimes {
        generate: Duration::ZERO,
        insert: Duration::ZERO,
    };
    let mut done = 0;
    let mut next_report = PROGRESS_ROWS.min(opts.events);
    while done < opts.events {
        let t = Instant::now();
        let rows = usage.chunk();
        times.generate += t.elapsed();
        let t = Instant::now();
        insert_chunk(store, table, &rows).await?;
        times.insert += t.elapsed();
        done += rows.len();
        if done >= next_report {
            progress.say(&format!(
                "{label}: {} / {} rows, {:.1} s inserting, {} rows/s",
                group(done as u64),
                group(opts.events as u64),
                times.insert.as_secs_f64(),
                group(rate(done, times.insert) as u64),
            ));
            next_report = (next_report + PROGRESS_ROWS).min(opts.events);
        }
    }
    Ok(times)
}

/// Ingests referrers, templates, referred accounts and their referrals through the normal
/// ingest path. Returns the number of templates.
async fn setup(store: &Store, opts: &AccrualOptions, frame: Frame) -> Result<usize> {
    let templates = TEMPLATES.min(opts.referrers);
    let mut ndjson = String::new();
    let created = rfc3339(frame.referrer_created);
    for i in 0..opts.referrers {
        ndjson.push_str(&format!(
            "{{\"type\":\"account\",\"id\":\"{}\",\"created_at\":\"{created}\",\"email\":\"r{i}@referrers.bench.example\"}}\n",
            referrer_id(i)
        ));
    }
    for t in 0..templates {
        ndjson.push_str(&format!(
            "{{\"type\":\"template\",\"id\":\"{}\",\"program\":\"runpod-creator\",\"creator\":\"{}\"}}\n",
            template_id(t),
            referrer_id(t)
        ));
    }
    ingest_strict(store, &ndjson).await?;

    let mut rng = Rng(USAGE_SEED ^ 0xacc0_0475);
    let mut start = 0;
    while start < opts.accounts {
        let end = (start + SETUP_CHUNK).min(opts.accounts);
        let mut ndjson = String::new();
        for i in start..end {
            let id = referred_id(i);
            let at = rfc3339(frame.signup(i, opts.accounts));
            let referrer = referrer_id(usize::try_from(rng.below(opts.referrers as u64))?);
            // Half under vast (lifetime), half under runpod (beta cohort before 2025-06-26
            // lifetime, the rest 6 months).
            let program = if i % 2 == 0 { "vast" } else { "runpod" };
            ndjson.push_str(&format!(
                "{{\"type\":\"account\",\"id\":\"{id}\",\"created_at\":\"{at}\",\"email\":\"a{i}@users.bench.example\"}}\n\
                 {{\"type\":\"referral\",\"program\":\"{program}\",\"referrer\":\"{referrer}\",\"referred\":\"{id}\",\"at\":\"{at}\"}}\n"
            ));
        }
        ingest_strict(store, &ndjson).await?;
        start = end;
    }
    Ok(templates)
}

async fn ingest_strict(store: &Store, ndjson: &str) -> Result<()> {
    let report =
        payouts::app::ingest::ingest(store, std::io::Cursor::new(ndjson.to_string()), true).await?;
    anyhow::ensure!(
        report.rejected.is_empty() && !report.rolled_back,
        "the synthetic records were rejected: {:?}",
        report.rejected.iter().take(3).collect::<Vec<_>>()
    );
    Ok(())
}

pub(super) async fn accrual(opts: AccrualOptions) -> Result<i32> {
    anyhow::ensure!(opts.accounts > 0, "--accounts must be at least 1");
    anyhow::ensure!(opts.referrers > 0, "--referrers must be at least 1");
    anyhow::ensure!(opts.events > 0, "--events must be at least 1");
    let progress = Progress {
        started: Instant::now(),
        to_stderr: opts.json,
    };

    // A temporary directory lives until the end of this function and is removed then.
    let bench_db = BenchDb::create(opts.dir.as_ref(), None).await?;
    let store = bench_db.open().await?;
    progress.say(&format!(
        "bench accrual: {} referred accounts, {} referrers, {} usage events; database {}",
        group(opts.accounts as u64),
        group(opts.referrers as u64),
        group(opts.events as u64),
        bench_db.describe()
    ));

    let frame = Frame::new()?;
    let setup = set_up(&store, &opts, frame, &progress).await?;
    for ddl in RAW_DDL {
        on_backend!(&store, s => sqlx::query(ddl).execute(s.pool()).await.map(drop))
            .context("creating usage_raw")?;
    }
    let templates = setup.templates;
    let raw = load(
        &store,
        "usage_raw",
        "raw insert (usage_raw)",
        &opts,
        templates,
        frame,
        &progress,
    )
    .await?;
    let rss_after_raw = peak_rss_kib();
    let loaded = load(
        &store,
        "usage",
        "load (usage)",
        &opts,
        templates,
        frame,
        &progress,
    )
    .await?;
    let rss_after_load = peak_rss_kib();
    let (accrual, rss_after_accrual) = first_accrual(&store, &progress).await?;
    let second = second_accrual(&store, &progress).await?;

    let check = store.check_ledger().await.context("checking the ledger")?;
    let size = bench_db.size_bytes(&store).await;
    store.close().await;
    let total = progress.started.elapsed();
    // VmHWM only grows, but its per-thread counters are synced lazily: keep the largest reading.
    let peak = [
        peak_rss_kib(),
        rss_after_raw,
        rss_after_load,
        rss_after_accrual,
    ]
    .into_iter()
    .flatten()
    .max();
    let figures = Figures {
        events: opts.events,
        setup,
        raw,
        loaded,
        accrual,
        second,
        check,
        size,
        total,
        rss: Rss {
            after_raw: rss_after_raw,
            after_load: rss_after_load,
            after_accrual: rss_after_accrual,
            peak,
        },
    };
    if opts.json {
        outln!("{}", serde_json::to_string_pretty(&figures.json(&opts))?);
    } else {
        outln!();
        outln!(
            "{}",
            render::table(&["phase", "time", "figures"], &figures.table(&opts))
        );
    }
    Ok(0)
}

/// The referral side of the data set, ingested before anything is timed.
struct Setup {
    templates: usize,
    qualified: i64,
    took: Duration,
}

/// Ingests the accounts and referrals, then counts the referrals per status.
async fn set_up(
    store: &Store,
    opts: &AccrualOptions,
    frame: Frame,
    progress: &Progress,
) -> Result<Setup> {
    let t = Instant::now();
    let templates = setup(store, opts, frame).await?;
    let took = t.elapsed();
    let statuses: Vec<(String, i64)> = on_backend!(store, s => {
        sqlx::query_as("SELECT status, COUNT(*) FROM referrals GROUP BY status ORDER BY status")
            .fetch_all(s.pool())
            .await
    })?;
    let qualified = statuses
        .iter()
        .find(|(s, _)| s == "qualified")
        .map_or(0, |(_, n)| *n);
    progress.say(&format!(
        "setup (ingest): {} accounts, {} referrals ({}), {templates} templates in {:.1} s",
        group((opts.accounts + opts.referrers) as u64),
        group(opts.accounts as u64),
        statuses
            .iter()
            .map(|(s, n)| format!("{} {s}", group(u64::try_from(*n).unwrap_or(0))))
            .collect::<Vec<_>>()
            .join(", "),
        took.as_secs_f64()
    ));
    Ok(Setup {
        templates,
        qualified,
        took,
    })
}

/// One timed `reaccrue_all`.
struct Pass {
    took: Duration,
    posted: usize,
}

/// The timed accrual over every referral and template, with the peak RSS right after it.
async fn first_accrual(store: &Store, progress: &Progress) -> Result<(Pass, Option<u64>)> {
    progress.say("accrual: reaccrue_all over every referral and template");
    let t = Instant::now();
    let posted = store.reaccrue_all().await.context("accrual")?;
    let took = t.elapsed();
    let rss = peak_rss_kib();
    progress.say(&format!(
        "accrual: {} transactions posted in {:.1} s",
        group(posted as u64),
        took.as_secs_f64()
    ));
    Ok((Pass { took, posted }, rss))
}

/// The same accrual again: it must post nothing, and its time is what a no-op costs.
async fn second_accrual(store: &Store, progress: &Progress) -> Result<Pass> {
    progress.say("second pass: reaccrue_all again (must post nothing)");
    let t = Instant::now();
    let posted = store.reaccrue_all().await.context("second accrual pass")?;
    let took = t.elapsed();
    progress.say(&format!(
        "second pass: {} transactions posted in {:.1} s",
        group(posted as u64),
        took.as_secs_f64()
    ));
    Ok(Pass { took, posted })
}

/// Peak RSS readings (VmHWM, KiB) after each phase.
struct Rss {
    after_raw: Option<u64>,
    after_load: Option<u64>,
    after_accrual: Option<u64>,
    peak: Option<u64>,
}

/// Everything one run measured, reported as JSON or as a table.
struct Figures {
    events: usize,
    setup: Setup,
    raw: LoadTimes,
    loaded: LoadTimes,
    accrual: Pass,
    second: Pass,
    check: LedgerCheck,
    size: u64,
    total: Duration,
    rss: Rss,
}

impl Figures {
    fn raw_rate(&self) -> f64 {
        rate(self.events, self.raw.insert)
    }

    fn load_rate(&self) -> f64 {
        rate(self.events, self.loaded.insert)
    }

    fn accrual_rate(&self) -> f64 {
        rate(self.events, self.accrual.took)
    }

    /// Accrual throughput over raw insert throughput: the figure the target (0.5) is about.
    fn ratio(&self) -> f64 {
        let raw_rate = self.raw_rate();
        if raw_rate > 0.0 {
            self.accrual_rate() / raw_rate
        } else {
            0.0
        }
    }

    fn generate(&self) -> Duration {
        self.raw.generate + self.loaded.generate
    }

    fn json(&self, opts: &AccrualOptions) -> serde_json::Value {
        serde_json::json!({
            "accounts": opts.accounts,
            "referrers": opts.referrers,
            "events": opts.events,
            "templates": self.setup.templates,
            "qualified_referrals": self.setup.qualified,
            "setup_secs": self.setup.took.as_secs_f64(),
            "generate_secs": self.generate().as_secs_f64(),
            "raw_insert_secs": self.raw.insert.as_secs_f64(),
            "raw_insert_rows_per_sec": self.raw_rate(),
            "load_secs": self.loaded.insert.as_secs_f64(),
            "load_rows_per_sec": self.load_rate(),
            "accrual_secs": self.accrual.took.as_secs_f64(),
            "accrual_events_per_sec": self.accrual_rate(),
            "ratio": self.ratio(),
            "target_ratio": 0.5,
            "transactions_posted": self.accrual.posted,
            "second_pass_secs": self.second.took.as_secs_f64(),
            "second_pass_transactions_posted": self.second.posted,
            "ledger_transactions": self.check.transactions,
            "ledger_postings": self.check.postings,
            "ledger_problems": self.check.problems.len(),
            "peak_rss_kib": self.rss.peak,
            "peak_rss_kib_after_raw_insert": self.rss.after_raw,
            "peak_rss_kib_after_load": self.rss.after_load,
            "peak_rss_kib_after_accrual": self.rss.after_accrual,
            "database_bytes": self.size,
            "total_secs": self.total.as_secs_f64(),
        })
    }

    fn table(&self, opts: &AccrualOptions) -> Vec<Vec<String>> {
        let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
        let per_sec = |r: f64| group(r as u64);
        let check = &self.check;
        vec![
            vec![
                "setup: ingest accounts + referrals".into(),
                secs(self.setup.took),
                format!(
                    "{} accounts, {} qualified referrals, {} templates",
                    group((opts.accounts + opts.referrers) as u64),
                    group(u64::try_from(self.setup.qualified).unwrap_or(0)),
                    self.setup.templates
                ),
            ],
            vec![
                "generate usage rows (x2, untimed below)".into(),
                secs(self.generate()),
                format!("{} rows each pass", group(opts.events as u64)),
            ],
            vec![
                "raw insert into usage_raw".into(),
                secs(self.raw.insert),
                format!("{} rows/s", per_sec(self.raw_rate())),
            ],
            vec![
                "load into usage".into(),
                secs(self.loaded.insert),
                format!("{} rows/s", per_sec(self.load_rate())),
            ],
            vec![
                "accrual (reaccrue_all)".into(),
                secs(self.accrual.took),
                format!(
                    "{} events/s, {} transactions posted",
                    per_sec(self.accrual_rate()),
                    group(self.accrual.posted as u64)
                ),
            ],
            vec![
                "ratio accrual / raw insert".into(),
                String::new(),
                format!("{:.3} (target >= 0.5)", self.ratio()),
            ],
            vec![
                "second pass (reaccrue_all)".into(),
                secs(self.second.took),
                format!(
                    "{} events/s, {} transactions posted",
                    per_sec(rate(opts.events, self.second.took)),
                    group(self.second.posted as u64)
                ),
            ],
            vec![
                "ledger check".into(),
                String::new(),
                format!(
                    "{} transactions, {} postings, {}",
                    group(u64::try_from(check.transactions).unwrap_or(0)),
                    group(u64::try_from(check.postings).unwrap_or(0)),
                    if check.is_ok() {
                        "balanced".to_string()
                    } else {
                        format!("{} problems", check.problems.len())
                    }
                ),
            ],
            vec![
                "peak RSS (VmHWM)".into(),
                String::new(),
                format!(
                    "{} (after raw insert {}, after load {}, after accrual {})",
                    rss_text(self.rss.peak),
                    rss_text(self.rss.after_raw),
                    rss_text(self.rss.after_load),
                    rss_text(self.rss.after_accrual)
                ),
            ],
            vec![
                "database size".into(),
                String::new(),
                format!(
                    "{} MiB (both usage tables)",
                    group(self.size / (1024 * 1024))
                ),
            ],
            vec!["total".into(), secs(self.total), String::new()],
        ]
    }
}
