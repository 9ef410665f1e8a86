//! A holding period (`hold_days`): a commission's cashable part may leave only that many days
//! after the spend that earned it. Figures by hand, Vast's preset with `hold_days = 30`:
//! 3% of 1,000.00 spend earns 30.00, of which 75% (22.50) is cashable, 7.50 credit.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::common::{self, usd};
use payouts::clock::Manual;
use payouts::domain::ids::{AccountId, IdempotencyKey, Rail};
use payouts::domain::money::Currency;
use payouts::domain::payout_run::{RunPeriod, Skip};
use payouts::domain::program::ProgramSet;
use payouts::storage::Store;
use payouts::storage::balance_views::ProgramBalance;
use payouts::storage::payout_views::WithdrawalRequest;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("a time")
        .with_timezone(&Utc)
}

fn vast_holding_30_days() -> Arc<ProgramSet> {
    common::vast_with("hold_days = 30")
}

/// ref-hana refers u-ivy and u-jay, who each spend 1,000.00 on day 0 (2 March).
const WORLD: &str = r#"{"type":"account","id":"ref-hana","created_at":"2025-01-01T00:00:00Z","email":"hana@x.com"}
{"type":"account","id":"u-ivy","created_at":"2026-03-01T00:00:00Z","email":"ivy@x.com"}
{"type":"account","id":"u-jay","created_at":"2026-03-01T00:00:00Z","email":"jay@x.com"}
{"type":"referral","program":"vast","referrer":"ref-hana","referred":"u-ivy","at":"2026-03-01T00:00:00Z"}
{"type":"referral","program":"vast","referrer":"ref-hana","referred":"u-jay","at":"2026-03-01T00:00:00Z"}
{"type":"usage","id":"ivy-1","account":"u-ivy","at":"2026-03-02T00:00:00Z","category":"instance","amount":"1000.00","currency":"USD"}
{"type":"usage","id":"jay-1","account":"u-jay","at":"2026-03-02T00:00:00Z","category":"instance","amount":"1000.00","currency":"USD"}
{"type":"payout_method","account":"ref-hana","rail":"stripe","destination":"acct_1Hana","auto_payout":true}"#;

async fn vast(store: &Store) -> ProgramBalance {
    let hana = AccountId::parse("ref-hana").expect("id");
    store
        .balance(&hana)
        .await
        .expect("balance")
        .program("vast", Currency::Usd)
        .cloned()
        .expect("a vast balance")
}

#[tokio::test(flavor = "current_thread")]
async fn a_commission_matures_after_the_holding_period_and_a_refund_inside_it_takes_nothing_from_the_payee()
 {
    // Day 10.
    let (world, _installed) = Manual::install(at("2026-03-12T00:00:00Z"), 3);
    let db = common::TestDb::named("hold").await;
    let store = db.open(vast_holding_30_days()).await;
    common::ingest_text(&store, WORLD, true).await;

    let b = vast(&store).await;
    assert_eq!(b.earned, usd("60"));
    assert_eq!(b.maturing, usd("45"));
    assert_eq!(b.cashable, usd("0"));
    assert_eq!(b.credit, usd("15"));
    assert_eq!(b.payable_now, usd("0"));
    assert_eq!(b.next_matures_at, Some(at("2026-04-01T00:00:00Z")));
    assert_eq!(b.maturing_parts.len(), 1);
    assert_eq!(b.maturing_parts[0].on.to_string(), "2026-04-01");
    assert_eq!(b.maturing_parts[0].amount, usd("45"));
    assert!(
        b.reason.as_deref().is_some_and(|r| r.contains("45.00 USD")),
        "{:?}",
        b.reason
    );

    // Day 10: u-jay's spend is refunded in full. The maturing 22.50 is simply gone; nothing
    // was ever cashable, so nothing is owed back.
    common::ingest_text(
        &store,
        r#"{"type":"refund","id":"jay-r1","usage_id":"jay-1","amount":"1000.00","at":"2026-03-12T00:00:00Z"}"#,
        true,
    )
    .await;
    let b = vast(&store).await;
    assert_eq!(
        (b.earned, b.maturing, b.cashable),
        (usd("30"), usd("22.5"), usd("0"))
    );
    assert_eq!(b.available, usd("0"));

    // Day 29: still maturing. A withdrawal and a payout run both leave it alone.
    world.advance_to(at("2026-03-31T00:00:00Z"));
    let b = vast(&store).await;
    assert_eq!((b.maturing, b.payable_now), (usd("22.5"), usd("0")));
    let refused = store
        .create_withdrawal(&WithdrawalRequest {
            account: AccountId::parse("ref-hana").expect("id"),
            program: common::vast(),
            rail: Rail::Stripe,
            amount: usd("22.50"),
            idempotency_key: IdempotencyKey::parse("hana-early").expect("key"),
        })
        .await;
    let err = refused.expect_err("a withdrawal of maturing money is refused");
    assert!(err.to_string().contains("holding period"), "{err}");
    let day = RunPeriod::parse("2026-03-31").expect("period");
    let run = store.run_payouts(&day, false).await.expect("run");
    assert_eq!(run.created, 0);
    assert_eq!(run.skipped.get(&Skip::Maturing), Some(&1), "{run:?}");

    // Day 30: matured. u-jay's refunded spend left nothing behind, no debt either.
    world.advance_to(at("2026-04-01T00:00:00Z"));
    let b = vast(&store).await;
    assert_eq!(
        (b.cashable, b.maturing, b.available, b.payable_now),
        (usd("22.5"), usd("0"), usd("22.5"), usd("22.50"))
    );
    assert_eq!(b.next_matures_at, None);
    assert!(b.maturing_parts.is_empty());
    let run = store
        .run_payouts(&RunPeriod::parse("2026-04-01").expect("period"), false)
        .await
        .expect("run");
    assert_eq!((run.created, run.totals[0].amount), (1, usd("22.50")));
    let check = store.check_ledger().await.expect("check");
    assert!(check.is_ok(), "{:#?}", check.problems);
}

