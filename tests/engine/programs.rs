//! Every rule of the programs' published terms (docs/programs.md), on the shipped presets,
//! with figures worked by hand: the real store, the real ingest path, the real accrual engine.

use crate::common;

use crate::common::{TEST_SEED, TestEnv, usd};
use payouts::domain::ids::{AccountId, IdempotencyKey, ProgramId, Rail};
use payouts::domain::money::{Currency, Money};
use payouts::domain::program::bonus::{BonusRole, draw};
use payouts::domain::program::{BonusDistribution, ProgramSet};
use payouts::sim::stripe::Faults;
use payouts::storage::affiliate_views::OptInError;
use payouts::storage::payout_views::{WithdrawError, WithdrawalRequest};

fn account(id: &str, created: &str) -> String {
    format!(
        r#"{{"type":"account","id":"{id}","created_at":"{created}","email":"{id}@example.com"}}"#
    )
}

fn referral(program: &str, referrer: &str, referred: &str, at: &str) -> String {
    format!(
        r#"{{"type":"referral","program":"{program}","referrer":"{referrer}","referred":"{referred}","at":"{at}"}}"#
    )
}

/// A referred account created at `at` and referred by `referrer` at the same instant.
fn referred(program: &str, referrer: &str, id: &str, at: &str) -> String {
    format!(
        "{}\n{}",
        account(id, at),
        referral(program, referrer, id, at)
    )
}

fn usage(id: &str, account: &str, at: &str, category: &str, amount: &str) -> String {
    format!(
        r#"{{"type":"usage","id":"{id}","account":"{account}","at":"{at}","category":"{category}","amount":"{amount}","currency":"USD"}}"#
    )
}

fn run(id: &str, account: &str, at: &str, amount: &str, template: &str, secs: u64) -> String {
    format!(
        r#"{{"type":"usage","id":"{id}","account":"{account}","at":"{at}","category":"pod","amount":"{amount}","currency":"USD","template_id":"{template}","runtime_secs":{secs}}}"#
    )
}

