//! OpenAPI schemas for the domain's value types. The domain stays free of the HTTP edge's
//! concerns; what these types look like on the wire is described here, where it is served.

use std::borrow::Cow;

use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::ids::{AccountId, PayoutId, ProgramId, RecordId, TemplateId};
use crate::domain::money::{Currency, Money};
use crate::domain::payout_run::RunPeriod;

fn string_schema(description: &str, example: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .description(Some(description))
        .examples([serde_json::Value::from(example)])
        .into()
}

/// Text on the wire: an id, a code or a period.
macro_rules! text_schema {
    ($($ty:ty => $name:literal, $description:literal, $example:literal;)*) => {$(
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                string_schema($description, $example)
            }
        }
        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    )*};
}

text_schema! {
    AccountId => "AccountId", "A platform account id: letters, digits and . _ - : @ +", "acct-1001";
    ProgramId => "ProgramId", "A configured program's id", "vast";
    PayoutId => "PayoutId", "A payout's id", "po_01JD5Q7N3X6V2Y8ZK4M0A9B1C2";
    RecordId => "RecordId", "A platform record's id", "u-20261121-0001";
    TemplateId => "TemplateId", "A template's id", "tpl-comfyui";
    RunPeriod => "RunPeriod", "The period a payout run pays for", "2026-11-21";
    Currency => "Currency", "An ISO 4217 currency code this service handles", "USD";
}

impl PartialSchema for Money {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "An exact amount: a decimal string (never a JSON number) and its currency",
            ))
            .property(
                "amount",
                string_schema("Decimal amount, e.g. 12.50", "12.50"),
            )
            .required("amount")
            .property("currency", Currency::schema())
            .required("currency")
            .into()
    }
}

impl ToSchema for Money {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Money")
    }
}
