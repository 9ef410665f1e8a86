//! Payout methods: where an account's money goes on each rail. Setting one goes through the
//! same path as an ingested `payout_method` record, so the destination is validated per rail
//! the same way and a change starts the same cooling-off.

use std::borrow::Cow;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

/// One route per rail, each with its own body type, so the document says exactly what a
/// destination looks like on that rail (its `providers::RailFacts::destination`). Rails are
/// listed once, at the foot of this macro's use.
macro_rules! per_rail {
    ($($rail:expr => $handler:ident, $body:ident, $path:literal;)*) => {
        $(
            #[derive(Debug, Deserialize)]
            #[serde(deny_unknown_fields)]
            pub struct $body {
                pub destination: String,
                /// Whether scheduled runs may pay through this method (default false).
                #[serde(default)]
                pub auto_payout: bool,
            }

            impl PartialSchema for $body {
                fn schema() -> RefOr<Schema> {
                    method_schema($rail)
                }
            }

            impl ToSchema for $body {
                fn name() -> Cow<'static, str> {
                    Cow::Borrowed(stringify!($body))
                }
            }

            #[utoipa::path(
                put, path = $path, tag = "accounts",
                summary = "Set the account's payout method on this rail",
                description = "Replacing a destination, or adding a method beside an existing one, \
                               holds new payouts through it for the configured cooling-off (an \
                               account-takeover defence).",
                params(("account" = crate::domain::ids::AccountId, Path, description = "The account id")),
                request_body = $body,
                responses(
                    (status = 200, body = PayoutMethodView),
                    (status = "4XX", body = ErrorBody, description = "Bad destination for the rail, bad key, or unknown account"),
                ),
                security(("api_key" = []))
            )]
            pub async fn $handler(
                State(state): State<ApiState>,
                caller: Caller,
                ApiPath(account): ApiPath<String>,
                ApiJson(body): ApiJson<$body>,
            ) -> Result<Json<PayoutMethodView>, ApiError> {
                set(state, caller, &account, $rail, &body.destination, body.auto_payout).await
            }
        )*

        /// `GET …/payout-methods` and one `PUT …/payout-methods/{rail}` per rail.
        pub fn routes(router: OpenApiRouter<ApiState>) -> OpenApiRouter<ApiState> {
            router.routes(routes!(list))$(.routes(routes!($handler)))*
        }
    };
}

per_rail! {
    Rail::Stripe => set_stripe, SetStripeMethod, "/accounts/{account}/payout-methods/stripe";
    Rail::Paypal => set_paypal, SetPaypalMethod, "/accounts/{account}/payout-methods/paypal";
    Rail::Wise => set_wise, SetWiseMethod, "/accounts/{account}/payout-methods/wise";
    Rail::Partnerstack => set_partnerstack, SetPartnerstackMethod, "/accounts/{account}/payout-methods/partnerstack";
}

fn method_schema(rail: Rail) -> RefOr<Schema> {
    let facts = crate::providers::facts(rail);
    let grammar = facts.destination;
    let destination = ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .description(Some(grammar.expected))
        .pattern(Some(grammar.pattern))
        .min_length(Some(1))
        .max_length(Some(grammar.max_len))
        .examples([serde_json::Value::from(facts.example_destination)]);
    let auto_payout = ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Boolean))
        .description(Some(
            "Whether scheduled runs may pay through this method (default false)",
        ));
    ObjectBuilder::new()
        .property("destination", destination)
        .required("destination")
        .property("auto_payout", auto_payout)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .into()
}

/// `GET /v1/accounts/{account}/payout-methods`
#[utoipa::path(
    get, path = "/accounts/{account}/payout-methods", tag = "accounts",
    summary = "An account's payout methods, with any cooling-off hold",
    params(("account" = crate::domain::ids::AccountId, Path, description = "The account id")),
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

async fn set(
    state: ApiState,
    caller: Caller,
    account: &str,
    rail: Rail,
    destination: &str,
    auto_payout: bool,
) -> Result<Json<PayoutMethodView>, ApiError> {
    let account = account_id(account)?;
    caller.allow_account(Action::SetPayoutMethod(&account))?;
    let destination = validate_destination(rail, destination)
        .map_err(|e| ApiError::bad_request("invalid_destination", e.to_string()))?;
    // Unknown accounts are a 404 before anything is written.
    state.store.payout_methods(&account).await?;
    let record = Numbered {
        line: 1,
        record: Record::PayoutMethod(PayoutMethodRecord {
            account: account.clone(),
            rail,
            destination,
            auto_payout,
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
