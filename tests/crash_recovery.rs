//! A worker process killed with SIGKILL in the middle of a send: another worker process takes
//! the payout over once the lease expires, treats the attempt as outcome-unknown, looks it up
//! at the provider before anything else, and the provider ends up with exactly one payment.

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

#[test]
fn a_worker_killed_mid_send_is_taken_over_and_the_payout_is_paid_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/demo.ndjson");
    assert!(payouts(&db, &["ingest", fixture], &[]).status.success());
    let out = payouts(
        &db,
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

    // Every money-moving request takes 3 s at the mock: long enough to kill the sender.
    let mut mock = Killed(
        Command::new(BIN)
            .args(["mock-providers", "--faults", r#"{"latency_ms":3000}"#])
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

    let worker_env = [
        ("STRIPE_SECRET_KEY", "sk_test_crash"),
        ("STRIPE_API_BASE", base.as_str()),
        ("PAYOUTS_HTTP_TIMEOUT_SECS", "4"),
        ("PAYOUTS_SETTLE_DELAY_SECS", "1"),
        ("PAYOUTS_RETRY_BASE_SECS", "1"),
        // The lease must outlast the HTTP timeout (the worker refuses to start otherwise).
        ("PAYOUTS_LEASE_TTL_SECS", "5"),
    ];
    let mut first = Command::new(BIN);
    first
        .args(["work"])
        .env("DATABASE_URL", &db)
        .env("RUNPOD_BONUS_SEED", "crash-test-seed-0123456789")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("first.log")).unwrap());
    for (k, v) in worker_env {
        first.env(k, v);
    }
    let mut first = Killed(first.spawn().unwrap());

    // Wait until the first worker has the request in flight, then SIGKILL it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = first.0.try_wait() {
            panic!(
                "the first worker exited ({status}): {}",
                std::fs::read_to_string(dir.path().join("first.log")).unwrap_or_default()
            );
        }
        let p = show(&db, &id);
        if p["payout"]["status"] == "submitting" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first worker never started sending: {p:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    assert_eq!(
        show(&db, &id)["payout"]["status"],
        "submitting",
        "killed mid-send"
    );

    // A second worker process finishes the job.
    let out = payouts(&db, &["work", "--until-idle"], &worker_env);
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
