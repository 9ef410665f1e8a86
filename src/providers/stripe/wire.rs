//! Stripe's wire format for transfers, as far as this system uses it. Field names follow the
//! API exactly; amounts are integer minor units with lowercase currency codes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A Stripe Transfer object (`tr_…`). Transfers have no status: one exists or it does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub id: String,
    pub object: String,
    pub amount: i64,
    #[serde(default)]
    pub amount_reversed: i64,
    #[serde(default)]
    pub balance_transaction: Option<String>,
    pub created: i64,
    pub currency: String,
    #[serde(default)]
    pub description: Option<String>,
    pub destination: String,
    #[serde(default)]
    pub destination_payment: Option<String>,
    #[serde(default)]
    pub livemode: bool,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub reversed: bool,
    #[serde(default)]
    pub source_transaction: Option<String>,
    #[serde(default)]
    pub source_type: Option<String>,
    #[serde(default)]
    pub transfer_group: Option<String>,
}

/// A Stripe Payout object (`po_…`): money leaving a Stripe balance for a bank account or
/// card. Platform payouts to the platform's own bank are counted in reconciliation totals but
/// never matched to a referral payout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    pub id: String,
    pub object: String,
    pub amount: i64,
    #[serde(default)]
    pub arrival_date: Option<i64>,
    #[serde(default)]
    pub automatic: bool,
    #[serde(default)]
    pub balance_transaction: Option<String>,
    pub created: i64,
    pub currency: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `ba_…` or `card_…`.
    #[serde(default)]
    pub destination: Option<String>,
    #[serde(default)]
    pub failure_code: Option<String>,
    #[serde(default)]
    pub failure_message: Option<String>,
    #[serde(default)]
    pub livemode: bool,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub statement_descriptor: Option<String>,
    /// `pending`, `in_transit`, `paid`, `failed` or `canceled`.
    pub status: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// Stripe's list envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct List<T> {
    pub object: String,
    pub data: Vec<T>,
    pub has_more: bool,
    pub url: String,
}

/// `{"error": {...}}`, Stripe's error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
}

impl ErrorBody {
    pub fn new(
        kind: &str,
        code: Option<&str>,
        message: impl Into<String>,
        param: Option<&str>,
    ) -> Self {
        ErrorBody {
            error: ErrorDetail {
                kind: kind.to_string(),
                code: code.map(str::to_string),
                message: message.into(),
                param: param.map(str::to_string),
            },
        }
    }
}

/// Headers Stripe uses to steer clients.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
pub const SHOULD_RETRY: &str = "stripe-should-retry";
pub const REQUEST_ID: &str = "request-id";
