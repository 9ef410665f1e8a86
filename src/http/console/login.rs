//! Signing in with an API key through a form, and signing out. The key is checked exactly as
//! the API checks a bearer key (configured keys by hash first, then the database's, revoked
//! keys refused); only operator and finance keys may use the console.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::layout;
use super::session::{self, Session};
use super::{ConsoleError, ConsoleState, Fields};
use crate::domain::api_key::Action;
use crate::http::api::auth::principal_of;

fn form_page(status: StatusCode, error: Option<&str>) -> Response {
    let page = layout::bare(
        "Sign in",
        html! {
            h1 { "Payouts console" }
            @if let Some(error) = error {
                p.flash.error id="sign-in-error" { (error) }
            }
            form method="post" action="/console/login" {
                label { "API key " input type="password" name="key" id="key" autocomplete="off" required; }
                " "
                button type="submit" id="sign-in" { "Sign in" }
            }
            p.muted { "Operator and finance keys only. The key is checked once; the browser keeps only a session cookie." }
        },
    );
    (status, layout::html(page)).into_response()
}

/// `GET /console/login`
pub async fn form() -> Response {
    form_page(StatusCode::OK, None)
}

/// `POST /console/login`: the key in the form body; a session cookie on success.
pub async fn submit(
    State(state): State<ConsoleState>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let fields = Fields::parse(&body)?;
    let key = fields.get("key").map(str::trim).unwrap_or_default();
    if key.is_empty() {
        return Ok(form_page(
            StatusCode::UNAUTHORIZED,
            Some("enter an API key"),
        ));
    }
    let Some(principal) = principal_of(&state.api, key).await? else {
        return Ok(form_page(
            StatusCode::UNAUTHORIZED,
            Some("this API key is not known or was revoked"),
        ));
    };
    if principal.authorize(Action::ReadOperations).is_err() {
        let why = format!(
            "a key with scope {} may not use the console; use an operator or finance key",
            principal.scope.code()
        );
        return Ok(form_page(StatusCode::FORBIDDEN, Some(&why)));
    }
    tracing::info!(key_id = %principal.key_id, "console: signed in");
    let token = state.sessions.start(principal);
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/console".to_string()),
            (header::SET_COOKIE, session::set_cookie(&token)),
        ],
    )
        .into_response())
}

/// `POST /console/logout`
pub async fn logout(
    State(state): State<ConsoleState>,
    session: Session,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    Fields::parse(&body)?.check(&session)?;
    state.sessions.end(&session.token);
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/console/login".to_string()),
            (header::SET_COOKIE, session::clear_cookie()),
        ],
    )
        .into_response())
}
