//! The year-end tax report, figures by hand. Vast pays 2.25% of referred spend in cash
//! (3% x 75%); each referrer's referred account spends 100,000.00 (2,250.00 cashable) and the
//! referrer is paid through Stripe on a simulated clock:
//! - ref-early (US): 50.00 on 31 December 2025, 23:00: tax year 2025 (threshold 600: below).
//! - ref-us1 (US, no form): 2,100.00 in 2026: over 2,000, a 1099-NEC candidate without a W-9.
//! - ref-us2 (US, W-9 ending 1234): 2,100.00 in 2026: a candidate, form on file.
//! - ref-de (DE, W-8BEN): 2,100.00 in 2026: not a US person.
//! - ref-small (US): 100.00 in 2026: below the threshold.
//!
//! 2026 total: 6,400.00, the ledger's paid-out total for 2026 to the cent.

use chrono::{DateTime, Utc};

use crate::common::{self, usd};
use payouts::clock::Manual;
use payouts::domain::money::{Currency, Money};
use payouts::domain::tax::{TaxForm, TaxThresholds};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("a time")
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "current_thread")]
async fn the_tax_report_lists_cash_per_payee_and_rail_and_balances_against_the_ledger() {
    let (world, _installed) = Manual::install(at("2025-12-31T23:00:00Z"), 13);
    let db = common::TestDb::named("tax_report").await;
    let store = db.open(common::programs()).await;
    let sandbox = payouts::sim::sandbox::Sandbox::start(Default::default())
        .await
        .expect("sandbox");
    let mut records: Vec<String> = [
        ("ref-early", "US"),
        ("ref-us1", "US"),
        ("ref-us2", "US"),
        ("ref-de", "DE"),
        ("ref-small", "US"),
    ]
    .iter()
    .map(|(id, country)| common::tax_earner(id, country))
    .collect();
    records.push(r#"{"type":"tax_profile","account":"ref-us2","status":"w9","country":"US","tax_id_last4":"1234","received_at":"2025-06-01T00:00:00Z"}"#.into());
    records.push(r#"{"type":"tax_profile","account":"ref-de","status":"w8ben","country":"DE","received_at":"2025-06-01T00:00:00Z"}"#.into());
    common::ingest_text(&store, &records.join("\n"), true).await;
    let deps = common::sandbox_worker(&store, &sandbox);
    let pay = |who: &'static str, amount: &'static str| {
        common::withdraw_and_pay(&deps, &world, who, usd(amount), who)
    };
    pay("ref-early", "50").await;
    world.advance_to(at("2026-03-01T00:00:00Z"));
    for (who, amount) in [
        ("ref-us1", "2100"),
        ("ref-us2", "2100"),
        ("ref-de", "2100"),
        ("ref-small", "100"),
    ] {
        pay(who, amount).await;
    }

    let report = store
        .tax_report(2026, &TaxThresholds::default())
        .await
        .expect("report");
    assert_eq!(report.threshold, usd("2000"));
    let who: Vec<(&str, &str, TaxForm, Money, bool, bool)> = report
        .payees
        .iter()
        .map(|p| {
            (
                p.account.as_str(),
                p.country.as_deref().unwrap_or(""),
                p.form,
                p.paid_usd,
                p.reportable,
                p.form_missing,
            )
        })
        .collect();
    assert_eq!(
        who,
        [
            ("ref-de", "DE", TaxForm::W8ben, usd("2100"), false, false),
            ("ref-small", "US", TaxForm::None, usd("100"), false, false),
            ("ref-us1", "US", TaxForm::None, usd("2100"), true, true),
            ("ref-us2", "US", TaxForm::W9, usd("2100"), true, false),
        ]
    );
    let us2 = &report.payees[3];
    assert_eq!(us2.tin_last4.as_deref(), Some("1234"));
    assert_eq!(us2.by_rail.len(), 1);
    assert_eq!(us2.by_rail[0].rail.as_deref(), Some("stripe"));
    assert_eq!(report.totals.len(), 1);
    let total = &report.totals[0];
    assert_eq!(total.currency, Currency::Usd);
    assert_eq!((total.report, total.ledger), (usd("6400"), usd("6400")));
    assert!(report.balanced());

    // The payment of 31 December 2025 belongs to 2025, under that year's threshold.
    let last_year = store
        .tax_report(2025, &TaxThresholds::default())
        .await
        .expect("report");
    assert_eq!(last_year.threshold, usd("600"));
    assert_eq!(last_year.payees.len(), 1);
    assert_eq!(
        (
            last_year.payees[0].account.as_str(),
            last_year.payees[0].paid_usd
        ),
        ("ref-early", usd("50"))
    );
    assert!(!last_year.payees[0].reportable);
    assert!(last_year.balanced());
    sandbox.stop();
}
