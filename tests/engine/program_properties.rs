//! Invariants of accrual over random histories: random referrals (beta and standard, Vast and
//! Runpod), charges, refunds and an affiliate opt-in, ingested in random batches.
//!
//! - a commission (accrual) is never negative and a clawback never positive;
//! - what a referral earns never exceeds the highest configured rate times its spend;
//! - a replayed ingest changes nothing, and the batching does not change the outcome;
//! - the balances, summed over programs, equal the ledger's postings.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use payouts::domain::ids::AccountId;
use payouts::domain::program::ProgramSet;
use payouts::domain::program::config::PRESETS;
use payouts::storage::Store;
use proptest::prelude::*;
use rust_decimal::Decimal;

#[derive(Debug, Clone)]
struct Charge {
    account: usize,
    day: i64,
    category: &'static str,
    /// In millionths of a dollar (up to 6 decimals, as platforms send).
    micros: i64,
    /// Refunded share in percent (0 = no refund).
    refund_pct: i64,
}

#[derive(Debug, Clone)]
struct History {
    /// Per referred account: (program, referral day offset from 2025-05-01).
    referred: Vec<(&'static str, i64)>,
    charges: Vec<Charge>,
    opt_in_day: Option<i64>,
    /// Where the lines are cut into separate ingests.
    cuts: Vec<usize>,
}

fn day(offset: i64) -> String {
    let base: chrono::DateTime<chrono::Utc> = "2025-05-01T00:00:00Z".parse().unwrap();
    (base + chrono::Duration::days(offset)).to_rfc3339()
}

fn history() -> impl Strategy<Value = History> {
    let referred = prop::collection::vec(
        (
            prop::sample::select(vec!["runpod", "runpod", "vast"]),
            0i64..120,
        ),
        1..6,
    );
    referred.prop_flat_map(|referred| {
        let n = referred.len();
        let charge = (
            0..n,
            0i64..500,
            prop::sample::select(vec!["pod", "serverless", "storage", "instance"]),
            1i64..500_000_000,
            prop::sample::select(vec![0i64, 0, 0, 25, 100]),
        )
            .prop_map(|(account, day, category, micros, refund_pct)| Charge {
                account,
                day,
                category,
                micros,
                refund_pct,
            });
        (
            Just(referred),
            prop::collection::vec(charge, 0..25),
            prop::option::of(0i64..300),
            prop::collection::vec(0usize..80, 0..3),
        )
            .prop_map(|(referred, charges, opt_in_day, cuts)| History {
                referred,
                charges,
                opt_in_day,
                cuts,
            })
    })
}

fn amount(micros: i64) -> String {
    Decimal::new(micros, 6).normalize().to_string()
}

impl History {
    fn lines(&self) -> Vec<String> {
        let mut lines = vec![
            r#"{"type":"account","id":"R","created_at":"2024-01-01T00:00:00Z","email":"r@x.com"}"#
                .to_string(),
        ];
        for (i, (program, d)) in self.referred.iter().enumerate() {
            lines.push(format!(
                r#"{{"type":"account","id":"u{i}","created_at":"{}","email":"u{i}@x.com"}}"#,
                day(*d)
            ));
            lines.push(format!(
                r#"{{"type":"referral","program":"{program}","referrer":"R","referred":"u{i}","at":"{}"}}"#,
                day(*d)
            ));
        }
        for (k, c) in self.charges.iter().enumerate() {
            let at = day(self.referred[c.account].1 + c.day);
            lines.push(format!(
                r#"{{"type":"usage","id":"c{k}","account":"u{}","at":"{at}","category":"{}","amount":"{}","currency":"USD"}}"#,
                c.account,
                c.category,
                amount(c.micros)
            ));
            if c.micros * c.refund_pct / 100 > 0 {
                lines.push(format!(
                    r#"{{"type":"refund","id":"f{k}","usage_id":"c{k}","amount":"{}"}}"#,
                    amount(c.micros * c.refund_pct / 100)
                ));
            }
        }
        if let Some(d) = self.opt_in_day {
            lines.push(format!(
                r#"{{"type":"affiliate_opt_in","program":"runpod-affiliate","account":"R","at":"{}"}}"#,
                day(d)
            ));
        }
        lines
    }

