//! Payout methods: where an account's money goes on each rail. Setting one goes through the
//! same path as an ingested `payout_method` record, so the destination is validated per rail
//! the same way and a change starts the same cooling-off.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, account_id};
use crate::domain::api_key::Action;
use crate::domain::ids::Rail;
use crate::ingest::record::{PayoutMethodRecord, validate_destination};
use crate::ingest::{IngestReport, Numbered, Record};
use crate::storage::PayoutMethodView;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PayoutMethods {
    pub methods: Vec<PayoutMethodView>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPayoutMethod {
    /// Stripe: a connected account (acct_…); PayPal: an email; Wise: a numeric recipient id;
    /// PartnerStack: a partner key.
    #[schema(example = "acct_1A2b3C")]
    pub destination: String,
    /// Whether scheduled runs may pay through this method (default false).
    #[serde(default)]
    pub auto_payout: bool,
}

/// `GET /v1/accounts/{account}/payout-methods`
#[utoipa::path(
    get, path = "/accounts/{account}/payout-methods", tag = "accounts",
    summary = "An account's payout methods, with any cooling-off hold",
    params(("account" = String, Path, description = "The account id")),
    responses(
        (status = 200, body = PayoutMethods),
        (status = "4XX", body = ErrorBody, description = "Bad id, bad key, or unknown account"),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(account): ApiPath<String>,
) -> Result<Json<PayoutMethods>, ApiError> {
    let account = account_id(&account)?;
    caller.allow_account(Action::ReadAccount(&account))?;
    Ok(Json(PayoutMethods {
        methods: state.store.payout_methods(&account).await?,
    }))
}

/// `PUT /v1/accounts/{account}/payout-methods/{rail}`
#[utoipa::path(
    put, path = "/accounts/{account}/payout-methods/{rail}", tag = "accounts",
    summary = "Set the account's payout method on one rail",
    description = "Replacing a destination, or adding a method beside an existing one, holds \
                   new payouts through it for the configured cooling-off (an account-takeover defence).",
    params(
        ("account" = String, Path, description = "The account id"),
        ("rail" = Rail, Path, description = "stripe, paypal, wise or partnerstack"),
    ),
    request_body = SetPayoutMethod,
    responses(
        (status = 200, body = PayoutMethodView),
        (status = "4XX", body = ErrorBody, description = "Bad destination for the rail, bad key, or unknown account"),
    ),
    security(("api_key" = []))
)]
pub async fn set(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath((account, rail)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<SetPayoutMethod>,
) -> Result<Json<PayoutMethodView>, ApiError> {
    let account = account_id(&account)?;
    caller.allow_account(Action::SetPayoutMethod(&account))?;
    let rail: Rail = rail.parse().map_err(|e: crate::domain::ids::IdError| {
        ApiError::bad_request("invalid_rail", e.to_string())
    })?;
    let destination = validate_destination(rail, &body.destination)
        .map_err(|e| ApiError::bad_request("invalid_destination", e.to_string()))?;
    // Unknown accounts are a 404 before anything is written.
    state.store.payout_methods(&account).await?;
    let record = Numbered {
        line: 1,
        record: Record::PayoutMethod(PayoutMethodRecord {
            account: account.clone(),
            rail,
            destination,
            auto_payout: body.auto_payout,
        }),
    };
    let mut report = IngestReport::default();
    let refused = state
        .store
        .ingest_batch(std::slice::from_ref(&record), &mut report, true)
        .await?;
    if let Some(e) = refused.first() {
        return Err(ApiError::unprocessable(
            "payout_method_refused",
            e.message.clone(),
        ));
    }
    state
        .store
        .payout_methods(&account)
        .await?
        .into_iter()
        .find(|m| m.rail == rail)
        .map(Json)
        .ok_or_else(ApiError::internal)
}
