//! The home page (money paid per rail per day, payouts by state) and the attention list:
//! every payout waiting for a person, grouped by why, oldest first.

use axum::extract::State;
use axum::response::Html;
use chrono::{Duration, Utc};
use maud::html;

use super::session::Session;
use super::{ConsoleError, ConsoleState, chart, layout};
use crate::storage::AttentionReason;

/// How far back the chart looks.
const CHART_DAYS: i64 = 30;

/// `GET /console`
pub async fn home(
    State(state): State<ConsoleState>,
    session: Session,
) -> Result<Html<String>, ConsoleError> {
    let store = &state.api.store;
    let today = crate::clock::now().date_naive();
    let since = (today - Duration::days(CHART_DAYS - 1))
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or_else(Utc::now);
    let paid = store.paid_per_rail_per_day(since).await?;
    let counts = store.payout_status_counts().await?;
    let waiting = store.needing_attention().await?.len();
    let body = html! {
        p { a href="/console/attention" id="attention-count" { (waiting) " payouts need attention" } }
        (chart::paid(&paid, today, CHART_DAYS))
        h2 { "Payouts by state" }
        table id="states" {
            @for (status, n) in &counts {
                tr { th { (status.code()) } td { (n) } }
            }
        }
    };
    Ok(layout::page(&session, "Payouts", body))
}

/// `GET /console/attention`
pub async fn attention(
    State(state): State<ConsoleState>,
    session: Session,
) -> Result<Html<String>, ConsoleError> {
    let all = state.api.store.needing_attention().await?;
    let body = html! {
        @if all.is_empty() {
            p id="nothing" { "Nothing needs a person now." }
        }
        @for reason in AttentionReason::ALL {
            @let group: Vec<_> = all.iter().filter(|a| a.reason == reason).collect();
            @if !group.is_empty() {
                section.attention {
                    h2 { (reason.label()) " (" (group.len()) ")" }
                    table {
                        tr { th { "Since" } th { "Payout" } th { "Payee" } th { "Rail" } th { "Amount" } th { "Status" } th { "Note" } }
                        @for a in group {
                            tr {
                                td { (layout::time(&a.created_at)) }
                                td { a.payout href={"/console/payouts/" (a.payout.to_string())} { (a.payout.to_string()) } }
                                td { a href={"/console/payees/" (a.account.to_string())} { (a.account.to_string()) } }
                                td { (a.rail.to_string()) } td { (a.amount.to_string()) } td { (a.status.code()) }
                                td { (a.note.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&session, "Needs attention", body))
}
