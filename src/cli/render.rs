//! Plain-text rendering for people: aligned tables and balance summaries.

use payouts::storage::payouts::{PayoutDetail, PayoutView};
use payouts::storage::{AccountBalance, LedgerCheck};

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
        out.push_str(&format!(
            "  {} ({}):\n    earned          {}\n    cashable        {}\n    platform credit {}\n    withdrawn       {}\n    pending (held)  {}\n    available now   {}\n    payable now     {}\n    lifetime spend  {}\n    eligible        {}\n",
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
    }
    for r in &b.non_earning_referrals {
        out.push_str(&format!(
            "  referral of {} ({}) earns nothing: {}\n",
            r.referred, r.program, r.reason
        ));
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
