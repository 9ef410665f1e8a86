//! The demo's payee-trust chapter: settings the presets leave off, each turned on in a
//! database of its own so the main flow's figures stay those of the published terms.

use std::sync::Arc;

use anyhow::Result;
use chrono::{Duration, SecondsFormat, SubsecRound};

use crate::cli::render;
use payouts::domain::ids::{AccountId, IdempotencyKey, PayoutId, Rail};
use payouts::domain::money::{Currency, Money};
use payouts::domain::operator::{Action, ActionRequest};
use payouts::domain::payout::PayoutStatus;
use payouts::domain::program::ProgramSet;
use payouts::domain::statement::Month;
use payouts::domain::tax::TaxRules;
use payouts::ingest::IngestReport;
use payouts::storage::Store;
use payouts::storage::payout_views::{PayoutView, WithdrawalRequest};

/// Vast's preset with a 30-day holding period: of two 1,000.00 charges, the one 31 days old
/// has matured (22.50 cashable), the one 10 days old is still maturing (22.50, maturing 20
/// days from now). Returns whether the balance shows exactly that.
pub(super) async fn holding_period(dir: &std::path::Path, step: &dyn Fn(&str)) -> Result<bool> {
    step("Holding period: Vast's terms with hold_days = 30 (a database of its own)");
    let text = format!(
        "{}\nhold_days = 30\n",
        payouts::domain::program::config::PRESETS[0].1
    );
    let programs = ProgramSet::from_toml("vast with hold_days = 30", &text, &|_| None)?;
    let store = Store::open_sqlite(&dir.join("hold.db"), Arc::new(programs)).await?;
    let now = payouts::clock::now().trunc_subsecs(0);
    let day = |ago: i64| (now - Duration::days(ago)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let records = [
        format!(
            r#"{{"type":"account","id":"ref-olga","created_at":"{}","email":"olga@example.com"}}"#,
            day(90)
        ),
        format!(
            r#"{{"type":"account","id":"u-pia","created_at":"{}","email":"pia@example.com"}}"#,
            day(60)
        ),
        format!(
            r#"{{"type":"referral","program":"vast","referrer":"ref-olga","referred":"u-pia","at":"{}"}}"#,
            day(60)
        ),
        format!(
            r#"{{"type":"usage","id":"pia-1","account":"u-pia","at":"{}","category":"instance","amount":"1000.00","currency":"USD"}}"#,
            day(31)
        ),
        format!(
            r#"{{"type":"usage","id":"pia-2","account":"u-pia","at":"{}","category":"instance","amount":"1000.00","currency":"USD"}}"#,
            day(10)
        ),
    ];
    outln!(
        "  u-pia (referred by ref-olga) spent 1000.00 USD 31 days ago and 1000.00 USD 10 days ago"
    );
    ingest_lines(&store, &records).await?;
    let balance = store.balance(&AccountId::parse("ref-olga")?).await?;
    out!("{}", render::balance(&balance));
    let usd = |s: &str| Money::parse(s, Currency::Usd, 2);
    let ok = balance.program("vast", Currency::Usd).is_some_and(|p| {
        Ok(p.cashable) == usd("22.50")
            && Ok(p.maturing) == usd("22.50")
            && p.next_matures_at
                .is_some_and(|at| (at - now) == Duration::days(20))
    });
    outln!(
        "  {}",
        if ok {
            "the 31-day-old commission is cashable, the 10-day-old one matures in 20 days"
        } else {
            "MISMATCH: expected 22.50 USD cashable and 22.50 USD maturing in 20 days"
        }
    );
    store.close().await;
    Ok(ok)
}

/// One payee's statement for this month, from the main flow's ledger: its payouts, the
/// reversal that came back, and its balance at the month's end (refused unless it adds up).
pub(super) async fn statement(store: &Store, step: &dyn Fn(&str)) -> Result<bool> {
    let month = Month::parse(&payouts::clock::now().format("%Y-%m").to_string())?;
    step(&format!(
        "A payee's statement: `payouts statement ref-gina --month {month}`"
    ));
    let statement = store
        .statement(&AccountId::parse("ref-gina")?, month)
        .await?;
    out!("{}", crate::cli::statements::statement_text(&statement));
    Ok(!statement.programs.is_empty())
}

/// Applies demo records strictly: a rejected line is a bug in the demo.
async fn ingest_lines(store: &Store, records: &[String]) -> Result<IngestReport> {
    let input = std::io::Cursor::new(records.join("\n").into_bytes());
    let report = payouts::app::ingest::ingest(store, input, true).await?;
    anyhow::ensure!(
        report.rejected.is_empty(),
        "the demo's records were rejected: {:?}",
        report.rejected
    );
    Ok(report)
}

/// A referrer who referred one account that spent `spend` USD, paid out through Stripe to
/// `destination`.
fn referrer(id: &str, country: &str, spend: &str, destination: &str) -> Vec<String> {
    let at = "2026-01-05T00:00:00Z";
    vec![
        format!(
            r#"{{"type":"account","id":"{id}","created_at":"2025-06-01T00:00:00Z","email":"{id}@example.com","country":"{country}"}}"#
        ),
        format!(
            r#"{{"type":"account","id":"u-{id}","created_at":"{at}","email":"u-{id}@example.com"}}"#
        ),
        format!(
            r#"{{"type":"referral","program":"vast","referrer":"{id}","referred":"u-{id}","at":"{at}"}}"#
        ),
        format!(
            r#"{{"type":"usage","id":"{id}-1","account":"u-{id}","at":"{at}","category":"instance","amount":"{spend}","currency":"USD"}}"#
        ),
        format!(
            r#"{{"type":"payout_method","account":"{id}","rail":"stripe","destination":"{destination}"}}"#
        ),
    ]
}

async fn withdraw(store: &Store, who: &str, amount: &str) -> Result<PayoutView> {
    let request = WithdrawalRequest {
        account: AccountId::parse(who)?,
        program: "vast".parse()?,
        rail: Rail::Stripe,
        amount: Money::parse(amount, Currency::Usd, 2)?,
        idempotency_key: IdempotencyKey::parse(&format!("demo-{who}-1"))?,
    };
    Ok(store.create_withdrawal(&request).await?.payout)
}

/// Prints a held payout's open flags; returns their rules' codes.
async fn show_flags(store: &Store, id: &PayoutId) -> Result<Vec<&'static str>> {
    let detail = store.payout(id.as_str()).await?;
    let mut rules = Vec::new();
    for f in detail.flags.iter().filter(|f| f.cleared_at.is_none()) {
        outln!("    held ({}): {}", f.rule, f.evidence);
        rules.push(f.rule.code());
    }
    Ok(rules)
}

