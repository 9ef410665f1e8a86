//! The home page's chart: money paid per rail per day, one stacked bar per day, drawn as
//! inline SVG on the server (no script). Sums are exact decimals; floats are used only for
//! the pixels.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use maud::{Markup, html};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::domain::ids::Rail;
use crate::domain::money::Currency;
use crate::storage::PaidDay;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 90.0;
const BOTTOM: f64 = 24.0;

fn colour(rail: Rail) -> &'static str {
    match rail {
        Rail::Stripe => "#635bff",
        Rail::Paypal => "#009cde",
        Rail::Wise => "#9fe870",
        Rail::Partnerstack => "#f5a623",
    }
}

/// One chart per currency over the `days` days ending `today`.
pub fn paid(rows: &[PaidDay], today: NaiveDate, days: i64) -> Markup {
    let mut by_currency: BTreeMap<String, (Currency, Vec<&PaidDay>)> = BTreeMap::new();
    for row in rows {
        let c = row.amount.currency();
        by_currency
            .entry(c.to_string())
            .or_insert_with(|| (c, Vec::new()))
            .1
            .push(row);
    }
    let first = today - Duration::days(days - 1);
    html! {
        @if by_currency.is_empty() {
            p id="no-paid" { "Nothing paid in the last " (days) " days." }
        }
        @for (code, (currency, rows)) in &by_currency {
            (one(code, *currency, rows, first, days))
        }
        p.muted {
            @for rail in Rail::ALL {
                svg width="12" height="12" { rect width="12" height="12" fill=(colour(rail)) {} }
                " " (rail.to_string()) " "
            }
        }
    }
}

fn one(code: &str, currency: Currency, rows: &[&PaidDay], first: NaiveDate, days: i64) -> Markup {
    let mut totals: BTreeMap<NaiveDate, Decimal> = BTreeMap::new();
    for r in rows {
        *totals.entry(r.day).or_default() += r.amount.amount();
    }
    let max = totals.values().copied().max().unwrap_or_default();
    let scale = if max > Decimal::ZERO {
        (HEIGHT - BOTTOM - 10.0) / max.to_f64().unwrap_or(1.0)
    } else {
        0.0
    };
    let slot = (WIDTH - LEFT) / days as f64;
    let mut stacked: BTreeMap<NaiveDate, f64> = BTreeMap::new();
    let base = HEIGHT - BOTTOM;
    html! {
        figure id={"paid-" (code)} {
            figcaption { "Paid per rail per day, " (code) " (last " (days) " days)" }
            svg xmlns="http://www.w3.org/2000/svg" role="img" width=(WIDTH) height=(HEIGHT)
                viewBox={"0 0 " (WIDTH) " " (HEIGHT)} {
                line x1=(LEFT) y1=(base) x2=(WIDTH) y2=(base) stroke="#999" {}
                text x="4" y="14" font-size="11" { ((max.round_dp(currency.minor_decimals())).to_string()) " " (code) }
                text x="4" y=(base) font-size="11" { "0" }
                text x=(LEFT) y=(HEIGHT - 6.0) font-size="11" { (first.to_string()) }
                text x=(WIDTH - 70.0) y=(HEIGHT - 6.0) font-size="11" { ((first + Duration::days(days - 1)).to_string()) }
                @for r in rows {
                    @let index = (r.day - first).num_days();
                    @if (0..days).contains(&index) {
                        @let h = r.amount.amount().to_f64().unwrap_or(0.0) * scale;
                        @let below = stacked.get(&r.day).copied().unwrap_or(0.0);
                        @let _ = stacked.insert(r.day, below + h);
                        rect class="bar" x=(format!("{:.1}", LEFT + index as f64 * slot + 1.0))
                            y=(format!("{:.1}", base - below - h))
                            width=(format!("{:.1}", (slot - 2.0).max(1.0)))
                            height=(format!("{:.1}", h))
                            fill=(colour(r.rail)) {
                            title { (r.day.to_string()) " " (r.rail.to_string()) ": " (r.amount.to_string()) }
                        }
                    }
                }
            }
        }
    }
}
