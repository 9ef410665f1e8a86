//! `payouts balance` (now, or as it stood at an instant) and `payouts statement`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use maud::html;
use payouts::domain::ids::AccountId;
use payouts::domain::statement::{BalanceAt, BalancesAt, Month, Statement, parse_instant};
use payouts::storage::Store;

use super::{print_json, render};

#[derive(Debug, clap::Args)]
pub struct BalanceArgs {
    account: String,
    /// The balance as it stood at this instant: RFC 3339, or a date (its start, UTC).
    #[arg(long, value_name = "WHEN")]
    at: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct StatementArgs {
    account: String,
    /// The month, YYYY-MM (UTC).
    #[arg(long)]
    month: String,
    #[arg(long, conflicts_with_all = ["csv", "html"])]
    json: bool,
    /// Write the movements as CSV to this file.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Write the statement as an HTML page to this file.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

pub async fn balance(store: &Store, args: BalanceArgs) -> Result<i32> {
    let account = AccountId::parse(&args.account)?;
    let Some(at) = args.at.as_deref() else {
        let balance = store.balance(&account).await?;
        if args.json {
            print_json(&balance)?;
        } else {
            out!("{}", render::balance(&balance));
            // Money on a paused rail waits; say so where people look for their money.
            for pause in store.rail_pauses().await? {
                outln!("note: {}", pause.note().replacen("waiting: ", "", 1));
            }
        }
        return Ok(0);
    };
    let at = parse_instant(at)?;
    let programs = store.balance_at(&account, at).await?;
    if args.json {
        print_json(&BalancesAt {
            account,
            at,
            programs,
        })?;
    } else {
        out!("{}", balance_at_text(&account, at, &programs));
    }
    Ok(0)
}

pub async fn statement(store: &Store, args: StatementArgs) -> Result<i32> {
    let account = AccountId::parse(&args.account)?;
    let month = Month::parse(&args.month)?;
    let statement = store.statement(&account, month).await?;
    if args.json {
        print_json(&statement)?;
        return Ok(0);
    }
    if let Some(path) = &args.csv {
        std::fs::write(path, statement_csv(&statement))
            .with_context(|| format!("writing {}", path.display()))?;
        outln!("wrote {}", path.display());
    }
    if let Some(path) = &args.html {
        std::fs::write(path, statement_html(&statement))
            .with_context(|| format!("writing {}", path.display()))?;
        outln!("wrote {}", path.display());
    }
    if args.csv.is_none() && args.html.is_none() {
        out!("{}", statement_text(&statement));
    }
    Ok(0)
}

fn balance_at_text(account: &AccountId, at: DateTime<Utc>, balances: &[BalanceAt]) -> String {
    let mut out = format!("Account {account} as of {}\n", at.to_rfc3339());
    if balances.is_empty() {
        out.push_str("  no earnings by then\n");
    }
    for b in balances {
        out.push_str(&format!(
            "  {} ({}):\n    earned          {}\n    cashable        {}\n    platform credit {}\n    withdrawn       {}\n    pending (held)  {}\n    available       {}\n",
            b.program, b.currency, b.earned, b.cashable, b.credit, b.withdrawn, b.pending, b.available
        ));
    }
    out
}

pub(crate) fn statement_text(s: &Statement) -> String {
    let mut out = format!(
        "Statement of {} for {} ({} to {})\n",
        s.account,
        s.month,
        s.from.to_rfc3339(),
        s.to.to_rfc3339()
    );
    if s.programs.is_empty() {
        out.push_str("  nothing earned or paid\n");
    }
    for p in &s.programs {
        out.push_str(&format!("  {} ({})\n", p.program, p.currency));
        out.push_str(&format!("    opening balance     {}\n", p.opening));
        for e in &p.earnings {
            let label = format!("earned ({})", e.stream);
            out.push_str(&format!("    {label:<19} {}\n", e.amount));
        }
        for (what, amount) in [
            ("clawbacks", &p.clawbacks),
            ("payouts", &p.payouts),
            ("returns", &p.returns),
            ("corrections", &p.corrections),
        ] {
            if !amount.is_zero() {
                out.push_str(&format!("    {what:<19} {amount}\n"));
            }
        }
        out.push_str(&format!("    closing balance     {}\n", p.closing));
        if !p.pending_at_close.is_zero() {
            out.push_str(&format!(
                "    (of which held by payouts in flight: {})\n",
                p.pending_at_close
            ));
        }
        out.push_str(&format!(
            "    platform credit     {} -> {}\n",
            p.credit_opening, p.credit_closing
        ));
        for m in &p.movements {
            let payout = match (&m.rail, &m.reference) {
                (Some(rail), Some(r)) => format!(" via {rail} ({r})"),
                (Some(rail), None) => format!(" via {rail}"),
                _ => String::new(),
            };
            out.push_str(&format!(
                "      {}  {:?}{}  {}{payout}\n",
                m.at.format("%Y-%m-%d %H:%M"),
                m.kind,
                m.stream
                    .as_deref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default(),
                m.amount
            ));
        }
    }
    out
}

/// One line per movement, with the program's opening and closing balances as lines of their
/// own, so a spreadsheet's sum of `amount` per program is its closing balance.
fn statement_csv(s: &Statement) -> String {
    let mut out = String::from(
        "account,month,program,currency,at,kind,stream,amount,credit,payout_id,rail,reference,transaction\n",
    );
    let field = |v: &str| {
        if v.contains([',', '"', '\n']) {
            format!("\"{}\"", v.replace('"', "\"\""))
        } else {
            v.to_string()
        }
    };
    for p in &s.programs {
        let mut line =
            |at: &DateTime<Utc>, kind: &str, m: &payouts::domain::statement::Movement| {
                let cells = [
                    s.account.to_string(),
                    s.month.clone(),
                    p.program.to_string(),
                    p.currency.code().to_string(),
                    at.to_rfc3339(),
                    kind.to_string(),
                    m.stream.clone().unwrap_or_default(),
                    m.amount.amount().to_string(),
                    m.credit.amount().to_string(),
                    m.payout_id.clone().unwrap_or_default(),
                    m.rail.clone().unwrap_or_default(),
                    m.reference.clone().unwrap_or_default(),
                    m.transaction.clone(),
                ];
                let cells: Vec<String> = cells.iter().map(|c| field(c)).collect();
                out.push_str(&cells.join(","));
                out.push('\n');
            };
        let bare = |amount| payouts::domain::statement::Movement {
            transaction: String::new(),
            at: s.from,
            kind: payouts::domain::statement::MovementKind::Earning,
            stream: None,
            amount,
            credit: payouts::domain::money::Money::zero(p.currency),
            payout_id: None,
            rail: None,
            reference: None,
        };
        line(&s.from, "opening_balance", &bare(p.opening));
        for m in &p.movements {
            let kind = serde_json::to_value(m.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            line(&m.at, &kind, m);
        }
        let closing = bare(p.closing);
        line(&s.to, "closing_balance", &closing);
    }
    out
}

fn statement_html(s: &Statement) -> String {
    html! {
        (maud::DOCTYPE)
        html {
            head { meta charset="utf-8"; title { "Statement " (s.account.as_str()) " " (s.month) } }
            body {
                h1 { "Statement of " (s.account.as_str()) " for " (s.month) }
                @for p in &s.programs {
                    h2 { (p.program.as_str()) " (" (p.currency.code()) ")" }
                    table {
                        tr { th { "Date" } th { "What" } th { "Amount" } th { "Reference" } }
                        tr { td { (s.from.format("%Y-%m-%d")) } td { "Opening balance" } td { (p.opening.to_string()) } td {} }
                        @for m in &p.movements {
                            tr {
                                td { (m.at.format("%Y-%m-%d %H:%M")) }
                                td { (format!("{:?}", m.kind)) @if let Some(st) = &m.stream { " (" (st) ")" } }
                                td { (m.amount.to_string()) }
                                td { (m.rail.clone().unwrap_or_default()) " " (m.reference.clone().unwrap_or_default()) }
                            }
                        }
                        tr { td { (s.to.format("%Y-%m-%d")) } td { "Closing balance" } td { (p.closing.to_string()) } td {} }
                    }
                    p { "Platform credit: " (p.credit_opening.to_string()) " at the start, " (p.credit_closing.to_string()) " at the end." }
                }
            }
        }
    }
    .into_string()
}
