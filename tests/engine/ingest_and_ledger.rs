//! Ingest idempotency, line-level rejection, late referrals, clawbacks, and the ledger.

use crate::common;

use crate::common::{DEMO, TestEnv, usd};
use payouts::domain::money::Currency;
use payouts::sim::stripe::Faults;

async fn ledger_counts(env: &TestEnv) -> (i64, i64) {
    let check = env.store.check_ledger().await.unwrap();
    (check.transactions, check.postings)
}

#[tokio::test]
async fn ingesting_the_same_file_twice_changes_nothing() {
    let env = TestEnv::new(Faults::default()).await;
    let first = env.ingest(DEMO).await;
    assert!(first.rejected.is_empty(), "{:?}", first.rejected);
    assert!(first.accruals_posted > 0);
    let ledger = ledger_counts(&env).await;
    let alice = env.balance("ref-alice").await;

    let second = env.ingest(DEMO).await;
    assert!(second.rejected.is_empty());
    assert_eq!(second.accruals_posted, 0);
    assert!(
        second
            .by_type
            .values()
            .all(|c| c.inserted == 0 && c.updated == 0)
    );
    assert_eq!(ledger_counts(&env).await, ledger);
    assert_eq!(env.balance("ref-alice").await, alice);
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn the_rules_hold_on_the_demo_data() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;

    // alice: (1000 + 250 - 100 refund + 480.50) * 3% = 48.915, 75% cashable.
    let alice = env.balance("ref-alice").await;
    let v = alice.program("vast", Currency::Usd).unwrap();
    assert_eq!(v.earned, usd("48.915"));
    assert_eq!(v.cashable, usd("36.68625"));
    assert_eq!(v.credit, usd("12.22875"));
    assert_eq!(
        v.payable_now,
        usd("36.68"),
        "rounded down; the residue stays"
    );
    assert!(v.eligible);

    // dave: the Vast docs' example (docs/programs.md, "Vast"), $300 earned against $855 spent.
    let dave = env.balance("ref-dave").await;
    let v = dave.program("vast", Currency::Usd).unwrap();
    assert_eq!(v.earned, usd("300"));
    assert_eq!(v.lifetime_spend, usd("855"));
    assert!(!v.eligible);
    assert!(v.reason.as_deref().unwrap().contains("300.00 USD"));
    assert!(v.reason.as_deref().unwrap().contains("855.00 USD"));

    // ivan: self-referral, connected accounts and an old account: nothing, each explained.
    let ivan = env.balance("ref-ivan").await;
    assert!(ivan.programs.is_empty());
    let reasons: Vec<&str> = ivan
        .non_earning_referrals
        .iter()
        .map(|r| r.reason.as_str())
        .collect();
    assert_eq!(reasons.len(), 5);
    assert!(reasons.iter().any(|r| r.contains("cannot refer itself")));
    assert!(reasons.iter().any(|r| r.contains("same email")));
    assert!(reasons.iter().any(|r| r.contains("same payment method")));
    assert!(reasons.iter().any(|r| r.contains("known to be connected")));
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("only new accounts count"))
    );

    // lena's referred user only bought credits and then spent 900: the purchase earns nothing.
    let lena = env.balance("ref-lena").await;
    assert_eq!(lena.programs[0].earned, usd("27"));

    // pat earned less than a cent: nothing can move.
    let pat = env.balance("ref-pat").await;
    assert_eq!(pat.programs[0].payable_now, usd("0"));
    assert!(!pat.programs[0].eligible);
}

#[tokio::test]
async fn bad_lines_are_reported_by_number_and_the_rest_goes_in() {
    let env = TestEnv::new(Faults::default()).await;
    let report = env
        .ingest(include_str!("../../fixtures/bad_lines.ndjson"))
        .await;
    let lines: Vec<usize> = report.rejected.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![2, 3, 4, 5], "{:#?}", report.rejected);
    assert!(report.rejected[0].message.contains("decimal strings"));
    assert!(report.rejected[1].message.contains("unknown currency"));
    assert!(report.rejected[3].message.contains("has not been ingested"));
    assert_eq!(report.by_type["account"].inserted, 1);
    assert_eq!(report.by_type["payout_method"].inserted, 1);
}

