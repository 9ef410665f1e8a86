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
