//! `bench ingest`: `payouts ingest` of a generated NDJSON file, run as a user runs it (this
//! binary, a child process, its peak memory read from /proc), beside the engine's own bulk
//! load of the same usage rows into a plain table with a primary key: COPY on PostgreSQL, a
//! prepared-statement insert loop in one transaction on SQLite. The ratio is ours over the
//! engine's, in usage rows a second. Then the API's half: the same records posted to
//! `POST /v1/ingest` (see `ingest_http`), its sustained records a second.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use payouts::storage::Store;
use serde::Serialize;

use super::fixture::{BenchDb, BenchDir};
use super::ingest_http::{HttpIngest, http_ingest};
use super::{BENCH_BONUS_SEED, Progress, group};

#[derive(clap::Args)]
pub struct IngestOptions {
    /// Usage events in the file.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// Referrers the usage is spread over (each with one referred account).
    #[arg(long, default_value_t = 10_000)]
    pub referrers: usize,
    /// Usage events of the same file also posted to `POST /v1/ingest` (after every account
    /// and referral) on a fresh database, for the API's sustained records/s; 0 skips it.
    #[arg(long, default_value_t = 200_000)]
    pub http_events: usize,
    /// Run on PostgreSQL instead: a server URL such as postgres://postgres@127.0.0.1:5432,
    /// on which a fresh database is created and dropped afterwards.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Print the figures as one JSON object (progress goes to standard error).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Figures {
    backend: &'static str,
    events: usize,
    lines: usize,
    ingest_secs: f64,
    ingest_rows_per_sec: f64,
    engine_secs: f64,
    engine_rows_per_sec: f64,
    ratio: f64,
    peak_rss_kib: u64,
    engine_method: &'static str,
    /// The same engine load into a table shaped like the product's `usage` (its columns,
    /// checks and account index): what any ingest into this schema must at least spend.
    engine_product_secs: f64,
    engine_product_rows_per_sec: f64,
    /// `engine_secs / engine_product_secs`: the highest `ratio` an ingest that did nothing
    /// but load the rows into the product's table could reach.
    best_ratio: f64,
    /// Ours over the engine's load into the product-shaped table.
    ratio_to_product_load: f64,
    /// `POST /v1/ingest` of the same records; absent when skipped (`--http-events 0`).
    http: Option<HttpIngest>,
}

/// One usage line per event over `referrers` referred accounts, after the accounts and
/// referrals; deterministic.
fn write_file(path: &Path, events: usize, referrers: usize) -> Result<usize> {
    let mut f = BufWriter::new(std::fs::File::create(path)?);
    let mut lines = 0;
    for i in 0..referrers {
        let r = format!("r{i:06}");
        writeln!(
            f,
            r#"{{"type":"account","id":"{r}","created_at":"2025-01-01T00:00:00Z","email":"{r}@x.com"}}"#
        )?;
        writeln!(
            f,
            r#"{{"type":"account","id":"{r}-u","created_at":"2025-02-01T00:00:00Z","email":"{r}-u@x.com"}}"#
        )?;
        writeln!(
            f,
            r#"{{"type":"referral","program":"vast","referrer":"{r}","referred":"{r}-u","at":"2025-02-01T00:00:00Z"}}"#
        )?;
        lines += 3;
    }
    for j in 0..events {
        let i = (j.wrapping_mul(7_919)) % referrers.max(1);
        writeln!(
            f,
            r#"{{"type":"usage","id":"u{j:09}","account":"r{i:06}-u","at":"2025-03-01T00:00:00Z","category":"instance","amount":"1.25","currency":"USD"}}"#
        )?;
        lines += 1;
    }
    f.flush()?;
    Ok(lines)
}

/// The table an engine load fills: the issue's plain table with a primary key, or one shaped
/// like the product's `usage` table.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Plain,
    Product,
}

impl Shape {
    /// The table's DDL; `integer` is the backend's 64-bit integer type. The product shape
    /// has `usage`'s columns, checks and account index, without its template columns: the
    /// sqlite3 shell's CSV import cannot write their NULL, and for these rows (no template)
    /// they hold nothing and no index entry.
    fn ddl(self, integer: &str, units: &str) -> Vec<String> {
        match self {
            Shape::Plain => vec![format!(
                "CREATE TABLE bench_usage (id TEXT PRIMARY KEY, account_id TEXT NOT NULL, \
                 at {integer} NOT NULL, category TEXT NOT NULL, currency TEXT NOT NULL, \
                 units {units} NOT NULL)"
            )],
            Shape::Product => vec![
                format!(
                    "CREATE TABLE bench_usage (id TEXT PRIMARY KEY, account_id TEXT NOT NULL, \
                     at {integer} NOT NULL, category TEXT NOT NULL, currency TEXT NOT NULL, \
                     units {units} NOT NULL CHECK (units > 0), content_hash TEXT NOT NULL)"
                ),
                "CREATE INDEX bench_usage_account ON bench_usage (account_id)".into(),
            ],
        }
    }

