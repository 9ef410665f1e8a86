//! A run and its exceptions as finance reads them: JSON for machines, CSV for spreadsheets,
//! and one self-contained HTML page (no scripts, no external assets) to read or mail.

use std::fmt::Write as _;

use serde::Serialize;

use crate::domain::reconcile::{Exception, ExceptionKind, Severity, explain};
use crate::storage::ReconRun;

/// An exception with its plain-language explanation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExplainedException {
    #[serde(flatten)]
    pub exception: Exception,
    pub explanation: String,
}

impl From<Exception> for ExplainedException {
    fn from(exception: Exception) -> Self {
        ExplainedException {
            explanation: explain(&exception),
            exception,
        }
    }
}

/// Everything one report shows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run: ReconRun,
    pub exceptions: Vec<ExplainedException>,
}

impl Report {
    pub fn new(run: ReconRun, exceptions: Vec<Exception>) -> Self {
        Report {
            run,
            exceptions: exceptions.into_iter().map(Into::into).collect(),
        }
    }
}

/// Columns of the exceptions CSV.
pub const CSV_COLUMNS: [&str; 19] = [
    "exception_id",
    "severity",
    "kind",
    "rail",
    "payout_id",
    "provider_record",
    "our_amount",
    "our_currency",
    "our_payee",
    "our_status",
    "provider_amount",
    "provider_currency",
    "provider_payee",
    "provider_status",
    "provider_at",
    "resolved_at",
    "resolved_by",
    "resolution_note",
    "explanation",
];

