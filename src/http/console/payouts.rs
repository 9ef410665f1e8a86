//! One payout: its amount, payee, rail, status and why, every event and attempt, and the
//! operator actions as forms. The actions go through `Store::operator_act`, the very call
//! the API's `POST /v1/payouts/{payout}/{action}` makes, so the domain's rules decide.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{Html, Response};
use maud::{Markup, html};

use super::layout::{self, action_form};
use super::session::{Flash, Session};
use super::{ConsoleError, ConsoleState, Fields, back};
use crate::domain::api_key::Action as Permission;
use crate::domain::ids::PayoutId;
use crate::domain::operator::{
    Acted, Action, ActionRequest, ActionState, DisputeOutcome, DuplicateBooking,
};
use crate::domain::payout::PayoutStatus;
use crate::storage::{DuplicateEvidence, PayoutDetail, StoreError};

fn payout_id(id: &str) -> Result<PayoutId, ConsoleError> {
    PayoutId::parse(id).map_err(|e| ConsoleError::BadRequest(format!("not a payout id: {e}")))
}

/// `GET /console/payouts/{id}`
pub async fn show(
    State(state): State<ConsoleState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Html<String>, ConsoleError> {
    let id = payout_id(&id)?;
    let detail = state.api.store.payout(id.as_str()).await?;
    let duplicates = state.api.store.payout_duplicates(Some(&id)).await?;
    let body = html! {
        (summary(&detail))
        @if session.may(Permission::OperatePayouts) {
            (actions(&session, &detail))
        }
        (duplicate_list(&session, &detail, &duplicates))
        (flag_list(&detail))
        (history(&detail))
    };
    Ok(layout::page(&session, &format!("Payout {id}"), body))
}

fn summary(d: &PayoutDetail) -> Markup {
    let p = &d.payout;
    html! {
        table id="payout" {
            tr { th { "Amount" } td { (p.amount.to_string()) } }
            tr { th { "Payee" } td { a href={"/console/payees/" (p.account.to_string())} { (p.account.to_string()) } " → " (p.destination) } }
            tr { th { "Program" } td { (p.program.to_string()) } }
            tr { th { "Rail" } td { (p.rail.to_string()) } }
            tr { th { "Status" } td id="status" { (p.status.code()) } }
            tr { th { "Why" } td id="status-reason" { (d.status_reason.as_deref().unwrap_or("")) } }
            @if let Some(error) = &p.last_error {
                tr { th { "Last error" } td { (error) } }
            }
            @if let Some(state) = &p.provider_status {
                tr { th { "Provider says" } td { (state) } }
            }
            @if let Some(at) = &p.next_step_at {
                tr { th { "Next step" } td { (layout::time(at)) } }
            }
            tr { th { "Attempts" } td { (p.attempts) } }
            tr { th { "Created" } td { (layout::time(&p.created_at)) } }
        }
    }
}

/// The actions that can apply to the payout's status; the domain still decides each one.
fn actions(session: &Session, d: &PayoutDetail) -> Markup {
    let p = &d.payout;
    let url = |a: &str| format!("/console/payouts/{}/{a}", p.id);
    let held = p.status == PayoutStatus::Queued && p.next_step_at.is_some();
    let open = p.status == PayoutStatus::NeedsOperator;
    let review = p.status == PayoutStatus::Held;
    html! {
        @if review {
            section id="review" {
                h2 { "Review" }
                (action_form(session, &url("review-approve"), "Approve", html! {}))
                (action_form(session, &url("review-reject"), "Reject", html! {
                    label { input type="checkbox" name="clawback" value="1"; " claw the amount back" } " "
                }))
            }
        }
        @if open || held {
            section id="actions" {
                h2 { "Act" }
                @if open {
                    (action_form(session, &url("retry"), "Retry", html! {}))
                    (action_form(session, &url("mark-paid"), "Mark paid", html! {
                        label { "Reference " input type="text" name="reference" required; } " "
                    }))
                    (action_form(session, &url("resolve-dispute"), "Resolve dispute", html! {
                        select name="outcome" {
                            option value="kept" { "kept (paid)" }
                            option value="returned" { "returned (credited back)" }
                        } " "
                        label { "Part returned (blank: all) " input type="text" name="amount" inputmode="decimal"; } " "
                    }))
                }
                @if held {
                    (action_form(session, &url("release-hold"), "Release hold", html! {}))
                }
                (action_form(session, &url("cancel"), "Cancel", html! {}))
            }
        }
    }
}

/// Other provider objects that named the payout (possible duplicate payments), each open one
/// with the form that books it.
fn duplicate_list(session: &Session, d: &PayoutDetail, list: &[DuplicateEvidence]) -> Markup {
    let url = format!("/console/payouts/{}/resolve-duplicate", d.payout.id);
    let act = session.may(Permission::OperatePayouts);
    html! {
        @if !list.is_empty() {
            h2 { "Possible duplicate payments" }
            table id="duplicates" {
                tr { th { "Object" } th { "Provider says" } th { "Seen" } th { "Booked" } }
                @for x in list {
                    tr {
                        td { code { (x.object_ref) } } td { (x.state) " (" (x.provider_status) ")" }
                        td { (layout::time(&x.first_seen_at)) }
                        td {
                            @if let Some(b) = &x.booked { (b) }
                            @else if act {
                                (action_form(session, &url, "Book duplicate", html! {
                                    input type="hidden" name="object" value=(x.object_ref);
                                    select name="booking" {
                                        option value="owed" { "owed by the payee" }
                                        option value="loss" { "a loss" }
                                    } " "
                                }))
                            } @else { "open" }
                        }
                    }
                }
            }
        }
    }
}

/// Why the payout is or was held: each rule with its evidence and how it was cleared.
fn flag_list(d: &PayoutDetail) -> Markup {
    html! {
        @if !d.flags.is_empty() {
            h2 { "Held for" }
            table id="flags" {
                tr { th { "Rule" } th { "Evidence" } th { "Raised" } th { "Cleared" } }
                @for f in &d.flags {
                    tr {
                        td { (f.rule.code()) } td { (f.evidence) } td { (layout::time(&f.raised_at)) }
                        td {
                            @if let Some(at) = &f.cleared_at {
                                (layout::time(at)) " " (f.decision.as_deref().unwrap_or(""))
                                " by " (f.cleared_by.as_deref().unwrap_or("")) ": " (f.note.as_deref().unwrap_or(""))
                            } @else { "open" }
                        }
                    }
                }
            }
        }
    }
}

fn history(d: &PayoutDetail) -> Markup {
    html! {
        h2 { "Attempts" }
        table id="attempts" {
            tr { th { "#" } th { "Idempotency key sent" } th { "Outcome" } th { "Provider ref" } th { "Provider's answer" } th { "Started" } th { "Finished" } }
            @for a in &d.attempts {
                tr {
                    td { (a.attempt) } td { code { (a.provider_key) } } td { (a.outcome) }
                    td { (a.provider_ref.as_deref().unwrap_or("")) } td { (a.detail.as_deref().unwrap_or("")) }
                    td { (layout::time(&a.started_at)) }
                    td { (a.finished_at.as_ref().map(layout::time).unwrap_or_default()) }
                }
            }
        }
        h2 { "History" }
        table id="events" {
            tr { th { "At" } th { "From" } th { "To" } th { "By" } th { "Why" } }
            @for e in &d.events {
                tr {
                    td { (layout::time(&e.at)) } td { (e.from.as_deref().unwrap_or("")) } td { (e.to) }
                    td { (e.source.as_deref().unwrap_or("")) " " (e.worker.as_deref().unwrap_or("")) }
                    td { (e.reason) }
                }
            }
        }
    }
}

/// The domain action a form asks for.
fn action(name: &str, fields: &Fields) -> Result<Action, ConsoleError> {
    Ok(match name {
        "retry" => Action::Retry,
        "cancel" => Action::Cancel,
        "release-hold" => Action::ReleaseHold,
        "review-approve" => Action::Approve,
        "review-reject" => Action::Reject {
            clawback: fields.get("clawback") == Some("1"),
        },
        "mark-paid" => Action::MarkPaid {
            reference: fields.text("reference"),
        },
        "resolve-dispute" => {
            let amount =
                match fields.get("amount").map(str::trim) {
                    None | Some("") => None,
                    Some(part) => Some(part.parse().map_err(|_| {
                        ConsoleError::BadRequest(format!("{part:?} is not an amount"))
                    })?),
                };
            let outcome = fields
                .get("outcome")
                .and_then(|o| DisputeOutcome::with_amount(o, amount))
                .ok_or_else(|| {
                    ConsoleError::BadRequest(
                        "say whether the payee kept the money or it came back (an amount only with returned)".into(),
                    )
                })?;
            Action::ResolveDispute { outcome }
        }
        "resolve-duplicate" => Action::ResolveDuplicate {
            object: fields.text("object"),
            booking: fields
                .get("booking")
                .and_then(DuplicateBooking::from_code)
                .ok_or_else(|| {
                    ConsoleError::BadRequest("book it as owed by the payee or as a loss".into())
                })?,
        },
        other => {
            return Err(ConsoleError::NotFound(format!(
                "no payout action {other:?}"
            )));
        }
    })
}

/// What the flash says about a done (or pending) action.
pub fn acted_flash(verb: &str, acted: &Acted) -> Flash {
    let text = if acted.state == ActionState::PendingApproval {
        format!(
            "{verb} waits for a second operator's approval ({})",
            acted.action_id
        )
    } else if acted.replayed {
        format!("{verb} was already done: {}", acted.summary)
    } else {
        format!(
            "{verb} done: {} → {}. {}",
            acted.from.code(),
            acted.to.code(),
            acted.summary
        )
    };
    Flash { ok: true, text }
}

/// `POST /console/payouts/{id}/{action}`
pub async fn act(
    State(state): State<ConsoleState>,
    session: Session,
    Path((id, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let fields = Fields::parse(&body)?;
    fields.check(&session)?;
    session.require(Permission::OperatePayouts)?;
    let id = payout_id(&id)?;
    let request = ActionRequest {
        action: action(&name, &fields)?,
        reason: fields.text("reason"),
        actor: session.principal.name.clone(),
    };
    let flash = match state.api.store.operator_act(&id, &request).await {
        Ok(acted) => acted_flash(&name, &acted),
        Err(StoreError::Operator(refusal)) => Flash {
            ok: false,
            text: format!("{name} refused: {refusal}"),
        },
        Err(e) => return Err(e.into()),
    };
    Ok(back(
        &state,
        &session,
        &format!("/console/payouts/{id}"),
        flash,
    ))
}
