//! Totals past what one stored amount holds (issue 16, A5 and the second half of A3): an
//! account's sums never overflow, one payee's figures never fail a run for the others, and an
//! amount over the per-amount cap is one rejected line, not a rejected file.

use crate::common::{TestEnv, usd};
use payouts::domain::ids::AccountId;
use payouts::domain::money::{Currency, Money};
use payouts::domain::payout_run::{RunPeriod, Skip};
use payouts::sim::stripe::Faults;

fn account(id: &str, created: &str) -> String {
    format!(
        r#"{{"type":"account","id":"{id}","created_at":"{created}T00:00:00Z","email":"{id}@x.com"}}"#
    )
}

fn referral(program: &str, referrer: &str, referred: &str) -> String {
    format!(
        r#"{{"type":"referral","program":"{program}","referrer":"{referrer}","referred":"{referred}","at":"2025-02-01T00:00:00Z"}}"#
    )
}

fn usage(id: &str, account: &str, amount: &str) -> String {
    format!(
        r#"{{"type":"usage","id":"{id}","account":"{account}","at":"2025-03-01T00:00:00Z","category":"pod","amount":"{amount}","currency":"USD"}}"#
    )
}

fn method(account: &str) -> String {
    let id: String = account
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!(
        r#"{{"type":"payout_method","account":"{account}","rail":"stripe","destination":"acct_1{id}","auto_payout":true}}"#
    )
}

/// An ordinary payee: `r-pay` earns 3% of 1000, 75% cashable (22.50), with a Stripe method.
fn ordinary_payee() -> Vec<String> {
    vec![
        account("r-pay", "2025-01-01"),
        account("r-pay-u", "2025-02-01"),
        referral("vast", "r-pay", "r-pay-u"),
        usage("r-pay-c1", "r-pay-u", "1000"),
        method("r-pay"),
    ]
}

/// `whale` is referred in Vast (by `r-vast`) and in Runpod (by `r-rp`, and so gets Runpod's
/// new-user bonus: it holds a balance too), and spends two charges of 500,000,000: each under
/// the per-amount cap, their sum over it.
fn whale() -> Vec<String> {
    vec![
        account("r-vast", "2025-01-01"),
        account("r-rp", "2025-01-01"),
        account("whale", "2025-02-01"),
        referral("vast", "r-vast", "whale"),
        referral("runpod", "r-rp", "whale"),
        usage("whale-1", "whale", "500000000"),
        usage("whale-2", "whale", "500000000"),
        method("r-vast"),
    ]
}

async fn ingest_clean(env: &TestEnv, lines: &[String]) {
    let report = env.ingest(&lines.join("\n")).await;
    assert!(report.rejected.is_empty(), "{:#?}", report.rejected);
}

async fn balance(env: &TestEnv, id: &str) -> payouts::storage::AccountBalance {
    env.store
        .balance(&AccountId::parse(id).unwrap())
        .await
        .unwrap_or_else(|e| panic!("balance of {id}: {e}"))
}

#[tokio::test]
async fn a_billion_of_one_accounts_spend_leaves_every_balance_readable() {
    let env = TestEnv::new(Faults::default()).await;
    ingest_clean(&env, &whale()).await;

    let whale = balance(&env, "whale").await;
    assert!(whale.has_rented);
    let bonus = whale.program("runpod-bonus", Currency::Usd).unwrap();
    assert_eq!(bonus.lifetime_spend, usd("1000000000"));

    // Vast: 3% of the billion, 75% of it cashable.
    let vast = balance(&env, "r-vast").await;
    let v = vast.program("vast", Currency::Usd).unwrap();
    assert_eq!(v.earned, usd("30000000"));
    assert_eq!(v.payable_now, usd("22500000"));
    assert!(v.eligible, "{:?}", v.reason);

    // Runpod: credit only, and the whale counts as one paying referred user.
    let rp = balance(&env, "r-rp").await;
    assert_eq!(
        rp.program("runpod", Currency::Usd).unwrap().earned,
        usd("30000000")
    );
    assert_eq!(rp.affiliate[0].paying_referrals, 1);
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn a_billion_of_one_accounts_spend_does_not_stop_the_run_for_anyone() {
    let env = TestEnv::new(Faults::default()).await;
    let mut lines = ordinary_payee();
    lines.extend(whale());
    ingest_clean(&env, &lines).await;

    let period = RunPeriod::parse("2026-12-01").unwrap();
    let dry = env
        .store
        .run_payouts(&period, true)
        .await
        .unwrap_or_else(|e| panic!("dry run: {e}"));
    assert_eq!((dry.eligible, dry.created), (2, 0), "{dry:#?}");
    let run = env
        .store
        .run_payouts(&period, false)
        .await
        .unwrap_or_else(|e| panic!("run: {e}"));
    assert_eq!((run.eligible, run.created), (2, 2), "{run:#?}");
    assert!(run.problems.is_empty(), "{:#?}", run.problems);
    assert_eq!(run.totals[0].amount, usd("22500022.50"));
    let mut paid: Vec<(String, Money)> = env
        .store
        .list_payouts(None)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.account.to_string(), p.amount))
        .collect();
    paid.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        paid,
        vec![
            ("r-pay".to_string(), usd("22.50")),
            ("r-vast".to_string(), usd("22500000")),
        ]
    );
    env.assert_ledger_sound().await;
}

