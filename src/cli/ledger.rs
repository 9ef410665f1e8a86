//! `payouts ledger trial-balance` and `payouts ledger journal`: the ledger as accounting
//! exports finance can load into their books, rounded to the cent and balanced.
//!
//! Which transactions count at a date is decided in `storage/accounting.rs` (posted ones, from
//! when they took effect; pending holds only as a memo); the chart of accounts and the rounding
//! are in `domain/accounting.rs`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use futures::TryStreamExt;
use payouts::domain::accounting::{
    Totals, csv_amount, debit_credit, end_of_day, gl_account, parse_day, round_balanced,
    start_of_day,
};
use payouts::domain::ledger::Book;
use payouts::domain::money::Money;
use payouts::storage::{BookBalance, Store};
use serde::Serialize;

#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Every account's balance at the end of a day (UTC), debits and credits to the cent,
    /// with totals per currency. Payout holds still pending then are listed apart, as a memo.
    TrialBalance {
        /// The day, YYYY-MM-DD: transactions posted by the end of it (UTC) count.
        #[arg(long)]
        at: String,
        /// Write CSV to this file (`-` for standard output) instead of printing a table:
        /// account_code,account_name,holder,program,rail,currency,debit,credit,status.
        #[arg(long, conflicts_with = "json")]
        csv: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The journal entries posted in a period as CSV, one row per line, every entry balanced
    /// in each currency: entry_id,date,kind,status,account_code,account_name,holder,program,
    /// rail,currency,debit,credit,memo. A summary goes to standard error.
    Journal {
        /// First day of the period, YYYY-MM-DD (UTC), included.
        #[arg(long)]
        from: String,
        /// Last day of the period, YYYY-MM-DD (UTC), included.
        #[arg(long)]
        to: String,
        /// Write the CSV to this file; standard output by default.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
}

pub async fn run(store: &Store, command: LedgerCommand) -> Result<i32> {
    match command {
        LedgerCommand::TrialBalance { at, csv, json } => {
            trial_balance(store, day("--at", &at)?, csv.as_deref(), json).await
        }
        LedgerCommand::Journal { from, to, csv } => {
            let (from, to) = (day("--from", &from)?, day("--to", &to)?);
            if from > to {
                bail!("--from {from} is after --to {to}: the period would be empty");
            }
            journal(store, from, to, csv.as_deref()).await
        }
    }
}

fn day(flag: &str, value: &str) -> Result<NaiveDate> {
    parse_day(value).with_context(|| flag.to_string())
}

/// Standard output for `-`, else the file (created or truncated).
fn output(path: &Path) -> Result<Box<dyn Write>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdout().lock()));
    }
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(Box::new(BufWriter::new(file)))
}

/// One trial balance row, as printed, written and serialised.
#[derive(Debug, Serialize)]
struct TbRow {
    account_code: String,
    account_name: String,
    holder: Option<String>,
    program: Option<String>,
    rail: Option<String>,
    currency: String,
    debit: String,
    credit: String,
    /// posted, or pending for the memo rows.
    status: &'static str,
    /// The signed balance at full precision (positive: credit), before rounding.
    exact: String,
}

impl TbRow {
    fn new(balance: &BookBalance, rounded: &Money, status: &'static str) -> TbRow {
        let account = gl_account(&balance.book);
        let dc = debit_credit(*rounded);
        let (holder, program, rail) = parts(&balance.book);
        TbRow {
            account_code: account.code.to_string(),
            account_name: account.name,
            holder,
            program,
            rail,
            currency: rounded.currency().code().to_string(),
            debit: csv_amount(&dc.debit),
            credit: csv_amount(&dc.credit),
            status,
            exact: balance.balance.amount().to_string(),
        }
    }

    fn csv(&self) -> [&str; 9] {
        [
            &self.account_code,
            &self.account_name,
            self.holder.as_deref().unwrap_or(""),
            self.program.as_deref().unwrap_or(""),
            self.rail.as_deref().unwrap_or(""),
            &self.currency,
            &self.debit,
            &self.credit,
            self.status,
        ]
    }
}

fn parts(book: &Book) -> (Option<String>, Option<String>, Option<String>) {
    (
        book.holder().map(ToString::to_string),
        book.program().map(ToString::to_string),
        book.rail().map(|r| r.as_str().to_string()),
    )
}

#[derive(Debug, Serialize)]
struct CurrencyTotal {
    currency: String,
    debit: String,
    credit: String,
    balanced: bool,
}

