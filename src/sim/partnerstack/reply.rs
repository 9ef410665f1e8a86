//! The mock's answers in PartnerStack's shape (the `{data, message, status}` envelope and the
//! error body). Kept apart from the router so the handler files can share them without
//! importing the router back.

use axum::response::Response;
use serde::Serialize;

use crate::providers::partnerstack::wire::{Envelope, ErrorBody};
use crate::sim::kit::json_response;

pub(super) fn error(status: u16, message: &str) -> Response {
    let body = serde_json::to_string(&ErrorBody {
        message: message.to_string(),
        status,
    })
    .unwrap_or_default();
    json_response(status, body)
}

pub(super) fn ok<T: Serialize>(data: T) -> Response {
    let body = serde_json::to_string(&Envelope {
        data,
        message: "Success".to_string(),
        status: 200,
    })
    .unwrap_or_default();
    json_response(200, body)
}

pub(super) fn unauthorized() -> Response {
    error(401, "Unauthorized: invalid public or secret key")
}
