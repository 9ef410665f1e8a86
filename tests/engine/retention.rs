//! Retention: pruning takes what is kept only for a while (finished jobs, webhook
//! deliveries, idempotent responses, delivered events, old reconciliations' record copies)
//! and never a ledger row, a payout, a payout event or an audit record; what is still in use
//! (a pending job, an event still being delivered, a record an exception names) stays. And a
//! payout polled for a month keeps a job row or two, not one per poll.

use chrono::Utc;

use crate::common::{self, DEMO, TestEnv, backend, usd};
use payouts::domain::events::{EndpointUrl, EventType};
use payouts::domain::ids::Rail;
use payouts::domain::retention::Retention;
use payouts::jobs::EventSender;
use payouts::sim::stripe::Faults;
use payouts::storage::{BackendKind, Store};

const JOBS: &str = "SELECT COUNT(*) FROM Jobs";
const JOBS_PG: &str = "SELECT COUNT(*) FROM apalis.jobs";

async fn jobs(store: &Store) -> i64 {
    common::scalar(
        store,
        if backend() == BackendKind::Sqlite {
            JOBS
        } else {
            JOBS_PG
        },
    )
    .await
}

/// Marks every pending job done, as a worker that ran them would.
async fn run_pending_jobs(store: &Store) {
    let sql = match backend() {
        BackendKind::Sqlite => {
            "UPDATE Jobs SET status = 'Done', done_at = strftime('%s', 'now') WHERE status = 'Pending'"
        }
        BackendKind::Postgres => {
            "UPDATE apalis.jobs SET status = 'Done', done_at = now() WHERE status = 'Pending'"
        }
    };
    payouts::on_backend!(store, s => sqlx::query(sql).execute(s.pool()).await.map(|_| ())).unwrap();
}

#[tokio::test]
async fn a_payout_checked_again_and_again_keeps_a_job_row_or_two() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    let id = env
        .withdraw("ref-alice", usd("10"), "a-1")
        .await
        .unwrap()
        .payout
        .id;
    let before = jobs(&env.store).await;
    // Forty looks, as a month of watch polls makes: each job runs, the next is queued.
    for i in 0..40 {
        run_pending_jobs(&env.store).await;
        let at = Utc::now() + chrono::Duration::seconds(i);
        env.store.schedule_check(&id, at).await.unwrap();
    }
    assert!(
        jobs(&env.store).await <= before + 1,
        "{} job rows after 40 looks",
        jobs(&env.store).await
    );
}

/// (table, count) of every table that must never lose a row.
async fn kept(store: &Store) -> Vec<(&'static str, i64)> {
    let mut counts = Vec::new();
    for (table, sql) in [
        (
            "ledger_transactions",
            "SELECT COUNT(*) FROM ledger_transactions",
        ),
        ("ledger_postings", "SELECT COUNT(*) FROM ledger_postings"),
        ("payouts", "SELECT COUNT(*) FROM payouts"),
        ("payout_events", "SELECT COUNT(*) FROM payout_events"),
        ("payout_attempts", "SELECT COUNT(*) FROM payout_attempts"),
        ("operator_actions", "SELECT COUNT(*) FROM operator_actions"),
        ("recon_runs", "SELECT COUNT(*) FROM recon_runs"),
        ("recon_exceptions", "SELECT COUNT(*) FROM recon_exceptions"),
        ("usage", "SELECT COUNT(*) FROM usage"),
    ] {
        counts.push((table, common::scalar(store, sql).await));
    }
    counts
}

