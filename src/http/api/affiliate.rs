//! Affiliate opt-in: a referrer's permanent switch from credits to cash commissions.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, account_id, id_error};
use crate::domain::api_key::Action;
use crate::domain::ids::ProgramId;
use crate::storage::{Enrollment, OptInError};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptInBody {
    /// The affiliate program to join.
    #[schema(value_type = crate::domain::ids::ProgramId, example = "runpod-affiliate")]
    pub program: String,
}

/// `POST /v1/accounts/{account}/affiliate-opt-ins`
#[utoipa::path(
    post, path = "/accounts/{account}/affiliate-opt-ins", tag = "accounts",
    summary = "Opt an account into an affiliate program (permanent)",
    params(("account" = crate::domain::ids::AccountId, Path, description = "The account id")),
    request_body = OptInBody,
    responses(
        (status = 201, body = Enrollment),
        (status = 409, body = ErrorBody, description = "Already opted in"),
        (status = 422, body = ErrorBody, description = "Not an affiliate program, or too few paying referrals"),
        (status = "4XX", body = ErrorBody, description = "Bad input or key, or unknown account"),
    ),
    security(("api_key" = []))
)]
pub async fn opt_in(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(account): ApiPath<String>,
    ApiJson(body): ApiJson<OptInBody>,
) -> Result<(StatusCode, Json<Enrollment>), ApiError> {
    let account = account_id(&account)?;
    caller.allow_account(Action::OptIn(&account))?;
    let program = ProgramId::parse(&body.program).map_err(id_error("invalid_program"))?;
    match state
        .store
        .opt_in(&program, &account, crate::clock::now())
        .await
    {
        Ok(enrollment) => Ok((StatusCode::CREATED, Json(enrollment))),
        Err(e) => Err(refusal(e)),
    }
}

fn refusal(e: OptInError) -> ApiError {
    let message = e.to_string();
    match e {
        OptInError::UnknownAccount(_) => ApiError::not_found("unknown_account", message),
        OptInError::UnknownProgram { .. } => ApiError::unprocessable("unknown_program", message),
        OptInError::NotAffiliate { .. } => {
            ApiError::unprocessable("not_affiliate_program", message)
        }
        OptInError::TooFewPayingReferrals { .. } => {
            ApiError::unprocessable("too_few_paying_referrals", message)
        }
        OptInError::AlreadyOptedIn { .. } => ApiError::conflict("already_opted_in", message),
        OptInError::Store(e) => e.into(),
    }
}
