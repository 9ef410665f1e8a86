//! The real binary: ingest, balance, withdraw, a standalone mock, the worker, and the ledger.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_payouts");

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn payouts(db: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("DATABASE_URL", db)
        .env("RUNPOD_BONUS_SEED", "cli-test-seed-0123456789")
        .env_remove("PAYOUTS_PROGRAMS")
        .env_remove("STRIPE_SECRET_KEY")
        // The fixtures add PayPal methods beside Stripe ones in a later batch, which the
        // production default would hold for 72 h (tests/http_api tests the hold).
        .env("PAYOUTS_METHOD_COOLING_OFF_HOURS", "0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run payouts")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_binary_runs_the_whole_flow() {
    let tdb = common::TestDb::blocking("cli");
    let db = tdb.url.as_str();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/demo.ndjson");

    let out = payouts(db, &["ingest", fixture, "--json"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(report["accruals_posted"].as_u64().unwrap() > 0);

    let out = payouts(db, &["balance", "ref-dave", "--json"], &[]);
    let dave: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(dave["programs"][0]["eligible"], false);
    assert_eq!(dave["programs"][0]["earned"]["amount"], "300");

    let out = payouts(db, &["withdraw", "ref-dave", "--amount", "10"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("may cash out only while"));

    let out = payouts(
        db,
        &[
            "withdraw",
            "ref-alice",
            "--amount",
            "all",
            "--idempotency-key",
            "cli-1",
            "--json",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(created["payout"]["amount"]["amount"], "36.68");
    let id = created["payout"]["id"].as_str().unwrap().to_string();

    // The worker refuses to start without its secret, and says how to fix it.
    let out = payouts(db, &["work", "--until-idle"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("STRIPE_SECRET_KEY"));

    let mut mock = Killed(
        Command::new(BIN)
            .args([
                "mock-providers",
                "--faults",
                r#"{"drop_first_attempt":true}"#,
            ])
            .env("STRIPE_SECRET_KEY", "sk_test_cli")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // One line per rail, Stripe first; keep draining the rest so the mock never blocks.
    let mut lines = BufReader::new(mock.0.stdout.take().unwrap()).lines();
    let mut urls = Vec::new();
    for _ in 0..4 {
        let line = lines.next().unwrap().unwrap();
        assert!(line.starts_with("mock "), "{line}");
        urls.push(line.rsplit(' ').next().unwrap().to_string());
    }
    std::thread::spawn(move || for _ in lines {});
    let base = urls[0].clone();
    assert!(base.starts_with("http://127.0.0.1:"), "{urls:?}");

    let worker_env = [
        ("STRIPE_SECRET_KEY", "sk_test_cli"),
        ("STRIPE_API_BASE", base.as_str()),
        ("PAYOUTS_HTTP_TIMEOUT_SECS", "1"),
        ("PAYOUTS_SETTLE_DELAY_SECS", "1"),
        ("PAYOUTS_RETRY_BASE_SECS", "1"),
        ("PAYOUTS_LEASE_TTL_SECS", "5"),
    ];
    let out = payouts(db, &["work", "--until-idle"], &worker_env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = payouts(db, &["payouts", "show", &id, "--json"], &[]);
    let detail: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(detail["payout"]["status"], "paid");
    assert_eq!(detail["payout"]["attempts"], 1);

    let truth: Vec<serde_json::Value> = reqwest_blocking_get(&format!("{base}/__mock/transfers"));
    let for_payout = truth
        .iter()
        .filter(|t| t["transfer_group"] == id.as_str())
        .count();
    assert_eq!(for_payout, 1, "exactly one transfer at the provider");

    // PayPal through the same binary: a destination the rail cannot take is refused with the
    // reason; a PayPal email pays, once, against the mock's own books.
    let out = payouts(
        db,
        &[
            "withdraw", "ref-gina", "--amount", "all", "--rail", "paypal",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("paypal"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rails = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/rails.ndjson");
    assert!(payouts(db, &["ingest", rails], &[]).status.success());
    let out = payouts(
        db,
        &[
            "withdraw", "ref-gina", "--amount", "all", "--rail", "paypal", "--json",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let gina = created["payout"]["id"].as_str().unwrap().to_string();
    let paypal_env = [
        ("PAYPAL_CLIENT_ID", "mock-client-id"),
        ("PAYPAL_CLIENT_SECRET", "mock-client-secret"),
        ("PAYPAL_API_BASE", urls[1].as_str()),
        ("PAYOUTS_HTTP_TIMEOUT_SECS", "1"),
        ("PAYOUTS_SETTLE_DELAY_SECS", "1"),
        ("PAYOUTS_RETRY_BASE_SECS", "1"),
        ("PAYOUTS_POLL_BASE_SECS", "1"),
        ("PAYOUTS_POLL_MAX_SECS", "1"),
        ("PAYOUTS_LEASE_TTL_SECS", "5"),
    ];
    let out = payouts(db, &["work", "--until-idle"], &paypal_env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = payouts(db, &["payouts", "show", &gina, "--json"], &[]);
    let detail: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(detail["payout"]["status"], "paid", "{detail:#}");
    let truth: Vec<serde_json::Value> = reqwest_blocking_get(&format!("{}/__mock/truth", urls[1]));
    let paid: Vec<_> = truth
        .iter()
        .filter(|m| m["payout_id"] == gina.as_str())
        .collect();
    assert_eq!(paid.len(), 1, "exactly one PayPal payment: {truth:#?}");
    assert_eq!(paid[0]["minor"], 4500);

    let out = payouts(db, &["ledger-check"], &[]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("balanced"));
}

#[test]
fn bad_input_gets_line_numbers_and_exit_status_two() {
    let tdb = common::TestDb::blocking("bad");
    let db = std::path::PathBuf::from(&tdb.url);
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/bad_lines.ndjson");
    let out = payouts(db.to_str().unwrap(), &["ingest", fixture], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for line in ["line 2:", "line 3:", "line 4:", "line 5:"] {
        assert!(err.contains(line), "{err}");
    }
    let out = payouts(
        db.to_str().unwrap(),
        &["withdraw", "ref-zed", "--amount=-5"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("greater than zero"));
}

/// Issue 16 A5: an amount over the per-amount cap is one rejected line (exit status 2), and
/// the rest of the file goes in.
#[test]
fn an_amount_over_the_cap_is_one_rejected_line_with_exit_status_two() {
    let tdb = common::TestDb::blocking("cap");
    let db = tdb.url.as_str();
    let file = tdb.dir.path().join("cap.ndjson");
    let lines = [
        r#"{"type":"account","id":"capped","created_at":"2025-01-01T00:00:00Z","email":"c@x.com"}"#,
        r#"{"type":"usage","id":"cap-1","account":"capped","at":"2025-03-01T00:00:00Z","category":"pod","amount":"1000000000","currency":"USD"}"#,
        r#"{"type":"usage","id":"cap-2","account":"capped","at":"2025-03-01T00:00:00Z","category":"pod","amount":"10","currency":"USD"}"#,
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = payouts(db, &["ingest", file.to_str().unwrap()], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("line 2: amount 1000000000 is over the largest single amount"),
        "{err}"
    );
    assert!(
        !err.contains("line 1:") && !err.contains("line 3:"),
        "{err}"
    );
    let out = payouts(db, &["balance", "capped", "--json"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let balance: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(balance["has_rented"], true, "the other usage went in");
}

/// Issue 16 A5: two charges of 500,000,000 on one referred account (each under the cap, their
/// sum over it) leave every balance readable, and the run still pays the other payees.
#[test]
fn a_billion_of_one_accounts_spend_leaves_balances_and_runs_working() {
    let tdb = common::TestDb::blocking("whale");
    let db = tdb.url.as_str();
    let file = tdb.dir.path().join("whale.ndjson");
    let lines = [
        r#"{"type":"account","id":"r-vast","created_at":"2025-01-01T00:00:00Z","email":"v@x.com"}"#,
        r#"{"type":"account","id":"r-rp","created_at":"2025-01-01T00:00:00Z","email":"r@x.com"}"#,
        r#"{"type":"account","id":"whale","created_at":"2025-02-01T00:00:00Z","email":"w@x.com"}"#,
        r#"{"type":"referral","program":"vast","referrer":"r-vast","referred":"whale","at":"2025-02-01T00:00:00Z"}"#,
        r#"{"type":"referral","program":"runpod","referrer":"r-rp","referred":"whale","at":"2025-02-01T00:00:00Z"}"#,
        r#"{"type":"usage","id":"whale-1","account":"whale","at":"2025-03-01T00:00:00Z","category":"pod","amount":"500000000","currency":"USD"}"#,
        r#"{"type":"usage","id":"whale-2","account":"whale","at":"2025-03-02T00:00:00Z","category":"pod","amount":"500000000","currency":"USD"}"#,
        r#"{"type":"payout_method","account":"r-vast","rail":"stripe","destination":"acct_1Vast","auto_payout":true}"#,
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = payouts(db, &["ingest", file.to_str().unwrap()], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for account in ["whale", "r-rp", "r-vast"] {
        let out = payouts(db, &["balance", account, "--json"], &[]);
        assert!(
            out.status.success(),
            "balance {account}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = payouts(db, &["balance", "whale", "--json"], &[]);
    let whale: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        whale["programs"][0]["lifetime_spend"]["amount"],
        "1000000000"
    );

    for dry in [true, false] {
        let mut args = vec!["run-payouts", "--period", "2026-12-01", "--json"];
        if dry {
            args.push("--dry-run");
        }
        let out = payouts(db, &args, &[]);
        assert!(
            out.status.success(),
            "run (dry: {dry}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(report["eligible"], 1, "{report:#}");
        assert_eq!(report["created"], if dry { 0 } else { 1 }, "{report:#}");
    }
}

/// A tiny HTTP GET over a raw socket, to read the mock's truth without an async runtime.
fn reqwest_blocking_get(url: &str) -> Vec<serde_json::Value> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1;
    serde_json::from_str(body).unwrap()
}

#[test]
fn api_keys_are_created_once_shown_and_refused_when_the_grant_is_wrong() {
    let tdb = common::TestDb::blocking("keys");
    let db = tdb.url.as_str();
    let out = payouts(
        db,
        &["keys", "create", "--name", "console", "--scope", "referrer"],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("give --account"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = payouts(
        db,
        &[
            "keys",
            "create",
            "--name",
            "console",
            "--scope",
            "referrer",
            "--account",
            "ref-alice",
            "--json",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["scope"], "referrer");
    assert_eq!(created["account"], "ref-alice");
    assert!(created["key"].as_str().unwrap().starts_with("pk_"));
}

/// `payouts serve --worker`, the real binary: the platform feeds records and a referrer
/// withdraws over HTTP, the in-process worker pays through the standalone mock, and the
/// payout, its history and the metrics read back over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_api_and_the_worker_in_one_process() {
    let tdb = common::TestDb::named("serve").await;
    let db = tdb.url.clone();
    let out = payouts(
        &db,
        &[
            "keys", "create", "--name", "ops", "--scope", "operator", "--json",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let key = created["key"].as_str().unwrap().to_string();

    let mut mock = Killed(
        Command::new(BIN)
            .args(["mock-providers"])
            .env("STRIPE_SECRET_KEY", "sk_test_serve")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(mock.0.stdout.take().unwrap()).lines();
    let stripe = lines
        .next()
        .unwrap()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    std::thread::spawn(move || for _ in lines {});

    let mut server = Killed(
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--worker"])
            .env("DATABASE_URL", &db)
            .env("RUNPOD_BONUS_SEED", "cli-test-seed-0123456789")
            .env_remove("PAYOUTS_PROGRAMS")
            .env("STRIPE_SECRET_KEY", "sk_test_serve")
            .env("STRIPE_API_BASE", &stripe)
            .env("PAYOUTS_HTTP_TIMEOUT_SECS", "1")
            .env("PAYOUTS_SETTLE_DELAY_SECS", "1")
            .env("PAYOUTS_LEASE_TTL_SECS", "5")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(server.0.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .trim_end_matches("/v1")
        .to_string();
    std::thread::spawn(move || for _ in lines {});

    let http = reqwest::Client::new();
    let records: Vec<serde_json::Value> = common::DEMO
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let res = http
        .post(format!("{base}/v1/ingest"))
        .bearer_auth(&key)
        .json(&serde_json::json!({ "records": records }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let ingested: serde_json::Value = res.json().await.unwrap();
    assert_eq!(ingested["rejected"], 0, "{ingested}");

    let res = http
        .post(format!("{base}/v1/accounts/ref-alice/withdrawals"))
        .bearer_auth(&key)
        .header("Idempotency-Key", "serve-1")
        .json(&serde_json::json!({"program": "vast", "rail": "stripe", "amount": "36.68", "currency": "USD"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let payout: serde_json::Value = res.json().await.unwrap();
    let id = payout["id"].as_str().unwrap().to_string();

    let paid = common::eventually(30, || async {
        let detail: serde_json::Value = http
            .get(format!("{base}/v1/payouts/{id}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        detail["payout"]["status"] == "paid"
    })
    .await;
    assert!(paid, "the in-process worker paid the withdrawal");
    let metrics = http
        .get(format!("{base}/v1/metrics"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("payouts{rail=\"stripe\",status=\"paid\"} 1"),
        "{metrics}"
    );
    let truth: Vec<serde_json::Value> = reqwest_blocking_get(&format!("{stripe}/__mock/transfers"));
    assert_eq!(
        truth
            .iter()
            .filter(|t| t["transfer_group"] == id.as_str())
            .count(),
        1
    );
}

/// `payouts ... --json | head`: a reader that went away ends the program quietly, never with
/// a panic (exit 101).
#[test]
fn output_into_a_closed_pipe_exits_quietly() {
    let tdb = common::TestDb::blocking("pipe");
    // The reading end is closed before the program starts, so its first write fails.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(BIN)
        .args(["programs", "--json"])
        .env("DATABASE_URL", &tdb.url)
        .env("RUNPOD_BONUS_SEED", "cli-test-seed-0123456789")
        .env_remove("PAYOUTS_PROGRAMS")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run payouts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The help describes what the program is (four rails, two databases), lists the rails, and
/// `withdraw` picks the rail when only one can be meant.
#[test]
fn help_and_rail_choice_say_what_there_is() {
    let help = Command::new(BIN).arg("--help").output().expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    for word in ["PayPal", "Wise", "PartnerStack", "postgres://"] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    let help = Command::new(BIN)
        .args(["withdraw", "--help"])
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("stripe, paypal, wise, partnerstack"),
        "withdraw --help lists no rails:\n{help}"
    );

    let tdb = common::TestDb::blocking("rails");
    let db = tdb.url.as_str();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/demo.ndjson");
    assert!(payouts(db, &["ingest", fixture], &[]).status.success());
    // Alice's only method among Vast's rails is Stripe: no --rail needed.
    let out = payouts(
        db,
        &[
            "withdraw",
            "ref-alice",
            "--amount",
            "1",
            "--program",
            "vast",
            "--json",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["payout"]["rail"], "stripe");
    // A rail that does not exist is refused with the list.
    let out = payouts(
        db,
        &["withdraw", "ref-alice", "--amount", "1", "--rail", "venmo"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("partnerstack"));
}
