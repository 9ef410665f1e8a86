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

/// One request to the mock's own control routes; the JSON body of its answer.
fn mock_call(base: &str, method: &str, path: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let rest = base.strip_prefix("http://").expect("http");
    let mut stream = std::net::TcpStream::connect(rest).expect("connect mock");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {rest}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let body = response.split_once("\r\n\r\n").expect("body").1;
    serde_json::from_str(body).expect("mock json")
}

/// Transfers the mock made for one payout, from its own books.
fn transfers_for(base: &str, payout: &str) -> usize {
    let all = mock_call(base, "GET", "/__mock/transfers");
    let all = all.as_array().expect("transfers");
    all.iter().filter(|t| t["transfer_group"] == payout).count()
}

/// Waits, polling at most `secs` (a bound for a hung test, never a timing assumption), until
/// `done` holds.
fn wait_until(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Releases the mock's gate and waits until no request is in flight there any more: every
/// request a worker sent has been executed and answered (or abandoned by the mock).
fn release_and_drain(base: &str) {
    mock_call(base, "POST", "/__mock/gate/release");
    wait_until(120, "the mock to finish its requests", || {
        mock_call(base, "GET", "/__mock/gate")["in_flight"] == 0
    });
}

/// A database with one queued payout for ref-alice, and the mocks holding every money-moving
/// request at their gate until the test releases it. Returns the payout id, the mock and its
/// Stripe URL.
fn one_queued_payout(db: &Path) -> (String, Killed, String) {
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

    let mut mock = Killed(
        Command::new(BIN)
            .args(["mock-providers"])
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
    assert_eq!(mock_call(&base, "POST", "/__mock/gate/hold")["held"], true);
    (id, mock, base)
}

/// How long a worker waits for the provider, and how long its lease lasts (the lease must
/// outlast the timeout: the worker refuses to start otherwise). A takeover waits for the
/// lease; a test that never takes over uses long ones so that no load can expire them.
#[derive(Clone, Copy)]
struct Patience {
    timeout_secs: &'static str,
    lease_secs: &'static str,
}

const TAKEOVER: Patience = Patience {
    timeout_secs: "10",
    lease_secs: "12",
};
const NO_TAKEOVER: Patience = Patience {
    timeout_secs: "60",
    lease_secs: "90",
};

fn worker_env(base: &str, patience: Patience) -> [(&'static str, &str); 6] {
    [
        ("STRIPE_SECRET_KEY", "sk_test_crash"),
        ("STRIPE_API_BASE", base),
        ("PAYOUTS_HTTP_TIMEOUT_SECS", patience.timeout_secs),
        ("PAYOUTS_SETTLE_DELAY_SECS", "1"),
        ("PAYOUTS_RETRY_BASE_SECS", "1"),
        ("PAYOUTS_LEASE_TTL_SECS", patience.lease_secs),
    ]
}

/// Starts `payouts work` in the background, its standard error going to `log`.
fn spawn_worker(db: &Path, base: &str, log: &Path, patience: Patience, args: &[&str]) -> Killed {
    let mut cmd = Command::new(BIN);
    cmd.arg("work")
        .args(args)
        .env(
            "PAYOUTS_LOG",
            "info,payouts=trace,apalis_core=debug,apalis_sqlite=debug",
        )
        .env("DATABASE_URL", db)
        .env("RUNPOD_BONUS_SEED", "crash-test-seed-0123456789")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in worker_env(base, patience) {
        cmd.env(k, v);
    }
    Killed(cmd.spawn().unwrap())
}

fn log_of(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Waits until `worker`'s request for the payout is held at the mock's gate: it reached the
/// provider and cannot finish until the test releases it.
fn wait_for_send(db: &Path, id: &str, base: &str, worker: &mut Killed, log: &Path) {
    wait_until(120, "the worker to send", || {
        if let Ok(Some(status)) = worker.0.try_wait() {
            panic!("the worker exited ({status}): {}", log_of(log));
        }
        mock_call(base, "GET", "/__mock/gate")["in_flight"] == 1
    });
    let p = show(db, id);
    assert_eq!(
        p["payout"]["status"],
        "submitting",
        "{p:#}\n{}",
        log_of(log)
    );
}

#[test]
fn a_worker_killed_mid_send_is_taken_over_and_the_payout_is_paid_once() {
    let tdb = common::TestDb::blocking("crash");
    let dir = &tdb.dir;
    let db = std::path::PathBuf::from(&tdb.url);
    let (id, _mock, base) = one_queued_payout(&db);
    let log = dir.path().join("first.log");
    let mut first = spawn_worker(&db, &base, &log, TAKEOVER, &[]);
    wait_for_send(&db, &id, &base, &mut first, &log);
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    assert_eq!(
        show(&db, &id)["payout"]["status"],
        "submitting",
        "killed mid-send"
    );
    // Whatever the dead worker left at the provider executes now (or was abandoned with its
    // connection): the takeover below meets a provider that has settled.
    release_and_drain(&base);

    // A second worker process finishes the job once the dead one's lease expires.
    let out = payouts(&db, &["work", "--until-idle"], &worker_env(&base, TAKEOVER));
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
    release_and_drain(&base);
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
    let (id, _mock, base) = one_queued_payout(&db);
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let mut a = spawn_worker(&db, &base, &log_a, NO_TAKEOVER, &["--concurrency", "1"]);
    wait_for_send(&db, &id, &base, &mut a, &log_a);
    // While the first worker's request is held at the provider, a second job for the same
    // payout, as a queue that rescued a "stuck" job would leave it, goes to a second process.
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
    let mut b = spawn_worker(&db, &base, &log_b, NO_TAKEOVER, &["--concurrency", "1"]);
    wait_until(120, "the second process to run the job", || {
        if let Ok(Some(status)) = b.0.try_wait() {
            panic!("the second worker exited ({status}): {}", log_of(&log_b));
        }
        log_of(&log_b).contains("leased by another worker")
    });
    // The second process was fenced out by the lease without sending anything.
    assert_eq!(mock_call(&base, "GET", "/__mock/gate")["in_flight"], 1);
    release_and_drain(&base);

    wait_until(120, "the payout to be paid", || {
        show(&db, &id)["payout"]["status"] == "paid"
    });
    assert_eq!(
        transfers_for(&base, &id),
        1,
        "exactly one payment at the provider"
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
    let (id, _mock, base) = one_queued_payout(&db);
    let log = dir.path().join("worker.log");
    let mut worker = spawn_worker(&db, &base, &log, NO_TAKEOVER, &[]);
    wait_for_send(&db, &id, &base, &mut worker, &log);
    let sent = Command::new("kill")
        .args(["-TERM", &worker.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    // The worker has taken the signal while its request is still held at the provider; only
    // then does the provider answer.
    wait_until(120, "the worker to take SIGTERM", || {
        log_of(&log).contains("shutdown requested")
    });
    assert_eq!(mock_call(&base, "GET", "/__mock/gate")["in_flight"], 1);
    release_and_drain(&base);
    let mut status = None;
    wait_until(120, "the worker to exit", || {
        status = worker.0.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", log_of(&log));
    // The send in hand was finished, not abandoned: paid, once.
    let detail = show(&db, &id);
    assert_eq!(
        detail["payout"]["status"],
        "paid",
        "{detail:#}\n{}",
        log_of(&log)
    );
    assert_eq!(transfers_for(&base, &id), 1);
}
