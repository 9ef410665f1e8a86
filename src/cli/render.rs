//! Plain-text rendering for people: aligned tables and balance summaries.

use payouts::domain::program::{ProgramKind, ProgramSet, Window};
use payouts::storage::payout_views::{PayoutDetail, PayoutView};
use payouts::storage::template_views::TemplateReport;
use payouts::storage::{AccountBalance, DuplicateEvidence, LedgerCheck};

/// Renders rows under a header, each column as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header.to_vec())];
    out.push(line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for row in rows {
        out.push(line(row.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}

pub fn balance(b: &AccountBalance) -> String {
    let mut out = format!("Account {}", b.account);
    let mut notes = Vec::new();
    if b.has_rented {
        notes.push("has rented");
    }
    if b.hosted_machines {
        notes.push("has hosted machines");
    }
    if !notes.is_empty() {
        out.push_str(&format!(" ({})", notes.join(", ")));
    }
    out.push('\n');
    if b.programs.is_empty() {
        out.push_str("  no referral earnings yet\n");
    }
    for p in &b.programs {
        let what = match (p.kind, p.reward) {
            (Some(kind), Some(reward)) => format!(
                "{kind}, pays {}",
                match reward {
                    payouts::domain::program::RewardKind::Credit => "credit",
                    payouts::domain::program::RewardKind::Cash => "cash",
                }
            ),
            _ => "not configured".to_string(),
        };
        out.push_str(&format!(
            "  {} ({what}, {}):\n    earned          {}\n    cashable        {}\n    platform credit {}\n    withdrawn       {}\n    pending (held)  {}\n    available now   {}\n    payable now     {}\n    lifetime spend  {}\n    eligible        {}\n",
            p.program,
            p.currency,
            p.earned,
            p.cashable,
            p.credit,
            p.withdrawn,
            p.pending,
            p.available,
            p.payable_now,
            p.lifetime_spend,
            match &p.reason {
                None => "yes".to_string(),
                Some(r) => format!("no: {r}"),
            }
        ));
        if !p.maturing.is_zero() {
            out.push_str(&format!("    maturing        {}", p.maturing));
            if let Some(next) = p.next_matures_at {
                out.push_str(&format!(" (next part {})", next.to_rfc3339()));
            }
            out.push('\n');
            for part in &p.maturing_parts {
                out.push_str(&format!("      on {}   {}\n", part.on, part.amount));
            }
        }
    }
    for a in &b.affiliate {
        out.push_str(&format!(
            "  affiliate {} ({} paying referred users of {} needed): {}\n",
            a.program, a.required, a.referral_program, a.note
        ));
    }
    for r in &b.non_earning_referrals {
        out.push_str(&format!(
            "  referral of {} ({}) earns nothing: {}\n",
            r.referred, r.program, r.reason
        ));
    }
    for h in &b.held_payouts {
        out.push_str(&format!(
            "  payout {} of {} ({}) is held:\n",
            h.payout, h.amount, h.program
        ));
        for r in &h.reasons {
            out.push_str(&format!("      {r}\n"));
        }
    }
    out
}

pub fn payouts(list: &[PayoutView]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                p.id.to_string(),
                p.account.to_string(),
                p.amount.to_string(),
                p.rail.to_string(),
                p.status.to_string(),
                p.attempts.to_string(),
                p.provider_ref.clone().unwrap_or_default(),
                p.provider_status.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "payout",
            "account",
            "amount",
            "rail",
            "status",
            "attempts",
            "provider ref",
            "provider status",
        ],
        &rows,
    )
}

/// Possible duplicate payments, one row per provider object.
pub fn duplicates(list: &[DuplicateEvidence]) -> String {
    if list.is_empty() {
        return "no provider object named a payout without being its payment".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            vec![
                d.payout_id.clone(),
                d.rail.clone(),
                d.object_ref.clone(),
                format!("{} ({})", d.state, d.provider_status),
                d.first_seen_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                d.last_seen_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                d.booked.clone().unwrap_or_else(|| "open".into()),
            ]
        })
        .collect();
    table(
        &[
            "payout",
            "rail",
            "other object",
            "last state",
            "first seen",
            "last seen",
            "booked",
        ],
        &rows,
    )
}