fn refund(id: &str, usage_id: &str, amount: &str) -> String {
    format!(r#"{{"type":"refund","id":"{id}","usage_id":"{usage_id}","amount":"{amount}"}}"#)
}

async fn env() -> TestEnv {
    TestEnv::new(Faults::default()).await
}

/// Ingests lines that must all be accepted.
async fn feed(env: &TestEnv, lines: &[String]) -> usize {
    let report = env.ingest(&lines.join("\n")).await;
    assert!(report.rejected.is_empty(), "{:#?}", report.rejected);
    report.accruals_posted
}

/// (earned, cashable, credit) of one program, zero when the account has none.
async fn earned(env: &TestEnv, account: &str, program: &str) -> (Money, Money, Money) {
    let b = env.balance(account).await;
    match b.program(program, Currency::Usd) {
        Some(p) => (p.earned, p.cashable, p.credit),
        None => (usd("0"), usd("0"), usd("0")),
    }
}

const REFERRER: &str = "rp-ref";

async fn with_referrer(env: &TestEnv) {
    feed(env, &[account(REFERRER, "2025-01-01T00:00:00Z")]).await;
}

#[tokio::test]
async fn runpod_referral_pays_5_and_3_percent_credits_for_six_months() {
    let env = env().await;
    with_referrer(&env).await;
    feed(
        &env,
        &[
            referred("runpod", REFERRER, "u1", "2025-07-01T12:00:00Z"),
            // Month 2: $1,000 of pods earns $30 of credits; $200 of serverless earns $10.
            usage("pod-m2", "u1", "2025-08-15T00:00:00Z", "pod", "1000"),
            usage("sls-m2", "u1", "2025-08-16T00:00:00Z", "serverless", "200"),
            // Storage is not referral spend under Runpod's terms (docs/programs.md): nothing.
            usage("sto-m2", "u1", "2025-08-17T00:00:00Z", "storage", "500"),
            // The last instant of the window still earns; its end does not.
            usage("pod-last", "u1", "2026-01-01T11:59:59Z", "pod", "100"),
            usage("pod-end", "u1", "2026-01-01T12:00:00Z", "pod", "100"),
            // Month 7: nothing.
            usage("pod-m7", "u1", "2026-02-15T00:00:00Z", "pod", "1000"),
        ],
    )
    .await;
    let (total, cashable, credit) = earned(&env, REFERRER, "runpod").await;
    assert_eq!(total, usd("43"), "30 + 10 + 3");
    assert_eq!(credit, usd("43"));
    assert_eq!(
        cashable,
        usd("0"),
        "Runpod referral rewards are credits, never cash"
    );
    let b = env.balance(REFERRER).await;
    let p = b.program("runpod", Currency::Usd).unwrap();
    assert!(!p.eligible);
    assert!(
        p.reason
            .as_deref()
            .unwrap()
            .contains("cannot be withdrawn as cash")
    );
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn the_beta_group_earns_indefinitely() {
    let env = env().await;
    with_referrer(&env).await;
    feed(
        &env,
        &[
            referred("runpod", REFERRER, "beta", "2025-06-25T23:59:59Z"),
            referred("runpod", REFERRER, "std", "2025-06-26T00:00:00Z"),
            usage("b-m7", "beta", "2026-01-15T00:00:00Z", "pod", "1000"),
            usage("s-m7", "std", "2026-01-15T00:00:00Z", "pod", "1000"),
            usage("b-y3", "beta", "2028-03-01T00:00:00Z", "serverless", "100"),
        ],
    )
    .await;
    // Only the beta referral earns in month 7 and beyond: $30 + $5.
    assert_eq!(earned(&env, REFERRER, "runpod").await.0, usd("35"));
}

#[tokio::test]
async fn buying_credits_earns_nothing_until_they_are_spent() {
    let env = env().await;
    with_referrer(&env).await;
    feed(
        &env,
        &[
            referred("runpod", REFERRER, "buyer", "2025-07-01T00:00:00Z"),
            r#"{"type":"purchase","id":"buy-1","account":"buyer","at":"2025-07-02T00:00:00Z","amount":"1000","currency":"USD"}"#.into(),
        ],
    )
    .await;
    let b = env.balance(REFERRER).await;
    assert!(b.program("runpod", Currency::Usd).is_none(), "{b:#?}");
    assert!(
        b.program("runpod-bonus", Currency::Usd).is_none(),
        "a deposit is not spend"
    );
    feed(
        &env,
        &[usage(
            "spend-1",
            "buyer",
            "2025-07-03T00:00:00Z",
            "pod",
            "100",
        )],
    )
    .await;
    assert_eq!(earned(&env, REFERRER, "runpod").await.0, usd("3"));
}

fn bonus_of(referred: &str, role: BonusRole) -> Money {
    let set = common::programs();
    let terms = set
        .get_str("runpod-bonus")
        .unwrap()
        .bonus()
        .unwrap()
        .clone();
    let d = draw(
        TEST_SEED.as_bytes(),
        "runpod-bonus",
        referred,
        role,
        &terms.distribution,
    );
    usd(&d.amount.to_string())
}

#[tokio::test]
async fn ten_dollars_of_spend_gives_both_sides_one_reproducible_bonus() {
    let env = env().await;
    with_referrer(&env).await;
    feed(
        &env,
        &[
            referred("runpod", REFERRER, "newbie", "2025-07-01T00:00:00Z"),
            usage("n1", "newbie", "2025-07-02T00:00:00Z", "pod", "9.99"),
        ],
    )
    .await;
    assert_eq!(
        earned(&env, "newbie", "runpod-bonus").await.0,
        usd("0"),
        "$9.99 is not $10"
    );
    feed(
        &env,
        &[usage("n2", "newbie", "2025-07-03T00:00:00Z", "pod", "0.01")],
    )
    .await;
    let for_referrer = bonus_of("newbie", BonusRole::Referrer);
    let for_newbie = bonus_of("newbie", BonusRole::Referred);
    for m in [for_referrer, for_newbie] {
        assert!(
            m.amount() >= usd("5").amount() && m.amount() <= usd("500").amount(),
            "{m}"
        );
    }
    assert_eq!(earned(&env, REFERRER, "runpod-bonus").await.2, for_referrer);
    assert_eq!(earned(&env, "newbie", "runpod-bonus").await.2, for_newbie);

    // More spend and replays never grant it again.
    feed(
        &env,
        &[usage("n3", "newbie", "2025-07-04T00:00:00Z", "pod", "50")],
    )
    .await;
    let everything = [
        referred("runpod", REFERRER, "newbie", "2025-07-01T00:00:00Z"),
        usage("n1", "newbie", "2025-07-02T00:00:00Z", "pod", "9.99"),
        usage("n2", "newbie", "2025-07-03T00:00:00Z", "pod", "0.01"),
    ];
    assert_eq!(feed(&env, &everything).await, 0, "a replay posts nothing");
    assert_eq!(
        env.store.reaccrue_all().await.unwrap(),
        0,
        "a re-accrual posts nothing"
    );
    assert_eq!(earned(&env, "newbie", "runpod-bonus").await.0, for_newbie);

    // Refunds below the threshold take it back; spending again restores the same draw.
    feed(&env, &[refund("r3", "n3", "50"), refund("r1", "n1", "1")]).await;
    assert_eq!(earned(&env, "newbie", "runpod-bonus").await.0, usd("0"));
    assert_eq!(earned(&env, REFERRER, "runpod-bonus").await.0, usd("0"));
    feed(
        &env,
        &[usage("n4", "newbie", "2025-07-05T00:00:00Z", "pod", "1")],
    )
    .await;
    assert_eq!(earned(&env, "newbie", "runpod-bonus").await.0, for_newbie);
    // New charges alone are accrued without re-reading history (a revoked bonus sends the
    // account through the full pass): either way the ledger is what a full pass would make.
    assert_eq!(env.store.reaccrue_all().await.unwrap(), 0);
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn the_bonus_is_for_new_accounts_only() {
    let env = env().await;
    with_referrer(&env).await;
    feed(
        &env,
        &[
            account("old", "2024-01-01T00:00:00Z"),
            referral("runpod", REFERRER, "old", "2025-07-01T00:00:00Z"),
            usage("o1", "old", "2025-07-02T00:00:00Z", "pod", "100"),
        ],
    )
    .await;
    assert_eq!(earned(&env, "old", "runpod-bonus").await.0, usd("0"));
    assert_eq!(earned(&env, REFERRER, "runpod-bonus").await.0, usd("0"));
    assert_eq!(earned(&env, REFERRER, "runpod").await.0, usd("0"));
}

/// `n` referred users of REFERRER signed up on 2025-07-01, each paying $20 of pods on
/// 2025-07-10 (60 cents of credits each).
fn paying_referrals(n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for i in 0..n {
        lines.push(referred(
            "runpod",
            REFERRER,
            &format!("p{i:02}"),
            "2025-07-01T00:00:00Z",
        ));
        lines.push(usage(
            &format!("p{i:02}-pod"),
            &format!("p{i:02}"),
            "2025-07-10T00:00:00Z",
            "pod",
            "20",
        ));
    }
    lines
}

fn affiliate() -> ProgramId {
    ProgramId::parse("runpod-affiliate").unwrap()
}

fn t(s: &str) -> chrono::DateTime<chrono::Utc> {
    s.parse().unwrap()
}

#[tokio::test]
async fn twenty_four_paying_referrals_cannot_opt_in_twenty_five_can_for_good() {
    let env = env().await;
    with_referrer(&env).await;
    let mut lines = paying_referrals(24);
    // A referred user who only bought credits is not paying.
    lines.push(referred(
        "runpod",
        REFERRER,
        "buyer",
        "2025-07-01T00:00:00Z",
    ));
    lines.push(r#"{"type":"purchase","id":"b","account":"buyer","at":"2025-07-02T00:00:00Z","amount":"500","currency":"USD"}"#.into());
    feed(&env, &lines).await;
    let me = AccountId::parse(REFERRER).unwrap();
    let err = env
        .store
        .opt_in(&affiliate(), &me, t("2025-08-01T00:00:00Z"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            OptInError::TooFewPayingReferrals {
                count: 24,
                required: 25,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("24 paying referred users"),
        "{err}"
    );
    let status = &env.balance(REFERRER).await.affiliate[0];
    assert_eq!((status.paying_referrals, status.can_opt_in), (24, false));

    // The 25th pays: the same request succeeds; the balance says so first.
    feed(
        &env,
        &[usage(
            "buyer-pod",
            "buyer",
            "2025-07-15T00:00:00Z",
            "pod",
            "20",
        )],
    )
    .await;
    assert!(env.balance(REFERRER).await.affiliate[0].can_opt_in);
    let enrolled = env
        .store
        .opt_in(&affiliate(), &me, t("2025-08-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(enrolled.paying_referrals, 25);
    // Permanent: the same opt-in replays; another time is refused.
    assert!(
        env.store
            .opt_in(&affiliate(), &me, t("2025-08-01T00:00:00Z"))
            .await
            .unwrap()
            .replayed
    );
    let again = env
        .store
        .opt_in(&affiliate(), &me, t("2025-09-01T00:00:00Z"))
        .await;
    assert!(
        matches!(again, Err(OptInError::AlreadyOptedIn { .. })),
        "{again:?}"
    );
    let status = &env.balance(REFERRER).await.affiliate[0];
    assert_eq!(status.opted_in_at, Some(t("2025-08-01T00:00:00Z")));
    assert!(!status.can_opt_in);
}

#[tokio::test]
async fn affiliates_earn_ten_percent_cash_through_partnerstack_and_keep_their_credits() {
    let env = env().await;
    with_referrer(&env).await;
    feed(&env, &paying_referrals(25)).await;
    assert_eq!(
        earned(&env, REFERRER, "runpod").await.2,
        usd("15"),
        "25 × $0.60 before"
    );
    // The opt-in arrives as an ingest record, like the platform's other facts.
    feed(
        &env,
        &[
            r#"{"type":"affiliate_opt_in","program":"runpod-affiliate","account":"rp-ref","at":"2025-08-01T00:00:00Z"}"#.into(),
            // Month 2, after the opt-in: $1,000 of pods is $100 cash (not $30 of credits).
            usage("p00-m2", "p00", "2025-08-15T00:00:00Z", "pod", "1000"),
            usage("p01-m2", "p01", "2025-08-15T00:00:00Z", "serverless", "300"),
            // Month 8: standard referrals earn nothing, cash or credit.
            usage("p02-m8", "p02", "2026-02-15T00:00:00Z", "pod", "1000"),
            r#"{"type":"payout_method","account":"rp-ref","rail":"partnerstack","destination":"pk_alice"}"#.into(),
            r#"{"type":"payout_method","account":"rp-ref","rail":"stripe","destination":"acct_1Ref"}"#.into(),
        ],
    )
    .await;
    let (cash, cashable, credit) = earned(&env, REFERRER, "runpod-affiliate").await;
    assert_eq!(cash, usd("130"));
    assert_eq!((cashable, credit), (usd("130"), usd("0")));
    assert_eq!(
        earned(&env, REFERRER, "runpod").await.2,
        usd("15"),
        "credits earned before are kept"
    );

    let request = |rail| WithdrawalRequest {
        account: AccountId::parse(REFERRER).unwrap(),
        program: affiliate(),
        rail,
        amount: usd("130"),
        idempotency_key: IdempotencyKey::parse("aff-1").unwrap(),
    };
    let refused = env.store.create_withdrawal(&request(Rail::Stripe)).await;
    assert!(
        matches!(refused, Err(WithdrawError::RailNotAllowed { .. })),
        "{refused:?}"
    );
    let payout = env
        .store
        .create_withdrawal(&request(Rail::Partnerstack))
        .await
        .unwrap();
    assert_eq!(payout.payout.amount, usd("130"));
    assert_eq!(payout.payout.destination, "pk_alice");
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn beta_affiliates_get_cash_for_six_months_then_credits_indefinitely() {
    let env = env().await;
    with_referrer(&env).await;
    let mut lines = paying_referrals(24);
    lines.push(referred("runpod", REFERRER, "beta", "2025-06-01T00:00:00Z"));
    lines.push(usage("beta-1", "beta", "2025-06-10T00:00:00Z", "pod", "20"));
    lines.push(r#"{"type":"affiliate_opt_in","program":"runpod-affiliate","account":"rp-ref","at":"2025-08-01T00:00:00Z"}"#.into());
    // Month 3 of the beta user: cash. Month 9: back to 3% credits.
    lines.push(usage(
        "beta-m3",
        "beta",
        "2025-08-20T00:00:00Z",
        "pod",
        "1000",
    ));
    lines.push(usage(
        "beta-m9",
        "beta",
        "2026-02-20T00:00:00Z",
        "pod",
        "1000",
    ));
    feed(&env, &lines).await;
    assert_eq!(
        earned(&env, REFERRER, "runpod-affiliate").await.0,
        usd("100")
    );
    // 24 × 0.60 + 0.60 (beta, before the opt-in) + 30 (beta, month 9)
    assert_eq!(earned(&env, REFERRER, "runpod").await.0, usd("45"));
}

#[tokio::test]
async fn a_backdated_opt_in_moves_later_credits_to_cash_visibly() {
    let env = env().await;
    with_referrer(&env).await;
    let mut lines = paying_referrals(25);
    lines.push(usage(
        "p00-m2",
        "p00",
        "2025-08-15T00:00:00Z",
        "pod",
        "1000",
    ));
    feed(&env, &lines).await;
    assert_eq!(
        earned(&env, REFERRER, "runpod").await.0,
        usd("45"),
        "15 + 30 credits"
    );
    // The platform reports an opt-in made on Aug 1: the Aug 15 spend earned cash, not credits.
    feed(&env, &[r#"{"type":"affiliate_opt_in","program":"runpod-affiliate","account":"rp-ref","at":"2025-08-01T00:00:00Z"}"#.into()]).await;
    assert_eq!(earned(&env, REFERRER, "runpod").await.0, usd("15"));
    assert_eq!(
        earned(&env, REFERRER, "runpod-affiliate").await.0,
        usd("100")
    );
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn a_template_earns_its_creator_one_percent_only_after_a_day_of_runtime() {
    let env = env().await;
    feed(
        &env,
        &[
            account("creator", "2025-01-01T00:00:00Z"),
            account("a", "2025-01-01T00:00:00Z"),
            account("b", "2025-01-01T00:00:00Z"),
            r#"{"type":"template","id":"tpl-1","program":"runpod-creator","creator":"creator"}"#
                .into(),
            // 23 hours: nothing, not even once the day is complete later.
            run("r1", "a", "2025-09-01T00:00:00Z", "500", "tpl-1", 23 * 3600),
        ],
    )
    .await;
    assert_eq!(earned(&env, "creator", "runpod-creator").await.0, usd("0"));
    feed(
        &env,
        &[
            // The 24th hour completes the day; this run itself came before it and earns nothing.
            run("r2", "b", "2025-09-02T00:00:00Z", "300", "tpl-1", 3600),
            // From now on 1%: $1,000 earns $10 of credits. The creator's own run earns nothing.
            run("r3", "b", "2025-09-03T00:00:00Z", "1000", "tpl-1", 7200),
            run("r4", "creator", "2025-09-04T00:00:00Z", "400", "tpl-1", 3600),
            // Serverless is not a pod run.
            r#"{"type":"usage","id":"r5","account":"a","at":"2025-09-05T00:00:00Z","category":"serverless","amount":"800","currency":"USD","template_id":"tpl-1","runtime_secs":60}"#.into(),
        ],
    )
    .await;
    let (total, cashable, credit) = earned(&env, "creator", "runpod-creator").await;
    assert_eq!((total, cashable, credit), (usd("10"), usd("0"), usd("10")));
    // A refund claws back what its run earned.
    feed(&env, &[refund("rr3", "r3", "250")]).await;
    assert_eq!(
        earned(&env, "creator", "runpod-creator").await.0,
        usd("7.5")
    );
    let report = env.store.template_report().await.unwrap();
    let tpl = report.iter().find(|r| r.template == "tpl-1").unwrap();
    assert_eq!(tpl.runtime_secs, 23 * 3600 + 3600 + 7200 + 3600 + 60);
    assert_eq!(tpl.creator_earned, Some(usd("7.5")));
}

#[tokio::test]
async fn a_platform_may_count_spend_before_the_threshold_once_it_is_reached() {
    let text = payouts::domain::program::config::PRESETS[1].1.replace(
        "count_spend_before_threshold = false",
        "count_spend_before_threshold = true",
    );
    let set = ProgramSet::from_toml("runpod-lookback", &text, &|_| Some(TEST_SEED.into())).unwrap();
    let creator = set.get_str("runpod-creator").unwrap().creator().unwrap();
    assert!(creator.count_spend_before_threshold);
    let db = common::TestDb::named("t").await;
    let store = db.open(std::sync::Arc::new(set)).await;
    let lines = [
        account("creator", "2025-01-01T00:00:00Z"),
        account("a", "2025-01-01T00:00:00Z"),
        r#"{"type":"template","id":"tpl-1","program":"runpod-creator","creator":"creator"}"#.into(),
        run("r1", "a", "2025-09-01T00:00:00Z", "500", "tpl-1", 23 * 3600),
    ];
    common::ingest_text(&store, &lines.join("\n"), true).await;
    let creator_id = AccountId::parse("creator").unwrap();
    assert!(
        store
            .balance(&creator_id)
            .await
            .unwrap()
            .programs
            .is_empty()
    );
    let more = run("r2", "a", "2025-09-02T00:00:00Z", "100", "tpl-1", 3600);
    common::ingest_text(&store, &more, true).await;
    let b = store.balance(&creator_id).await.unwrap();
    assert_eq!(
        b.program("runpod-creator", Currency::Usd).unwrap().earned,
        usd("6"),
        "1% of 600"
    );
}

#[tokio::test]
async fn vast_pays_three_percent_for_life_and_reports_template_links() {
    let env = env().await;
    feed(
        &env,
        &[
            account("v-ref", "2024-01-01T00:00:00Z"),
            account("v-1", "2025-01-01T00:00:00Z"),
            account("v-2", "2025-01-01T00:00:00Z"),
            r#"{"type":"referral","program":"vast","referrer":"v-ref","referred":"v-1","at":"2025-01-01T00:00:00Z","template_id":"sd-webui"}"#.into(),
            referral("vast", "v-ref", "v-2", "2025-01-01T00:00:00Z"),
            usage("v1-a", "v-1", "2025-02-01T00:00:00Z", "instance", "1000"),
            usage("v2-a", "v-2", "2029-02-01T00:00:00Z", "instance", "100"),
        ],
    )
    .await;
    let (total, cashable, credit) = earned(&env, "v-ref", "vast").await;
    assert_eq!(
        (total, cashable, credit),
        (usd("33"), usd("24.75"), usd("8.25"))
    );
    let report = env.store.template_report().await.unwrap();
    let sd = report.iter().find(|r| r.template == "sd-webui").unwrap();
    assert_eq!((sd.referrals, sd.qualified_referrals), (1, 1));
    assert_eq!(sd.referred_spend, Some(usd("1000")));
    assert_eq!(
        sd.referral_commission,
        Some(usd("30")),
        "a template link attributes like a plain one"
    );
}

#[tokio::test]
async fn a_refund_after_withdrawal_leaves_a_negative_balance_that_future_earnings_repay() {
    let env = env().await;
    feed(
        &env,
        &[
            account("ref-neg", "2024-01-01T00:00:00Z"),
            account("spender", "2025-01-01T00:00:00Z"),
            referral("vast", "ref-neg", "spender", "2025-01-01T00:00:00Z"),
            usage("s1", "spender", "2025-02-01T00:00:00Z", "instance", "1000"),
            r#"{"type":"payout_method","account":"ref-neg","rail":"stripe","destination":"acct_1Neg"}"#.into(),
        ],
    )
    .await;
    let ids = vec![
        env.withdraw("ref-neg", usd("22.50"), "neg-1")
            .await
            .unwrap()
            .payout
            .id
            .to_string(),
    ];
    env.work_until_idle(env.deps()).await;
    env.assert_paid_exactly_once(&ids).await;
    // The whole spend is refunded: the $22.50 already paid out is owed back.
    feed(&env, &[refund("f1", "s1", "1000")]).await;
    let b = env.balance("ref-neg").await;
    let p = b.program("vast", Currency::Usd).unwrap();
    assert_eq!(p.available, usd("-22.5"));
    assert!(!p.eligible && p.payable_now.is_zero());
    assert!(p.reason.as_deref().unwrap().contains("negative"), "{p:?}");
    assert!(env.withdraw("ref-neg", usd("1"), "neg-2").await.is_err());
    // New spend repays the debt first: $2,000 earns $45 cashable, $22.50 of it is left.
    feed(
        &env,
        &[usage(
            "s2",
            "spender",
            "2025-03-01T00:00:00Z",
            "instance",
            "2000",
        )],
    )
    .await;
    assert_eq!(env.payable("ref-neg").await, usd("22.50"));
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn refunds_claw_back_affiliate_cash_and_bonus_alike() {
    let env = env().await;
    with_referrer(&env).await;
    let mut lines = paying_referrals(25);
    lines.push(r#"{"type":"affiliate_opt_in","program":"runpod-affiliate","account":"rp-ref","at":"2025-08-01T00:00:00Z"}"#.into());
    lines.push(usage(
        "p00-m2",
        "p00",
        "2025-08-15T00:00:00Z",
        "pod",
        "1000",
    ));
    feed(&env, &lines).await;
    assert_eq!(
        earned(&env, REFERRER, "runpod-affiliate").await.0,
        usd("100")
    );
    feed(
        &env,
        &[
            refund("f-aff", "p00-m2", "400"),
            refund("f-cred", "p01-pod", "20"),
        ],
    )
    .await;
    assert_eq!(
        earned(&env, REFERRER, "runpod-affiliate").await.0,
        usd("60")
    );
    assert_eq!(
        earned(&env, REFERRER, "runpod").await.0,
        usd("14.40"),
        "p01's $0.60 of credits clawed back"
    );
    // p01's whole spend was refunded: below $10, both of its bonuses are taken back.
    assert_eq!(earned(&env, "p01", "runpod-bonus").await.0, usd("0"));
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn records_naming_an_unknown_or_wrong_program_are_rejected_with_the_reason() {
    let env = env().await;
    let report = env
        .ingest(
            &[
                referral("tiktok", "x", "y", "2025-01-01T00:00:00Z"),
                referral("runpod-affiliate", "x", "y", "2025-01-01T00:00:00Z"),
                r#"{"type":"template","id":"t","program":"vast","creator":"x"}"#.into(),
            ]
            .join("\n"),
        )
        .await;
    let messages: Vec<&str> = report.rejected.iter().map(|e| e.message.as_str()).collect();
    assert!(
        messages[0].contains("unknown program tiktok") && messages[0].contains("runpod-creator"),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("affiliate program") && messages[1].contains("referral program"),
        "{messages:?}"
    );
    assert!(messages[2].contains("creator program"), "{messages:?}");
}

#[test]
fn the_bonus_distribution_of_the_preset_spans_five_to_five_hundred() {
    let set = common::programs();
    let d: &BonusDistribution = &set
        .get_str("runpod-bonus")
        .unwrap()
        .bonus()
        .unwrap()
        .distribution;
    assert_eq!(
        (d.min(), d.max()),
        ("5".parse().unwrap(), "500".parse().unwrap())
    );
}
