//! Account reads: balances per program with eligibility reasons, and one payout's history.

use axum::Json;
use axum::extract::{Path, State};

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use crate::domain::ids::AccountId;
use crate::storage::{AccountBalance, PayoutDetail};

fn account_id(raw: &str) -> Result<AccountId, ApiError> {
    AccountId::parse(raw).map_err(|e| ApiError::bad_request("invalid_account_id", e.to_string()))
}

/// `GET /v1/accounts/{account}/balance`
pub async fn balance(
    State(state): State<ApiState>,
    caller: Caller,
    Path(account): Path<String>,
) -> Result<Json<AccountBalance>, ApiError> {
    let account = account_id(&account)?;
    caller.may_read(&account)?;
    Ok(Json(state.store.balance(&account).await?))
}

/// `GET /v1/payouts/{payout}`: the payout, its attempts and every event, for its account's
/// readers only (others are told it does not exist).
pub async fn payout(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<PayoutDetail>, ApiError> {
    let detail = state.store.payout(&id).await?;
    if !caller.0.may_read_account(&detail.payout.account) {
        return Err(ApiError::not_found(
            "unknown_payout",
            format!("payout {id} does not exist"),
        ));
    }
    Ok(Json(detail))
}
