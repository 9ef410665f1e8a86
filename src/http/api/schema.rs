//! OpenAPI schemas for the domain's value types. The domain stays free of the HTTP edge's
//! concerns; what these types look like on the wire is described here, where it is served.

use std::borrow::Cow;

use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::ids::{
    AccountId, IdempotencyKey, PayoutId, ProgramId, RecordId, TOKEN_PATTERN, TemplateId,
};
use crate::domain::money::{Currency, Money};
use crate::domain::payout_run::RunPeriod;

fn string_schema(description: &str, example: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .description(Some(description))
        .examples([serde_json::Value::from(example)])
}

/// A string the server parses with a known grammar: the document publishes it exactly, so a
/// client (or a fuzzer) can tell what will be accepted without trying.
fn grammar_schema(description: &str, example: &str, pattern: &str, max: usize) -> RefOr<Schema> {
    string_schema(description, example)
        .pattern(Some(pattern))
        .min_length(Some(1))
        .max_length(Some(max))
        .into()
}

/// Text on the wire: an id, a code or a period, with the grammar its parser accepts.
macro_rules! text_schema {
    ($($ty:ty => $name:literal, $description:literal, $example:literal, $pattern:expr, $max:expr;)*) => {$(
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                grammar_schema($description, $example, $pattern, $max)
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
    AccountId => "AccountId", "A platform account id: letters, digits and . _ - : @ +", "acct-1001", TOKEN_PATTERN, AccountId::MAX_LEN;
    ProgramId => "ProgramId", "A configured program's id", "vast", TOKEN_PATTERN, ProgramId::MAX_LEN;
    PayoutId => "PayoutId", "A payout's id", "po_01JD5Q7N3X6V2Y8ZK4M0A9B1C2", TOKEN_PATTERN, PayoutId::MAX_LEN;
    RecordId => "RecordId", "A platform record's id", "u-20261121-0001", TOKEN_PATTERN, RecordId::MAX_LEN;
    TemplateId => "TemplateId", "A template's id", "tpl-comfyui", TOKEN_PATTERN, TemplateId::MAX_LEN;
    IdempotencyKey => "IdempotencyKey", "A key unique per withdrawal: letters, digits and . _ - : @ +", "3f1c2a9e-withdraw-1", TOKEN_PATTERN, IdempotencyKey::MAX_LEN;
    RunPeriod => "RunPeriod", "The period a payout run pays for", "2026-11-21", RunPeriod::PATTERN, 32;
}

impl PartialSchema for Currency {
    fn schema() -> RefOr<Schema> {
        string_schema("An ISO 4217 currency code this service handles", "USD")
            .enum_values(Some(Currency::all().map(Currency::code)))
            .into()
    }
}

impl ToSchema for Currency {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Currency")
    }
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

/// An exception id in a path: only the grammar, the id itself is `domain::reconcile`'s.
pub struct ExceptionIdText;

impl PartialSchema for ExceptionIdText {
    fn schema() -> RefOr<Schema> {
        grammar_schema(
            "A reconciliation exception's id",
            "rx_0f3a9c2b7d1e4a6b8c90",
            crate::domain::reconcile::ExceptionId::PATTERN,
            23,
        )
    }
}

impl ToSchema for ExceptionIdText {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ExceptionId")
    }
}
