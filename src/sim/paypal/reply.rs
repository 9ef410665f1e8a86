//! The mock's answers in PayPal's error shape and its Bearer check, shared by the router and
//! the handler files without their importing the router back.

use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::json;

use super::engine::Inner;
use crate::providers::paypal::wire::{ErrorBody, ErrorDetail};
use crate::sim::kit::json_response;

pub(super) fn error(status: u16, body: &ErrorBody) -> Response {
    json_response(status, serde_json::to_string(body).unwrap_or_default())
}

pub(super) fn simple(status: u16, name: &str, message: &str) -> Response {
    error(status, &ErrorBody::new(name, message))
}

pub(super) fn detail(field: &str, issue: &str) -> ErrorDetail {
    ErrorDetail {
        field: Some(field.into()),
        location: Some("body".into()),
        issue: Some(issue.into()),
        ..Default::default()
    }
}

/// 401 unless the bearer token was issued and has not expired.
pub(super) fn authorized(inner: &Inner, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given.and_then(|t| inner.tokens.get(t)) {
        Some(expiry) if crate::clock::instant() < *expiry => Ok(()),
        Some(_) => Err(Box::new(json_response(
            401,
            json!({"error": "invalid_token", "error_description": "Token signature verification failed"})
                .to_string(),
        ))),
        None => Err(Box::new(simple(
            401,
            "AUTHENTICATION_FAILURE",
            "Authentication failed due to invalid authentication credentials or a missing Authorization header.",
        ))),
    }
}
