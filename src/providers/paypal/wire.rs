//! PayPal Payouts v1 wire format (docs/providers/paypal.md, "Request and response fields"),
//! as far as this system uses it.
//! Field names follow the API exactly; amounts are decimal strings with the currency's minor
//! decimals (`"12.30"` USD, `"1230"` JPY). Optional fields default so that a richer real
//! answer still parses.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::money::{Currency, Money, MoneyError};

/// Idempotency header for the create call; we set it to the sender_batch_id.
pub const REQUEST_ID: &str = "PayPal-Request-Id";
/// Mirrors `debug_id` on every answer; worth logging.
pub const DEBUG_ID: &str = "Paypal-Debug-Id";
/// Scope payout calls need.
pub const PAYOUTS_SCOPE: &str = "https://uri.paypal.com/payments/payouts";

/// Answer of `POST /v1/oauth2/token`.
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub scope: String,
    pub access_token: String,
    pub token_type: String,
    #[serde(default)]
    pub app_id: Option<String>,
    pub expires_in: u64,
    #[serde(default)]
    pub nonce: Option<String>,
}

/// Token answers carry a bearer secret: never print it.
impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("access_token", &"[redacted]")
            .finish()
    }
}

/// OAuth-style error body of the token endpoint (not PayPal's standard error shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OAuthError {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    pub value: String,
    pub currency: String,
}

impl Amount {
    /// The wire form of `money`: exactly the currency's minor decimals. Fails on sub-minor
    /// amounts rather than rounding money.
    pub fn from_money(money: &Money) -> Result<Amount, MoneyError> {
        let currency = money.currency();
        let minor = money.to_minor_units()?;
        let value = Decimal::new(minor, currency.minor_decimals());
        Ok(Amount {
            value: value.to_string(),
            currency: currency.code().to_string(),
        })
    }

    /// Minor units, if the value is a decimal with at most the currency's minor decimals.
    pub fn to_minor(&self) -> Option<(Currency, i64)> {
        let currency: Currency = self.currency.parse().ok()?;
        let value: Decimal = self.value.parse().ok()?;
        if value.scale() > currency.minor_decimals() {
            return None;
        }
        Money::new(value, currency)
            .to_minor_units()
            .ok()
            .map(|m| (currency, m))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SenderBatchHeader {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_batch_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One item of a create request, and the `payout_item` echoed back on reads.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ItemRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_item_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_wallet: Option<String>,
}

/// Body of `POST /v1/payments/payouts`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CreatePayout {
    #[serde(default)]
    pub sender_batch_header: Option<SenderBatchHeader>,
    #[serde(default)]
    pub items: Vec<ItemRequest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub href: String,
    #[serde(default)]
    pub rel: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchHeader {
    pub payout_batch_id: String,
    pub batch_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_completed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_closed: Option<String>,
    #[serde(default)]
    pub sender_batch_header: SenderBatchHeader,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funding_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fees: Option<Amount>,
}

/// 201 answer of the create call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateResponse {
    pub batch_header: BatchHeader,
    #[serde(default)]
    pub links: Vec<Link>,
}

/// Why an item did not go through (`errors` on an item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemError {
    pub name: String,
    #[serde(default)]
    pub message: Option<String>,
}

/// One payout item as `GET /v1/payments/payouts-item/{id}` and the batch read return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutItem {
    pub payout_item_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_id: Option<String>,
    pub transaction_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_item_fee: Option<Amount>,
    pub payout_batch_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_batch_id: Option<String>,
    #[serde(default)]
    pub payout_item: ItemRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_processed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<ItemError>,
    #[serde(default)]
    pub links: Vec<Link>,
}

/// Answer of `GET /v1/payments/payouts/{payout_batch_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutBatch {
    pub batch_header: BatchHeader,
    #[serde(default)]
    pub items: Vec<PayoutItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_items: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_pages: Option<u64>,
    #[serde(default)]
    pub links: Vec<Link>,
}

/// An amount as the reporting API writes it: signed (money out is negative).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportAmount {
    pub currency_code: String,
    pub value: String,
}

/// One transaction of `GET /v1/reporting/transactions`. A payout batch appears with its
/// `payout_batch_id` as `paypal_reference_id` (event code `T0001`, Mass Payment; the exact
/// reference type PayPal writes for payouts is UNCONFIRMED).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TransactionInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paypal_reference_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paypal_reference_id_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_event_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_initiation_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_updated_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_amount: Option<ReportAmount>,
    /// `S` success, `P` pending, `D` denied, `V` reversed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionDetail {
    pub transaction_info: TransactionInfo,
}

/// Answer of `GET /v1/reporting/transactions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionSearch {
    #[serde(default)]
    pub transaction_details: Vec<TransactionDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refreshed_datetime: Option<String>,
    #[serde(default)]
    pub page: u64,
    #[serde(default)]
    pub total_items: u64,
    #[serde(default)]
    pub total_pages: u64,
    #[serde(default)]
    pub links: Vec<Link>,
}

/// Event code of a Mass Payment (payouts) transaction.
pub const PAYOUT_EVENT_CODE: &str = "T0001";
/// The transaction search spans at most this many days per request.
pub const SEARCH_MAX_DAYS: i64 = 31;
/// The transaction search's largest page.
pub const SEARCH_PAGE_SIZE: u32 = 500;
/// The batch read's largest page of items.
pub const BATCH_PAGE_SIZE: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// PayPal's standard error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub name: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub debug_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub information_link: Option<String>,
    #[serde(default)]
    pub details: Vec<ErrorDetail>,
    #[serde(default)]
    pub links: Vec<Link>,
}

impl ErrorBody {
    pub fn new(name: &str, message: &str) -> Self {
        ErrorBody {
            name: name.into(),
            message: message.into(),
            debug_id: Some("mockdebug0001".into()),
            information_link: Some(format!(
                "https://developer.paypal.com/docs/api/payments.payouts-batch/v1/#errors-{name}"
            )),
            details: Vec::new(),
            links: Vec::new(),
        }
    }
}

/// Body of `POST /v1/notifications/verify-webhook-signature`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyRequest {
    pub auth_algo: String,
    pub cert_url: String,
    pub transmission_id: String,
    pub transmission_sig: String,
    pub transmission_time: String,
    pub webhook_id: String,
    pub webhook_event: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyResponse {
    pub verification_status: String,
}

/// The webhook event envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    pub id: String,
    #[serde(default)]
    pub create_time: Option<String>,
    #[serde(default)]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub event_version: Option<String>,
    pub event_type: String,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub resource_version: Option<String>,
    #[serde(default)]
    pub resource: Value,
    #[serde(default)]
    pub links: Vec<Link>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_use_the_currency_minor_decimals() {
        let usd = Money::parse("12.3", Currency::Usd, 6).unwrap();
        assert_eq!(Amount::from_money(&usd).unwrap().value, "12.30");
        let jpy = Money::parse("1230", Currency::Jpy, 6).unwrap();
        assert_eq!(Amount::from_money(&jpy).unwrap().value, "1230");
        let sub = Money::parse("1.001", Currency::Usd, 6).unwrap();
        assert!(Amount::from_money(&sub).is_err());
        let a = Amount {
            value: "12.30".into(),
            currency: "USD".into(),
        };
        assert_eq!(a.to_minor(), Some((Currency::Usd, 1230)));
        let bad = Amount {
            value: "12.3".into(),
            currency: "JPY".into(),
        };
        assert_eq!(bad.to_minor(), None);
    }
}
