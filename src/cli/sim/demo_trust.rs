//! The demo's payee-trust chapter: settings the presets leave off, each turned on in a
//! database of its own so the main flow's figures stay those of the published terms.

use std::sync::Arc;

use anyhow::Result;
use chrono::{Duration, SecondsFormat, SubsecRound};

use crate::cli::render;
use payouts::domain::ids::AccountId;
use payouts::domain::money::{Currency, Money};
use payouts::domain::program::ProgramSet;
use payouts::domain::statement::Month;
use payouts::storage::Store;

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
    let input = std::io::Cursor::new(records.join("\n").into_bytes());
    let report = payouts::app::ingest::ingest(&store, input, true).await?;
    anyhow::ensure!(
        report.rejected.is_empty(),
        "the holding-period records were rejected: {:?}",
        report.rejected
    );
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