/// `r-big`'s referred user spends 45 charges of 920,000,000 (in two files, so no single
/// commission posting passes the cap): 1,242,000,000 earned, 931,500,000 cashable, more than
/// one payout can move.
#[tokio::test]
async fn a_payee_past_the_per_payout_cap_is_skipped_with_its_reason_and_the_rest_are_paid() {
    let env = TestEnv::new(Faults::default()).await;
    let mut first = ordinary_payee();
    first.extend([
        account("r-big", "2025-01-01"),
        account("big-u", "2025-02-01"),
        referral("vast", "r-big", "big-u"),
        method("r-big"),
    ]);
    first.extend((0..30).map(|i| usage(&format!("big-{i}"), "big-u", "920000000")));
    ingest_clean(&env, &first).await;
    let second: Vec<String> = (30..45)
        .map(|i| usage(&format!("big-{i}"), "big-u", "920000000"))
        .collect();
    ingest_clean(&env, &second).await;

    let big = balance(&env, "r-big").await;
    let v = big.program("vast", Currency::Usd).unwrap();
    assert_eq!(v.earned, usd("1242000000"));
    assert_eq!(v.available, usd("931500000"));
    let spender = balance(&env, "big-u").await;
    assert!(spender.has_rented);

    let period = RunPeriod::parse("2026-12-02").unwrap();
    for dry_run in [true, false] {
        let run = env
            .store
            .run_payouts(&period, dry_run)
            .await
            .unwrap_or_else(|e| panic!("run (dry: {dry_run}): {e}"));
        assert_eq!(run.eligible, 1, "{run:#?}");
        assert_eq!(run.skipped.get(&Skip::CannotCompute), Some(&1), "{run:#?}");
        assert_eq!(run.problems.len(), 1);
        let p = &run.problems[0];
        assert_eq!((p.account.as_str(), p.program.as_str()), ("r-big", "vast"));
        assert!(
            p.reason.contains("over the largest single amount"),
            "{}",
            p.reason
        );
    }
    let payouts = env.store.list_payouts(None).await.unwrap();
    assert_eq!(payouts.len(), 1);
    assert_eq!(
        (payouts[0].account.as_str(), payouts[0].amount),
        ("r-pay", usd("22.50"))
    );
    // The reason is kept with the run.
    let stored = env.store.run_report(&period).await.unwrap().unwrap();
    assert_eq!(stored.problems.len(), 1);
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn an_amount_over_the_cap_is_one_rejected_line_and_the_rest_goes_in() {
    let env = TestEnv::new(Faults::default()).await;
    let lines = [
        account("capped", "2025-01-01"),
        usage("cap-1", "capped", "1000000000"),
        usage("cap-2", "capped", "10"),
        r#"{"type":"refund","id":"cap-f1","usage_id":"cap-2","amount":"922337204"}"#.to_string(),
        r#"{"type":"purchase","id":"cap-p1","account":"capped","at":"2025-03-01T00:00:00Z","amount":"999999999999","currency":"USD"}"#.to_string(),
        method("capped"),
    ];
    let report = payouts::app::ingest::ingest(
        &env.store,
        std::io::Cursor::new(lines.join("\n").to_owned()),
        false,
    )
    .await
    .unwrap_or_else(|e| panic!("the file failed as a whole: {e}"));
    let rejected: Vec<usize> = report.rejected.iter().map(|e| e.line).collect();
    assert_eq!(rejected, vec![2, 4, 5], "{:#?}", report.rejected);
    for e in &report.rejected {
        assert!(
            e.message.contains("over the largest single amount"),
            "{}",
            e.message
        );
    }
    assert!(!report.rolled_back);
    assert_eq!(report.by_type["account"].inserted, 1);
    assert_eq!(report.by_type["usage"].inserted, 1);
    assert_eq!(report.by_type["payout_method"].inserted, 1);
    let capped = balance(&env, "capped").await;
    assert!(capped.has_rented);
}

/// A late referral to an account that already spent 41,400,000,000 owes 1,242,000,000 of
/// commission at once: more than one posting can hold. It is posted in pieces under the cap,
/// and the referral line goes in like any other.
#[tokio::test]
async fn a_commission_over_the_cap_is_posted_in_pieces_and_the_file_goes_in() {
    let env = TestEnv::new(Faults::default()).await;
    let mut first = vec![
        account("r-late", "2025-01-01"),
        account("late-u", "2025-02-01"),
        method("r-late"),
    ];
    first.extend((0..45).map(|i| usage(&format!("late-{i}"), "late-u", "920000000")));
    ingest_clean(&env, &first).await;

    let mut second = ordinary_payee();
    second.push(referral("vast", "r-late", "late-u"));
    let report = payouts::app::ingest::ingest(
        &env.store,
        std::io::Cursor::new(second.join("\n").to_owned()),
        false,
    )
    .await
    .unwrap_or_else(|e| panic!("the file failed as a whole: {e}"));
    assert!(report.rejected.is_empty(), "{:#?}", report.rejected);
    let late = balance(&env, "r-late").await;
    let v = late.program("vast", Currency::Usd).unwrap();
    assert_eq!(v.earned, usd("1242000000"));
    assert_eq!(v.cashable, usd("931500000"));
    assert_eq!(balance(&env, "r-pay").await.programs[0].earned, usd("30"));
    env.assert_ledger_sound().await;

    // Replaying the file posts nothing more.
    let again = env.ingest(&second.join("\n")).await;
    assert_eq!(again.accruals_posted, 0);
}