/// One row per exception, resolved ones included (with their note).
pub fn write_csv<W: std::io::Write>(report: &Report, out: W) -> Result<(), csv::Error> {
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(CSV_COLUMNS)?;
    for e in &report.exceptions {
        let x = &e.exception;
        let ours = x.ours.as_ref();
        let theirs = x.theirs.as_ref();
        let res = x.resolution.as_ref();
        csv.write_record([
            x.id.as_str(),
            x.severity.code(),
            x.kind.code(),
            x.rail.as_str(),
            x.payout_id.as_deref().unwrap_or(""),
            x.record_id.as_deref().unwrap_or(""),
            &ours.map(|s| s.amount.display_amount()).unwrap_or_default(),
            ours.map(|s| s.amount.currency().code()).unwrap_or(""),
            ours.map(|s| s.payee.as_str()).unwrap_or(""),
            ours.map(|s| s.status.as_str()).unwrap_or(""),
            &theirs
                .map(|s| s.amount.display_amount())
                .unwrap_or_default(),
            theirs.map(|s| s.amount.currency().code()).unwrap_or(""),
            theirs.map(|s| s.payee.as_str()).unwrap_or(""),
            theirs.map(|s| s.status.as_str()).unwrap_or(""),
            &theirs.map(|s| s.at.to_rfc3339()).unwrap_or_default(),
            &res.map(|r| r.at.to_rfc3339()).unwrap_or_default(),
            res.map(|r| r.by.as_str()).unwrap_or(""),
            res.map(|r| r.note.as_str()).unwrap_or(""),
            &e.explanation,
        ])?;
    }
    csv.flush()?;
    Ok(())
}

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;\
max-width:72rem;padding:0 1rem;color:#1d2430}h1{font-size:1.5rem;margin-bottom:.2rem}\
.sub{color:#5b6575;margin-top:0}table{border-collapse:collapse;width:100%;margin:1rem 0}\
th,td{border-bottom:1px solid #e3e6eb;padding:.4rem .6rem;text-align:left;vertical-align:top}\
th{background:#f5f7fa;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.ok{background:#e8f6ec;border:1px solid #9fd4ad;padding:.8rem 1rem;border-radius:6px}\
.bad{background:#fdecec;border:1px solid #f0a3a3;padding:.8rem 1rem;border-radius:6px}\
.card{border:1px solid #e3e6eb;border-radius:6px;padding:.8rem 1rem;margin:.8rem 0}\
.critical{border-left:6px solid #c62828}.high{border-left:6px solid #ef8f00}\
.resolved{opacity:.65;border-left:6px solid #6b7a8f}.tag{font-size:.8rem;font-weight:700;\
text-transform:uppercase;letter-spacing:.04em}code{font-size:.85rem}";

/// The report as one HTML page.
pub fn html(report: &Report) -> String {
    let run = &report.run;
    let mut page = String::new();
    html_heading(&mut page, run);
    html_verdict(&mut page, run);
    html_totals(&mut page, run);
    html_kinds(&mut page, run);
    if !report.exceptions.is_empty() {
        page.push_str("<h2>Exceptions</h2>");
    }
    for e in &report.exceptions {
        html_exception(&mut page, e);
    }
    page.push_str("</body></html>\n");
    page
}

// Writing to a String cannot fail; the results of `write!` below are ignored for that reason.

/// The page's head, title and what the run covered.
fn html_heading(page: &mut String, run: &ReconRun) {
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Reconciliation {period}</title><style>{STYLE}</style></head><body>\
         <h1>Payout reconciliation, {period}</h1>\
         <p class=\"sub\">Run <code>{id}</code> ({trigger}, {source}), rails {rails}; \
         started {started}; amount tolerance {tol} minor unit(s), date tolerance {hours} h.</p>",
        period = esc(&run.period().to_string()),
        id = esc(&run.id),
        trigger = run.trigger.code(),
        source = esc(&run.source),
        rails = esc(&run
            .rails
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")),
        started = run.started_at.format("%Y-%m-%d %H:%M UTC"),
        tol = run.amount_tolerance_minor,
        hours = run.date_tolerance_hours,
    );
}

/// Completed or not, and whether anything is open: the first thing a reader needs.
fn html_verdict(page: &mut String, run: &ReconRun) {
    let counts = &run.exceptions;
    if run.status != "completed" {
        let _ = write!(
            page,
            "<p class=\"bad\">This run did not complete ({}): {}</p>",
            esc(&run.status),
            esc(run.error.as_deref().unwrap_or("no reason recorded"))
        );
    } else if counts.open == 0 {
        let _ = write!(
            page,
            "<p class=\"ok\"><strong>Everything matched.</strong> Every provider record is one \
             of our payouts and every payout we sent is at the provider, with the same amount, \
             currency, payee and status{}.</p>",
            if counts.resolved > 0 {
                format!(" ({} earlier exception(s) resolved)", counts.resolved)
            } else {
                String::new()
            }
        );
    } else {
        let _ = write!(
            page,
            "<p class=\"bad\"><strong>{} open exception(s), {} critical.</strong> Critical \
             means money may have left twice or without a payout behind it: look today.</p>",
            counts.open, counts.open_critical
        );
    }
}

fn html_totals(page: &mut String, run: &ReconRun) {
    page.push_str(
        "<h2>Totals per rail and currency</h2><table><tr><th>Rail</th><th>Currency</th>\
         <th>Provider records</th><th>Provider amount</th><th>Our payouts</th>\
         <th>Our amount</th><th>Matched</th></tr>",
    );
    for t in &run.totals {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            t.rail.as_str(),
            t.currency,
            t.provider_records,
            esc(&t.provider_amount),
            t.payouts_expected,
            esc(&t.payouts_amount),
            t.matched
        );
    }
    if run.totals.is_empty() {
        page.push_str(
            "<tr><td colspan=\"7\">No provider records and no payouts in this period.</td></tr>",
        );
    }
}

fn html_kinds(page: &mut String, run: &ReconRun) {
    let counts = &run.exceptions;
    page.push_str("</table><h2>Exceptions by kind</h2><table><tr><th>Kind</th><th>Count</th></tr>");
    for kind in ExceptionKind::ALL {
        let n = counts.by_kind.get(kind.code()).copied().unwrap_or(0);
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"n\">{n}</td></tr>",
            kind.title()
        );
    }
    page.push_str("</table>");
}

/// One exception as a card: both sides, and how it was (or can be) resolved.
fn html_exception(page: &mut String, e: &ExplainedException) {
    let x = &e.exception;
    let class = match (&x.resolution, x.severity) {
        (Some(_), _) => "resolved",
        (None, Severity::Critical) => "critical",
        (None, Severity::High) => "high",
    };
    let _ = write!(
        page,
        "<div class=\"card {class}\"><div class=\"tag\">{sev} · {title}</div>\
         <p>{explanation}</p><table><tr><th></th><th>Amount</th><th>Payee</th>\
         <th>Status</th><th>When</th><th>Id</th></tr>",
        sev = x.severity.code(),
        title = x.kind.title(),
        explanation = esc(&e.explanation),
    );
    for (who, side, id) in [
        ("Our payout", &x.ours, x.payout_id.as_deref()),
        ("Provider record", &x.theirs, x.record_id.as_deref()),
    ] {
        match side {
            Some(s) => {
                let _ = write!(
                    page,
                    "<tr><th>{who}</th><td class=\"n\">{} {}</td><td>{}</td><td>{}</td>\
                     <td>{}</td><td><code>{}</code></td></tr>",
                    esc(&s.amount.display_amount()),
                    s.amount.currency(),
                    esc(&s.payee),
                    esc(&s.status),
                    s.at.format("%Y-%m-%d %H:%M UTC"),
                    esc(id.unwrap_or(""))
                );
            }
            None => {
                let _ = write!(page, "<tr><th>{who}</th><td colspan=\"5\">none</td></tr>");
            }
        }
    }
    page.push_str("</table>");
    match &x.resolution {
        Some(r) => {
            let _ = write!(
                page,
                "<p>Resolved by {} on {}: {}</p>",
                esc(&r.by),
                r.at.format("%Y-%m-%d %H:%M UTC"),
                esc(&r.note)
            );
        }
        None => {
            let _ = write!(
                page,
                "<p>To close it: <code>payouts reconcile resolve {} --note \"…\"</code></p>",
                esc(x.id.as_str())
            );
        }
    }
    page.push_str("</div>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::Rail;
    use crate::domain::money::{Currency, Money};
    use crate::domain::reconcile::{ExceptionId, Side};
    use crate::storage::reconcile_views::{ExceptionCounts, Trigger};

    fn run(open: u64) -> ReconRun {
        ReconRun {
            id: "rr_1".into(),
            status: "completed".into(),
            trigger: Trigger::Cli,
            period_from: chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
            period_to: chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
            rails: vec![Rail::Stripe],
            source: "api".into(),
            amount_tolerance_minor: 0,
            date_tolerance_hours: 72,
            started_at: chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap(),
            finished_at: None,
            error: None,
            totals: Vec::new(),
            exceptions: ExceptionCounts {
                total: open,
                open,
                open_critical: open,
                ..ExceptionCounts::default()
            },
        }
    }

    fn unknown(payee: &str) -> Exception {
        Exception {
            id: ExceptionId::derive(
                ExceptionKind::UnknownAtProvider,
                Rail::Stripe,
                None,
                Some("tr_9"),
            ),
            kind: ExceptionKind::UnknownAtProvider,
            severity: Severity::Critical,
            rail: Rail::Stripe,
            payout_id: None,
            record_id: Some("tr_9".into()),
            records: Vec::new(),
            ours: None,
            theirs: Some(Side {
                amount: Money::from_minor_units(777, Currency::Usd),
                payee: payee.into(),
                status: "transferred".into(),
                at: chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap(),
            }),
            resolution: None,
        }
    }

    #[test]
    fn a_clean_run_says_everything_matched() {
        let page = html(&Report::new(run(0), Vec::new()));
        assert!(page.starts_with("<!DOCTYPE html>") && page.contains("Everything matched"));
        assert!(
            !page.contains("<script") && !page.contains("http://") && !page.contains("https://")
        );
    }

    #[test]
    fn provider_text_is_escaped_and_every_exception_is_shown_with_how_to_close_it() {
        let report = Report::new(run(1), vec![unknown("<img src=x onerror=alert(1)>")]);
        let page = html(&report);
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(page.contains("payouts reconcile resolve rx_"));
        assert!(page.contains("1 open exception(s), 1 critical"));
        let mut csv = Vec::new();
        write_csv(&report, &mut csv).unwrap();
        let text = String::from_utf8(csv).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), CSV_COLUMNS.join(","));
        let row = lines.next().unwrap();
        assert!(
            row.contains("unknown_at_provider") && row.contains("7.77"),
            "{row}"
        );
        assert!(lines.next().is_none());
    }
}
