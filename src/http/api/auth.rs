//! The caller, from `Authorization: Bearer <key>`. Every /v1 route but health takes a
//! [`Caller`], so a request without a valid key never reaches a handler.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::ApiState;
use super::error::ApiError;
use crate::domain::api_key::{Principal, Scope};
use crate::domain::ids::AccountId;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// Refuses callers that may not read `account`. A referrer asking about another account
    /// gets the same answer as for an account that does not exist, so keys cannot probe ids.
    pub fn may_read(&self, account: &AccountId) -> Result<(), ApiError> {
        if self.0.may_read_account(account) {
            return Ok(());
        }
        if self.0.scope == Scope::Referrer {
            return Err(ApiError::not_found(
                "unknown_account",
                format!("account {account} is not known"),
            ));
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "a key with scope {} cannot read accounts",
                self.0.scope.code()
            ),
        ))
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Caller, ApiError> {
        let unauthorized =
            |code, message: &str| ApiError::new(StatusCode::UNAUTHORIZED, code, message);
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| {
                unauthorized(
                    "missing_api_key",
                    "send an API key as `Authorization: Bearer <key>` (create one with `payouts keys create`)",
                )
            })?
            .to_str()
            .map_err(|_| unauthorized("invalid_api_key", "the Authorization header is not text"))?;
        let key = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                unauthorized(
                    "invalid_api_key",
                    "the Authorization header must be `Bearer <key>`",
                )
            })?;
        match state.store.principal(key).await? {
            Some(principal) => Ok(Caller(principal)),
            None => Err(unauthorized(
                "invalid_api_key",
                "this API key is not known or was revoked",
            )),
        }
    }
}