fn currency_totals(totals: &Totals) -> Vec<CurrencyTotal> {
    totals
        .iter()
        .map(|(currency, dc)| CurrencyTotal {
            currency: currency.code().to_string(),
            debit: csv_amount(&dc.debit),
            credit: csv_amount(&dc.credit),
            balanced: dc.debit == dc.credit,
        })
        .collect()
}

#[derive(Debug, Serialize)]
struct TrialBalanceReport {
    /// The day, and the exclusive instant it ends at.
    at: NaiveDate,
    until: DateTime<Utc>,
    accounts: Vec<TbRow>,
    totals: Vec<CurrencyTotal>,
    /// Debits equal credits in every currency, to the cent.
    balanced: bool,
    pending: PendingMemo,
}

#[derive(Debug, Serialize)]
struct PendingMemo {
    /// Payout holds pending at `until`: not final, so not in the totals.
    holds: i64,
    accounts: Vec<TbRow>,
}

async fn trial_balance(
    store: &Store,
    at: NaiveDate,
    csv: Option<&Path>,
    json: bool,
) -> Result<i32> {
    let until = end_of_day(at);
    let tb = store.trial_balance(until).await?;
    let exact_sums = tb.posted.iter().fold(Totals::default(), |mut t, b| {
        t.add(&b.balance);
        t
    });
    if !exact_sums.is_balanced() {
        bail!(
            "the ledger does not balance at {until}: run `payouts ledger-check` (totals {:?})",
            currency_totals(&exact_sums)
        );
    }
    let rounded = round_balanced(&tb.posted.iter().map(|b| b.balance).collect::<Vec<_>>())?;
    let mut totals = Totals::default();
    let mut accounts = Vec::with_capacity(rounded.len());
    for (balance, r) in tb.posted.iter().zip(&rounded) {
        totals.add(r);
        accounts.push(TbRow::new(balance, r, "posted"));
    }
    let pending_rounded =
        round_balanced(&tb.pending.iter().map(|b| b.balance).collect::<Vec<_>>())?;
    let pending: Vec<TbRow> = tb
        .pending
        .iter()
        .zip(&pending_rounded)
        .map(|(b, r)| TbRow::new(b, r, "pending"))
        .collect();
    let report = TrialBalanceReport {
        at,
        until,
        balanced: totals.is_balanced(),
        totals: currency_totals(&totals),
        accounts,
        pending: PendingMemo {
            holds: tb.pending_holds,
            accounts: pending,
        },
    };

    if let Some(path) = csv {
        let mut w = csv::Writer::from_writer(output(path)?);
        w.write_record([
            "account_code",
            "account_name",
            "holder",
            "program",
            "rail",
            "currency",
            "debit",
            "credit",
            "status",
        ])?;
        for row in report.accounts.iter().chain(&report.pending.accounts) {
            w.write_record(row.csv())?;
        }
        for t in &report.totals {
            let name = format!("Total {} (posted)", t.currency);
            w.write_record([
                "TOTAL",
                name.as_str(),
                "",
                "",
                "",
                &t.currency,
                &t.debit,
                &t.credit,
                "posted",
            ])?;
        }
        w.flush()?;
        eprint!("{}", summary_lines(&report));
    } else if json {
        super::print_json(&report)?;
    } else {
        out!("{}", render_trial_balance(&report));
    }
    Ok(if report.balanced { 0 } else { 1 })
}

/// Totals per currency and the verdict, in words.
fn summary_lines(report: &TrialBalanceReport) -> String {
    let mut out = String::new();
    if report.totals.is_empty() {
        out.push_str("no posted transactions by then\n");
    }
    for t in &report.totals {
        out.push_str(&format!(
            "{}: debits {} {} credits {}\n",
            t.currency,
            t.debit,
            if t.balanced { "=" } else { "!=" },
            t.credit
        ));
    }
    out.push_str(if report.balanced {
        "debits = credits in every currency: balanced\n"
    } else {
        "NOT BALANCED\n"
    });
    if report.pending.holds > 0 {
        out.push_str(&format!(
            "memo: {} payout hold(s) pending then, not in the totals\n",
            report.pending.holds
        ));
    }
    out
}

