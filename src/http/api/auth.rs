//! The caller, from `Authorization: Bearer <key>`: keys from configuration first, then the
//! database's. Every /v1 route but health and webhooks takes a [`Caller`], so a request
//! without a valid key, or over its key's rate, never reaches a handler.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::ApiState;
use super::error::ApiError;
use crate::domain::api_key::{Action, Denied, Principal, key_hash};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// Allows `action` or answers why not. A referrer key asking about another account is
    /// told `hidden` (a 404 with that code), as if the thing did not exist.
    pub fn allow(
        &self,
        action: Action<'_>,
        hidden: impl FnOnce() -> ApiError,
    ) -> Result<(), ApiError> {
        match self.0.authorize(action) {
            Ok(()) => Ok(()),
            Err(Denied::Hidden) => Err(hidden()),
            Err(Denied::Forbidden) => Err(self.forbidden()),
        }
    }

    pub fn forbidden(&self) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "a key with scope {} may not do this; ask an operator for a key with the right scope",
                self.0.scope.code()
            ),
        )
    }

    /// [`Caller::allow`] for an action on one account.
    pub fn allow_account(&self, action: Action<'_>) -> Result<(), ApiError> {
        let account = action
            .account()
            .map(ToString::to_string)
            .unwrap_or_default();
        self.allow(action, || {
            ApiError::not_found("unknown_account", format!("account {account} is not known"))
        })
    }
}

/// Whose `key` is: a configured key (by hash) first, then the database's; `None` when it is
/// unknown or revoked. The API's bearer keys and the console's sign-in both ask this.
pub(crate) async fn principal_of(
    state: &ApiState,
    key: &str,
) -> Result<Option<Principal>, crate::storage::StoreError> {
    let hash = key_hash(key);
    let configured = state
        .settings
        .configured_keys
        .iter()
        .find(|k| k.hash == hash)
        .map(|k| k.principal.clone());
    match configured {
        Some(p) => Ok(Some(p)),
        None => state.store.principal(key).await,
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
        let principal = principal_of(state, key).await?.ok_or_else(|| {
            unauthorized(
                "invalid_api_key",
                "this API key is not known or was revoked",
            )
        })?;
        if let Err(wait) = state.limiter.check(&principal.key_id) {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "this key is over its rate of {} requests per second; retry after {wait} s",
                    state.limiter.per_second()
                ),
            )
            .retry_after(wait));
        }
        Ok(Caller(principal))
    }
}
