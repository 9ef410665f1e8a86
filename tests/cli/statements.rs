//! `payouts statement` and `payouts balance --at` as a user runs them.

use crate::commands::payouts;
use crate::common;

#[test]
fn a_statement_comes_as_text_json_csv_and_html_and_adds_up() {
    let tdb = common::TestDb::blocking("cli_statement");
    let db = tdb.url.as_str();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/demo.ndjson");
    assert!(payouts(db, &["ingest", fixture], &[]).status.success());
    let month = chrono::Utc::now().format("%Y-%m").to_string();

    let out = payouts(
        db,
        &["statement", "ref-alice", "--month", &month, "--json"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let closing = json["programs"][0]["closing"]["amount"]
        .as_str()
        .expect("a closing balance")
        .parse::<rust_decimal::Decimal>()
        .expect("a decimal");
    assert!(closing > rust_decimal::Decimal::ZERO, "{json}");

    // In the CSV, the opening line plus every movement is the closing line, to the cent.
    let dir = tempfile::tempdir().expect("dir");
    let (csv, html) = (dir.path().join("s.csv"), dir.path().join("s.html"));
    let args = [
        "statement",
        "ref-alice",
        "--month",
        &month,
        "--csv",
        csv.to_str().expect("utf-8"),
        "--html",
        html.to_str().expect("utf-8"),
    ];
    assert!(payouts(db, &args, &[]).status.success());
    let text = std::fs::read_to_string(&csv).expect("csv");
    let mut sum = rust_decimal::Decimal::ZERO;
    let mut last = None;
    for line in text.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let amount: rust_decimal::Decimal = cells[7].parse().expect("an amount");
        if cells[5] == "closing_balance" {
            last = Some(amount);
        } else {
            sum += amount;
        }
    }
    assert_eq!(last, Some(closing), "{text}");
    assert_eq!(sum, closing, "{text}");
    let page = std::fs::read_to_string(&html).expect("html");
    assert!(
        page.contains("Closing balance") && page.contains("ref-alice"),
        "{page}"
    );

    let text = payouts(db, &["statement", "ref-alice", "--month", &month], &[]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("closing balance"));

    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let out = payouts(
        db,
        &["balance", "ref-alice", "--at", &tomorrow, "--json"],
        &[],
    );
    let past: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        past["programs"][0]["cashable"]["amount"],
        closing.to_string()
    );

    let bad = payouts(db, &["statement", "ref-alice", "--month", "2026-13"], &[]);
    assert_ne!(bad.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("YYYY-MM"));
}

#[test]
fn the_tax_report_runs_and_a_full_tax_id_never_goes_in() {
    let tdb = common::TestDb::blocking("cli_tax");
    let db = tdb.url.as_str();
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("tax.ndjson");
    std::fs::write(
        &file,
        [
            r#"{"type":"account","id":"ref-tia","created_at":"2025-01-01T00:00:00Z","email":"tia@x.com","country":"US"}"#,
            r#"{"type":"tax_profile","account":"ref-tia","status":"w9","country":"US","tax_id_last4":"4321","received_at":"2026-01-05T00:00:00Z"}"#,
            r#"{"type":"tax_profile","account":"ref-tia","status":"w9","country":"US","tax_id":"987-65-4321","received_at":"2026-01-05T00:00:00Z"}"#,
        ]
        .join("\n"),
    )
    .expect("write");
    let out = payouts(db, &["ingest", file.to_str().expect("utf-8")], &[]);
    assert_eq!(out.status.code(), Some(2), "one line rejected");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("line 3") && said.contains("never stored"),
        "{said}"
    );
    assert!(
        !said.contains("987-65"),
        "the full tax id was echoed: {said}"
    );

    let out = payouts(db, &["tax", "report", "--year", "2026", "--json"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["year"], 2026);
    assert_eq!(report["threshold"]["amount"], "2000");
    assert_eq!(
        report["payees"].as_array().map(Vec::len),
        Some(0),
        "nothing paid"
    );
    let bad = payouts(db, &["tax", "report", "--year", "1800"], &[]);
    assert_ne!(bad.status.code(), Some(0));
}
