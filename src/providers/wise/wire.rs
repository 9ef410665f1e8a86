//! Wise's wire format for quotes, recipients, transfers, funding and errors, as far as this
//! system uses it. Field names follow the API exactly. Amounts and rates are JSON numbers:
//! [`Num`] carries them as exact decimal text both ways, so no float ever touches money.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A decimal that travels as a JSON number (`100.25`, not `"100.25"`), read and written as
/// its exact text. Only works with serde_json's byte/str (de)serializers, which is all we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Num(pub Decimal);

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw = RawValue::from_string(self.0.to_string()).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        let text = raw.get().trim().trim_matches('"');
        let parsed = if text.contains(['e', 'E']) {
            Decimal::from_scientific(text)
        } else {
            Decimal::from_str(text)
        };
        parsed
            .map(Num)
            .map_err(|e| serde::de::Error::custom(format!("{text:?} is not a decimal: {e}")))
    }
}

/// `GET /v1/profiles` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: String,
}

/// A recipient account (`/v1/accounts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: u64,
    pub profile: u64,
    pub account_holder_name: String,
    pub currency: String,
    pub country: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub active: bool,
    #[serde(default)]
    pub owned_by_customer: bool,
}

/// `POST /v3/profiles/{profileId}/quotes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuoteRequest {
    pub source_currency: String,
    pub target_currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_amount: Option<Num>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_amount: Option<Num>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_account: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pay_out: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_pay_in: Option<String>,
}

/// A quote: the locked rate and both amounts, valid until `expirationTime`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quote {
    pub id: String,
    pub source_currency: String,
    pub target_currency: String,
    pub source_amount: Num,
    pub target_amount: Num,
    pub rate: Num,
    pub rate_type: String,
    pub created_time: String,
    pub expiration_time: String,
    pub pay_out: String,
    pub profile: u64,
    pub status: String,
}

/// `POST /v1/transfers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferRequest {
    pub target_account: u64,
    pub quote_uuid: String,
    pub customer_transaction_id: String,
    #[serde(default)]
    pub details: TransferDetails,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// A Wise transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    pub id: u64,
    #[serde(default)]
    pub user: Option<u64>,
    pub target_account: u64,
    #[serde(default)]
    pub source_account: Option<u64>,
    #[serde(default)]
    pub quote_uuid: Option<String>,
    pub status: String,
    /// Deprecated top-level reference (older transfers); ours is in `details.reference`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub rate: Num,
    /// `YYYY-MM-DD HH:MM:SS`, UTC.
    pub created: String,
    #[serde(default)]
    pub business: Option<u64>,
    #[serde(default)]
    pub details: TransferDetails,
    #[serde(default)]
    pub has_active_issues: bool,
    pub source_currency: String,
    pub source_value: Num,
    pub target_currency: String,
    pub target_value: Num,
    #[serde(default)]
    pub customer_transaction_id: Option<String>,
}

/// `POST /v3/profiles/{profileId}/transfers/{transferId}/payments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundRequest {
    #[serde(rename = "type")]
    pub kind: String,
}

/// The funding answer: a 2xx does not mean funded; `status` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FundResponse {
    #[serde(rename = "type")]
    pub kind: String,
    /// `COMPLETED` or `REJECTED`.
    pub status: String,
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_transaction_id: Option<u64>,
}

/// Any of Wise's three error body shapes: validation `{"errors":[…]}`, OAuth
/// `{"error","error_description"}` and Spring `{"timestamp","status","error","message","path"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ErrorItem>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorItem {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<serde_json::Value>,
}

impl ErrorBody {
    /// Shape 1: a validation or business error.
    pub fn validation(code: &str, message: &str, path: Option<&str>) -> Self {
        ErrorBody {
            errors: Some(vec![ErrorItem {
                code: Some(code.into()),
                message: Some(message.into()),
                path: path.map(str::to_string),
                arguments: Vec::new(),
            }]),
            ..ErrorBody::default()
        }
    }

