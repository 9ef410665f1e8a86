//! `payouts events` through the real binary: an endpoint's secret printed once (`--json`:
//! `id` and `secret`), the event log, a replay, a removal, and bad input refused with a
//! message; `payouts prune` table by table.

use std::process::Output;

use crate::commands::payouts;
use crate::common;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        stdout(o)
    );
    serde_json::from_str(&stdout(o)).expect("JSON")
}

#[test]
fn endpoints_events_and_replays_from_the_command_line() {
    let tdb = common::TestDb::blocking("cli_events");
    let db = tdb.url.as_str();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/demo.ndjson");
    assert!(payouts(db, &["ingest", fixture], &[]).status.success());

    let add = [
        "events",
        "endpoints",
        "add",
        "--url",
        "http://127.0.0.1:9/hooks",
        "--types",
        "payout.created,payout.paid",
        "--json",
    ];
    let made = json(&payouts(db, &add, &[]));
    let (id, secret) = (
        made["id"].as_str().unwrap(),
        made["secret"].as_str().unwrap(),
    );
    assert!(
        id.starts_with("we_") && secret.starts_with("whsec_"),
        "{made}"
    );
    let list = payouts(db, &["events", "endpoints", "list"], &[]);
    assert!(stdout(&list).contains(id) && !stdout(&list).contains(secret));

    let withdraw = [
        "withdraw",
        "ref-alice",
        "--amount",
        "5.00",
        "--idempotency-key",
        "cli-ev-1",
        "--json",
    ];
    let payout = json(&payouts(db, &withdraw, &[]))["payout"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let events = json(&payouts(db, &["events", "list", "--json"], &[]));
    let created = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "payout.created" && e["subject"] == payout.as_str())
        .expect("payout.created");
    let event = created["id"].as_str().unwrap();
    assert_eq!(created["deliveries"][0]["state"], "pending");

    let replay = payouts(db, &["events", "replay", event, "--by", "ops-ana"], &[]);
    assert!(
        stdout(&replay).starts_with("1 deliveries queued"),
        "{}",
        stdout(&replay)
    );
    let shown = json(&payouts(db, &["events", "show", event, "--json"], &[]));
    assert_eq!(shown["deliveries"][1]["replayed_by"], "ops-ana");

    let removed = payouts(db, &["events", "endpoints", "remove", id], &[]);
    assert!(removed.status.success());
    let shown = json(&payouts(db, &["events", "show", event, "--json"], &[]));
    assert!(
        shown["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["state"] == "cancelled")
    );

    for (args, says) in [
        (
            vec![
                "events",
                "endpoints",
                "add",
                "--url",
                "http://platform.example/h",
            ],
            "https",
        ),
        (
            vec![
                "events",
                "endpoints",
                "add",
                "--url",
                "https://a.example/h",
                "--types",
                "payout.sent",
            ],
            "unknown event type",
        ),
        (vec!["events", "replay", "evt_nope"], "does not exist"),
        (
            vec!["events", "replay", "--since", "last week"],
            "not a time",
        ),
    ] {
        let out = payouts(db, &args, &[]);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn prune_reports_each_table_and_refuses_an_age_below_its_floor() {
    let tdb = common::TestDb::blocking("cli_prune");
    let db = tdb.url.as_str();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/demo.ndjson");
    assert!(payouts(db, &["ingest", fixture], &[]).status.success());
    let dry = json(&payouts(db, &["prune", "--dry-run", "--json"], &[]));
    assert_eq!(dry["dry_run"], true);
    let tables: Vec<&str> = dry["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    for table in [
        "webhook_deliveries",
        "api_idempotency",
        "recon_records",
        "outgoing_events",
    ] {
        assert!(tables.contains(&table), "{tables:?}");
    }
    let text = payouts(db, &["prune"], &[]);
    assert!(text.status.success());
    assert!(stdout(&text).contains("deleted"), "{}", stdout(&text));
    let out = payouts(db, &["prune"], &[("PAYOUTS_RETAIN_IDEMPOTENCY_DAYS", "1")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PAYOUTS_RETAIN_IDEMPOTENCY_DAYS") && err.contains("at least 7 days"),
        "{err}"
    );
}
