//! Scheduled payout runs: one pass over every payee, skipped ones with their reason, totals per
//! rail, idempotent by period, dry runs that change nothing, and payouts the worker then pays
//! exactly once.

use crate::common;

use crate::common::{TestEnv, usd};
use payouts::domain::ids::Rail;
use payouts::domain::money::Currency;
use payouts::domain::payout_run::{RunPeriod, Skip};
use payouts::sim::stripe::Faults;

/// A referrer `r` whose referred account spends `spend` on instances (Vast: 3%, 75% cashable).
fn earner(r: &str, spend: &str) -> String {
    [
        format!(r#"{{"type":"account","id":"{r}","created_at":"2025-01-01T00:00:00Z","email":"{r}@x.com"}}"#),
        format!(r#"{{"type":"account","id":"{r}-u","created_at":"2025-02-01T00:00:00Z","email":"{r}-u@x.com"}}"#),
        format!(r#"{{"type":"referral","program":"vast","referrer":"{r}","referred":"{r}-u","at":"2025-02-01T00:00:00Z"}}"#),
        format!(r#"{{"type":"usage","id":"{r}-c1","account":"{r}-u","at":"2025-03-01T00:00:00Z","category":"instance","amount":"{spend}","currency":"USD"}}"#),
    ]
    .join("\n")
}

fn method(r: &str, auto: bool) -> String {
    let id: String = r.chars().filter(char::is_ascii_alphanumeric).collect();
    format!(
        r#"{{"type":"payout_method","account":"{r}","rail":"stripe","destination":"acct_1{id}","auto_payout":{auto}}}"#
    )
}

fn period(p: &str) -> RunPeriod {
    RunPeriod::parse(p).unwrap()
}

async fn population(env: &TestEnv) {
    let lines = [
        earner("r-pay", "1000"),
        method("r-pay", true),
        earner("r-pay2", "2000"),
        method("r-pay2", true),
        earner("r-manual", "1000"),
        method("r-manual", false),
        earner("r-nomethod", "1000"),
        earner("r-gated", "1000"),
        method("r-gated", true),
        // r-gated rents too: $5,000 of its own spend outweighs $30 of earnings.
        r#"{"type":"usage","id":"gated-own","account":"r-gated","at":"2025-03-01T00:00:00Z","category":"instance","amount":"5000","currency":"USD"}"#.into(),
        earner("r-tiny", "0.10"),
        method("r-tiny", true),
    ];
    let report = env.ingest(&lines.join("\n")).await;
    assert!(report.rejected.is_empty(), "{:#?}", report.rejected);
}

#[tokio::test]
async fn a_run_pays_every_eligible_payee_once_and_says_why_it_skipped_the_others() {
    let env = TestEnv::new(Faults::default()).await;
    population(&env).await;
    // A withdrawn balance later refunded leaves a debt: not paid.
    env.ingest(&[earner("r-debt", "1000"), method("r-debt", true)].join("\n"))
        .await;
    env.withdraw("r-debt", usd("22.50"), "debt").await.unwrap();
    env.ingest(r#"{"type":"refund","id":"debt-f","usage_id":"r-debt-c1","amount":"1000"}"#)
        .await;

    let dry = env
        .store
        .run_payouts(&period("2026-11-21"), true)
        .await
        .unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.created, 0);
    assert_eq!(
        env.store.list_payouts(None).await.unwrap().len(),
        1,
        "a dry run creates nothing"
    );

    let run = env
        .store
        .run_payouts(&period("2026-11-21"), false)
        .await
        .unwrap();
    assert_eq!((run.considered, run.eligible, run.created), (7, 2, 2));
    let skipped = |s: Skip| run.skipped.get(&s).copied().unwrap_or(0);
    assert_eq!(skipped(Skip::AutoPayoutOff), 1);
    assert_eq!(skipped(Skip::NoMethod), 1);
    assert_eq!(skipped(Skip::SpendGate), 1);
    // r-tiny's sub-cent residue waits for the minimum, and the report says so.
    assert_eq!(skipped(Skip::BelowMinimum), 1);
    assert_eq!(skipped(Skip::NothingAvailable), 0);
    assert_eq!(skipped(Skip::NegativeBalance), 1);
    assert_eq!(run.totals.len(), 1);
    assert_eq!(
        (run.totals[0].rail, run.totals[0].currency),
        (Rail::Stripe, Currency::Usd)
    );
    assert_eq!(
        (run.totals[0].payouts, run.totals[0].amount),
        (2, usd("67.50")),
        "22.50 + 45"
    );
    // The dry run said exactly what the run then did.
    assert_eq!(
        (dry.considered, &dry.skipped, &dry.totals),
        (run.considered, &run.skipped, &run.totals)
    );

    // Idempotent by period: again, and from "another process", nothing new.
    let again = env
        .store
        .run_payouts(&period("2026-11-21"), false)
        .await
        .unwrap();
    assert!(again.already_ran);
    assert_eq!(again.totals, run.totals);
    assert_eq!(env.store.list_payouts(None).await.unwrap().len(), 3);
    assert!(
        env.payable("r-pay").await.is_zero(),
        "the run's hold is in place"
    );

    // The worker pays them exactly once.
    env.work_until_idle(env.deps()).await;
    let ids: Vec<String> = env
        .store
        .list_payouts(None)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id.to_string())
        .collect();
    env.assert_paid_exactly_once(&ids).await;
    let by_run = env
        .store
        .list_payouts(Some(
            &payouts::domain::ids::AccountId::parse("r-pay").unwrap(),
        ))
        .await
        .unwrap();
    let detail = env.store.payout(by_run[0].id.as_str()).await.unwrap();
    assert!(
        detail.events[0]
            .reason
            .starts_with("payout run 2026-11-21: 22.50 USD to stripe acct_1rpay"),
        "{:#?}",
        detail.events
    );
    assert_eq!(by_run[0].idempotency_key, "run/2026-11-21/vast/USD");

    // Next period: only what was earned since.
    env.ingest(r#"{"type":"usage","id":"r-pay-c2","account":"r-pay-u","at":"2025-04-01T00:00:00Z","category":"instance","amount":"100","currency":"USD"}"#).await;
    let next = env
        .store
        .run_payouts(&period("2026-11-22"), false)
        .await
        .unwrap();
    assert_eq!(next.created, 1);
    assert_eq!(next.totals[0].amount, usd("2.25"));
}

#[tokio::test]
async fn balances_below_the_programs_minimum_wait() {
    let text = payouts::domain::program::config::PRESETS[0]
        .1
        .replace(r#"minimum_payout = "0.01""#, r#"minimum_payout = "25""#);
    let set =
        payouts::domain::program::ProgramSet::from_toml("vast-min-25", &text, &|_| None).unwrap();
    let db = common::TestDb::named("m").await;
    let store = db.open(std::sync::Arc::new(set)).await;
    let lines = [
        earner("r-small", "1000"),
        method("r-small", true),
        earner("r-big", "2000"),
        method("r-big", true),
    ];
    common::ingest_text(&store, &lines.join("\n"), true).await;
    let run = store.run_payouts(&period("2026-11"), false).await.unwrap();
    assert_eq!(run.skipped.get(&Skip::BelowMinimum), Some(&1), "22.50 < 25");
    assert_eq!((run.created, run.totals[0].amount), (1, usd("45")));
}

#[test]
fn the_binary_runs_payouts_dry_then_for_real_then_not_again() {
    let tdb = common::TestDb::blocking("runs");
    let dir = &tdb.dir;
    let db = std::path::PathBuf::from(&tdb.url);
    let file = dir.path().join("in.ndjson");
    std::fs::write(
        &file,
        [earner("r-bin", "1000"), method("r-bin", true)].join("\n"),
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_payouts"))
            .args(args)
            .env("DATABASE_URL", &db)
            .env("RUNPOD_BONUS_SEED", common::TEST_SEED)
            .env_remove("PAYOUTS_PROGRAMS")
            .output()
            .unwrap()
    };
    assert!(run(&["ingest", file.to_str().unwrap()]).status.success());
    let dry = run(&[
        "run-payouts",
        "--period",
        "2026-11-21",
        "--dry-run",
        "--json",
    ]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(
        (report["dry_run"].as_bool(), report["eligible"].as_u64()),
        (Some(true), Some(1))
    );
    assert_eq!(report["totals"][0]["amount"]["amount"], "22.5");
    let real = run(&["run-payouts", "--period", "2026-11-21"]);
    let text = String::from_utf8_lossy(&real.stdout);
    assert!(
        text.contains("1 eligible, 1 payout(s) created") && text.contains("22.50 USD"),
        "{text}"
    );
    let again = run(&["run-payouts", "--period", "2026-11-21"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already ran"));
    let list = run(&["payouts", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let bad = run(&["run-payouts", "--period", "next week"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("run period"));
}

/// A database of `n` payees (`{prefix}000`, ...), each with $22.50 payable through Stripe and
/// automatic payouts on, and the binary run against it.
struct Payees {
    tdb: common::TestDb,
    db: std::path::PathBuf,
}

impl Payees {
    fn new(prefix: &str, n: usize) -> Payees {
        let tdb = common::TestDb::blocking("payees");
        let db = std::path::PathBuf::from(&tdb.url);
        let file = tdb.dir.path().join("in.ndjson");
        let lines: Vec<String> = (0..n)
            .flat_map(|i| {
                let id = format!("{prefix}{i:03}");
                [earner(&id, "1000"), method(&id, true)]
            })
            .collect();
        std::fs::write(&file, lines.join("\n")).unwrap();
        let payees = Payees { tdb, db };
        let ingest = payees
            .cmd(&["ingest", file.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            ingest.status.success(),
            "{}",
            String::from_utf8_lossy(&ingest.stderr)
        );
        payees
    }

    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_payouts"));
        c.args(args)
            .env("DATABASE_URL", &self.db)
            .env("RUNPOD_BONUS_SEED", common::TEST_SEED)
            .env_remove("PAYOUTS_PROGRAMS");
        c
    }

    /// Starts the provider mocks with `faults`; returns the child and the Stripe URL.
    fn mock(&self, key: &str, faults: &str) -> (std::process::Child, String) {
        use std::io::{BufRead, BufReader};
        let mut mock = self
            .cmd(&["mock-providers", "--faults", faults])
            .env("STRIPE_SECRET_KEY", key)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(mock.stdout.take().unwrap()).lines();
        let first = out.next().unwrap().unwrap();
        let base = first.rsplit(' ').next().unwrap().to_string();
        std::thread::spawn(move || for _ in out {});
        (mock, base)
    }

    fn payouts(&self) -> Vec<serde_json::Value> {
        let list = self.cmd(&["payouts", "list", "--json"]).output().unwrap();
        serde_json::from_slice(&list.stdout).unwrap()
    }
}

/// Three `payouts work` processes share a run of 300 payouts on one database, against a
/// Stripe mock that drops every first request after committing it and throws 500s and 429s:
/// every payout is paid, exactly one transfer each, none stray.
#[test]
fn three_worker_processes_pay_a_run_of_three_hundred_exactly_once() {
    use std::io::{Read, Write};
    use std::process::Stdio;

    let n = 300;
    let payees = Payees::new("m", n);
    let cmd = |args: &[&str]| payees.cmd(args);
    let run = cmd(&["run-payouts", "--period", "p1", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["created"], n);

    let (mut mock, base) = payees.mock(
        "sk_test_many",
        r#"{"drop_first_attempt":true,"error_rate":0.1,"rate_limit_rate":0.1,"seed":7}"#,
    );

    let workers: Vec<_> = (0..3)
        .map(|_| {
            cmd(&["work", "--until-idle"])
                .env("STRIPE_SECRET_KEY", "sk_test_many")
                .env("STRIPE_API_BASE", &base)
                .env("PAYOUTS_HTTP_TIMEOUT_SECS", "2")
                .env("PAYOUTS_SETTLE_DELAY_SECS", "2")
                .env("PAYOUTS_RETRY_BASE_SECS", "1")
                .env("PAYOUTS_RETRY_MAX_SECS", "2")
                .env("PAYOUTS_LEASE_TTL_SECS", "10")
                // The mock lists a transfer as soon as it exists: no lag to wait out.
                .env("STRIPE_LIST_LAG_SECS", "0")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for w in workers {
        let o = w.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    let list = payees.payouts();
    assert_eq!(list.len(), n);
    assert!(list.iter().all(|p| p["status"] == "paid"), "all paid");

    let host = base.strip_prefix("http://").unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET /__mock/transfers HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let transfers: Vec<serde_json::Value> =
        serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(transfers.len(), n, "one transfer per payout, none stray");
    let mut groups: Vec<&str> = transfers
        .iter()
        .map(|t| t["transfer_group"].as_str().unwrap())
        .collect();
    groups.sort_unstable();
    groups.dedup();
    assert_eq!(groups.len(), n, "no payout was paid twice");
    let _ = mock.kill();
    let _ = mock.wait();
    let check = cmd(&["ledger-check"]).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

/// Two worker processes on the same cron schedule: both tick every second, and every tick
/// makes one run, never one per process; every payee is paid once.
#[test]
fn scheduled_runs_in_two_processes_make_one_run_per_tick() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let n = 20;
    let payees = Payees::new("c", n);
    let cmd = |args: &[&str]| payees.cmd(args);
    let (mut mock, base) = payees.mock("sk_test_cron", "{}");
    let dir = &payees.tdb.dir;

    let logs: Vec<_> = (0..2)
        .map(|i| dir.path().join(format!("w{i}.log")))
        .collect();
    let mut workers: Vec<_> = logs
        .iter()
        .map(|log| {
            cmd(&["work"])
                .env("STRIPE_SECRET_KEY", "sk_test_cron")
                .env("STRIPE_API_BASE", &base)
                .env("PAYOUTS_RUN_SCHEDULE", "* * * * * *")
                .env("PAYOUTS_LOG", "payouts=info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .unwrap()
        })
        .collect();
    // Wait until every payee's payout is paid, and a few more ticks have passed.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let list = payees.payouts();
        if list.len() == n && list.iter().all(|p| p["status"] == "paid") {
            break;
        }
        assert!(Instant::now() < deadline, "not all paid: {list:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    for w in &mut workers {
        Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status()
            .unwrap();
    }
    for w in &mut workers {
        assert!(w.wait().unwrap().success());
    }
    let _ = mock.kill();
    let _ = mock.wait();

    let list = payees.payouts();
    assert_eq!(
        list.len(),
        n,
        "one payout per payee, however many ticks and processes"
    );
    let text: String = logs
        .iter()
        .map(|l| std::fs::read_to_string(l).unwrap())
        .collect();
    let made = text.matches("scheduled payout run made").count();
    let deduped = text.matches("already made by another worker").count();
    assert!(made >= 3, "several ticks ran: {text}");
    assert!(
        deduped >= 1,
        "both processes ticked and one run was made per tick: {text}"
    );
}

/// A referrer who withdraws with the key a run would derive for its payout cannot stop the
/// run for anyone: keys callers choose and keys the system derives never meet.
#[tokio::test]
async fn a_caller_key_shaped_like_a_run_key_cannot_block_the_run() {
    let env = TestEnv::new(Faults::default()).await;
    population(&env).await;
    env.withdraw("r-pay", usd("1.00"), "run-2026-11-23-vast-USD")
        .await
        .expect("any well-formed key is the caller's to choose");

    let run = env
        .store
        .run_payouts(&period("2026-11-23"), false)
        .await
        .expect("the run goes through for everyone");
    assert_eq!(run.created, 2, "r-pay and r-pay2 are paid: {run:#?}");
    let r_pay: Vec<_> = env
        .store
        .list_payouts(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.account.as_str() == "r-pay")
        .collect();
    assert_eq!(
        r_pay.len(),
        2,
        "the withdrawal and the run's payout: {r_pay:#?}"
    );
}
