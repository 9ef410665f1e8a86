//! PartnerStack vendor API v2 wire format, as far as this system uses it
//! (docs/providers/partnerstack.md, "Basics"). Every answer is an envelope
//! `{data, message, status}`; lists page with `{has_more, items}`; amounts are integer minor
//! units with an upper-case currency; times are epoch milliseconds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The success envelope around every answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub data: T,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub status: u16,
}

/// One page of a cursor-paginated list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    pub has_more: bool,
    pub items: Vec<T>,
}

/// A reward: what PartnerStack owes a partner. `key` is ours (deterministic per attempt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reward {
    pub key: String,
    pub partner_key: String,
    pub amount: i64,
    pub currency: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Approval status (`approved`, `pending`, `declined`; full list UNCONFIRMED).
    #[serde(default)]
    pub status: String,
    /// Where the money is: `pending`, `available`, `in_transit`, `withdrawn`, ...
    pub payment_status: String,
    /// Epoch milliseconds.
    pub created_at: i64,
    /// Epoch milliseconds of the last change, when the API gives it.
    #[serde(default)]
    pub updated_at: Option<i64>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Created with the Test key pair.
    #[serde(default)]
    pub test: bool,
}

/// Body of `POST /rewards` (manual reward; endpoint and schema UNCONFIRMED).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateReward {
    pub partner_key: String,
    pub amount: i64,
    pub currency: String,
    #[serde(default)]
    pub description: Option<String>,
    pub key: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// `{"message": "...", "status": 4xx}`, PartnerStack's error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
    pub status: u16,
}

/// The metadata field carrying our payout id.
pub const PAYOUT_ID: &str = "payout_id";
/// Our own webhook protection header (not a PartnerStack feature).
pub const WEBHOOK_TOKEN: &str = "x-webhook-token";
/// Largest page the API serves.
pub const MAX_LIMIT: usize = 250;
/// Bounds on a reward/transaction `key`.
pub const KEY_MIN: usize = 4;
pub const KEY_MAX: usize = 255;