    /// Row `j`'s fields in column order, separated by `sep`.
    fn row(self, j: usize, referrers: usize, sep: char) -> String {
        let i = (j.wrapping_mul(7_919)) % referrers.max(1);
        let mut row =
            format!("u{j:09}{sep}r{i:06}-u{sep}1740787200000{sep}instance{sep}USD{sep}12500000000");
        if self == Shape::Product {
            // As wide as a stored content hash (32 hex digits), and as varied.
            let hash = (j as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
            row.push_str(&format!("{sep}{hash:032x}"));
        }
        row
    }

    fn columns(self) -> &'static str {
        match self {
            Shape::Plain => "id, account_id, at, category, currency, units",
            Shape::Product => "id, account_id, at, category, currency, units, content_hash",
        }
    }
}

/// Runs `payouts ingest FILE` against `url`; returns its wall time and peak RSS (KiB).
fn ingest_as_a_user(file: &Path, url: &str) -> Result<(Duration, u64)> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let started = Instant::now();
    let mut child = std::process::Command::new(exe)
        .args(["ingest", &file.display().to_string(), "--json"])
        .env("DATABASE_URL", url)
        .env("PAYOUTS_PROGRAMS", "vast,runpod")
        .env("RUNPOD_BONUS_SEED", BENCH_BONUS_SEED)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting payouts ingest")?;
    let mut peak = 0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        peak = peak.max(vm_hwm(child.id()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    };
    anyhow::ensure!(status.success(), "payouts ingest failed: {status}");
    Ok((started.elapsed(), peak))
}

/// A process's peak resident set so far (KiB), from /proc.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// SQLite's own shell, when installed: `.import` of the rows as CSV into a table of `shape`
/// in a fresh file (the figure the engine reaches with no driver between).
fn sqlite_import(
    dir: &Path,
    shape: Shape,
    events: usize,
    referrers: usize,
) -> Result<Option<Duration>> {
    let Ok(probe) = std::process::Command::new("sqlite3")
        .arg("-version")
        .output()
    else {
        return Ok(None);
    };
    if !probe.status.success() {
        return Ok(None);
    }
    let csv = dir.join("usage.csv");
    let mut f = BufWriter::new(std::fs::File::create(&csv)?);
    for j in 0..events {
        writeln!(f, "{}", shape.row(j, referrers, ','))?;
    }
    f.flush()?;
    let db = dir.join("engine.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    // The product's connections run with a 64 MiB page cache (storage::sqlite); so does this.
    let script = format!(
        "PRAGMA journal_mode=WAL;\nPRAGMA cache_size=-65536;\n{};\n.mode csv\n.import {} bench_usage\n",
        shape.ddl("INTEGER", "INTEGER").join(";\n"),
        csv.display()
    );
    let started = Instant::now();
    let mut child = std::process::Command::new("sqlite3")
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    if let Some(stdin) = child.stdin.as_mut() {
        stdin.write_all(script.as_bytes())?;
    }
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "sqlite3 .import failed: {status}");
    Ok(Some(started.elapsed()))
}

