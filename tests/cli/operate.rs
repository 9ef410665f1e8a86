//! Operator actions through the real binary: `payouts payouts ACTION`, four eyes with
//! `payouts approvals`, and `payouts rails pause|resume`. Exit 0 when done (or already
//! done), 4 when the action's safety rules refuse it, with the reason on stderr.

use std::process::Output;

use crate::commands::payouts;
use crate::common;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}\n{}", stderr(o), stdout(o));
    serde_json::from_str(&stdout(o)).expect("JSON")
}

/// Queues a withdrawal of `amount` for ref-alice; no worker runs, so it stays queued.
fn queued(db: &str, amount: &str, key: &str, env: &[(&str, &str)]) -> String {
    let out = payouts(
        db,
        &[
            "withdraw",
            "ref-alice",
            "--amount",
            amount,
            "--idempotency-key",
            key,
            "--json",
        ],
        env,
    );
    json(&out)["payout"]["id"]
        .as_str()
        .expect("payout id")
        .to_string()
}

fn payable(db: &str) -> String {
    let out = payouts(db, &["balance", "ref-alice", "--json"], &[]);
    json(&out)["programs"][0]["payable_now"]["amount"]
        .as_str()
        .expect("payable")
        .to_string()
}

#[test]
fn operators_act_from_the_command_line_under_the_same_rules() {
    let tdb = common::TestDb::blocking("cli_operate");
    let db = tdb.url.as_str();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/demo.ndjson");
    assert!(payouts(db, &["ingest", fixture], &[]).status.success());
    let before = payable(db);
    let id = queued(db, "5.00", "cli-op-1", &[]);

    // Nothing to retry on a queued payout: refused with exit 4 and the reason.
    let out = payouts(db, &["payouts", "retry", &id, "--reason", "why not"], &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("not allowed"), "{}", stderr(&out));
    // A reason is mandatory.
    let out = payouts(db, &["payouts", "cancel", &id, "--reason", " "], &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("reason is required"),
        "{}",
        stderr(&out)
    );

    let cancel = [
        "payouts",
        "cancel",
        &id,
        "--reason",
        "payee asked",
        "--as",
        "ops-ana",
        "--json",
    ];
    let done = json(&payouts(db, &cancel, &[]));
    assert_eq!(done["to"], "failed");
    assert_eq!(done["replayed"], false);
    assert_eq!(payable(db), before, "the hold is voided");
    let again = json(&payouts(db, &cancel, &[]));
    assert_eq!(again["replayed"], true, "asked twice, done once");
    let shown = stdout(&payouts(db, &["payouts", "show", &id], &[]));
    assert!(
        shown.contains("ops-ana") && shown.contains("payee asked"),
        "{shown}"
    );

    // An unknown duplicate is refused.
    let out = payouts(
        db,
        &[
            "payouts",
            "resolve-duplicate",
            &id,
            "--object",
            "tr_none",
            "--booking",
            "owed",
            "--reason",
            "x",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("not a duplicate"), "{}", stderr(&out));
}

#[test]
fn above_the_four_eyes_amount_a_second_operator_approves_from_the_command_line() {
    let tdb = common::TestDb::blocking("cli_four_eyes");
    let db = tdb.url.as_str();
    let four_eyes = [("PAYOUTS_FOUR_EYES_ABOVE", "1.00")];
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/demo.ndjson");
    assert!(payouts(db, &["ingest", fixture], &[]).status.success());
    let id = queued(db, "5.00", "cli-op-2", &four_eyes);
    let cancel = [
        "payouts",
        "cancel",
        &id,
        "--reason",
        "fraud check",
        "--as",
        "ops-ana",
        "--json",
    ];
    let asked = json(&payouts(db, &cancel, &four_eyes));
    assert_eq!(asked["state"], "pending_approval");
    let action = asked["action_id"].as_str().expect("action id").to_string();
    let list = json(&payouts(db, &["approvals", "list", "--json"], &four_eyes));
    assert!(list.to_string().contains(&action), "{list}");

    let same = payouts(
        db,
        &["approvals", "approve", &action, "--as", "ops-ana"],
        &four_eyes,
    );
    assert_eq!(same.status.code(), Some(4), "{}", stderr(&same));
    assert!(stderr(&same).contains("four eyes"), "{}", stderr(&same));
    let approved = json(&payouts(
        db,
        &["approvals", "approve", &action, "--as", "ops-bo", "--json"],
        &four_eyes,
    ));
    assert_eq!(approved["to"], "failed");
    assert!(
        approved["summary"]
            .as_str()
            .unwrap_or("")
            .contains("approved by ops-bo"),
        "{approved}"
    );

    // Pausing a rail is said in the list and undone by resume; both need a reason.
    let out = payouts(db, &["rails", "pause", "stripe", "--reason", " "], &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let out = payouts(
        db,
        &["rails", "pause", "stripe", "--reason", "incident 42"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rails = json(&payouts(db, &["rails", "list", "--json"], &[]));
    assert!(rails.to_string().contains("incident 42"), "{rails}");
    let out = payouts(db, &["rails", "resume", "stripe", "--reason", "fixed"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rails = json(&payouts(db, &["rails", "list", "--json"], &[]));
    assert!(!rails.to_string().contains("incident 42"), "{rails}");
}

/// `payouts review`: with the tax gate on (and a 1-dollar threshold), a withdrawal is held
/// for a missing W-9; the queue lists it with its rule, an approval cannot stand in for the
/// form (exit 4), and a rejection with a clawback voids it and takes the money back.
#[test]
fn held_payouts_are_reviewed_from_the_command_line() {
    let tdb = common::TestDb::blocking("cli_review");
    let db = tdb.url.as_str();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/demo.ndjson");
    assert!(payouts(db, &["ingest", fixture], &[]).status.success());
    let gate = [
        ("PAYOUTS_TAX_GATE", "1"),
        ("PAYOUTS_TAX_THRESHOLDS", "2020=1"),
    ];
    let before: rust_decimal::Decimal = payable(db).parse().expect("decimal");
    let id = queued(db, "5.00", "cli-review-1", &gate);
    let list = payouts(db, &["review", "list"], &gate);
    let text = stdout(&list);
    assert!(text.contains(&id), "{text}");
    assert!(
        text.contains("  w9_missing: a US payee with no W-9 on file"),
        "{text}"
    );
    let listed = json(&payouts(db, &["review", "list", "--json"], &gate));
    assert_eq!(listed[0]["payout"]["status"], "held", "{listed}");

    let approve = payouts(db, &["review", "approve", &id, "--reason", "ok"], &gate);
    assert_eq!(approve.status.code(), Some(4), "{}", stderr(&approve));
    assert!(
        stderr(&approve).contains("no approval replaces"),
        "{}",
        stderr(&approve)
    );
    let args = ["review", "reject", &id, "--reason", "farming", "--clawback"];
    let reject = payouts(db, &args, &gate);
    assert!(reject.status.success(), "{}", stderr(&reject));
    let after: rust_decimal::Decimal = payable(db).parse().expect("decimal");
    assert_eq!(before - after, rust_decimal::Decimal::from(5));
    assert!(stdout(&payouts(db, &["review", "list"], &gate)).contains("no payout is held"));

    let bad = payouts(db, &["review", "list"], &[("PAYOUTS_TAX_GATE", "maybe")]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("PAYOUTS_TAX_GATE"),
        "{}",
        stderr(&bad)
    );
}
