//! Rails: configured here or not, paused or not, what their attempts answered that did not
//! land over the last day (by outcome class), with pause and resume forms. Both call the
//! store exactly as `POST /v1/rails/{rail}/pause|resume` does.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{Html, Response};
use maud::html;

use super::layout::{self, action_form};
use super::session::{Flash, Session};
use super::{ConsoleError, ConsoleState, Fields, back};
use crate::domain::api_key::Action as Permission;
use crate::domain::ids::Rail;
use crate::storage::StoreError;

/// `GET /console/rails`
pub async fn list(
    State(state): State<ConsoleState>,
    session: Session,
) -> Result<Html<String>, ConsoleError> {
    let paused = state.api.store.rail_pauses().await?;
    let since = crate::clock::now() - chrono::Duration::hours(24);
    let errors = state.api.store.recent_attempt_errors(since).await?;
    let configured = state.api.rails.configured();
    let operator = session.may(Permission::OperatePayouts);
    let body = html! {
        table id="rails" {
            tr { th { "Rail" } th { "Configured" } th { "State" } th { "Unlanded attempts, 24 h" } @if operator { th { "Switch" } } }
            @for rail in Rail::ALL {
                @let pause = paused.iter().find(|p| p.rail == rail);
                tr id={"rail-" (rail.to_string())} {
                    td { (rail.to_string()) }
                    td { @if configured.contains(&rail) { "yes" } @else { "no" } }
                    td {
                        @match pause {
                            Some(p) => { "paused by " (p.paused_by) " at " (layout::time(&p.paused_at)) ": " (p.reason) }
                            None => { "sending" }
                        }
                    }
                    td class="errors" {
                        @for (_, class, n) in errors.iter().filter(|(r, _, _)| *r == rail) {
                            (class) ": " (n) " "
                        }
                    }
                    @if operator {
                        td {
                            @if pause.is_some() {
                                (action_form(&session, &format!("/console/rails/{rail}/resume"), "Resume", html! {}))
                            } @else {
                                (action_form(&session, &format!("/console/rails/{rail}/pause"), "Pause", html! {}))
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&session, "Rails", body))
}

/// `POST /console/rails/{rail}/{pause|resume}`
pub async fn switch(
    State(state): State<ConsoleState>,
    session: Session,
    Path((rail, switch)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let fields = Fields::parse(&body)?;
    fields.check(&session)?;
    session.require(Permission::OperatePayouts)?;
    let rail: Rail = rail
        .parse()
        .map_err(|e| ConsoleError::NotFound(format!("no rail {rail:?}: {e}")))?;
    let (store, me, reason) = (
        &state.api.store,
        &session.principal.name,
        fields.text("reason"),
    );
    let done = match switch.as_str() {
        "pause" => store.pause_rail(rail, &reason, me).await.map(|(_, new)| {
            if new {
                format!("{rail} paused")
            } else {
                format!("{rail} was already paused")
            }
        }),
        "resume" => store
            .resume_rail(rail, &reason, me)
            .await
            .map(|was| match was {
                Some(_) => format!("{rail} resumed"),
                None => format!("{rail} was not paused"),
            }),
        other => return Err(ConsoleError::NotFound(format!("no rail switch {other:?}"))),
    };
    let flash = match done {
        Ok(text) => Flash { ok: true, text },
        Err(StoreError::Operator(refusal)) => Flash {
            ok: false,
            text: format!("{switch} refused: {refusal}"),
        },
        Err(e) => return Err(e.into()),
    };
    Ok(back(&state, &session, "/console/rails", flash))
}
