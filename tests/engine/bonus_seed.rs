//! A granted bonus is final: a changed seed never re-draws it. Each draw is stored with a
//! fingerprint of the seed it came from (never the seed).

use std::sync::Arc;

use crate::common::{self, TEST_SEED, TestDb, usd};
use payouts::domain::ids::AccountId;
use payouts::domain::money::{Currency, Money};
use payouts::domain::program::ProgramSet;
use payouts::domain::program::bonus::{BonusRole, draw, seed_fingerprint};
use payouts::storage::Store;

const OTHER_SEED: &str = "a-different-seed-after-a-config-change";

fn programs_with_seed(seed: &'static str) -> Arc<ProgramSet> {
    Arc::new(
        ProgramSet::load(&["vast".into(), "runpod".into()], &move |name| {
            (name == "RUNPOD_BONUS_SEED").then(|| seed.to_string())
        })
        .expect("presets load"),
    )
}

/// Two referred users who each spend $10 on Pods, so both sides of both get a bonus.
fn records(referred: &[&str]) -> String {
    let mut lines = vec![
        r#"{"type":"account","id":"bs-ref","created_at":"2025-01-01T00:00:00Z","email":"bs-ref@example.com"}"#
            .to_string(),
    ];
    for r in referred {
        lines.push(format!(
            r#"{{"type":"account","id":"{r}","created_at":"2025-07-01T00:00:00Z","email":"{r}@example.com"}}"#
        ));
        lines.push(format!(
            r#"{{"type":"referral","program":"runpod","referrer":"bs-ref","referred":"{r}","at":"2025-07-01T00:00:00Z"}}"#
        ));
        lines.push(format!(
            r#"{{"type":"usage","id":"{r}-u","account":"{r}","at":"2025-07-02T00:00:00Z","category":"pod","amount":"10","currency":"USD"}}"#
        ));
    }
    lines.join("\n")
}

async fn bonus(store: &Store, account: &str) -> Money {
    store
        .balance(&AccountId::parse(account).expect("id"))
        .await
        .expect("balance")
        .program("runpod-bonus", Currency::Usd)
        .map_or(usd("0"), |p| p.earned)
}

#[tokio::test]
async fn a_changed_seed_never_redraws_a_granted_bonus() {
    let db = TestDb::named("bonus_seed").await;
    let first = db.open(programs_with_seed(TEST_SEED)).await;
    payouts::app::ingest::ingest(
        &first,
        std::io::Cursor::new(records(&["bs-a", "bs-b"])),
        false,
    )
    .await
    .expect("ingest");
    let referrer = bonus(&first, "bs-ref").await;
    let a = bonus(&first, "bs-a").await;
    assert!(a.is_positive() && referrer.is_positive());
    first.close().await;

    // The seed changes (a rotation, or a mistake): what was granted stays granted.
    let second = db.open(programs_with_seed(OTHER_SEED)).await;
    let refused = second
        .check_bonus_seeds(false)
        .await
        .expect_err("a changed seed is refused without a rotation")
        .to_string();
    assert!(
        refused.contains("RUNPOD_BONUS_SEED")
            && refused.contains("PAYOUTS_ROTATE_BONUS_SEED")
            && !refused.contains(OTHER_SEED)
            && !refused.contains(TEST_SEED),
        "{refused}"
    );
    second
        .check_bonus_seeds(true)
        .await
        .expect("an explicit rotation is accepted");
    assert_eq!(
        second.reaccrue_all().await.expect("re-accrue"),
        0,
        "a re-accrual under a new seed must post nothing"
    );
    assert_eq!(bonus(&second, "bs-a").await, a);
    assert_eq!(bonus(&second, "bs-ref").await, referrer);
    // A replay of the same facts posts nothing either.
    let report = payouts::app::ingest::ingest(
        &second,
        std::io::Cursor::new(records(&["bs-a", "bs-b"])),
        false,
    )
    .await
    .expect("replay");
    assert_eq!(report.accruals_posted, 0);
    assert_eq!(bonus(&second, "bs-a").await, a);

    // A new referred user draws under the rotated seed, and the draw names its fingerprint.
    common::ingest_text(&second, &records(&["bs-c"]), false).await;
    let terms = programs_with_seed(OTHER_SEED);
    let distribution = &terms
        .get_str("runpod-bonus")
        .expect("bonus")
        .bonus()
        .expect("terms")
        .distribution;
    let want = draw(
        OTHER_SEED.as_bytes(),
        "runpod-bonus",
        "bs-c",
        BonusRole::Referred,
        distribution,
    );
    assert_eq!(bonus(&second, "bs-c").await, usd(&want.amount.to_string()));
    let fingerprints: Vec<String> = payouts::on_backend!(&second, s => sqlx::query_scalar(
        "SELECT DISTINCT seed_fingerprint FROM bonus_draws ORDER BY seed_fingerprint",
    )
    .fetch_all(s.pool())
    .await)
    .expect("fingerprints");
    let mut expected = vec![
        seed_fingerprint(TEST_SEED.as_bytes()),
        seed_fingerprint(OTHER_SEED.as_bytes()),
    ];
    expected.sort();
    assert_eq!(
        fingerprints, expected,
        "one fingerprint per seed, never the seed"
    );
    second.close().await;
}
