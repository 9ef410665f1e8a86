//! Reconciliation for finance and operators: the latest runs, and the exceptions still open
//! with their explanation and a resolve form. Resolving calls the store exactly as
//! `POST /v1/reconciliation-exceptions/{id}/resolution` does; finance keys may do it.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{Html, Response};
use maud::{Markup, html};

use super::layout;
use super::session::{Flash, Session};
use super::{ConsoleError, ConsoleState, Fields, back};
use crate::domain::api_key::Action as Permission;
use crate::domain::reconcile::ExceptionId;
use crate::reconcile::report::ExplainedException;
use crate::storage::ReconRun;

/// Runs listed, newest first.
const RUNS: i64 = 20;
/// Runs whose open exceptions are listed: an exception found again by a later run keeps its
/// id, so the newest few runs hold every one still open.
const RUNS_WITH_EXCEPTIONS: usize = 5;

/// `GET /console/reconciliation`
pub async fn page(
    State(state): State<ConsoleState>,
    session: Session,
) -> Result<Html<String>, ConsoleError> {
    let store = &state.api.store;
    let runs = store.recon_runs(RUNS).await?;
    let mut seen = HashSet::new();
    let mut open: Vec<ExplainedException> = Vec::new();
    for run in runs.iter().take(RUNS_WITH_EXCEPTIONS) {
        for e in store.recon_exceptions(&run.id, true).await? {
            if seen.insert(e.id.to_string()) {
                open.push(e.into());
            }
        }
    }
    let body = html! {
        h2 { "Runs" }
        (runs_table(&runs))
        h2 { "Open exceptions" }
        @if open.is_empty() {
            p id="no-exceptions" { "No open exceptions." }
        }
        @for e in &open {
            (exception(&session, e))
        }
    };
    Ok(layout::page(&session, "Reconciliation", body))
}

fn runs_table(runs: &[ReconRun]) -> Markup {
    html! {
        table id="runs" {
            tr { th { "Run" } th { "Period" } th { "Status" } th { "Started" } th { "Open" } th { "Critical" } th { "Resolved" } }
            @for r in runs {
                tr {
                    td { (r.id) } td { (r.period_from.to_string()) " – " (r.period_to.to_string()) } td { (r.status) }
                    td { (layout::time(&r.started_at)) } td { (r.exceptions.open) }
                    td { (r.exceptions.open_critical) } td { (r.exceptions.resolved) }
                }
            }
        }
    }
}

fn exception(session: &Session, e: &ExplainedException) -> Markup {
    let x = &e.exception;
    html! {
        section.exception id={"exception-" (x.id.to_string())} {
            h3 { (x.severity.code()) " · " (x.kind.code()) " · " (x.rail.to_string()) " · " (x.id.to_string()) }
            p { (e.explanation) }
            @if let Some(payout) = &x.payout_id {
                p { "Payout " a href={"/console/payouts/" (payout)} { (payout) } }
            }
            @if session.may(Permission::Reconcile) {
                form.act method="post" action={"/console/reconciliation/exceptions/" (x.id.to_string()) "/resolve"} {
                    (layout::csrf(session))
                    label { "What was done " input type="text" name="note" required maxlength="2000"; }
                    " "
                    button type="submit" { "Resolve" }
                }
            }
        }
    }
}

/// `POST /console/reconciliation/exceptions/{id}/resolve`
pub async fn resolve(
    State(state): State<ConsoleState>,
    session: Session,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let fields = Fields::parse(&body)?;
    fields.check(&session)?;
    session.require(Permission::Reconcile)?;
    let id = ExceptionId::parse(&id).map_err(ConsoleError::BadRequest)?;
    let note = fields.text("note");
    let flash = if note.is_empty() || note.len() > 2000 {
        Flash {
            ok: false,
            text: "resolve refused: say what was done (1 to 2000 characters)".into(),
        }
    } else {
        let by = format!("key {}", session.principal.key_id);
        match state.api.store.recon_resolve(&id, &note, &by).await? {
            Some(_) => Flash {
                ok: true,
                text: format!("{id} resolved"),
            },
            None => {
                return Err(ConsoleError::NotFound(format!(
                    "no run found an exception {id}"
                )));
            }
        }
    };
    Ok(back(&state, &session, "/console/reconciliation", flash))
}
