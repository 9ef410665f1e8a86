//! A worker process killed with SIGKILL in the middle of a send: another worker process takes
//! the payout over once the lease expires, treats the attempt as outcome-unknown, looks it up
//! at the provider before anything else, and the provider ends up with exactly one payment.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_payouts");

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn payouts(db: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("DATABASE_URL", db)
        .env("RUNPOD_BONUS_SEED", "crash-test-seed-0123456789")
        .env_remove("PAYOUTS_PROGRAMS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run payouts")
}

fn show(db: &Path, id: &str) -> serde_json::Value {
    let out = payouts(db, &["payouts", "show", id, "--json"], &[]);
    serde_json::from_slice(&out.stdout).expect("payout json")
}

/// Transfers the mock made for one payout, from its own books.
fn transfers_for(base: &str, payout: &str) -> usize {
    use std::io::{Read, Write};
    let rest = base.strip_prefix("http://").expect("http");
    let mut stream = std::net::TcpStream::connect(rest).expect("connect mock");
    write!(
        stream,
        "GET /__mock/transfers HTTP/1.1\r\nHost: {rest}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let body = response.split_once("\r\n\r\n").expect("body").1;
    let all: Vec<serde_json::Value> = serde_json::from_str(body).expect("transfers json");
    all.iter().filter(|t| t["transfer_group"] == payout).count()
}

/// A database with one queued payout for ref-alice, and the mocks answering every
/// money-moving request after `latency_ms`. Returns the payout id, the mock and its Stripe URL.
fn one_queued_payout(db: &Path, latency_ms: u64) -> (String, Killed, String) {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/demo.ndjson");
    assert!(payouts(db, &["ingest", fixture], &[]).status.success());
    let out = payouts(
        db,
        &[
            "withdraw",
            "ref-alice",
            "--amount",
            "all",
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
    let id = created["payout"]["id"].as_str().unwrap().to_string();

    let faults = format!(r#"{{"latency_ms":{latency_ms}}}"#);
    let mut mock = Killed(
        Command::new(BIN)
            .args(["mock-providers", "--faults", &faults])
            .env("STRIPE_SECRET_KEY", "sk_test_crash")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(mock.0.stdout.take().unwrap()).lines();
    let base = lines
        .next()
        .unwrap()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    (id, mock, base)
}

fn worker_env(base: &str) -> [(&'static str, &str); 6] {
    [
        ("STRIPE_SECRET_KEY", "sk_test_crash"),
        ("STRIPE_API_BASE", base),
        ("PAYOUTS_HTTP_TIMEOUT_SECS", "4"),
        ("PAYOUTS_SETTLE_DELAY_SECS", "1"),
        ("PAYOUTS_RETRY_BASE_SECS", "1"),
        // The lease must outlast the HTTP timeout (the worker refuses to start otherwise).
        ("PAYOUTS_LEASE_TTL_SECS", "5"),
    ]
}

/// Starts `payouts work` in the background, its standard error going to `log`.
fn spawn_worker(db: &Path, base: &str, log: &Path) -> Killed {
    spawn_worker_with(db, base, log, &[])
}

fn spawn_worker_with(db: &Path, base: &str, log: &Path, args: &[&str]) -> Killed {
    let mut cmd = Command::new(BIN);
    cmd.arg("work")
        .args(args)
        .env("PAYOUTS_LOG", "info")
        .env("DATABASE_URL", db)
        .env("RUNPOD_BONUS_SEED", "crash-test-seed-0123456789")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in worker_env(base) {
        cmd.env(k, v);
    }
    Killed(cmd.spawn().unwrap())
}

/// Waits until `worker` has the payout's request in flight.
fn wait_for_send(db: &Path, id: &str, worker: &mut Killed, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = worker.0.try_wait() {
            panic!(
                "the worker exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        let p = show(db, id);
        if p["payout"]["status"] == "submitting" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never started sending: {p:#}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_worker_killed_mid_send_is_taken_over_and_the_payout_is_paid_once() {
    let tdb = common::TestDb::blocking("crash");
    let dir = &tdb.dir;
    let db = std::path::PathBuf::from(&tdb.url);
    // Every money-moving request takes 3 s at the mock: long enough to kill the sender.
    let (id, _mock, base) = one_queued_payout(&db, 3000);
    let log = dir.path().join("first.log");
    let mut first = spawn_worker(&db, &base, &log);
    wait_for_send(&db, &id, &mut first, &log);
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    assert_eq!(
        show(&db, &id)["payout"]["status"],
        "submitting",
        "killed mid-send"
    );

    // A second worker process finishes the job.
    let out = payouts(&db, &["work", "--until-idle"], &worker_env(&base));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let detail = show(&db, &id);
    assert_eq!(detail["payout"]["status"], "paid", "{detail:#}");
    // After "sending attempt 1", the next thing that happened was a lookup at the provider
    // (found: paid; or proven absent: attempt 2), never a blind re-send.
    let events = detail["events"].as_array().unwrap();
    let sent = events
        .iter()
        .position(|e| {
            e["reason"]
                .as_str()
                .unwrap()
                .starts_with("sending attempt 1")
        })
        .expect("attempt 1 was sent");
    let next = &events[sent + 1];
    assert!(
        next["source"] == "lookup"
            || next["reason"]
                .as_str()
                .unwrap()
                .starts_with("the provider shows nothing for attempts 1..=1"),
        "the takeover looked the attempt up first: {events:#?}"
    );
    // Let any request the killed worker left in flight finish at the mock, then count.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        transfers_for(&base, &id),
        1,
        "exactly one payment at the provider"
    );
}

#[test]
fn two_worker_processes_running_the_same_payout_job_send_it_once() {
    let tdb = common::TestDb::blocking("same_job");
    let dir = &tdb.dir;
    let db = std::path::PathBuf::from(&tdb.url);
    let (id, _mock, base) = one_queued_payout(&db, 2000);
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let mut a = spawn_worker_with(&db, &base, &log_a, &["--concurrency", "1"]);
    wait_for_send(&db, &id, &mut a, &log_a);
    // While the first worker's request is in flight, a second job for the same payout, as a
    // queue that rescued a "stuck" job would leave it, goes to a second process.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = tdb.open(common::programs()).await;
        let payout = id.parse().unwrap();
        store
            .schedule_check(&payout, chrono::Utc::now())
            .await
            .unwrap();
        store.close().await;
    });
    let _b = spawn_worker_with(&db, &base, &log_b, &["--concurrency", "1"]);

    let deadline = Instant::now() + Duration::from_secs(40);
    while show(&db, &id)["payout"]["status"] != "paid" {
        assert!(Instant::now() < deadline, "not paid: {:#}", show(&db, &id));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        transfers_for(&base, &id),
        1,
        "exactly one payment at the provider"
    );
    let logs = [&log_a, &log_b].map(|l| std::fs::read_to_string(l).unwrap_or_default());
    assert!(
        logs[1].contains("leased by another worker"),
        "the second process ran the job and was fenced out by the lease:\n{}",
        logs[1]
    );
    let ledger = payouts(&db, &["ledger-check"], &[]);
    assert!(
        ledger.status.success(),
        "{}",
        String::from_utf8_lossy(&ledger.stdout)
    );
}

#[test]
fn sigterm_finishes_the_send_in_hand_and_exits_zero() {
    let tdb = common::TestDb::blocking("term");
    let dir = &tdb.dir;
    let db = std::path::PathBuf::from(&tdb.url);
    let (id, _mock, base) = one_queued_payout(&db, 1500);
    let log = dir.path().join("worker.log");
    let mut worker = spawn_worker(&db, &base, &log);
    wait_for_send(&db, &id, &mut worker, &log);
    let sent = Command::new("kill")
        .args(["-TERM", &worker.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = worker.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the worker did not stop within 15 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // The send in hand was finished, not abandoned: paid, once.
    let detail = show(&db, &id);
    assert_eq!(detail["payout"]["status"], "paid", "{detail:#}");
    assert_eq!(transfers_for(&base, &id), 1);
}