#[test]
fn hold_days_is_refused_where_nothing_could_be_held() {
    let preset = payouts::domain::program::config::PRESETS[0].1;
    let credit_only = preset
        .replace(
            r#"cashable_fraction = "0.75""#,
            r#"cashable_fraction = "0""#,
        )
        .replace(r#"rails = ["stripe", "paypal", "wise"]"#, "");
    for (text, says) in [
        (
            format!("{credit_only}\nhold_days = 30\n"),
            "nothing to hold",
        ),
        (format!("{preset}\nhold_days = 400\n"), "longest hold"),
    ] {
        let err = ProgramSet::from_toml("bad", &text, &|_| None).expect_err("refused");
        assert!(err.to_string().contains(says), "{err}");
    }
}

/// A charge's day, its cents, and maybe a refund (days later, percent of the charge).
type Charge = (i64, i64, Option<(i64, i64)>);

/// A random history for the property below: charges on days 0..60, each maybe refunded in
/// part some days later, and days to look at the balance.
#[derive(Debug, Clone)]
struct Spend {
    charges: Vec<Charge>,
    looks: Vec<i64>,
}

fn spend() -> impl proptest::strategy::Strategy<Value = Spend> {
    use proptest::prelude::*;
    let charge = (
        0i64..60,
        1i64..200_000,
        prop::option::of((0i64..40, 1i64..=100)),
    );
    (
        prop::collection::vec(charge, 1..5),
        prop::collection::vec(0i64..100, 1..5),
    )
        .prop_map(|(charges, looks)| Spend { charges, looks })
}

fn cents(c: i64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

/// At every look: what is maturing is exactly 2.25% (3% x 75%) of the net spend of the last
/// 30 days, what is cashable is the rest of the cashable ledger, neither is ever negative,
/// and the next maturity is the oldest such charge's plus 30 days.
async fn holding_invariants(h: Spend) -> Result<(), proptest::test_runner::TestCaseError> {
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    let base = at("2026-03-01T00:00:00Z");
    let day = |d: i64| base + chrono::Duration::days(d);
    let (world, _installed) = Manual::install(base, 5);
    let db = common::TestDb::named("hold_prop").await;
    let store = db.open(vast_holding_30_days()).await;
    let head = WORLD.lines().take(2).chain(WORLD.lines().skip(3).take(1));
    common::ingest_text(&store, &head.collect::<Vec<_>>().join("\n"), true).await;
    // (day, record) of every charge and refund, and the net cents of each charge so far.
    let mut events: Vec<(i64, String)> = Vec::new();
    for (i, (d, c, refund)) in h.charges.iter().enumerate() {
        events.push((*d, format!(r#"{{"type":"usage","id":"c{i}","account":"u-ivy","at":"{}","category":"instance","amount":"{}","currency":"USD"}}"#, day(*d).to_rfc3339(), cents(*c))));
        if let Some((after, pct)) = refund {
            let r = c * pct / 100;
            if r > 0 {
                events.push((d + after, format!(r#"{{"type":"refund","id":"r{i}","usage_id":"c{i}","amount":"{}","at":"{}"}}"#, cents(r), day(d + after).to_rfc3339())));
            }
        }
    }
    let mut days: Vec<i64> = events
        .iter()
        .map(|(d, _)| *d)
        .chain(h.looks.clone())
        .collect();
    days.sort_unstable();
    days.dedup();
    events.sort_by_key(|(d, _)| *d);
    let mut net: Vec<Option<i64>> = vec![None; h.charges.len()];
    for d in days {
        world.advance_to(day(d) + chrono::Duration::hours(12));
        let today: Vec<&String> = events
            .iter()
            .filter(|(e, _)| *e == d)
            .map(|(_, r)| r)
            .collect();
        for record in &today {
            common::ingest_text(&store, record, true).await;
        }
        for (i, (cd, c, refund)) in h.charges.iter().enumerate() {
            let refunded = match refund {
                Some((after, pct)) if cd + after <= d => c * pct / 100,
                _ => 0,
            };
            if *cd <= d {
                net[i] = Some(c - refunded);
            }
        }
        let rate = Decimal::new(225, 4);
        let share = |c: i64| Decimal::new(c, 2) * rate;
        let stored: Decimal = net.iter().flatten().map(|c| share(*c)).sum();
        let young = |i: usize| h.charges[i].0 + 30 > d;
        let maturing: Decimal = (0..net.len())
            .filter(|i| young(*i))
            .filter_map(|i| net[i].map(share))
            .sum();
        let next = (0..net.len())
            .filter(|i| young(*i) && net[*i].is_some_and(|c| c > 0))
            .map(|i| day(h.charges[i].0 + 30))
            .min();
        let hana = AccountId::parse("ref-hana").expect("id");
        let balance = store.balance(&hana).await.expect("balance");
        let Some(b) = balance.program("vast", Currency::Usd) else {
            // Nothing booked yet.
            prop_assert!(net.iter().all(Option::is_none), "day {}", d);
            continue;
        };
        prop_assert_eq!(b.maturing.amount(), maturing, "day {}", d);
        prop_assert_eq!(b.cashable.amount(), stored - maturing, "day {}", d);
        prop_assert_eq!(
            b.cashable.amount() + b.maturing.amount(),
            b.earned.amount() - b.credit.amount()
        );
        prop_assert!(!b.cashable.is_negative() && !b.maturing.is_negative());
        prop_assert_eq!(b.next_matures_at, next, "day {}", d);
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 8, ..Default::default() })]

    #[test]
    fn maturing_is_exactly_the_last_30_days_of_net_spend(h in spend()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(holding_invariants(h))?;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn money_is_reported_payable_when_it_matures_with_nothing_else_happening() {
    let (world, _installed) = Manual::install(at("2026-03-12T00:00:00Z"), 4);
    let db = common::TestDb::named("hold_news").await;
    let store = db.open(vast_holding_30_days()).await;
    common::ingest_text(&store, WORLD, true).await;
    let marks = "SELECT COUNT(*) FROM payable_marks WHERE account_id = 'ref-hana'";
    while store.check_balances(100).await.expect("looks") > 0 {}
    assert_eq!(
        common::scalar(&store, marks).await,
        0,
        "all of it is maturing"
    );

    // Nothing is ingested or paid from here on: only time passes.
    world.advance_to(at("2026-03-31T23:59:59Z"));
    assert_eq!(store.check_balances(100).await.expect("looks"), 0);
    world.advance_to(at("2026-04-01T00:00:00Z"));
    assert_eq!(
        store.check_balances(100).await.expect("looks"),
        1,
        "a look when the money matures"
    );
    assert_eq!(common::scalar(&store, marks).await, 1, "reported payable");
}