pub fn payout_detail(d: &PayoutDetail) -> String {
    let p = &d.payout;
    let mut out = format!(
        "Payout {} for {}: {} via {} to {}\n  status: {} after {} attempt(s){}\n",
        p.id,
        p.account,
        p.amount,
        p.rail,
        p.destination,
        p.status,
        p.attempts,
        match (&p.provider_ref, &p.provider_status) {
            (Some(r), Some(s)) => format!(", provider ref {r} ({s})"),
            (Some(r), None) => format!(", provider ref {r}"),
            _ => String::new(),
        }
    );
    if let Some(e) = &p.last_error {
        out.push_str(&format!("  last error: {e}\n"));
    }
    out.push_str("  history:\n");
    for e in &d.events {
        out.push_str(&format!(
            "    {}  {} -> {} [{}]: {}\n",
            e.at.format("%Y-%m-%d %H:%M:%S%.3f"),
            e.from.as_deref().unwrap_or("-"),
            e.to,
            e.source.as_deref().unwrap_or("-"),
            e.reason
        ));
    }
    out
}

pub fn ledger_check(check: &LedgerCheck) -> String {
    let mut out = format!(
        "{} transactions, {} postings: {}",
        check.transactions,
        check.postings,
        if check.is_ok() {
            "balanced; every hold matches its payout"
        } else {
            "PROBLEMS FOUND"
        }
    );
    for p in &check.problems {
        out.push_str(&format!("\n  - {p}"));
    }
    out
}

fn window(w: Window) -> String {
    match w {
        Window::Lifetime => "lifetime".into(),
        Window::Months(m) => format!("{m} months from signup"),
    }
}

