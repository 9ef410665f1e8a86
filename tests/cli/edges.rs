//! Edges of the command line: absurd dates, loose amounts, and the database password, which
//! no output may show.

use std::process::Output;

use crate::commands::payouts;
use crate::common;

/// Everything the process wrote.
fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn reconcile_refuses_a_period_outside_a_sane_range() {
    let tdb = common::TestDb::blocking("cli-period");
    let statement = tdb.dir.path().join("stripe.csv");
    std::fs::write(&statement, "id,Created (UTC),Amount,Currency,Destination\n").unwrap();
    let statement = statement.display().to_string();
    for (from, to) in [
        ("+262142-01-01", "+262142-12-31"),
        ("1999-12-31", "2000-01-01"),
    ] {
        let out = payouts(
            &tdb.url,
            &[
                "reconcile",
                &format!("--from={from}"),
                &format!("--to={to}"),
                "--statement",
                &statement,
                "--rail",
                "stripe",
            ],
            &[],
        );
        let all = said(&out);
        assert_eq!(out.status.code(), Some(1), "{from} to {to}: {all}");
        assert!(!all.contains("panicked"), "{all}");
        // Not YYYY-MM-DD at all, or a real day outside the range: either way the reason.
        assert!(
            all.contains("is not a date: use YYYY-MM-DD")
                || (all.contains("2000-01-01") && all.contains("2100-12-31")),
            "{from} to {to}: {all}"
        );
    }
}

#[test]
fn withdraw_refuses_loose_amounts() {
    let tdb = common::TestDb::blocking("cli-amount");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/demo.ndjson");
    let out = payouts(&tdb.url, &["ingest", fixture], &[]);
    assert!(out.status.success(), "{}", said(&out));
    for loose in ["1_000", "+1", "1.", ".5", " 1", "1e1"] {
        let out = payouts(&tdb.url, &["withdraw", "ref-alice", "--amount", loose], &[]);
        let all = said(&out);
        assert_eq!(out.status.code(), Some(1), "{loose:?}: {all}");
        assert!(all.contains("is not a decimal amount"), "{loose:?}: {all}");
    }
    let out = payouts(&tdb.url, &["payouts", "list", "--json"], &[]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list, serde_json::json!([]), "nothing was paid");
}

#[test]
fn no_output_shows_the_database_password() {
    const SECRET: &str = "s3cr3t-pw";
    let unreachable = format!("postgres://payouts:{SECRET}@127.0.0.1:1/nodb");
    let malformed = format!("postgres://payouts:{SECRET}@127.0.0.1:notaport/nodb");

    // Nothing listens on port 1: the pool gives up and says so.
    let out = payouts(&unreachable, &["balance", "x"], &[]);
    let all = said(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(!all.contains(SECRET), "the password is shown: {all}");
    assert!(
        all.contains("opening database postgres://payouts:***@127.0.0.1:1/nodb"),
        "{all}"
    );

    let out = payouts(&malformed, &["balance", "x"], &[]);
    let all = said(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(!all.contains(SECRET), "the password is shown: {all}");
    assert!(all.contains("opening database"), "{all}");

    // Help shows the environment's values unless told not to.
    let out = payouts(&unreachable, &["--help"], &[]);
    let all = said(&out);
    assert!(out.status.success(), "{all}");
    assert!(!all.contains(SECRET), "the password is shown: {all}");
}
