use super::*;
use crate::domain::ids::Rail;
use crate::domain::program::{BonusRole, RewardKind};
use crate::domain::usage::UsageCategory;

fn env(name: &str) -> Option<String> {
    (name == "RUNPOD_BONUS_SEED").then(|| "test-seed-0123456789".to_string())
}

fn presets() -> ProgramSet {
    ProgramSet::load(&["vast".into(), "runpod".into()], &env).unwrap()
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

#[test]
fn the_presets_say_what_the_seeds_say() {
    let set = presets();
    let vast = set.get_str("vast").unwrap();
    let t = vast.referral().unwrap();
    assert_eq!(t.window, Window::Lifetime);
    for c in UsageCategory::ALL {
        assert_eq!(t.rates.rate(c), d("0.03"), "{c}");
    }
    assert_eq!(vast.cash_out.cashable_fraction, d("0.75"));
    assert!(vast.cash_out.spend_gate);
    assert_eq!(
        vast.cash_out.rails,
        vec![Rail::Stripe, Rail::Paypal, Rail::Wise]
    );

    let runpod = set.get_str("runpod").unwrap();
    let t = runpod.referral().unwrap();
    assert_eq!(t.rates.rate(UsageCategory::Serverless), d("0.05"));
    assert_eq!(t.rates.rate(UsageCategory::Pod), d("0.03"));
    assert_eq!(t.rates.rate(UsageCategory::Storage), Decimal::ZERO);
    assert_eq!(t.window, Window::Months(6));
    let beta = "2025-06-25T23:59:59Z".parse().unwrap();
    assert_eq!(t.window_for(beta), (Window::Lifetime, Some("beta")));
    let after = "2025-06-26T00:00:00Z".parse().unwrap();
    assert_eq!(t.window_for(after), (Window::Months(6), None));
    assert!(runpod.cash_out.cashable_fraction.is_zero());

    let aff = set.affiliate_of(&runpod.id).unwrap();
    let a = aff.affiliate().unwrap();
    assert_eq!(a.min_paying_referrals, 25);
    assert_eq!(a.rates.rate(UsageCategory::Pod), d("0.10"));
    assert_eq!(a.window, Window::Months(6));
    assert_eq!(aff.reward, RewardKind::Cash);
    assert_eq!(aff.cash_out.rails, vec![Rail::Partnerstack]);

    let bonus = set.bonus_of(&runpod.id).unwrap().bonus().unwrap();
    assert_eq!(bonus.spend_threshold, d("10"));
    assert_eq!(bonus.distribution.min(), d("5"));
    assert_eq!(bonus.distribution.max(), d("500"));
    assert_eq!(
        bonus.recipients,
        vec![BonusRole::Referrer, BonusRole::Referred]
    );

    let creator = set.get_str("runpod-creator").unwrap().creator().unwrap();
    assert_eq!(creator.rates.rate(UsageCategory::Pod), d("0.01"));
    assert_eq!(creator.min_template_runtime_secs, 86_400);
    assert!(!creator.count_spend_before_threshold);
}

#[test]
fn the_seed_never_shows_in_debug_output() {
    let set = presets();
    let text = format!("{set:?}");
    assert!(!text.contains("test-seed-0123456789"));
    let json = serde_json::to_string(&set).unwrap();
    assert!(!json.contains("test-seed-0123456789"));
}

fn err(text: &str) -> String {
    ProgramSet::from_toml("t.toml", text, &env)
        .unwrap_err()
        .to_string()
}

const OK: &str = r#"
[[program]]
id = "p"
kind = "referral"
reward = "credit"
cashable_fraction = "0.75"
rails = ["stripe"]
rates = { pod = "0.03" }
window = "lifetime"
"#;

#[test]
fn invalid_configuration_names_the_field() {
    assert!(ProgramSet::from_toml("t.toml", OK, &env).is_ok());
    let e = err(&OK.replace("\"0.03\"", "0.03"));
    assert!(e.contains("t.toml") && e.contains("rates"), "{e}");
    let e = err(&OK.replace("\"0.03\"", "\"3\""));
    assert!(
        e.contains("program[0] (p).rates.pod") && e.contains("between 0 and 1"),
        "{e}"
    );
    let e = err(&OK.replace("pod =", "gpu ="));
    assert!(
        e.contains("rates.gpu") && e.contains("unknown usage category"),
        "{e}"
    );
    let e = err(&OK.replace("\"lifetime\"", "\"forever\""));
    assert!(e.contains(".window") && e.contains("6 months"), "{e}");
    let e = err(&OK.replace("rails = [\"stripe\"]", "rails = [\"venmo\"]"));
    assert!(e.contains(".rails") && e.contains("venmo"), "{e}");
    let e = err(&OK.replace("rails = [\"stripe\"]\n", ""));
    assert!(
        e.contains(".rails") && e.contains("must list the rails"),
        "{e}"
    );
    let e = err(&OK.replace("kind = \"referral\"", "kind = \"pyramid\""));
    assert!(e.contains(".kind") && e.contains("pyramid"), "{e}");
    let e = err(&format!("{OK}spend_threshold = \"10\"\n"));
    assert!(
        e.contains(".spend_threshold") && e.contains("not used by a referral"),
        "{e}"
    );
    let e = err(&OK.replace("\"0.03\"", "\"0.00003\""));
    assert!(e.contains("rates.pod") && e.contains("exact"), "{e}");
    let e = err(&format!("{OK}colour = \"red\"\n"));
    assert!(e.contains("colour"), "{e}");
    let e = err(&format!("{OK}{OK}"));
    assert!(e.contains("defined twice"), "{e}");
}

#[test]
fn a_missing_seed_waits_for_a_draw_and_a_short_one_is_rejected_at_start() {
    let set = ProgramSet::load(&["vast".into(), "runpod".into()], &|_| None).unwrap();
    let terms = set.get_str("runpod-bonus").unwrap().bonus().unwrap();
    assert!(terms.seed.is_none());
    assert_eq!(terms.seed_env, "RUNPOD_BONUS_SEED");
    let e = ProgramSet::load(&["runpod".into()], &|_| Some("short".into()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("too short"), "{e}");
    assert!(matches!(
        ProgramSet::load(&["stripe".into()], &env),
        Err(ConfigError::UnknownPreset(_))
    ));
}

#[test]
fn references_must_name_a_referral_program() {
    let text = r#"
[[program]]
id = "aff"
kind = "affiliate"
reward = "cash"
rails = ["partnerstack"]
referral_program = "nope"
rates = { pod = "0.1" }
window = "6 months"
min_paying_referrals = 25
"#;
    let e = err(text);
    assert!(e.contains("referral_program") && e.contains("nope"), "{e}");
}
