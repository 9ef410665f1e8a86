//! Evidence that connects a referrer and a referred account (a link, a shared email or payment
//! fingerprint) counts whenever it arrives: the outcome never depends on the order the facts
//! came in, and what a referral earned before the evidence is clawed back with the reason.

use crate::common::{self, TestEnv, usd};
use payouts::domain::money::{Currency, Money};
use payouts::sim::stripe::Faults;

fn account(id: &str, email: &str, fingerprint: &str) -> String {
    format!(
        r#"{{"type":"account","id":"{id}","created_at":"2025-03-01T00:00:00Z","email":"{email}","payment_fingerprint":"{fingerprint}"}}"#
    )
}

fn referral(referrer: &str, referred: &str) -> String {
    format!(
        r#"{{"type":"referral","program":"vast","referrer":"{referrer}","referred":"{referred}","at":"2025-03-01T00:00:00Z"}}"#
    )
}

fn usage(id: &str, account: &str, at: &str, amount: &str) -> String {
    format!(
        r#"{{"type":"usage","id":"{id}","account":"{account}","at":"{at}","category":"instance","amount":"{amount}","currency":"USD"}}"#
    )
}

fn link(a: &str, b: &str) -> String {
    format!(r#"{{"type":"link","a":"{a}","b":"{b}","reason":"same device"}}"#)
}

async fn feed(env: &TestEnv, lines: &[String]) {
    let report = env.ingest(&lines.join("\n")).await;
    assert!(report.rejected.is_empty(), "{:#?}", report.rejected);
}

async fn earned(env: &TestEnv, account: &str) -> Money {
    env.balance(account)
        .await
        .program("vast", Currency::Usd)
        .map_or(usd("0"), |p| p.earned)
}

/// The notes of the clawbacks posted to a referral's streams.
async fn clawback_notes(env: &TestEnv, referred: &str) -> Vec<String> {
    let subject = format!("vast:{referred}");
    payouts::on_backend!(&env.store, s => sqlx::query_scalar::<_, String>(
        "SELECT t.note FROM ledger_transactions t JOIN referrals r ON r.id = t.referral_id \
         WHERE t.kind = 'clawback' AND r.referred_id = $1 AND t.note IS NOT NULL ORDER BY t.id",
    )
    .bind(referred)
    .fetch_all(s.pool())
    .await)
    .unwrap_or_else(|e| panic!("notes of {subject}: {e}"))
}

#[tokio::test]
async fn a_late_link_claws_back_what_the_referral_earned_and_says_why() {
    let env = TestEnv::new(Faults::default()).await;
    feed(
        &env,
        &[
            account("lr", "lr@example.com", "fp-lr"),
            account("ln", "ln@example.com", "fp-ln"),
            referral("lr", "ln"),
            usage("lu1", "ln", "2025-03-02T00:00:00Z", "100"),
        ],
    )
    .await;
    assert_eq!(earned(&env, "lr").await, usd("3"), "qualified: 3% of $100");

    feed(&env, &[link("lr", "ln")]).await;
    assert_eq!(
        earned(&env, "lr").await,
        usd("0"),
        "the same facts in one file earn nothing, so a late link must claw back"
    );
    let notes = clawback_notes(&env, "ln").await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("referral disqualified") && n.contains("linked")),
        "{notes:?}"
    );
    let balance = env.balance("lr").await;
    let note = balance
        .non_earning_referrals
        .iter()
        .find(|n| n.referred == "ln")
        .expect("the balance lists the disqualified referral");
    assert!(
        note.reason.contains("connected") && note.reason.contains("clawed back"),
        "{}",
        note.reason
    );
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn a_late_payment_fingerprint_change_claws_back_and_a_replay_of_the_old_one_does_not_requalify()
 {
    let env = TestEnv::new(Faults::default()).await;
    feed(
        &env,
        &[
            account("fr", "fr@example.com", "fp-fr"),
            account("fn", "fn@example.com", "fp-fn"),
            referral("fr", "fn"),
            usage("fu1", "fn", "2025-03-02T00:00:00Z", "100"),
        ],
    )
    .await;
    assert_eq!(earned(&env, "fr").await, usd("3"));
    // The referred account now pays with the referrer's card.
    feed(&env, &[account("fn", "fn@example.com", "fp-fr")]).await;
    assert_eq!(earned(&env, "fr").await, usd("0"));
    let notes = clawback_notes(&env, "fn").await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("referral disqualified") && n.contains("payment method")),
        "{notes:?}"
    );
    // Switching back does not erase the evidence that the two were connected.
    feed(&env, &[account("fn", "fn@example.com", "fp-fn")]).await;
    feed(&env, &[usage("fu2", "fn", "2025-03-03T00:00:00Z", "100")]).await;
    assert_eq!(earned(&env, "fr").await, usd("0"));
    env.assert_ledger_sound().await;
}

