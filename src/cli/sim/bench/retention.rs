//! `bench retention`: table sizes after a run of N payouts paid end to end against the
//! Stripe mock (with an events endpoint that takes every event, and the day reconciled),
//! then after a prune as the daily schedule would run it a year later. The books (ledger,
//! payouts, payout events) must come out unchanged; the command fails otherwise.

use anyhow::{Context, Result};
use chrono::Utc;
use payouts::domain::events::EndpointUrl;
use payouts::domain::ids::Rail;
use payouts::domain::reconcile::{Period, Tolerances};
use payouts::domain::retention::Retention;
use payouts::jobs::EventSender;
use payouts::on_backend;
use payouts::reconcile::{Quiet, ReconcileRequest, RecordsFrom, reconcile};
use payouts::sim::stripe::{MockConfig, MockStripe};
use payouts::storage::{Store, Trigger};
use serde::Serialize;

use super::Progress;
use super::execution::{pay_until_idle, payout_deps, queue_payouts};
use super::fixture::BenchDb;

#[derive(clap::Args)]
pub struct RetentionOptions {
    /// Payouts queued by one run and paid by the worker.
    #[arg(long, default_value_t = 10_000)]
    pub payouts: usize,
    /// Run on PostgreSQL instead: a server URL such as postgres://postgres@127.0.0.1:5432,
    /// on which a fresh database is created and dropped afterwards.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Print the figures as one JSON object (progress goes to standard error).
    #[arg(long)]
    pub json: bool,
}

/// The tables shown: what prune takes, then what it must never touch.
const TABLES: [&str; 11] = [
    "jobs",
    "webhook_deliveries",
    "api_idempotency",
    "outgoing_events",
    "event_deliveries",
    "event_delivery_attempts",
    "recon_records",
    "ledger_postings",
    "payouts",
    "payout_events",
    "payout_attempts",
];
const BOOKS: usize = 7;

#[derive(Debug, Clone, Serialize)]
struct Size {
    table: &'static str,
    rows: i64,
    /// PostgreSQL only: the table with its indexes and TOAST.
    bytes: Option<i64>,
}

async fn sizes(store: &Store) -> Result<Vec<Size>> {
    let mut out = Vec::new();
    for table in TABLES {
        let real = match (table, store) {
            ("jobs", Store::Sqlite(_)) => "Jobs",
            ("jobs", Store::Postgres(_)) => "apalis.jobs",
            (t, _) => t,
        };
        let rows_sql = format!("SELECT COUNT(*) FROM {real}");
        let rows: i64 = on_backend!(store, s => sqlx::query_scalar(sqlx::AssertSqlSafe(rows_sql)).fetch_one(s.pool()).await)?;
        let bytes = match store {
            Store::Postgres(s) => Some(
                sqlx::query_scalar("SELECT pg_total_relation_size($1::regclass)")
                    .bind(real)
                    .fetch_one(s.pool())
                    .await?,
            ),
            Store::Sqlite(_) => None,
        };
        out.push(Size { table, rows, bytes });
    }
    Ok(out)
}

pub(super) async fn retention(opts: RetentionOptions) -> Result<i32> {
    let progress = Progress {
        started: std::time::Instant::now(),
        to_stderr: opts.json,
    };
    let db = BenchDb::create(None, opts.postgres.as_deref()).await?;
    let store = db.open().await?;
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = EndpointUrl::parse(&format!("http://{}/events", receiver.local_addr()?))?;
    let app = axum::Router::new().route("/events", axum::routing::post(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(receiver, app).await });
    store.add_event_endpoint(&url, &[], "bench").await?;

    queue_payouts(&store, opts.payouts, &progress).await?;
    let mock = MockStripe::start("127.0.0.1:0".parse()?, MockConfig::default())
        .await
        .context("starting the Stripe mock")?;
    let deps = payout_deps(&store, &mock, 4)?;
    progress.say(&format!("paying {} payouts", opts.payouts));
    pay_until_idle(deps.clone(), 4).await?;
    EventSender::new(store.clone())?.drain(Utc::now()).await?;
    let request = ReconcileRequest {
        period: Period::day(Utc::now().date_naive()),
        rails: vec![Rail::Stripe],
        from: RecordsFrom::Api,
        trigger: Trigger::Cli,
        tolerances: Tolerances::default(),
        run_id: None,
    };
    reconcile(&store, &deps.rails, &request, &Quiet).await?;
    mock.stop();

    let before = sizes(&store).await?;
    progress.say("pruning as the daily schedule would a year from now");
    let report = store
        .prune(
            &Retention::default(),
            Utc::now() + chrono::Duration::days(365),
            false,
        )
        .await?;
    let after = sizes(&store).await?;
    let books_kept = before[BOOKS..]
        .iter()
        .zip(&after[BOOKS..])
        .all(|(b, a)| b.rows == a.rows);
    store.close().await;
    let backend = db.backend();
    db.remove().await?;

    if opts.json {
        crate::cli::print_json(&serde_json::json!({
            "backend": backend, "payouts": opts.payouts, "before": before, "after": after,
            "prune": report, "books_kept": books_kept,
        }))?;
    } else {
        outln!(
            "retention on {backend}: {} payouts paid, events delivered, the day reconciled",
            opts.payouts
        );
        outln!(
            "{:<24} {:>12} {:>12} {:>14} {:>14}",
            "table",
            "rows before",
            "rows after",
            "bytes before",
            "bytes after"
        );
        for (b, a) in before.iter().zip(&after) {
            let bytes = |s: &Size| s.bytes.map_or("-".to_string(), |n| n.to_string());
            outln!(
                "{:<24} {:>12} {:>12} {:>14} {:>14}",
                b.table,
                b.rows,
                a.rows,
                bytes(b),
                bytes(a)
            );
        }
        outln!("books unchanged: {books_kept}");
    }
    Ok(if books_kept { 0 } else { 1 })
}