#[tokio::test]
async fn strict_mode_writes_nothing_when_any_line_is_bad() {
    let env = TestEnv::new(Faults::default()).await;
    let report = common::ingest_text(
        &env.store,
        include_str!("../../fixtures/bad_lines.ndjson"),
        true,
    )
    .await;
    assert!(report.rolled_back);
    let accounts: i64 = common::scalar(&env.store, "SELECT COUNT(*) FROM accounts").await;
    assert_eq!(accounts, 0);

    // Apply-time problems (here: a refund larger than its usage) roll back too.
    let lines = concat!(
        r#"{"type":"usage","id":"u1","account":"x","at":"2026-01-01T00:00:00Z","category":"pod","amount":"10","currency":"USD"}"#,
        "\n",
        r#"{"type":"refund","id":"r1","usage_id":"u1","amount":"10.01"}"#,
        "\n"
    );
    let report = common::ingest_text(&env.store, lines, true).await;
    assert!(report.rolled_back);
    assert!(report.rejected[0].message.contains("would refund more"));
    let usage: i64 = common::scalar(&env.store, "SELECT COUNT(*) FROM usage").await;
    assert_eq!(usage, 0);
}

#[tokio::test]
async fn changed_immutable_records_are_conflicts_and_accounts_update() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    let lines = concat!(
        r#"{"type":"usage","id":"use-0001","account":"u-bob","at":"2026-02-03T00:00:00Z","category":"instance","amount":"999.00","currency":"USD"}"#,
        "\n",
        r#"{"type":"account","id":"ref-pat","created_at":"2026-01-01T09:00:00Z","email":"pat@example.com","payment_fingerprint":"fp-pat","country":"US","hosted_machines":true}"#,
        "\n"
    );
    let report = env.ingest(lines).await;
    assert_eq!(report.rejected.len(), 1);
    assert!(
        report.rejected[0]
            .message
            .contains("already ingested with different content")
    );
    assert_eq!(report.by_type["account"].updated, 1);
    assert!(env.balance("ref-pat").await.hosted_machines);
}

#[tokio::test]
async fn a_referral_arriving_after_its_usage_still_earns_and_refunds_claw_back() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(concat!(
        r#"{"type":"account","id":"r","created_at":"2026-01-01T00:00:00Z","email":"r@example.com"}"#, "\n",
        r#"{"type":"account","id":"n","created_at":"2026-01-05T00:00:00Z","email":"n@example.com"}"#, "\n",
        r#"{"type":"usage","id":"u1","account":"n","at":"2026-01-06T00:00:00Z","category":"instance","amount":"200","currency":"USD"}"#, "\n",
        r#"{"type":"payout_method","account":"r","rail":"stripe","destination":"acct_1R"}"#, "\n",
    ))
    .await;
    let none: i64 = common::scalar(&env.store, "SELECT COUNT(*) FROM ledger_transactions").await;
    assert_eq!(none, 0);
    env.ingest(concat!(
        r#"{"type":"referral","program":"vast","referrer":"r","referred":"n","at":"2026-01-05T00:00:00Z","template_id":"tmpl-1"}"#,
        "\n"
    ))
    .await;
    assert_eq!(env.balance("r").await.programs[0].earned, usd("6"));

    // A refund after the money was withdrawn takes the commission back; the balance may go
    // negative, and a negative balance never pays out.
    let out = env.withdraw("r", usd("4.50"), "k1").await.unwrap();
    assert_eq!(out.payout.amount, usd("4.50"));
    env.ingest(concat!(
        r#"{"type":"refund","id":"f1","usage_id":"u1","amount":"200"}"#,
        "\n"
    ))
    .await;
    let r = env.balance("r").await;
    let v = &r.programs[0];
    assert_eq!(v.earned, usd("0"));
    assert_eq!(v.available, usd("-4.50"));
    assert!(!v.eligible);
    assert!(v.reason.as_deref().unwrap().contains("negative"));
    env.assert_ledger_sound().await;
}

/// A file read in chunks of a few lines (each chunk its own transaction with its accruals)
/// leaves every balance exactly as one pass does; `--strict` stays all or nothing across
/// chunks, a bad last line rolling back the chunks before it.
#[tokio::test]
async fn a_file_read_in_small_chunks_accrues_exactly_as_one_pass() {
    use payouts::app::ingest::ingest_with_progress;
    let whole = TestEnv::new(Faults::default()).await;
    let chunked = TestEnv::new(Faults::default()).await;
    whole.ingest(DEMO).await;
    let seen = std::sync::Mutex::new(Vec::new());
    let report = ingest_with_progress(
        &chunked.store,
        std::io::Cursor::new(DEMO.to_owned()),
        false,
        7,
        &|r, _| seen.lock().unwrap().push(r.lines_read),
    )
    .await
    .unwrap();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    let seen = seen.into_inner().unwrap();
    assert_eq!(
        seen.len(),
        DEMO.lines().count().div_ceil(7),
        "progress after each chunk"
    );
    for account in whole.store.referrers().await.unwrap() {
        let a = whole.balance(account.as_str()).await;
        let b = chunked.balance(account.as_str()).await;
        assert_eq!(a.programs, b.programs, "{account}");
    }
    chunked.assert_ledger_sound().await;

    let strict = TestEnv::new(Faults::default()).await;
    let bad = format!("{DEMO}\n{{\"type\":\"usage\",\"id\":\"x\"}}\n");
    let report = ingest_with_progress(
        &strict.store,
        std::io::Cursor::new(bad.to_owned()),
        true,
        7,
        &|_, _| {},
    )
    .await
    .unwrap();
    assert!(report.rolled_back);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].line, DEMO.lines().count() + 2);
    let accounts = crate::common::scalar(&strict.store, "SELECT COUNT(*) FROM accounts").await;
    assert_eq!(
        accounts, 0,
        "nothing from the chunks before the bad line stayed"
    );
}

