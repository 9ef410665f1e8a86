//! Payee statements and point-in-time balances, figures by hand (Vast: 3% of spend, 75% of it
//! cashable, 25% credit), played on a simulated clock so each booking has a known time:
//! - 5 March: u-lea's 1,000.00 spend is booked: +22.50 cash, +7.50 credit.
//! - 20 March: 200.00 of it refunded: -4.50 cash, -1.50 credit.
//! - 31 March 23:00: ref-kai withdraws 10.00 (held; the provider confirms on 2 April).
//! - 10 April: 500.00 more spend booked: +11.25 cash, +3.75 credit.
//!
//! March: 0.00 + 22.50 - 4.50 = 18.00 owed (10.00 of it held), credit 6.00.
//! April: 18.00 + 11.25 - 10.00 = 19.25, credit 9.75.

use chrono::{DateTime, Utc};

use crate::common::{self, usd};
use payouts::clock::Manual;
use payouts::domain::ids::{AccountId, IdempotencyKey, Rail};
use payouts::domain::statement::{Month, MovementKind};
use payouts::storage::payout_views::WithdrawalRequest;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("a time")
        .with_timezone(&Utc)
}

const WORLD: &str = r#"{"type":"account","id":"ref-kai","created_at":"2025-01-01T00:00:00Z","email":"kai@x.com"}
{"type":"account","id":"u-lea","created_at":"2026-03-01T00:00:00Z","email":"lea@x.com"}
{"type":"referral","program":"vast","referrer":"ref-kai","referred":"u-lea","at":"2026-03-01T00:00:00Z"}
{"type":"usage","id":"lea-1","account":"u-lea","at":"2026-03-02T00:00:00Z","category":"instance","amount":"1000.00","currency":"USD"}
{"type":"payout_method","account":"ref-kai","rail":"stripe","destination":"acct_1Kai"}"#;

#[tokio::test(flavor = "current_thread")]
async fn monthly_statements_add_up_and_chain_to_the_cent() {
    let (world, _installed) = Manual::install(at("2026-03-05T00:00:00Z"), 11);
    let db = common::TestDb::named("statements").await;
    let store = db.open(common::programs()).await;
    let sandbox = payouts::sim::sandbox::Sandbox::start(Default::default())
        .await
        .expect("sandbox");
    let kai = AccountId::parse("ref-kai").expect("id");
    common::ingest_text(&store, WORLD, true).await;

    world.advance_to(at("2026-03-20T00:00:00Z"));
    common::ingest_text(
        &store,
        r#"{"type":"refund","id":"lea-r1","usage_id":"lea-1","amount":"200.00","at":"2026-03-20T00:00:00Z"}"#,
        true,
    )
    .await;

    world.advance_to(at("2026-03-31T23:00:00Z"));
    let payout = store
        .create_withdrawal(&WithdrawalRequest {
            account: kai.clone(),
            program: common::vast(),
            rail: Rail::Stripe,
            amount: usd("10.00"),
            idempotency_key: IdempotencyKey::parse("kai-march").expect("key"),
        })
        .await
        .expect("withdraw")
        .payout;

    // The provider confirms on 2 April.
    world.advance_to(at("2026-04-02T00:00:00Z"));
    let deps = common::sandbox_worker(&store, &sandbox);
    let paid = common::step_until_paid(&deps, &world, &payout.id).await;

    world.advance_to(at("2026-04-10T00:00:00Z"));
    common::ingest_text(
        &store,
        r#"{"type":"usage","id":"lea-2","account":"u-lea","at":"2026-04-08T00:00:00Z","category":"instance","amount":"500.00","currency":"USD"}"#,
        true,
    )
    .await;

    // Point in time: 1 April, the hold still pending.
    let april = store
        .balance_at(&kai, at("2026-04-01T00:00:00Z"))
        .await
        .expect("balance");
    assert_eq!(april.len(), 1);
    let b = &april[0];
    assert_eq!(
        (b.earned, b.cashable, b.credit),
        (usd("24"), usd("18"), usd("6"))
    );
    assert_eq!(
        (b.withdrawn, b.pending, b.available),
        (usd("0"), usd("10"), usd("8"))
    );
    let may = store
        .balance_at(&kai, at("2026-05-01T00:00:00Z"))
        .await
        .expect("balance");
    assert_eq!(
        (may[0].cashable, may[0].withdrawn, may[0].pending),
        (usd("29.25"), usd("10"), usd("0"))
    );
    // Before anything was booked: nothing.
    assert!(
        store
            .balance_at(&kai, at("2026-03-01T00:00:00Z"))
            .await
            .expect("balance")
            .is_empty()
    );

    let march = store
        .statement(&kai, Month::parse("2026-03").expect("month"))
        .await
        .expect("statement");
    let m = &march.programs[0];
    assert_eq!((m.opening, m.closing), (usd("0"), usd("18")));
    assert_eq!(m.earnings.len(), 1);
    assert_eq!(
        (m.earnings[0].stream.as_str(), m.earnings[0].amount),
        ("referral", usd("22.5"))
    );
    assert_eq!((m.clawbacks, m.payouts), (usd("-4.5"), usd("0")));
    assert_eq!(m.pending_at_close, usd("10"));
    assert_eq!((m.credit_opening, m.credit_closing), (usd("0"), usd("6")));

    let april = store
        .statement(&kai, Month::parse("2026-04").expect("month"))
        .await
        .expect("statement");
    let a = &april.programs[0];
    assert_eq!(a.opening, m.closing, "a month opens where the last closed");
    assert_eq!(a.closing, usd("19.25"));
    assert_eq!(
        (a.payouts, a.earnings[0].amount),
        (usd("-10"), usd("11.25"))
    );
    assert_eq!(
        (a.credit_opening, a.credit_closing),
        (usd("6"), usd("9.75"))
    );
    let out = a
        .movements
        .iter()
        .find(|m| m.kind == MovementKind::Payout)
        .expect("the payout is a movement");
    assert_eq!(out.rail.as_deref(), Some("stripe"));
    assert_eq!(out.reference, paid.provider_ref);
    assert_eq!(out.payout_id.as_deref(), Some(payout.id.as_str()));
    assert!(out.at >= at("2026-04-02T00:00:00Z"), "{}", out.at);

    // A month with nothing booked still chains.
    let may = store
        .statement(&kai, Month::parse("2026-05").expect("month"))
        .await
        .expect("statement");
    assert_eq!(
        (may.programs[0].opening, may.programs[0].closing),
        (a.closing, a.closing)
    );
    assert!(may.programs[0].movements.is_empty());
    sandbox.stop();
}

#[tokio::test]
async fn statements_of_unknown_accounts_are_refused() {
    let db = common::TestDb::named("statements_unknown").await;
    let store = db.open(common::programs()).await;
    let nobody = AccountId::parse("nobody").expect("id");
    let err = store
        .statement(&nobody, Month::parse("2026-03").expect("month"))
        .await
        .expect_err("unknown");
    assert!(err.to_string().contains("nobody"), "{err}");
}
