//! The console's errors: each renders as an HTML page with its status, never a panic; a
//! missing session sends the browser to the sign-in form.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::layout;
use crate::storage::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No session (or an expired one): sign in again.
    #[error("sign in first")]
    SignedOut,
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the database could not answer: {0}")]
    Store(#[from] StoreError),
}

impl ConsoleError {
    pub fn status(&self) -> StatusCode {
        match self {
            ConsoleError::SignedOut => StatusCode::SEE_OTHER,
            ConsoleError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ConsoleError::Forbidden(_) => StatusCode::FORBIDDEN,
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::Store(StoreError::UnknownPayout(_) | StoreError::UnknownAccount(_)) => {
                StatusCode::NOT_FOUND
            }
            ConsoleError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the person reading the page is told: never a database's own words.
    fn message(&self) -> String {
        match self {
            ConsoleError::Store(
                e @ (StoreError::UnknownPayout(_) | StoreError::UnknownAccount(_)),
            ) => e.to_string(),
            ConsoleError::Store(_) => {
                "the database could not answer; try again, and tell an engineer if it lasts".into()
            }
            other => other.to_string(),
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        if let ConsoleError::SignedOut = self {
            return (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, "/console/login")],
            )
                .into_response();
        }
        let status = self.status();
        if let ConsoleError::Store(e) = &self
            && status == StatusCode::INTERNAL_SERVER_ERROR
        {
            tracing::error!(error = %e, "console: store error");
        }
        let title = status.canonical_reason().unwrap_or("Error");
        let page = layout::bare(
            title,
            maud::html! {
                h1 { (status.as_u16()) " " (title) }
                p.error { (self.message()) }
                p { a href="/console" { "Back to the console" } }
            },
        );
        (status, layout::html(page)).into_response()
    }
}
