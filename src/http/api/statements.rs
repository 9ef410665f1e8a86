//! A payee's balance as it stood at an instant, and its monthly statements: for the account's
//! own referrer key, operators and finance (whoever may read the account).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiPath, ApiQuery, account_id};
use crate::domain::api_key::Action;
use crate::domain::statement::{BalancesAt, Month, Statement, parse_instant};

/// When to read the balance.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AtQuery {
    /// An RFC 3339 instant, or a date (its first instant, UTC).
    #[param(max_length = 64)]
    at: String,
}

/// `GET /v1/accounts/{account}/balance-at?at=...`
#[utoipa::path(
    get, path = "/accounts/{account}/balance-at", tag = "accounts",
    summary = "An account's balance per program as it stood at an instant",
    params(
        ("account" = crate::domain::ids::AccountId, Path, description = "The account id"),
        AtQuery,
    ),
    responses(
        (status = 200, body = BalancesAt),
        (status = "4XX", body = ErrorBody, description = "Bad id, bad instant, bad key, or unknown account"),
    ),
    security(("api_key" = []))
)]
pub async fn balance_at(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(account): ApiPath<String>,
    ApiQuery(query): ApiQuery<AtQuery>,
) -> Result<Json<BalancesAt>, ApiError> {
    let account = account_id(&account)?;
    caller.allow_account(Action::ReadAccount(&account))?;
    let at = parse_instant(&query.at)
        .map_err(|e| ApiError::unprocessable("invalid_instant", e.to_string()))?;
    let programs = state.store.balance_at(&account, at).await?;
    Ok(Json(BalancesAt {
        account,
        at,
        programs,
    }))
}

/// `GET /v1/accounts/{account}/statements/{month}`
#[utoipa::path(
    get, path = "/accounts/{account}/statements/{month}", tag = "accounts",
    summary = "An account's statement for a month: opening balance, earnings by stream, clawbacks, payouts, returns, closing balance",
    params(
        ("account" = crate::domain::ids::AccountId, Path, description = "The account id"),
        ("month" = String, Path, description = "The month, YYYY-MM (UTC)", pattern = "^[0-9]{4}-[0-9]{2}$"),
    ),
    responses(
        (status = 200, body = Statement),
        (status = "4XX", body = ErrorBody, description = "Bad id, bad month, bad key, or unknown account"),
    ),
    security(("api_key" = []))
)]
pub async fn statement(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath((account, month)): ApiPath<(String, String)>,
) -> Result<Json<Statement>, ApiError> {
    let account = account_id(&account)?;
    caller.allow_account(Action::ReadAccount(&account))?;
    let month = Month::parse(&month)
        .map_err(|e| ApiError::unprocessable("invalid_month", e.to_string()))?;
    Ok(Json(state.store.statement(&account, month).await?))
}