/// Vast's preset with the shared-destination rule on: two payees paid into one Stripe
/// account, one withdraws, the payout is held with the other account as evidence, and an
/// operator approves it (it is then queued for the worker).
pub(super) async fn review(dir: &std::path::Path, step: &dyn Fn(&str)) -> Result<bool> {
    step("Review queue: Vast's terms with [program.review] shared_destination = true");
    let text = format!(
        "{}\n[program.review]\nshared_destination = true\n",
        payouts::domain::program::config::PRESETS[0].1
    );
    let programs = ProgramSet::from_toml("vast reviewing shared destinations", &text, &|_| None)?;
    let store = Store::open_sqlite(&dir.join("review.db"), Arc::new(programs)).await?;
    let mut records = referrer("ref-quinn", "US", "1000.00", "acct_1Family");
    records.extend(referrer("ref-rosa", "US", "1000.00", "acct_1Family"));
    ingest_lines(&store, &records).await?;
    outln!("  ref-quinn and ref-rosa both pay out to Stripe account acct_1Family");
    let payout = withdraw(&store, "ref-quinn", "22.50").await?;
    outln!(
        "  ref-quinn withdraws 22.50 USD: payout {} is {}",
        payout.id,
        payout.status
    );
    let rules = show_flags(&store, &payout.id).await?;
    let request = ActionRequest {
        action: Action::Approve,
        reason: "sisters sharing one household account; support verified both".into(),
        actor: "ops-demo".into(),
    };
    outln!("  `payouts review approve {} --reason ...`", payout.id);
    let acted = store.operator_act(&payout.id, &request).await?;
    outln!("    {} -> {}: {}", acted.from, acted.to, acted.summary);
    let ok = payout.status == PayoutStatus::Held
        && rules == ["shared_destination"]
        && acted.to == PayoutStatus::Queued;
    if !ok {
        outln!("  MISMATCH: expected a payout held for a shared destination, then queued");
    }
    store.close().await;
    Ok(ok)
}

/// The tax gate on (the shipped thresholds: 2,000.00 USD for 2026): a US payee with no W-9
/// asks for 2,100.00 and is held; the W-9 arrives and the payout is released.
pub(super) async fn tax_gate(dir: &std::path::Path, step: &dyn Fn(&str)) -> Result<bool> {
    step("Tax gate: PAYOUTS_TAX_GATE=1, a US payee without a W-9 on file");
    let programs = ProgramSet::from_toml(
        "vast",
        payouts::domain::program::config::PRESETS[0].1,
        &|_| None,
    )?;
    let rules = TaxRules {
        gate: true,
        ..TaxRules::default()
    };
    let store = Store::open_sqlite(&dir.join("tax.db"), Arc::new(programs))
        .await?
        .with_tax_rules(rules);
    ingest_lines(&store, &referrer("ref-sam", "US", "100000.00", "acct_1Sam")).await?;
    let payout = withdraw(&store, "ref-sam", "2100.00").await?;
    outln!(
        "  ref-sam (US, no W-9) withdraws 2100.00 USD: payout {} is {}",
        payout.id,
        payout.status
    );
    let rules = show_flags(&store, &payout.id).await?;
    let form = r#"{"type":"tax_profile","account":"ref-sam","status":"w9","country":"US","tax_id_last4":"4321","received_at":"2026-02-01T00:00:00Z"}"#;
    outln!("  the platform sends ref-sam's W-9 (only the last 4 digits of the tax id are kept)");
    let report = ingest_lines(&store, &[form.to_string()]).await?;
    let now = store.payout(payout.id.as_str()).await?;
    outln!(
        "    held payouts released: {}; payout {} is {}: {}",
        report.payouts_released,
        payout.id,
        now.payout.status,
        now.status_reason.as_deref().unwrap_or("")
    );
    let ok = rules == ["w9_missing"]
        && report.payouts_released == 1
        && now.payout.status == PayoutStatus::Queued;
    if !ok {
        outln!("  MISMATCH: expected a payout held for a W-9, released when it arrived");
    }
    store.close().await;
    Ok(ok)
}
