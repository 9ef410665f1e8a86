//! `payouts sim`, the deterministic simulator of the whole engine: a run replays exactly from
//! its seed, seeded runs keep every invariant, and the checks do catch money we never sent.
//! On the PostgreSQL pass every run gets its own database on that server.

use crate::common;

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_payouts");

fn sim(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("sim")
        .args(args)
        .args(common::pg_bench_args())
        .env_remove("DATABASE_URL")
        .output()
        .expect("run payouts sim")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn trace_hash(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("trace "))
        .unwrap_or_else(|| panic!("no trace line in:\n{stdout}"))
        .to_string()
}

fn trace_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .take_while(|l| !l.starts_with("trace "))
        .collect()
}

#[test]
fn the_same_seed_plays_the_same_run() {
    let first = sim(&["--seed", "11"]);
    let second = sim(&["--seed", "11"]);
    let (out1, err1) = text(&first);
    let (out2, _) = text(&second);
    assert!(first.status.success(), "{out1}\n{err1}");
    assert!(out1.contains(" withdraws "), "{out1}");
    assert!(out1.contains("1 runs, 0 violations"), "{out1}");
    assert_eq!(trace_hash(&out1), trace_hash(&out2));
    // The whole trace, line for line (so the hash is of something).
    assert_eq!(trace_lines(&out1), trace_lines(&out2));
    let other = sim(&["--seed", "12"]);
    assert_ne!(trace_hash(&out1), trace_hash(&text(&other).0));
}

#[test]
fn seeded_runs_keep_every_invariant_and_count_their_faults() {
    let out = sim(&["--seeds", "8", "--first", "100", "--jobs", "2"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().last(),
        Some("8 runs, 0 violations"),
        "{stdout}"
    );
    for kind in [
        "worker crashes",
        "webhooks delivered",
        "time jumps",
        "database busy at",
        "database unreachable at",
        "webhooks delayed past a time jump",
        "payouts scripted to come back after delivery",
    ] {
        assert!(stdout.contains(kind), "no {kind:?} in:\n{stdout}");
    }
}

#[test]
fn money_no_payout_asked_for_is_a_violation_with_its_replay_command() {
    let out = sim(&["--seed", "5", "--stray"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.ends_with("1 runs, 1 violations\n"), "{stdout}");
    assert!(
        stderr.contains(
            "stripe moved 1234 cents for \"po_stray\", which no payout of ours asked for"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("replay: payouts sim --seed 5"), "{stderr}");
}