/// 2,100 referrers with a charge each: one chunk loads the usage and the accruals in bulk
/// (COPY on PostgreSQL), chunks of 1,000 lines with multi-row inserts; both leave the same
/// balances, to the unit.
#[tokio::test]
async fn bulk_loads_and_multi_row_inserts_leave_the_same_books() {
    use payouts::app::ingest::ingest_with_progress;
    let n = 2_100;
    let mut lines = Vec::new();
    for i in 0..n {
        let r = format!("bulk{i:04}");
        lines.push(format!(r#"{{"type":"account","id":"{r}","created_at":"2025-01-01T00:00:00Z","email":"{r}@x.com"}}"#));
        lines.push(format!(r#"{{"type":"account","id":"{r}-u","created_at":"2025-02-01T00:00:00Z","email":"{r}-u@x.com"}}"#));
        lines.push(format!(r#"{{"type":"referral","program":"vast","referrer":"{r}","referred":"{r}-u","at":"2025-02-01T00:00:00Z"}}"#));
    }
    for i in 0..n {
        let amount = format!("{}.{:02}", 10 + i % 90, i % 100);
        lines.push(format!(r#"{{"type":"usage","id":"bulk-c{i}","account":"bulk{i:04}-u","at":"2025-03-01T00:00:00Z","category":"instance","amount":"{amount}","currency":"USD"}}"#));
    }
    let file = lines.join("\n");
    let bulk = TestEnv::new(Faults::default()).await;
    let rows = TestEnv::new(Faults::default()).await;
    let a = ingest_with_progress(
        &bulk.store,
        std::io::Cursor::new(file.to_owned()),
        true,
        1_000_000,
        &|_, _| {},
    )
    .await
    .unwrap();
    let b = ingest_with_progress(
        &rows.store,
        std::io::Cursor::new(file.to_owned()),
        true,
        1_000,
        &|_, _| {},
    )
    .await
    .unwrap();
    assert!(a.rejected.is_empty() && b.rejected.is_empty(), "{a:?}");
    assert_eq!(a.by_type["usage"].inserted, n);
    assert_eq!(a.accruals_posted, n, "one accrual per referrer in one pass");
    for i in (0..n).step_by(97) {
        let account = format!("bulk{i:04}");
        let (x, y) = (bulk.balance(&account).await, rows.balance(&account).await);
        assert_eq!(x.programs, y.programs, "{account}");
        assert!(x.programs[0].earned.is_positive(), "{account} earned");
    }
    let sum =
        "SELECT CAST(SUM(units) AS BIGINT) FROM ledger_postings WHERE book = 'commission_expense'";
    assert_eq!(
        common::scalar(&bulk.store, sum).await,
        common::scalar(&rows.store, sum).await
    );
    bulk.assert_ledger_sound().await;
    rows.assert_ledger_sound().await;
}

/// Balances are maintained beside the postings; `ledger-check` holds each against its
/// postings, so a maintained total that drifted (here: written behind the ledger's back) is
/// reported with the payee and both figures.
#[tokio::test]
async fn a_maintained_balance_that_drifts_from_its_postings_is_reported() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    env.assert_ledger_sound().await;
    let rows = common::scalar(&env.store, "SELECT COUNT(*) FROM book_balances").await;
    assert!(rows > 0, "the demo's payees have maintained balances");
    payouts::on_backend!(&env.store, s => {
        sqlx::query(
            "UPDATE book_balances SET cashable_lo = cashable_lo + 1 \
             WHERE holder = 'ref-alice' AND program = 'vast'",
        )
        .execute(s.pool())
        .await
        .unwrap();
    });
    let check = env.store.check_ledger().await.unwrap();
    assert_eq!(check.problems.len(), 1, "{:?}", check.problems);
    assert!(
        check.problems[0].starts_with("the maintained balance of ref-alice (vast, USD)"),
        "{}",
        check.problems[0]
    );
}
