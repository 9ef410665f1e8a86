//! Operator actions waiting for a second operator (four eyes), with approve and reject forms,
//! and a payee's balance per program. Approving and rejecting call the store exactly as
//! `POST /v1/approvals/{action}/approve|reject` does.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{Html, Response};
use maud::html;

use super::layout::{self, action_form};
use super::payouts::acted_flash;
use super::session::{Flash, Session};
use super::{ConsoleError, ConsoleState, Fields, back};
use crate::domain::api_key::Action as Permission;
use crate::domain::ids::AccountId;
use crate::storage::StoreError;

/// `GET /console/approvals`
pub async fn list(
    State(state): State<ConsoleState>,
    session: Session,
) -> Result<Html<String>, ConsoleError> {
    let pending = state.api.store.pending_approvals().await?;
    let operator = session.may(Permission::OperatePayouts);
    let body = html! {
        @if pending.is_empty() {
            p id="no-approvals" { "Nothing waits for a second operator." }
        } @else {
            table id="approvals" {
                tr { th { "Asked" } th { "Payout" } th { "What" } @if operator { th { "Decide" } } }
                @for a in &pending {
                    tr {
                        td { (layout::time(&a.requested_at)) }
                        td { a href={"/console/payouts/" (a.payout.to_string())} { (a.payout.to_string()) } }
                        td { (a.describe()) }
                        @if operator {
                            td {
                                form.act method="post" action={"/console/approvals/" (a.action_id) "/approve"} {
                                    (layout::csrf(&session))
                                    button type="submit" { "Approve" }
                                }
                                (action_form(&session, &format!("/console/approvals/{}/reject", a.action_id), "Reject", html! {}))
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&session, "Approvals", body))
}

/// `POST /console/approvals/{id}/{approve|reject}`
pub async fn decide(
    State(state): State<ConsoleState>,
    session: Session,
    Path((id, verdict)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let fields = Fields::parse(&body)?;
    fields.check(&session)?;
    session.require(Permission::OperatePayouts)?;
    let (store, me) = (&state.api.store, &session.principal.name);
    let done = match verdict.as_str() {
        "approve" => store
            .approve_action(&id, me)
            .await
            .map(|acted| acted_flash("approval", &acted)),
        "reject" => store
            .reject_action(&id, me, &fields.text("reason"))
            .await
            .map(|()| Flash {
                ok: true,
                text: format!("rejected {id}: nothing changes on the payout"),
            }),
        other => return Err(ConsoleError::NotFound(format!("no verdict {other:?}"))),
    };
    let flash = match done {
        Ok(flash) => flash,
        Err(StoreError::Operator(refusal)) => Flash {
            ok: false,
            text: format!("{verdict} refused: {refusal}"),
        },
        Err(e) => return Err(e.into()),
    };
    Ok(back(&state, &session, "/console/approvals", flash))
}

/// `GET /console/payees/{account}`
pub async fn payee(
    State(state): State<ConsoleState>,
    session: Session,
    Path(account): Path<String>,
) -> Result<Html<String>, ConsoleError> {
    let account = AccountId::parse(&account)
        .map_err(|e| ConsoleError::BadRequest(format!("not an account id: {e}")))?;
    session.require(Permission::ReadAccount(&account))?;
    let balance = state.api.store.balance(&account).await?;
    let body = html! {
        table id="balances" {
            tr { th { "Program" } th { "Earned" } th { "Maturing" } th { "Available" } th { "Payable now" } th { "Pending" } th { "Withdrawn" } th { "Cash out" } }
            @for p in &balance.programs {
                tr {
                    td { (p.program.to_string()) } td { (p.earned.to_string()) }
                    td {
                        (p.maturing.to_string())
                        @if let Some(next) = p.next_matures_at { " (next " (next.format("%Y-%m-%d %H:%M UTC")) ")" }
                    }
                    td { (p.available.to_string()) } td { (p.payable_now.to_string()) }
                    td { (p.pending.to_string()) } td { (p.withdrawn.to_string()) }
                    td { @if p.eligible { "eligible" } @else { (p.reason.as_deref().unwrap_or("not eligible")) } }
                }
            }
        }
    };
    Ok(layout::page(&session, &format!("Payee {account}"), body))
}
