//! The mock's answers in Stripe's shape (error body, `Request-Id`, replayed idempotent
//! answers) and its Bearer check, shared by the router and the handler files without their
//! importing the router back.

use std::sync::Mutex;

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;

use super::Inner;
use crate::providers::stripe::wire::{ErrorBody, IDEMPOTENT_REPLAYED, REQUEST_ID};
use crate::sim::kit::lock;

pub(super) fn stripe_error(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: &str,
    param: Option<&str>,
) -> Response {
    let mut response = (status, Json(ErrorBody::new(kind, code, message, param))).into_response();
    response
        .headers_mut()
        .insert(REQUEST_ID, HeaderValue::from_static("req_mock"));
    response
}

pub(super) fn authorized(inner: &Mutex<Inner>, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let guard = lock(inner);
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(guard.api_key.expose_secret()) {
        Ok(())
    } else {
        Err(Box::new(stripe_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            "Invalid API Key provided.",
            None,
        )))
    }
}

pub(super) fn replay(status: u16, body: String, replayed: bool) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(REQUEST_ID, HeaderValue::from_static("req_mock"));
    if replayed {
        headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}