    /// Each referred account's spend (gross) and program.
    fn spend(&self) -> BTreeMap<String, (&'static str, Decimal)> {
        let mut out = BTreeMap::new();
        for (i, (program, _)) in self.referred.iter().enumerate() {
            out.insert(format!("u{i}"), (*program, Decimal::ZERO));
        }
        for c in &self.charges {
            if let Some(e) = out.get_mut(&format!("u{}", c.account)) {
                e.1 += Decimal::new(c.micros, 6);
            }
        }
        out
    }
}

/// Runpod with the affiliate threshold at one paying referral, so random histories reach it.
fn programs() -> Arc<ProgramSet> {
    let env = |_: &str| Some(common::TEST_SEED.to_string());
    let runpod = PRESETS[1]
        .1
        .replace("min_paying_referrals = 25", "min_paying_referrals = 1");
    let set = ProgramSet::from_toml("vast", PRESETS[0].1, &env)
        .unwrap()
        .merge(ProgramSet::from_toml("runpod (one paying referral)", &runpod, &env).unwrap())
        .unwrap();
    Arc::new(set)
}

async fn store(name: &str) -> (common::TestDb, Store) {
    let db = common::TestDb::named(name).await;
    let store = db.open(programs()).await;
    (db, store)
}

async fn ingest(store: &Store, lines: &[String]) -> payouts::ingest::IngestReport {
    common::ingest_text(store, &lines.join("\n"), false).await
}

/// Every account's (program -> earned) as the balances report it.
async fn earnings(store: &Store) -> BTreeMap<(String, String), Decimal> {
    let ids: Vec<String> = payouts::on_backend!(store, s => sqlx::query_scalar(
        "SELECT DISTINCT holder FROM ledger_postings WHERE holder IS NOT NULL ORDER BY holder",
    )
    .fetch_all(s.pool())
    .await
    .unwrap());
    let mut out = BTreeMap::new();
    for id in ids {
        let b = store
            .balance(&AccountId::parse(&id).unwrap())
            .await
            .unwrap();
        // A program whose postings net to nothing (credits moved to affiliate cash by a
        // backdated opt-in) earned nothing: whether its zero row exists depends only on
        // batching, so it is not compared.
        for p in b
            .programs
            .into_iter()
            .filter(|p| !p.earned.amount().is_zero())
        {
            out.insert((id.clone(), p.program.to_string()), p.earned.amount());
        }
    }
    out
}

async fn check(h: History) -> Result<(), TestCaseError> {
    let lines = h.lines();

    // In batches, cut where the history says (a cut never separates a refund from its
    // charge's earlier batch in a way ingest forbids: refunds always follow their usage).
    let (_a_db, a) = store("batched").await;
    let mut cuts: Vec<usize> = h.cuts.iter().map(|c| c % (lines.len() + 1)).collect();
    cuts.sort_unstable();
    let mut from = 0;
    for cut in cuts.into_iter().chain([lines.len()]) {
        let report = ingest(&a, &lines[from..cut.max(from)]).await;
        // Opt-ins may be refused (not enough paying referrals yet); nothing else may be.
        for e in &report.rejected {
            prop_assert!(e.message.contains("paying referred users"), "{}", e.message);
        }
        from = cut.max(from);
    }
    // The whole file at once into another database.
    let (_b_db, b) = store("whole").await;
    ingest(&b, &lines).await;

    // A replay changes nothing, and neither does a full re-accrual.
    let before = earnings(&a).await;
    let replay = ingest(&a, &lines).await;
    prop_assert_eq!(replay.accruals_posted, 0);
    prop_assert_eq!(a.reaccrue_all().await.unwrap(), 0);
    prop_assert_eq!(&earnings(&a).await, &before);

    // Opt-in timing aside (a refused opt-in in a small batch is retried in the replay), the
    // batching does not change what is earned when the opt-in was accepted in both.
    let enrolled = "SELECT COUNT(*) FROM affiliate_enrollments";
    if common::scalar(&a, enrolled).await == common::scalar(&b, enrolled).await {
        prop_assert_eq!(&earnings(&b).await, &before);
    }

    for s in [&a, &b] {
        // Commissions never negative, clawbacks never positive (the expense side mirrors).
        let wrong = common::scalar(
            s,
            "SELECT COUNT(*) FROM ledger_transactions t JOIN ledger_postings p ON p.txn_id = t.id \
             WHERE p.book = 'commission_expense' \
               AND ((t.kind = 'accrual' AND p.units > 0) OR (t.kind = 'clawback' AND p.units < 0))",
        )
        .await;
        prop_assert_eq!(wrong, 0);

        // Never above the highest configured rate: runpod referral or affiliate 10%, vast 3%.
        let per_referral: Vec<(String, i64)> = payouts::on_backend!(s, s => sqlx::query_as(
            "SELECT r.referred_id, CAST(COALESCE(-SUM(p.units), 0) AS BIGINT) FROM referrals r \
             JOIN ledger_transactions t ON t.subject = r.id AND t.stream IN ('referral', 'affiliate') \
             JOIN ledger_postings p ON p.txn_id = t.id AND p.book = 'commission_expense' \
             GROUP BY r.referred_id",
        )
        .fetch_all(s.pool())
        .await
        .unwrap());
        let spend = h.spend();
        for (referred, units) in per_referral {
            let earned = Decimal::from_i128_with_scale(units.into(), 10);
            let (program, spent) = spend[&referred];
            let max_rate = if program == "vast" {
                Decimal::new(3, 2)
            } else {
                Decimal::new(10, 2)
            };
            prop_assert!(earned >= Decimal::ZERO, "{referred} earned {earned}");
            prop_assert!(
                earned <= spent * max_rate,
                "{referred} earned {earned} on {spent} of spend"
            );
        }

        // The balances, summed over programs, are exactly the ledger's postings.
        let by_program: Vec<(String, i64)> = payouts::on_backend!(s, s => sqlx::query_as(
            "SELECT program, CAST(-SUM(units) AS BIGINT) FROM ledger_postings \
             WHERE book = 'commission_expense' GROUP BY program",
        )
        .fetch_all(s.pool())
        .await
        .unwrap());
        let balances = earnings(s).await;
        for (program, units) in by_program {
            let ledger = Decimal::from_i128_with_scale(units.into(), 10);
            let summed: Decimal = balances
                .iter()
                .filter(|((_, p), _)| *p == program)
                .map(|(_, v)| *v)
                .sum();
            prop_assert_eq!(summed, ledger, "program {}", program);
        }
        let check = s.check_ledger().await.unwrap();
        prop_assert!(check.is_ok(), "{:?}", check.problems);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn accrual_invariants_hold_for_random_histories(h in history()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(check(h))?;
    }
}
