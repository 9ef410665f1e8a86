//! `payouts tax report`: cash paid per payee, tax year and rail, the forms on file, and who is
//! over the reporting threshold (1099-NEC candidates), balanced against the ledger.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use payouts::domain::tax::{TaxReport, TaxThresholds};
use payouts::storage::Store;

use super::print_json;

#[derive(Debug, clap::Subcommand)]
pub enum TaxCommand {
    /// The year-end report. Thresholds: $600 for 2025, $2,000 from 2026, or
    /// PAYOUTS_TAX_THRESHOLDS (e.g. "2025=600,2026=2000").
    Report {
        /// The tax year (calendar year, UTC).
        #[arg(long)]
        year: i32,
        /// Write one row per payee and rail as CSV to this file.
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(store: &Store, command: TaxCommand) -> Result<i32> {
    let TaxCommand::Report { year, csv, json } = command;
    if !(1970..=9998).contains(&year) {
        bail!("{year} is not a tax year this ledger can hold");
    }
    let thresholds = match std::env::var("PAYOUTS_TAX_THRESHOLDS") {
        Ok(text) => TaxThresholds::parse(&text)
            .map_err(|e| anyhow::anyhow!("PAYOUTS_TAX_THRESHOLDS: {e}"))?,
        Err(_) => TaxThresholds::default(),
    };
    let report = store.tax_report(year, &thresholds).await?;
    if let Some(path) = &csv {
        std::fs::write(path, report_csv(&report))
            .with_context(|| format!("writing {}", path.display()))?;
        outln!("wrote {}", path.display());
    }
    if json {
        print_json(&report)?;
    } else if csv.is_none() {
        out!("{}", report_text(&report));
    }
    // A report that does not balance against the ledger is not one to file.
    Ok(if report.balanced() { 0 } else { 1 })
}

fn report_text(r: &TaxReport) -> String {
    let mut out = format!(
        "Tax year {}: reporting threshold {} (cash paid to a US person above it: 1099-NEC)\n",
        r.year, r.threshold
    );
    if r.payees.is_empty() {
        out.push_str("  no cash paid this year\n");
    }
    for p in &r.payees {
        let rails: Vec<String> = p
            .by_rail
            .iter()
            .map(|c| format!("{} {}", c.rail.as_deref().unwrap_or("none"), c.amount))
            .collect();
        let verdict = match (p.reportable, p.form_missing) {
            (true, true) => "1099-NEC candidate, NO W-9 ON FILE",
            (true, false) => "1099-NEC candidate",
            (false, _) => "below threshold or not a US person",
        };
        out.push_str(&format!(
            "  {} ({}, form {}{}): {} USD over all rails [{}]: {verdict}\n",
            p.account,
            p.country.as_deref().unwrap_or("country unknown"),
            p.form.code(),
            p.tin_last4
                .as_deref()
                .map(|d| format!(", tax id ending {d}"))
                .unwrap_or_default(),
            p.paid_usd.amount(),
            rails.join(", ")
        ));
    }
    for t in &r.totals {
        out.push_str(&format!(
            "  total {}: report {}, ledger paid out {}: {}\n",
            t.currency,
            t.report,
            t.ledger,
            if t.balanced {
                "balanced"
            } else {
                "NOT BALANCED"
            }
        ));
    }
    out
}

fn report_csv(r: &TaxReport) -> String {
    let mut out = String::from(
        "year,account,country,form,tax_id_last4,rail,currency,amount,paid_usd_all_rails,threshold_usd,reportable,form_missing\n",
    );
    for p in &r.payees {
        for c in &p.by_rail {
            let cells = [
                r.year.to_string(),
                p.account.to_string(),
                p.country.clone().unwrap_or_default(),
                p.form.code().to_string(),
                p.tin_last4.clone().unwrap_or_default(),
                c.rail.clone().unwrap_or_default(),
                c.amount.currency().code().to_string(),
                c.amount.amount().to_string(),
                p.paid_usd.amount().to_string(),
                r.threshold.amount().to_string(),
                p.reportable.to_string(),
                p.form_missing.to_string(),
            ];
            out.push_str(&cells.join(","));
            out.push('\n');
        }
    }
    out
}