#[tokio::test]
async fn prune_keeps_the_books_and_takes_only_what_is_past_its_age() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    // Events: one endpoint that answers, one that never does (its deliveries stay pending).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ok", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/ok", axum::routing::post(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let ok = EndpointUrl::parse(&url).unwrap();
    env.store.add_event_endpoint(&ok, &[], "ops").await.unwrap();
    // A paid payout (finished jobs, events), then its transfer reversed by Stripe (a
    // webhook delivery), a reconciliation (record copies, an exception), an idempotent
    // response, and a payout still queued (a pending job).
    let paid = env
        .withdraw("ref-alice", usd("10"), "a-1")
        .await
        .unwrap()
        .payout
        .id;
    env.pay_then_reverse(paid.as_str()).await;
    env.mock
        .inject_transfer("po_nobody", "acct_1Stray", 1234, "usd");
    let found = env.reconcile_today(vec![Rail::Stripe]).await;
    assert!(!found.is_empty());
    let now = Utc::now().timestamp_millis();
    common::execute(
        &env.store,
        &format!(
            "INSERT INTO api_idempotency (scope, idempotency_key, request_hash, status_code, \
               response_body, started_at, completed_at) \
             VALUES ('acct:ref-alice', 'k-1', 'hash', 201, '{{}}', {now}, {now})"
        ),
    )
    .await;
    EventSender::new(env.store.clone())
        .unwrap()
        .drain(Utc::now())
        .await
        .unwrap();
    let never = EndpointUrl::parse("http://127.0.0.1:9/never").unwrap();
    env.store
        .add_event_endpoint(&never, &[EventType::PayoutCreated], "ops")
        .await
        .unwrap();
    let queued = env
        .withdraw("ref-mo", usd("5"), "m-1")
        .await
        .unwrap()
        .payout
        .id;
    let books = kept(&env.store).await;

    // Today nothing is past its age.
    let retention = Retention::default();
    let report = env
        .store
        .prune(&retention, Utc::now(), false)
        .await
        .unwrap();
    assert!(report.tables.iter().all(|t| t.deleted == 0), "{report:#?}");

    // A dry run a year on counts what would go and changes nothing.
    let later = Utc::now() + chrono::Duration::days(365);
    let dry = env.store.prune(&retention, later, true).await.unwrap();
    let again = env.store.prune(&retention, Utc::now(), true).await.unwrap();
    assert!(again.tables.iter().all(|t| t.deleted == 0));
    let report = env.store.prune(&retention, later, false).await.unwrap();
    for (d, t) in dry.tables.iter().zip(&report.tables) {
        assert_eq!(
            (d.table, d.deleted),
            (t.table, t.deleted),
            "dry run matches"
        );
        assert_eq!(t.after, t.before - t.deleted, "{t:?}");
    }
    let deleted = |table: &str| {
        report
            .tables
            .iter()
            .find(|t| t.table == table)
            .unwrap()
            .deleted
    };
    assert!(deleted("webhook_deliveries") >= 1, "{report:#?}");
    assert_eq!(deleted("api_idempotency"), 1);
    assert!(deleted("outgoing_events") >= 4, "{report:#?}");
    assert!(deleted("recon_records") >= 1, "{report:#?}");
    assert!(report.tables[0].deleted >= 1, "finished jobs: {report:#?}");
    assert_eq!(kept(&env.store).await, books, "the books lose nothing");

    // What is in use stays: the queued payout's job, the events still being delivered, the
    // records an exception names (the run says its copies were pruned).
    let pending_jobs = common::scalar(
        &env.store,
        if backend() == BackendKind::Sqlite {
            "SELECT COUNT(*) FROM Jobs WHERE status = 'Pending'"
        } else {
            "SELECT COUNT(*) FROM apalis.jobs WHERE status = 'Pending'"
        },
    )
    .await;
    assert!(
        pending_jobs >= 1,
        "the queued payout {queued} keeps its job"
    );
    let pending = common::scalar(
        &env.store,
        "SELECT COUNT(*) FROM outgoing_events e WHERE EXISTS (SELECT 1 FROM event_deliveries d \
         WHERE d.event_seq = e.seq AND d.state = 'pending')",
    )
    .await;
    assert!(pending >= 1);
    let runs = env.store.recon_runs(10).await.unwrap();
    let shown = env
        .store
        .recon_exceptions(&runs[0].id, false)
        .await
        .unwrap();
    assert_eq!(shown, found, "exceptions read as before");
    let marked = common::scalar(
        &env.store,
        "SELECT COUNT(*) FROM recon_runs WHERE records_pruned_at IS NOT NULL",
    )
    .await;
    assert_eq!(marked, 1);
    env.assert_ledger_sound().await;
}