/// One small set of facts, every arrival order: each permutation uses its own pair of
/// accounts in one database, so all orders are judged by the same code on the same backend.
/// With a link as evidence the referrer's own account is among the permuted facts too.
#[tokio::test]
async fn the_outcome_does_not_depend_on_the_order_the_facts_arrive_in() {
    let env = TestEnv::new(Faults::default()).await;
    // Evidence kinds: a link, the referred account taking the referrer's card, the referred
    // account taking an alias of the referrer's email, and none (a control that earns).
    for evidence in ["link", "fingerprint", "email", "none"] {
        let n_facts = if evidence == "link" { 5 } else { 4 };
        let mut orders = Vec::new();
        permutations(&mut (0..n_facts).collect(), 0, &mut orders);
        for (i, order) in orders.iter().enumerate() {
            let r = format!("o{i}-{evidence}-r");
            let n = format!("o{i}-{evidence}-n");
            let facts = [
                account(&n, &format!("{n}@example.com"), &format!("fp-{n}")),
                referral(&r, &n),
                usage(&format!("{n}-u"), &n, "2025-03-02T00:00:00Z", "100"),
                match evidence {
                    "link" => link(&r, &n),
                    "fingerprint" => account(&n, &format!("{n}@example.com"), &format!("fp-{r}")),
                    "email" => account(&n, &format!("{r}+alt@example.com"), &format!("fp-{n}")),
                    _ => usage(&format!("{n}-u0"), &n, "2025-03-01T12:00:00Z", "0.01"),
                },
                account(&r, &format!("{r}@example.com"), &format!("fp-{r}")),
            ];
            if n_facts == 4 {
                feed(&env, &[facts[4].clone()]).await;
            }
            for &k in order {
                feed(&env, &[facts[k].clone()]).await;
            }
            let want = if evidence == "none" {
                usd("3.0003")
            } else {
                usd("0")
            };
            assert_eq!(
                earned(&env, &r).await,
                want,
                "evidence {evidence}, arrival order {order:?}"
            );
        }
    }
    env.assert_ledger_sound().await;
}

fn permutations(items: &mut Vec<usize>, k: usize, out: &mut Vec<Vec<usize>>) {
    if k == items.len() {
        out.push(items.clone());
        return;
    }
    for i in k..items.len() {
        items.swap(k, i);
        permutations(items, k + 1, out);
        items.swap(k, i);
    }
}

/// A program may choose to keep what a referral earned before the evidence and stop only
/// what it would earn from then on.
#[tokio::test]
async fn a_program_may_stop_future_earnings_only() {
    use payouts::domain::program::ProgramSet;
    use payouts::domain::program::config::PRESETS;
    let vast = PRESETS[0].1.replace(
        "spend_gate = true",
        "spend_gate = true\nlate_disqualification = \"stop_future\"",
    );
    let programs = ProgramSet::from_toml("vast, stop future", &vast, &|_| None).expect("variant");
    let db = crate::common::TestDb::named("stop_future").await;
    let store = db.open(std::sync::Arc::new(programs)).await;
    let ingest = |lines: Vec<String>| {
        let store = store.clone();
        async move {
            let r = common::ingest_text(&store, &lines.join("\n"), false).await;
            assert!(r.rejected.is_empty(), "{:#?}", r.rejected);
        }
    };
    let earned = || async {
        store
            .balance(&payouts::domain::ids::AccountId::parse("sr").expect("id"))
            .await
            .expect("balance")
    };
    ingest(vec![
        account("sr", "sr@example.com", "fp-sr"),
        account("sn", "sn@example.com", "fp-sn"),
        referral("sr", "sn"),
        usage("su1", "sn", "2025-03-02T00:00:00Z", "100"),
    ])
    .await;
    ingest(vec![link("sr", "sn")]).await;
    // Spend dated after the evidence arrived (the evidence arrives now) earns nothing.
    ingest(vec![usage("su2", "sn", "2099-01-01T00:00:00Z", "100")]).await;
    let b = earned().await;
    assert_eq!(
        b.program("vast", Currency::Usd).map(|p| p.earned),
        Some(usd("3")),
        "what was earned before the evidence stays, nothing after"
    );
    let note = b
        .non_earning_referrals
        .iter()
        .find(|n| n.referred == "sn")
        .expect("listed");
    assert!(note.reason.contains("earns nothing"), "{}", note.reason);
    store.close().await;
}
