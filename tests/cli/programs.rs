//! The real binary with program configuration: presets, custom files, bad files rejected at
//! start, affiliate opt-in, balances with affiliate state, the template report, re-accrual.

use crate::common;

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_payouts");
const SEED: &str = "cli-programs-seed-0123456789";

fn payouts(db: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("DATABASE_URL", db)
        .env("RUNPOD_BONUS_SEED", SEED)
        .env_remove("PAYOUTS_PROGRAMS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run payouts")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `n` paying referred users of `nia` (each $20 of pods), as NDJSON.
fn referrals(n: usize) -> String {
    let mut lines = vec![
        r#"{"type":"account","id":"nia","created_at":"2025-01-01T00:00:00Z","email":"nia@x.com"}"#
            .to_string(),
    ];
    for i in 0..n {
        lines.push(format!(
            r#"{{"type":"account","id":"u{i}","created_at":"2025-07-01T00:00:00Z","email":"u{i}@x.com"}}"#
        ));
        lines.push(format!(
            r#"{{"type":"referral","program":"runpod","referrer":"nia","referred":"u{i}","at":"2025-07-01T00:00:00Z"}}"#
        ));
        lines.push(format!(
            r#"{{"type":"usage","id":"c{i}","account":"u{i}","at":"2025-07-05T00:00:00Z","category":"pod","amount":"20","currency":"USD"}}"#
        ));
    }
    lines.join("\n")
}

#[test]
fn affiliate_opt_in_is_refused_with_the_count_then_accepted_for_good() {
    let tdb = common::TestDb::blocking("aff");
    let dir = &tdb.dir;
    let db = std::path::PathBuf::from(&tdb.url);
    let file = dir.path().join("refs.ndjson");
    std::fs::write(&file, referrals(24)).unwrap();
    let o = payouts(&db, &["ingest", file.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", err(&o));

    let o = payouts(&db, &["affiliate", "opt-in", "nia"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("24 paying referred users") && err(&o).contains("at least 25"),
        "{}",
        err(&o)
    );

    std::fs::write(&file, referrals(25)).unwrap();
    assert!(
        payouts(&db, &["ingest", file.to_str().unwrap()], &[])
            .status
            .success()
    );
    let o = payouts(&db, &["balance", "nia", "--json"], &[]);
    let b: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(b["affiliate"][0]["paying_referrals"], 25);
    assert_eq!(b["affiliate"][0]["can_opt_in"], true);

    let o = payouts(
        &db,
        &["affiliate", "opt-in", "nia", "--at", "2025-08-01T00:00:00Z"],
        &[],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("permanent"), "{}", out(&o));
    let o = payouts(&db, &["affiliate", "opt-in", "nia"], &[]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a second opt-in at another time is refused"
    );
    assert!(
        err(&o).contains("already opted into runpod-affiliate"),
        "{}",
        err(&o)
    );

    let o = payouts(&db, &["balance", "nia"], &[]);
    assert!(out(&o).contains("opted in at 2025-08-01"), "{}", out(&o));
    assert!(
        out(&o).contains("runpod (referral, pays credit"),
        "{}",
        out(&o)
    );
    // Re-accruing an up-to-date ledger posts nothing.
    let o = payouts(&db, &["accrue"], &[]);
    assert!(
        out(&o).contains("0 ledger transaction(s) posted"),
        "{}",
        out(&o)
    );
}

#[test]
fn bad_configuration_is_rejected_at_start_naming_the_field() {
    let tdb = common::TestDb::blocking("cfg");
    let dir = &tdb.dir;
    let db = std::path::PathBuf::from(&tdb.url);
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[program]]\nid = \"acme\"\nkind = \"referral\"\nreward = \"credit\"\ncashable_fraction = \"0\"\nwindow = \"6 months\"\nrates = { pod = \"1.5\" }\n",
    )
    .unwrap();
    let o = payouts(
        &db,
        &["balance", "x"],
        &[("PAYOUTS_PROGRAMS", bad.to_str().unwrap())],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("program[0] (acme).rates.pod") && err(&o).contains("between 0 and 1"),
        "{}",
        err(&o)
    );

    // A missing seed fails only a bonus draw (tests/cli/bonus_seed.rs); a guessable one is a
    // mistake every command stops on.
    let o = payouts(&db, &["programs"], &[("RUNPOD_BONUS_SEED", "")]);
    assert!(o.status.success(), "{}", err(&o));
    let o = payouts(&db, &["programs"], &[("RUNPOD_BONUS_SEED", "tiny-secret")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("seed_env")
            && err(&o).contains("RUNPOD_BONUS_SEED")
            && err(&o).contains("too short"),
        "{}",
        err(&o)
    );
    assert!(!err(&o).contains("tiny-secret") && !err(&o).contains(SEED));

    // A platform's own file works alongside a preset.
    let good = dir.path().join("acme.toml");
    std::fs::write(
        &good,
        "[[program]]\nid = \"acme\"\nkind = \"referral\"\nreward = \"cash\"\nrails = [\"wise\"]\nwindow = \"12 months\"\nrates = { pod = \"0.02\" }\n",
    )
    .unwrap();
    let spec = format!("vast,{}", good.display());
    let o = payouts(&db, &["programs", "--json"], &[("PAYOUTS_PROGRAMS", &spec)]);
    assert!(o.status.success(), "{}", err(&o));
    let set: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let ids: Vec<&str> = set["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["vast", "acme"]);
}

#[test]
fn the_template_report_lists_links_and_creator_earnings() {
    let tdb = common::TestDb::blocking("tpl");
    let db = std::path::PathBuf::from(&tdb.url);
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/runpod.ndjson");
    let o = payouts(&db, &["ingest", fixture], &[]);
    assert!(o.status.success(), "{}", err(&o));
    let o = payouts(&db, &["templates", "--json"], &[]);
    let report: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let t = report
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["template"] == "tpl-comfyui")
        .unwrap();
    assert_eq!(t["creator"], "rp-cid");
    assert_eq!(t["runtime_secs"], 34 * 3600);
    // Only the $100 run after the first day earns: 1%.
    assert_eq!(t["creator_earned"]["amount"], "1");
}

#[test]
fn the_accrual_benchmark_runs_small_and_reports_an_idempotent_second_pass() {
    let dir = tempfile::tempdir().unwrap();
    let o = payouts(
        &dir.path().join("unused.db"),
        &[
            "bench",
            "accrual",
            "--accounts",
            "60",
            "--events",
            "3000",
            "--referrers",
            "5",
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", err(&o));
    let figures: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(figures["events"], 3000);
    assert_eq!(figures["qualified_referrals"], 60);
    assert!(figures["transactions_posted"].as_u64().unwrap() > 0);
    assert_eq!(figures["second_pass_transactions_posted"], 0);
    assert_eq!(figures["ledger_problems"], 0);
    assert!(figures["ratio"].as_f64().unwrap() > 0.0);
}

#[test]
fn the_payout_run_and_execution_benchmarks_run_small() {
    let dir = tempfile::tempdir().unwrap();
    // On the PostgreSQL pass the benchmarks make (and drop) their own databases there.
    let pg = common::pg_bench_args();
    let pg: Vec<&str> = pg.iter().map(String::as_str).collect();
    let o = payouts(
        &dir.path().join("unused.db"),
        &[&["bench", "run", "--payees", "200", "--json"][..], &pg].concat(),
        &[],
    );
    assert!(o.status.success(), "{}", err(&o));
    let figures: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(figures["payees"], 200);
    let backend = if pg.is_empty() { "sqlite" } else { "postgres" };
    assert_eq!(figures["backend"], backend);
    // One in five is skipped, ten for each of four reasons.
    assert_eq!(figures["eligible"], 160);
    assert_eq!(figures["created"], 160);
    assert_eq!(figures["payouts_in_db"], 160);
    for reason in [
        "auto_payout_off",
        "no_method",
        // A sub-cent residue waits for the minimum (and says so).
        "below_minimum",
        "spend_gate",
    ] {
        assert_eq!(figures["skipped"][reason], 10, "{reason}");
    }
    assert_eq!(figures["matches_fixture"], true);

    let o = payouts(
        &dir.path().join("unused.db"),
        &[
            &[
                "bench",
                "execution",
                "--payouts",
                "20",
                "--workers",
                "1,2",
                "--json",
            ][..],
            &pg,
        ]
        .concat(),
        &[],
    );
    assert!(o.status.success(), "{}", err(&o));
    let figures: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let results = figures["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for (r, workers) in results.iter().zip([1, 2]) {
        assert_eq!(r["workers"], workers);
        assert_eq!(r["paid"], 20);
        assert_eq!(r["transfers"], 20);
        assert_eq!(r["exactly_one_transfer_each"], true);
        assert_eq!(r["ledger_problems"], 0);
        assert!(r["commits_per_payout"].as_f64().unwrap() > 0.0);
        let (seen, made) = (&r["commit_loop_hooked"], &r["commit_loop_commits"]);
        if pg.is_empty() {
            assert_eq!(seen, made);
        } else {
            // Transaction ids are server-wide: other tests write to their own databases.
            assert!(
                seen.as_u64().unwrap() >= made.as_u64().unwrap(),
                "{seen} < {made}"
            );
        }
    }
}

#[test]
fn the_http_benchmark_runs_small_and_every_created_withdrawal_is_a_payout() {
    let dir = tempfile::tempdir().unwrap();
    // On the PostgreSQL pass the benchmark makes (and drops) its own database there.
    let pg = common::pg_bench_args();
    let pg: Vec<&str> = pg.iter().map(String::as_str).collect();
    let o = payouts(
        &dir.path().join("unused.db"),
        &[
            &[
                "bench",
                "http",
                "--connections",
                "4",
                "--requests",
                "200",
                "--withdrawals",
                "50",
                "--payees",
                "100",
                "--json",
            ][..],
            &pg,
        ]
        .concat(),
        &[],
    );
    assert!(o.status.success(), "{}", err(&o));
    let figures: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let backend = if pg.is_empty() { "sqlite" } else { "postgres" };
    assert_eq!(figures["backend"], backend);
    assert_eq!(figures["connections"], 4);
    for (phase, requests) in [("reads", 200), ("withdrawals", 50)] {
        let p = &figures[phase];
        assert_eq!(p["requests"], requests, "{phase}");
        // Every payee is eligible and can pay its one $1.00 withdrawal.
        assert_eq!(p["ok"], requests, "{phase}: {p}");
        assert_eq!(p["non_2xx"], serde_json::json!({}), "{phase}");
        assert_eq!(p["transport_errors"], 0, "{phase}");
        assert!(p["requests_per_sec"].as_f64().unwrap() > 0.0, "{phase}");
        let (p50, p99) = (p["p50_ms"].as_f64().unwrap(), p["p99_ms"].as_f64().unwrap());
        assert!(p50 > 0.0 && p50 <= p99, "{phase}: p50 {p50}, p99 {p99}");
    }
    assert_eq!(figures["withdrawals"]["created"], 50);
    assert_eq!(figures["payouts_in_db"], figures["withdrawals"]["created"]);
    assert_eq!(figures["payouts_match_created"], true);
}

#[test]
fn the_ingest_benchmark_runs_small_from_the_command_line_and_over_http() {
    let dir = tempfile::tempdir().unwrap();
    // On the PostgreSQL pass the benchmark makes (and drops) its own databases there.
    let pg = common::pg_bench_args();
    let pg: Vec<&str> = pg.iter().map(String::as_str).collect();
    let args = [
        "bench",
        "ingest",
        "--events",
        "3000",
        "--referrers",
        "20",
        "--http-events",
        "2500",
        "--json",
    ];
    let o = payouts(
        &dir.path().join("unused.db"),
        &[&args[..], &pg].concat(),
        &[],
    );
    assert!(o.status.success(), "{}\n{}", err(&o), out(&o));
    let figures: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let backend = if pg.is_empty() { "sqlite" } else { "postgres" };
    assert_eq!(figures["backend"], backend);
    // Three lines per referrer (two accounts, one referral), one per usage event.
    assert_eq!(figures["lines"], 3 * 20 + 3000);
    for field in [
        "ingest_rows_per_sec",
        "engine_rows_per_sec",
        "ratio",
        "engine_product_rows_per_sec",
        "best_ratio",
        "ratio_to_product_load",
    ] {
        assert!(figures[field].as_f64().unwrap() > 0.0, "{field}: {figures}");
    }
    // The best ratio is the product-shaped load's own: both engine loads were measured.
    let f = |k: &str| figures[k].as_f64().unwrap();
    let best = f("engine_product_rows_per_sec") / f("engine_rows_per_sec");
    assert!((f("best_ratio") - best).abs() < 1e-9, "{figures}");
    assert!(figures["peak_rss_kib"].as_u64().unwrap() > 0);
    // Every account and referral, then the first 2,500 usage records, in one request.
    let http = &figures["http"];
    assert_eq!(http["records"], 3 * 20 + 2500, "{figures}");
    assert_eq!(http["requests"], 1);
    assert!(http["records_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn the_reconcile_benchmark_runs_small_and_finds_exactly_every_injected_discrepancy() {
    let dir = tempfile::tempdir().unwrap();
    // On the PostgreSQL pass the benchmark makes (and drops) its own database there.
    let pg = common::pg_bench_args();
    let pg: Vec<&str> = pg.iter().map(String::as_str).collect();
    let o = payouts(
        &dir.path().join("unused.db"),
        &[
            &[
                "bench",
                "reconcile",
                "--payouts",
                "700",
                "--rate",
                "0.01",
                "--json",
            ][..],
            &pg,
        ]
        .concat(),
        &[],
    );
    assert!(o.status.success(), "{}\n{}", err(&o), out(&o));
    let figures: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let backend = if pg.is_empty() { "sqlite" } else { "postgres" };
    assert_eq!(figures["backend"], backend);
    assert_eq!(figures["injected_per_kind"], 7);
    // One record per payout, less the missing, plus the duplicates and the unknown ones.
    assert_eq!(figures["statement_records"], 707);
    let kinds = figures["kinds"].as_object().unwrap();
    assert_eq!(kinds.len(), 7, "{kinds:?}");
    for (kind, k) in kinds {
        // A duplicated payout is one exception naming both records.
        let expected = 7;
        assert_eq!(k["expected"], expected, "{kind}");
        assert_eq!(k["found"], expected, "{kind}: {k}");
        assert_eq!(k["missed"], 0, "{kind}");
        assert_eq!(k["unexpected"], 0, "{kind}");
    }
    assert_eq!(figures["exceptions"], 7 * 7);
    assert_eq!(figures["all_found"], true);
    assert_eq!(figures["nothing_unexpected"], true);
    // Both links are exercised; only the unknown records stay unlinked.
    assert_eq!(
        figures["matched_by"]["none"], 7,
        "{}",
        figures["matched_by"]
    );
    assert!(figures["matched_by"]["payout_id"].as_i64().unwrap() > 0);
    assert!(figures["matched_by"]["reference"].as_i64().unwrap() > 0);
    assert!(figures["records_per_sec"].as_f64().unwrap() > 0.0);
}
