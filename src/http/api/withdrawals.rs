//! Withdrawals: `POST /v1/accounts/{account}/withdrawals` with an `Idempotency-Key`.
//!
//! The key makes a retry safe across timeouts and crashes: the same key with the same body
//! gets the first response again (marked `Idempotent-Replayed: true`), the same key with
//! another body is refused (422), and a repeat while the first is still running gets 409.
//! Beneath that, the payout itself is unique per (account, key), so even a response lost
//! between commit and storage cannot turn into a second payout.

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
use crate::storage::{IdempotencyBegin, PayoutView, WithdrawError, WithdrawalRequest};

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
    let store = &state.store;
    let key = request.idempotency_key.as_str();
    match store
        .idempotency_begin(&scope, key, &hash, state.settings.idempotency_stale_after)
        .await?
    {
        IdempotencyBegin::Started => {}
        IdempotencyBegin::Replay { status, body } => return Ok(replay(status, body)),
        IdempotencyBegin::InFlight => {
            return Err(ApiError::conflict(
                "idempotency_key_in_use",
                format!(
                    "a request with Idempotency-Key {key:?} is still being handled; retry shortly"
                ),
            )
            .retry_after(1));
        }
        IdempotencyBegin::Mismatch => return Err(key_reused(key)),
    }
    // If this request is abandoned from here on (its deadline passed, the client went away),
    // the claim is released so that a retry proceeds at once instead of meeting a 409.
    let mut claim = Claim {
        store: store.clone(),
        scope: scope.clone(),
        key: key.to_string(),
        settled: false,
    };

    let (status, body) = match store.create_withdrawal(&request).await {
        Ok(outcome) => (StatusCode::CREATED, serde_json::to_string(&outcome.payout)),
        Err(e) => {
            let error = refusal(e);
            let status = error.status();
            (status, error_json(error))
        }
    };
    let body = body.map_err(|e| {
        tracing::error!(error = %e, "could not encode a withdrawal response");
        ApiError::internal()
    });
    match (&body, status.is_server_error()) {
        (Ok(text), false) => {
            store
                .idempotency_complete(&scope, key, status.as_u16(), text)
                .await?
        }
        // A failure of ours: release the key so a retry does the work.
        _ => store.idempotency_abandon(&scope, key).await?,
    }
    claim.settled = true;
    Ok(json_response(status, body?, false))
}

/// A claimed Idempotency-Key whose request has not settled it yet.
struct Claim {
    store: crate::storage::Store,
    scope: String,
    key: String,
    settled: bool,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (store, scope, key) = (self.store.clone(), self.scope.clone(), self.key.clone());
        // Dropped inside the server's runtime (a handler future), so a task can be spawned.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.idempotency_abandon(&scope, &key).await {
                    tracing::warn!(error = %e, %key, "could not release an abandoned Idempotency-Key; it frees itself when stale");
                }
            });
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

fn replay(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    json_response(status, body, true)
}

fn json_response(status: StatusCode, body: String, replayed: bool) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
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