/// The table shows only the side a balance is on (both when it rounds to zero).
fn sides(row: &TbRow) -> [String; 2] {
    let zero = |a: &str| a.chars().all(|c| c == '0' || c == '.');
    match (zero(&row.debit), zero(&row.credit)) {
        (true, false) => [String::new(), row.credit.clone()],
        (false, true) => [row.debit.clone(), String::new()],
        _ => [row.debit.clone(), row.credit.clone()],
    }
}

fn render_trial_balance(report: &TrialBalanceReport) -> String {
    let header = ["code", "account", "currency", "debit", "credit"];
    let rows = |rows: &[TbRow]| -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| {
                let [debit, credit] = sides(r);
                vec![
                    r.account_code.clone(),
                    r.account_name.clone(),
                    r.currency.clone(),
                    debit,
                    credit,
                ]
            })
            .collect()
    };
    let mut body = rows(&report.accounts);
    for t in &report.totals {
        body.push(vec![
            "TOTAL".into(),
            String::new(),
            t.currency.clone(),
            t.debit.clone(),
            t.credit.clone(),
        ]);
    }
    let mut out = format!(
        "Trial balance at the end of {} (UTC): posted transactions effective before {}\n\n",
        report.at,
        report.until.to_rfc3339()
    );
    out.push_str(&super::render::table(&header, &body));
    out.push_str("\n\n");
    out.push_str(&summary_lines(report));
    if !report.pending.accounts.is_empty() {
        out.push_str("\nMemo: payout holds pending then (not final; not in the totals)\n");
        out.push_str(&super::render::table(
            &header,
            &rows(&report.pending.accounts),
        ));
        out.push('\n');
    }
    out
}

const JOURNAL_HEADER: [&str; 13] = [
    "entry_id",
    "date",
    "kind",
    "status",
    "account_code",
    "account_name",
    "holder",
    "program",
    "rail",
    "currency",
    "debit",
    "credit",
    "memo",
];

async fn journal(store: &Store, from: NaiveDate, to: NaiveDate, csv: Option<&Path>) -> Result<i32> {
    let (start, until) = (start_of_day(from), end_of_day(to));
    let mut w = csv::Writer::from_writer(output(csv.unwrap_or(Path::new("-")))?);
    w.write_record(JOURNAL_HEADER)?;
    let mut totals = Totals::default();
    let (mut entries, mut lines) = (0u64, 0u64);
    let mut entries_stream = store.journal(start, until);
    while let Some(entry) = entries_stream.try_next().await? {
        let rounded = round_balanced(&entry.lines.iter().map(|l| l.amount).collect::<Vec<_>>())?;
        let mut own = Totals::default();
        rounded.iter().for_each(|r| own.add(r));
        if !own.is_balanced() {
            bail!(
                "ledger transaction {} does not balance: run `payouts ledger-check`",
                entry.id
            );
        }
        let date = entry.effective_at.format("%Y-%m-%d").to_string();
        for (line, r) in entry.lines.iter().zip(&rounded) {
            totals.add(r);
            let account = gl_account(&line.book);
            let dc = debit_credit(*r);
            let (holder, program, rail) = parts(&line.book);
            w.write_record([
                entry.id.as_str(),
                &date,
                &entry.kind,
                "posted",
                account.code,
                &account.name,
                holder.as_deref().unwrap_or(""),
                program.as_deref().unwrap_or(""),
                rail.as_deref().unwrap_or(""),
                r.currency().code(),
                &csv_amount(&dc.debit),
                &csv_amount(&dc.credit),
                &entry.memo,
            ])?;
            lines += 1;
        }
        entries += 1;
    }
    drop(entries_stream);
    w.flush()?;

    let mut summary =
        format!("journal {from} to {to} (UTC, both included): {entries} entries, {lines} lines\n");
    for t in currency_totals(&totals) {
        summary.push_str(&format!(
            "{}: debits {} {} credits {}\n",
            t.currency,
            t.debit,
            if t.balanced { "=" } else { "!=" },
            t.credit
        ));
    }
    summary.push_str(if totals.is_balanced() {
        "every entry balances in each currency: balanced\n"
    } else {
        "NOT BALANCED\n"
    });
    let held = store.trial_balance(until).await?.pending_holds;
    if held > 0 {
        summary.push_str(&format!(
            "memo: {held} payout hold(s) were pending at the end of the period; they post when \
             the provider confirms, in the period they are confirmed in\n"
        ));
    }
    eprint!("{summary}");
    Ok(if totals.is_balanced() { 0 } else { 1 })
}