fn rates(r: &payouts::domain::program::Rates) -> String {
    r.0.iter()
        .map(|(c, rate)| {
            format!(
                "{c} {}%",
                (*rate * rust_decimal::Decimal::ONE_HUNDRED).normalize()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The loaded programs' terms, one block each.
pub fn programs(set: &ProgramSet) -> String {
    let mut out = String::new();
    for p in set.iter() {
        out.push_str(&format!(
            "{} ({}, {}): {}\n",
            p.id,
            p.kind.code(),
            p.currency,
            p.name
        ));
        let cash = &p.cash_out;
        out.push_str(&format!(
            "  pays {}; cashable {}%{}{}\n",
            match p.reward {
                payouts::domain::program::RewardKind::Credit => "credit",
                payouts::domain::program::RewardKind::Cash => "cash",
            },
            (cash.cashable_fraction * rust_decimal::Decimal::ONE_HUNDRED).normalize(),
            if cash.rails.is_empty() {
                String::new()
            } else {
                format!(
                    " via {} (minimum {})",
                    cash.rails
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    cash.minimum_payout
                )
            },
            if cash.spend_gate {
                "; spend gate on"
            } else {
                ""
            }
        ));
        match &p.kind {
            ProgramKind::Referral(t) => {
                out.push_str(&format!("  {} for {}\n", rates(&t.rates), window(t.window)));
                for c in &t.cohorts {
                    out.push_str(&format!(
                        "  cohort {}: referred before {}: {}\n",
                        c.name,
                        c.referred_before.to_rfc3339(),
                        window(c.window)
                    ));
                }
            }
            ProgramKind::Affiliate(t) => out.push_str(&format!(
                "  upgrades {} for referrers with {} paying referred users: {} for {}, then the referral terms\n",
                t.referral_program,
                t.min_paying_referrals,
                rates(&t.rates),
                window(t.window)
            )),
            ProgramKind::Creator(t) => out.push_str(&format!(
                "  {} of runs from a template with at least {} h of runtime ({})\n",
                rates(&t.rates),
                t.min_template_runtime_secs / 3600,
                if t.count_spend_before_threshold {
                    "earlier spend counts once reached"
                } else {
                    "spend before that does not count"
                }
            )),
            ProgramKind::Bonus(t) => out.push_str(&format!(
                "  once a referred user of {} spends {}: one draw of {} to {} each for the {} (mean {}, seed from {})\n",
                t.referral_program,
                t.spend_threshold,
                t.distribution.min(),
                t.distribution.max(),
                t.recipients.iter().map(|r| r.code()).collect::<Vec<_>>().join(" and "),
                t.distribution.mean().round_dp(2),
                t.seed_env
            )),
        }
    }
    out
}

/// Per-template referrals and creator earnings.
pub fn templates(report: &[TemplateReport]) -> String {
    if report.is_empty() {
        return "no templates yet\n".into();
    }
    let opt = |m: &Option<payouts::domain::money::Money>| {
        m.map(|m| m.to_string()).unwrap_or_else(|| "-".into())
    };
    let rows: Vec<Vec<String>> = report
        .iter()
        .map(|t| {
            vec![
                t.template.clone(),
                format!("{}/{}", t.qualified_referrals, t.referrals),
                opt(&t.referred_spend),
                opt(&t.referral_commission),
                t.creator.clone().unwrap_or_else(|| "-".into()),
                format!("{:.1} h", t.runtime_secs as f64 / 3600.0),
                opt(&t.creator_earned),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "template",
            "referrals (qualified/all)",
            "referred spend",
            "referral commission",
            "creator",
            "runtime",
            "creator earned",
        ],
        &rows,
    );
    out.push('\n');
    out
}

/// A payout run's report.
pub fn run_report(r: &payouts::domain::payout_run::RunReport) -> String {
    let mut out = format!(
        "payout run {}{}{}\n  considered {} payee balance(s): {} eligible, {} payout(s) created\n",
        r.period.as_str(),
        if r.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        },
        if r.already_ran {
            " (already ran: nothing new was created; the first run's figures)"
        } else {
            ""
        },
        r.considered,
        r.eligible,
        r.created
    );
    if r.held > 0 {
        out.push_str(&format!(
            "  held {} of them for review or a tax form (payouts review list)\n",
            r.held
        ));
    }
    for (why, n) in &r.skipped {
        out.push_str(&format!("  skipped {n}: {}\n", why.code()));
    }
    for p in &r.problems {
        out.push_str(&format!(
            "  cannot compute {} ({}, {}): {}\n",
            p.account, p.program, p.currency, p.reason
        ));
    }
    if !r.totals.is_empty() {
        let rows: Vec<Vec<String>> = r
            .totals
            .iter()
            .map(|t| {
                vec![
                    t.rail.to_string(),
                    t.currency.to_string(),
                    t.payouts.to_string(),
                    t.amount.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(&["rail", "currency", "payouts", "amount"], &rows));
        out.push('\n');
    }
    out
}

/// A prune's table: rows before, deleted (or that would be), after.
pub fn prune(report: &payouts::storage::PruneReport) -> String {
    let mut out = format!(
        "{:<24} {:<24} {:>5} {:>10} {:>10} {:>10}\n",
        "table",
        "what",
        "days",
        "before",
        if report.dry_run {
            "would go"
        } else {
            "deleted"
        },
        "after"
    );
    for t in &report.tables {
        out.push_str(&format!(
            "{:<24} {:<24} {:>5} {:>10} {:>10} {:>10}\n",
            t.table, t.what, t.days, t.before, t.deleted, t.after
        ));
    }
    out
}

/// Progress of a big ingest on standard error, after each chunk: a bar redrawn in place when
/// standard error is a terminal, otherwise a line per chunk. Silent for inputs of one chunk.
pub struct IngestProgress {
    size: Option<u64>,
    tty: bool,
    shown: std::sync::atomic::AtomicBool,
}

impl IngestProgress {
    pub fn new(size: Option<u64>) -> IngestProgress {
        use std::io::IsTerminal;
        IngestProgress {
            size,
            tty: std::io::stderr().is_terminal(),
            shown: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn show(&self, report: &payouts::ingest::IngestReport, bytes: u64) {
        // One chunk read everything: nothing to follow.
        let first = !self.shown.swap(true, std::sync::atomic::Ordering::Relaxed);
        if first && self.size.is_some_and(|size| bytes >= size) {
            return;
        }
        let lines = report.lines_read;
        let bad = report.rejected.len();
        match (self.size, self.tty) {
            (Some(size), true) if size > 0 => {
                let done = (bytes.min(size) * 40 / size) as usize;
                eprint!(
                    "\r[{}{}] {:>3}% {lines} lines",
                    "#".repeat(done),
                    " ".repeat(40 - done),
                    bytes.min(size) * 100 / size
                );
            }
            (_, true) => eprint!("\r{lines} lines read"),
            (_, false) => eprintln!("ingest: {lines} lines read, {bad} rejected so far"),
        }
    }

    /// Ends a bar drawn in place.
    pub fn done() {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            eprintln!();
        }
    }
}