    /// Shape 2: an OAuth-style auth error.
    pub fn oauth(error: &str, description: &str) -> Self {
        ErrorBody {
            error: Some(error.into()),
            error_description: Some(description.into()),
            ..ErrorBody::default()
        }
    }

    /// Shape 3: a Spring-style system error.
    pub fn system(status: u16, error: &str, message: &str, path: &str) -> Self {
        ErrorBody {
            timestamp: Some(crate::clock::now().to_rfc3339()),
            status: Some(status),
            error: Some(error.into()),
            message: Some(message.into()),
            path: Some(path.into()),
            ..ErrorBody::default()
        }
    }

    /// The code to classify on: the first validation code, else the OAuth/system `error`.
    pub fn code(&self) -> Option<&str> {
        self.errors
            .as_ref()
            .and_then(|e| e.iter().find_map(|i| i.code.as_deref()))
            .or(self.error.as_deref())
    }

    /// Every message the body carries, for people.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for item in self.errors.iter().flatten() {
            let mut part = item.message.clone().unwrap_or_default();
            if let Some(p) = &item.path {
                part.push_str(&format!(" [{p}]"));
            }
            parts.push(part);
        }
        if let Some(d) = self.error_description.as_ref().or(self.message.as_ref()) {
            parts.push(d.clone());
        }
        parts.join("; ")
    }
}

/// The `transfers#state-change` v2 webhook envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEnvelope {
    pub data: serde_json::Value,
    pub subscription_id: String,
    pub event_type: String,
    pub schema_version: String,
    pub sent_at: String,
}

/// `data` of a `transfers#state-change` v2 event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    pub resource: Resource,
    pub current_state: String,
    #[serde(default)]
    pub previous_state: Option<String>,
    pub occurred_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: u64,
    #[serde(default)]
    pub profile_id: Option<u64>,
    #[serde(default)]
    pub account_id: Option<u64>,
}

pub const STATE_CHANGE: &str = "transfers#state-change";
pub const SIGNATURE_HEADER: &str = "x-signature-sha256";
pub const DELIVERY_ID_HEADER: &str = "x-delivery-id";
/// The state an unfunded transfer sits in.
pub const WAITING: &str = "incoming_payment_waiting";
pub const CANCELLED: &str = "cancelled";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_exact_text() {
        let q = QuoteRequest {
            source_currency: "USD".into(),
            target_currency: "EUR".into(),
            source_amount: Some(Num(Decimal::new(10010, 2))),
            target_amount: None,
            target_account: Some(7),
            pay_out: None,
            preferred_pay_in: None,
        };
        let text = serde_json::to_string(&q).unwrap_or_default();
        assert!(text.contains("\"sourceAmount\":100.10"), "{text}");
        let n: Num = serde_json::from_str("0.92100000000000001").unwrap_or(Num(Decimal::ZERO));
        assert_eq!(n.0.to_string(), "0.92100000000000001");
        let n: Num = serde_json::from_str("1e2").unwrap_or(Num(Decimal::ZERO));
        assert_eq!(n.0, Decimal::from(100));
    }

    #[test]
    fn all_three_error_shapes_parse() {
        let v: ErrorBody = serde_json::from_str(
            r#"{"errors":[{"code":"error.route.not.supported","message":"no","path":"sourceAmount","arguments":["CNY-EUR"]}]}"#,
        )
        .unwrap_or_default();
        assert_eq!(v.code(), Some("error.route.not.supported"));
        let o: ErrorBody =
            serde_json::from_str(r#"{"error":"invalid_token","error_description":"expired"}"#)
                .unwrap_or_default();
        assert_eq!(o.code(), Some("invalid_token"));
        assert_eq!(o.describe(), "expired");
        let s: ErrorBody = serde_json::from_str(
            r#"{"timestamp":"t","status":500,"error":"Internal Server Error","message":"boom","path":"/v1/transfers"}"#,
        )
        .unwrap_or_default();
        assert_eq!(s.status, Some(500));
        assert_eq!(s.describe(), "boom");
    }
}
