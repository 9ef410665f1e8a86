//! The operator console under `/console`: server-rendered HTML pages for operators and
//! finance, signed in with their API key through a form. The pages read the same `Store`
//! queries as the JSON API and act through the same domain calls, so the console can never
//! allow what the API refuses; it only adds a browser session (see [`session`]).
//!
//! It is not part of the OpenAPI document: it is merged beside the documented router.

mod approvals;
mod chart;
mod error;
mod home;
mod layout;
mod login;
mod payouts;
mod rails;
mod recon;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use super::api::ApiState;
pub use error::ConsoleError;
use session::Sessions;

/// Largest form body the console takes: a reason and a token.
const FORM_LIMIT: usize = 16 * 1024;

/// The API's state (store, rails, settings, keys) and the console's sessions.
#[derive(Debug, Clone)]
pub struct ConsoleState {
    pub api: ApiState,
    pub sessions: Arc<Sessions>,
}

/// Every console route, at its full path.
pub fn router(api: ApiState) -> Router {
    let state = ConsoleState {
        api,
        sessions: Arc::new(Sessions::default()),
    };
    Router::new()
        .route("/console", get(home::home))
        .route("/console/login", get(login::form).post(login::submit))
        .route("/console/logout", post(login::logout))
        .route("/console/attention", get(home::attention))
        .route("/console/payouts/{id}", get(payouts::show))
        .route("/console/payouts/{id}/{action}", post(payouts::act))
        .route("/console/approvals", get(approvals::list))
        .route("/console/approvals/{id}/{verdict}", post(approvals::decide))
        .route("/console/rails", get(rails::list))
        .route("/console/rails/{rail}/{switch}", post(rails::switch))
        .route("/console/reconciliation", get(recon::page))
        .route(
            "/console/reconciliation/exceptions/{id}/resolve",
            post(recon::resolve),
        )
        .route("/console/payees/{account}", get(approvals::payee))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .with_state(state)
}

/// A posted form's fields. A body that is not a form is a 400 page.
#[derive(Debug)]
pub(crate) struct Fields(std::collections::HashMap<String, String>);

impl Fields {
    pub(crate) fn parse(body: &[u8]) -> Result<Fields, ConsoleError> {
        serde_urlencoded::from_bytes(body)
            .map(Fields)
            .map_err(|_| ConsoleError::BadRequest("the form could not be read".into()))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The field, trimmed; empty when missing.
    pub(crate) fn text(&self, name: &str) -> String {
        self.get(name)
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    }

    /// Refuses the form unless it carries the session's CSRF token.
    pub(crate) fn check(&self, session: &session::Session) -> Result<&Self, ConsoleError> {
        session.check_csrf(self.get("csrf"))?;
        Ok(self)
    }
}

/// Answers a form post: back to `to` (303), with `flash` shown there once.
pub(crate) fn back(
    state: &ConsoleState,
    session: &session::Session,
    to: &str,
    flash: session::Flash,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    state.sessions.flash(&session.token, flash);
    (
        axum::http::StatusCode::SEE_OTHER,
        [(axum::http::header::LOCATION, to.to_string())],
    )
        .into_response()
}
