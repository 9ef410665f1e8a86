//! Withdrawals: `POST /v1/accounts/{account}/withdrawals` with an `Idempotency-Key`.
//!
//! The key makes a retry safe across timeouts and crashes: the same key with the same body
//! gets the first response again (marked `Idempotent-Replayed: true`), the same key with
//! another body is refused (422). The key's claim, the payout and the response commit
//! together (`Store::withdraw_keyed`), so a repeat sent while the first is running waits for
//! it and replays its answer; only a claim left by an earlier release, which committed claims
//! first, still answers 409. Beneath that, the payout itself is unique per (account, key).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, account_id, id_error, payable_amount};
use crate::domain::api_key::Action;
use crate::domain::ids::{AccountId, IdempotencyKey, ProgramId, Rail};
use crate::ingest::record::content_hash;
use crate::storage::{
    Answer, Keyed, PayoutView, WithdrawError, WithdrawalOutcome, WithdrawalRequest,
};

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const REPLAYED: &str = "idempotent-replayed";

/// A request to cash out.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalBody {
    /// The program whose balance to cash out.
    #[schema(value_type = ProgramId, example = "vast")]
    pub program: String,
    /// The rail to pay through; the account needs a payout method on it.
    #[schema(value_type = Rail)]
    pub rail: String,
    /// A decimal string; greater than zero and in whole minor units of the currency (both
    /// checked against the rules: 422 when not).
    #[schema(value_type = String, pattern = "^[0-9]+(\\.[0-9]+)?$", max_length = 40, example = "25.00")]
    pub amount: serde_json::Value,
    #[schema(value_type = crate::domain::money::Currency, example = "USD")]
    pub currency: String,
}

/// `POST /v1/accounts/{account}/withdrawals`
#[utoipa::path(
    post, path = "/accounts/{account}/withdrawals", tag = "payouts",
    summary = "Cash out: check, hold the amount and queue the payout, atomically",
    params(
        ("account" = crate::domain::ids::AccountId, Path, description = "The account id"),
        ("Idempotency-Key" = inline(IdempotencyKey), Header, description = "Unique per withdrawal; reuse it to retry safely"),
    ),
    request_body = WithdrawalBody,
    responses(
        (status = 201, body = PayoutView, description = "Created (or replayed: see Idempotent-Replayed)"),
        (status = 409, body = ErrorBody, description = "The same key is being handled right now"),
        (status = 422, body = ErrorBody, description = "Refused by the rules, or the key was used for another request"),
        (status = "4XX", body = ErrorBody, description = "Bad input or key"),
    ),
    security(("api_key" = []))
)]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(account): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<WithdrawalBody>,
) -> Result<Response, ApiError> {
    let account = account_id(&account)?;
    caller.allow_account(Action::Withdraw(&account))?;
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            ApiError::bad_request(
                "missing_idempotency_key",
                "send an Idempotency-Key header (e.g. a UUID) so a retry cannot pay twice",
            )
        })?
        .to_str()
        .map_err(|_| {
            ApiError::bad_request("invalid_idempotency_key", "the Idempotency-Key is not text")
        })
        .and_then(|k| IdempotencyKey::parse(k).map_err(id_error("invalid_idempotency_key")))?;
    let request = WithdrawalRequest {
        program: ProgramId::parse(&body.program).map_err(id_error("invalid_program"))?,
        // Exactly as the document's enum spells it (people at a terminal get leniency; an API
        // client gets the contract).
        rail: body
            .rail
            .parse::<Rail>()
            .map_err(|e| ApiError::bad_request("invalid_rail", e.to_string()))
            .and_then(|r| {
                (r.as_str() == body.rail).then_some(r).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_rail",
                        format!("rail {:?}: use {:?}", body.rail, r.as_str()),
                    )
                })
            })?,
        amount: payable_amount(&body.amount, &body.currency)?,
        account,
        idempotency_key: key,
    };

    let scope = format!("withdrawal:{}", request.account);
    let hash = request_hash(&request);
    let stale_after = state.settings.idempotency_stale_after;
    let keyed = state
        .store
        .withdraw_keyed(&request, &scope, &hash, stale_after, Box::new(answer))
        .await?;
    match keyed {
        Keyed::Answered(a) => Ok(json_response(a.status, a.body, false)),
        Keyed::Replay(a) => Ok(json_response(a.status, a.body, true)),
        Keyed::InFlight => Err(ApiError::conflict(
            "idempotency_key_in_use",
            format!(
                "a request with Idempotency-Key {:?} is still being handled; retry shortly",
                request.idempotency_key.as_str()
            ),
        )
        .retry_after(1)),
        Keyed::Mismatch => Err(key_reused(request.idempotency_key.as_str())),
    }
}

/// The response a withdrawal's outcome gets (and every repeat of the request gets again).
fn answer(outcome: Result<WithdrawalOutcome, WithdrawError>) -> Answer {
    let (status, body) = match outcome {
        Ok(outcome) => (StatusCode::CREATED, serde_json::to_string(&outcome.payout)),
        Err(e) => {
            let error = refusal(e);
            (error.status(), error_json(error))
        }
    };
    match body {
        Ok(body) => Answer {
            status: status.as_u16(),
            body,
        },
        Err(e) => {
            tracing::error!(error = %e, "could not encode a withdrawal response");
            Answer {
                status: StatusCode::INTERNAL_SERVER_ERROR.as_u16(),
                // Encoding a fixed error body cannot fail; an empty body is the last resort.
                body: error_json(ApiError::internal()).unwrap_or_default(),
            }
        }
    }
}

/// What makes two withdrawal requests the same: the parsed values, so `"25.0"` and `"25.00"`
/// are one request.
pub fn request_hash(r: &WithdrawalRequest) -> String {
    content_hash(&[
        r.account.as_str(),
        r.program.as_str(),
        r.rail.as_str(),
        &r.amount.amount().to_string(),
        r.amount.currency().code(),
    ])
}

fn key_reused(key: &str) -> ApiError {
    ApiError::unprocessable(
        "idempotency_key_reused",
        format!(
            "Idempotency-Key {key:?} was already used for a different withdrawal; use a new key for a new request"
        ),
    )
}

fn refusal(e: WithdrawError) -> ApiError {
    let message = e.to_string();
    let code = match e {
        WithdrawError::UnknownAccount(a) => return unknown_account(&a),
        WithdrawError::NoPayoutMethod { .. } => "no_payout_method",
        WithdrawError::NoBalance { .. } => "no_balance",
        WithdrawError::RailNotAllowed { .. } => "rail_not_allowed",
        WithdrawError::Ineligible { .. } => "not_eligible",
        WithdrawError::InsufficientFunds { .. } => "insufficient_funds",
        WithdrawError::IdempotencyConflict { key, .. } => return key_reused(&key),
        WithdrawError::Store(e) => return e.into(),
    };
    ApiError::unprocessable(code, message)
}

fn unknown_account(a: &AccountId) -> ApiError {
    ApiError::not_found("unknown_account", format!("account {a} is not known"))
}

fn error_json(error: ApiError) -> Result<String, serde_json::Error> {
    serde_json::to_string(&error.body())
}

fn json_response(status: u16, body: String, replayed: bool) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if replayed {
        headers.insert(REPLAYED, HeaderValue::from_static("true"));
    }
    response
}
