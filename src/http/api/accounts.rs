//! Account reads: balances per program with eligibility reasons, an account's payouts page by
//! page, and one payout with its whole history.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiPath, ApiQuery, account_id};
use crate::domain::api_key::Action;
use crate::storage::{AccountBalance, PayoutCursor, PayoutDetail, PayoutPage};

/// `GET /v1/accounts/{account}/balance`
#[utoipa::path(
    get, path = "/accounts/{account}/balance", tag = "accounts",
    summary = "An account's balance per program, with why it may or may not cash out",
    params(("account" = crate::domain::ids::AccountId, Path, description = "The account id")),
    responses(
        (status = 200, body = AccountBalance),
        (status = "4XX", body = ErrorBody, description = "Bad id, bad key, or unknown account"),
    ),
    security(("api_key" = []))
)]
pub async fn balance(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(account): ApiPath<String>,
) -> Result<Json<AccountBalance>, ApiError> {
    let account = account_id(&account)?;
    caller.allow_account(Action::ReadAccount(&account))?;
    Ok(Json(state.store.balance(&account).await?))
}

/// Paging through an account's payouts.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Payouts per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page (opaque; one this API did not give out is
    /// refused with 422).
    #[param(pattern = "^[A-Za-z0-9_-]+$", max_length = 512)]
    cursor: Option<String>,
}

pub const MAX_PAGE: u32 = 200;

/// `GET /v1/accounts/{account}/payouts`
#[utoipa::path(
    get, path = "/accounts/{account}/payouts", tag = "payouts",
    summary = "An account's payouts, newest first, a page at a time",
    params(("account" = crate::domain::ids::AccountId, Path, description = "The account id"), PageQuery),
    responses(
        (status = 200, body = PayoutPage),
        (status = "4XX", body = ErrorBody, description = "Bad id, cursor or limit, bad key, or unknown account"),
    ),
    security(("api_key" = []))
)]
pub async fn payouts(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(account): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<PayoutPage>, ApiError> {
    let account = account_id(&account)?;
    caller.allow_account(Action::ReadAccount(&account))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_PAGE}, got {limit}"),
        ));
    }
    let cursor = query
        .cursor
        .as_deref()
        .map(|c| {
            PayoutCursor::decode(c).ok_or_else(|| {
                ApiError::unprocessable(
                    "invalid_cursor",
                    "cursor is not one this API gave out; pass a page's next_cursor unchanged",
                )
            })
        })
        .transpose()?;
    Ok(Json(
        state
            .store
            .payouts_page(&account, cursor.as_ref(), limit)
            .await?,
    ))
}

/// `GET /v1/payouts/{payout}`
#[utoipa::path(
    get, path = "/payouts/{payout}", tag = "payouts",
    summary = "One payout: its state, the reason for it, every attempt and every event",
    params(("payout" = crate::domain::ids::PayoutId, Path, description = "The payout id")),
    responses(
        (status = 200, body = PayoutDetail),
        (status = "4XX", body = ErrorBody, description = "Bad key or unknown payout"),
    ),
    security(("api_key" = []))
)]
pub async fn payout(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PayoutDetail>, ApiError> {
    let hidden = || ApiError::not_found("unknown_payout", format!("payout {id} does not exist"));
    // Scopes that may read no account learn nothing, not even whether the payout exists.
    if !caller.0.reads_accounts() {
        return Err(caller.forbidden());
    }
    let detail = state.store.payout(&id).await?;
    caller.allow(Action::ReadAccount(&detail.payout.account), hidden)?;
    Ok(Json(detail))
}