/// The engine's own bulk load of the same usage rows into a fresh table of `shape`.
async fn engine_load(
    store: &Store,
    shape: Shape,
    events: usize,
    referrers: usize,
) -> Result<(Duration, &'static str)> {
    match store {
        Store::Postgres(s) => {
            let mut conn = s.pool().acquire().await?;
            sqlx::query("DROP TABLE IF EXISTS bench_usage")
                .execute(&mut *conn)
                .await?;
            for ddl in shape.ddl("BIGINT", "NUMERIC(38,0)") {
                sqlx::query(sqlx::AssertSqlSafe(ddl))
                    .execute(&mut *conn)
                    .await?;
            }
            let started = Instant::now();
            let copy = format!("COPY bench_usage ({}) FROM STDIN", shape.columns());
            let mut copy = conn.copy_in_raw(&copy).await?;
            let mut data = String::with_capacity(1 << 20);
            for j in 0..events {
                data.push_str(&shape.row(j, referrers, '\t'));
                data.push('\n');
                if data.len() >= 1 << 20 {
                    copy.send(std::mem::take(&mut data).into_bytes()).await?;
                }
            }
            copy.send(data.into_bytes()).await?;
            copy.finish().await?;
            Ok((started.elapsed(), "COPY"))
        }
        Store::Sqlite(s) => {
            let mut conn = s.pool().acquire().await?;
            sqlx::query("DROP TABLE IF EXISTS bench_usage")
                .execute(&mut *conn)
                .await?;
            for ddl in shape.ddl("INTEGER", "INTEGER") {
                sqlx::query(sqlx::AssertSqlSafe(ddl))
                    .execute(&mut *conn)
                    .await?;
            }
            let columns = shape.columns().split(", ").count();
            let insert = format!(
                "INSERT INTO bench_usage ({}) VALUES ({})",
                shape.columns(),
                (1..=columns)
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let started = Instant::now();
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            for j in 0..events {
                let row = shape.row(j, referrers, '\t');
                let mut q = sqlx::query(sqlx::AssertSqlSafe(insert.as_str()));
                for field in row.split('\t') {
                    q = q.bind(field.to_string());
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok((started.elapsed(), "prepared INSERT loop, one transaction"))
        }
    }
}

/// The engine's load of the rows into a table of `shape`: the sqlite3 shell where it is
/// installed, else the driver (`engine_load`) on a fresh database of the bench's kind.
async fn engine_figure(
    db: &BenchDb,
    dir: &Path,
    shape: Shape,
    opts: &IngestOptions,
) -> Result<(Duration, &'static str)> {
    if matches!(db, BenchDb::Sqlite { .. })
        && let Some(took) = sqlite_import(dir, shape, opts.events, opts.referrers)?
    {
        return Ok((took, "sqlite3 .import"));
    }
    let store = db.open().await?;
    let loaded = engine_load(&store, shape, opts.events, opts.referrers).await;
    store.close().await;
    loaded
}

pub(super) async fn ingest(opts: IngestOptions) -> Result<i32> {
    let progress = Progress {
        started: Instant::now(),
        to_stderr: opts.json,
    };
    let dir = BenchDir::new(None)?;
    let file = dir.path.join("usage.ndjson");
    progress.say(&format!(
        "writing {} usage events",
        group(opts.events as u64)
    ));
    let lines = write_file(&file, opts.events, opts.referrers)?;

    let db = BenchDb::create(None, opts.postgres.as_deref()).await?;
    let url = db.url();
    // The schema first (the child would make it too; its time is not ingest's).
    db.open().await?.close().await;
    progress.say(&format!(
        "payouts ingest of {} lines on {}",
        group(lines as u64),
        db.describe()
    ));
    let (took, peak_rss_kib) = ingest_as_a_user(&file, &url)?;
    progress.say("the engine's own bulk load of the same usage rows");
    let (engine, engine_method) = engine_figure(&db, &dir.path, Shape::Plain, &opts).await?;
    progress.say("the same, into a table shaped like the product's usage table");
    let (product, _) = engine_figure(&db, &dir.path, Shape::Product, &opts).await?;
    let backend = db.backend();
    db.remove().await?;
    let http = match opts.http_events.min(opts.events) {
        0 => None,
        usage => {
            let records = lines - opts.events + usage;
            Some(http_ingest(&file, records, opts.postgres.as_deref(), &progress).await?)
        }
    };

    let per_sec = |d: Duration| opts.events as f64 / d.as_secs_f64().max(1e-9);
    let figures = Figures {
        backend,
        events: opts.events,
        lines,
        ingest_secs: took.as_secs_f64(),
        ingest_rows_per_sec: per_sec(took),
        engine_secs: engine.as_secs_f64(),
        engine_rows_per_sec: per_sec(engine),
        ratio: per_sec(took) / per_sec(engine),
        peak_rss_kib,
        engine_method,
        engine_product_secs: product.as_secs_f64(),
        engine_product_rows_per_sec: per_sec(product),
        best_ratio: per_sec(product) / per_sec(engine),
        ratio_to_product_load: per_sec(took) / per_sec(product),
        http,
    };
    if opts.json {
        crate::cli::print_json(&figures)?;
    } else {
        outln!(
            "ingest on {backend}: {} lines ({} usage rows, with their accruals)",
            group(lines as u64),
            group(opts.events as u64)
        );
        outln!(
            "  payouts ingest   {:>8.2} s  {:>10} rows/s  peak RSS {} MiB",
            figures.ingest_secs,
            group(figures.ingest_rows_per_sec as u64),
            peak_rss_kib / 1024
        );
        outln!(
            "  engine ({engine_method}) {:>8.2} s  {:>10} rows/s",
            figures.engine_secs,
            group(figures.engine_rows_per_sec as u64)
        );
        outln!(
            "  engine, into the product's usage shape (+ content hash, checks, account index) {:>8.2} s  {:>10} rows/s",
            figures.engine_product_secs,
            group(figures.engine_product_rows_per_sec as u64)
        );
        outln!("  ratio {:.3} of the engine's own bulk load", figures.ratio);
        outln!(
            "  ratio {:.3} of the engine's load into the product's shape, whose own ratio (the best any ingest into this schema can reach) is {:.3}",
            figures.ratio_to_product_load,
            figures.best_ratio
        );
        if let Some(h) = &figures.http {
            outln!(
                "  POST /v1/ingest  {:>8.2} s  {:>10} records/s  ({} records in {} requests of at most {}, one client)",
                h.secs,
                group(h.records_per_sec as u64),
                group(h.records as u64),
                group(h.requests as u64),
                group(payouts::http::api::ingest::MAX_RECORDS as u64)
            );
        }
    }
    Ok(0)
}
