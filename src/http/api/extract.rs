//! Request parsing with the API's own errors: strict JSON bodies (only `application/json`,
//! within the size limit, no unknown fields), query strings, path ids and amounts. Whatever a
//! client sends, the answer is a 4xx in the error shape, never a 500 or a panic.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::domain::ids::{AccountId, IdError};
use crate::domain::money::{Currency, Money, MoneyError};

/// A JSON body whose type rejects unknown fields (`deny_unknown_fields`).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<ApiJson<T>, ApiError> {
        let json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the request body is larger than this endpoint accepts; send less at once",
                )
            } else {
                ApiError::bad_request("unreadable_body", e.body_text())
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::bad_request("invalid_json", json_message(&e)))
    }
}

/// serde_json's messages name the field and position; floats get a hint.
fn json_message(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if msg.contains("invalid type: floating point") || msg.contains("invalid type: integer") {
        format!("{msg} (amounts are decimal strings, e.g. \"12.50\")")
    } else {
        msg
    }
}

/// A query string whose type rejects unknown parameters.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ApiQuery<T>, ApiError> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
            .map(ApiQuery)
            .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))
    }
}

/// Path segments, with a malformed one (bad percent-encoding, not UTF-8) answered in the
/// error shape rather than axum's plain text.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<ApiPath<T>, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
    }
}

pub fn account_id(raw: &str) -> Result<AccountId, ApiError> {
    AccountId::parse(raw).map_err(|e| ApiError::bad_request("invalid_account_id", e.to_string()))
}

pub fn id_error(code: &'static str) -> impl Fn(IdError) -> ApiError {
    move |e| ApiError::bad_request(code, e.to_string())
}

/// An amount that is about to move: a decimal string, positive, in whole minor units of a
/// currency we handle. A JSON number is refused, since a float cannot carry money exactly.
pub fn payable_amount(amount: &serde_json::Value, currency: &str) -> Result<Money, ApiError> {
    // Codes exactly as the document lists them (upper case).
    let currency: Currency = currency
        .parse()
        .ok()
        .filter(|c: &Currency| c.code() == currency)
        .ok_or_else(|| {
            ApiError::bad_request(
                "unknown_currency",
                MoneyError::UnknownCurrency(currency.to_string()).to_string(),
            )
        })?;
    let text = match amount {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => {
            return Err(ApiError::bad_request(
                "invalid_amount",
                format!(
                    "amount {n} is a JSON number; send it as a decimal string, e.g. \"{n}\", \
                     because a float cannot carry money exactly"
                ),
            ));
        }
        other => {
            return Err(ApiError::bad_request(
                "invalid_amount",
                format!("amount must be a decimal string such as \"12.50\", not {other}"),
            ));
        }
    };
    // Digits with at most one point between digits is the document's grammar (400 when
    // broken); positive, in whole minor units and under the cap are rules (422).
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let grammatical = match text.split_once('.') {
        Some((whole, fraction)) => digits(whole) && digits(fraction),
        None => digits(text),
    };
    if !grammatical {
        return Err(ApiError::bad_request(
            "invalid_amount",
            format!("amount {text:?} is not a plain decimal string such as \"12.50\""),
        ));
    }
    Money::parse_payable(text, currency)
        .map_err(|e| ApiError::unprocessable("invalid_amount", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(amount: serde_json::Value, currency: &str) -> &'static str {
        payable_amount(&amount, currency).unwrap_err().code()
    }

    #[test]
    fn amounts_are_positive_decimal_strings_in_minor_units() {
        assert_eq!(
            payable_amount(&json!("12.50"), "USD").unwrap().to_string(),
            Money::parse("12.5", Currency::Usd, 2).unwrap().to_string()
        );
        assert_eq!(code(json!(12.5), "USD"), "invalid_amount");
        assert_eq!(code(json!(12), "USD"), "invalid_amount");
        assert_eq!(code(json!("-1.00"), "USD"), "invalid_amount");
        assert_eq!(code(json!("0"), "USD"), "invalid_amount");
        assert_eq!(code(json!("1.001"), "USD"), "invalid_amount");
        assert_eq!(code(json!("1e3"), "USD"), "invalid_amount");
        assert_eq!(code(json!(null), "USD"), "invalid_amount");
        assert_eq!(code(json!("1.00"), "DOGE"), "unknown_currency");
    }
}
