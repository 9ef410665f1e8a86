//! The mock's state behind its lock, and what happens to a transfer over time: its scripted
//! steps, the money coming back to the balance, and the signed webhook each change sends.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use secrecy::SecretString;
use sha2::Sha256;
use uuid::Uuid;

use super::{FundingQuirks, RepeatMode};
use crate::domain::money::Currency;
use crate::domain::tracking::RailState;
use crate::providers::wise::wire::{Account, Quote, Transfer};
use crate::sim::kit::{Dice, Faults, MovedMoney, Outbox};

const SUBSCRIPTION_ID: &str = "4b0e5d0a-6f2b-4c59-9a4e-3a4f0c6e2b11";

#[derive(Debug)]
pub(super) struct MockQuote {
    pub(super) quote: Quote,
    pub(super) expires: DateTime<Utc>,
    pub(super) target_account: Option<u64>,
    pub(super) used_by: Option<u64>,
}

#[derive(Debug)]
pub(super) struct MockTransfer {
    pub(super) transfer: Transfer,
    /// Source-currency minor units taken from the balance, once funded.
    pub(super) funded_minor: Option<i64>,
    pub(super) refunded: bool,
    pub(super) failure_code: Option<String>,
    pub(super) script: VecDeque<(Instant, &'static str)>,
    pub(super) ctid_at: Instant,
}

pub(super) struct Inner {
    pub(super) token: SecretString,
    pub(super) profile_id: u64,
    pub(super) faults: Faults,
    pub(super) dice: Dice,
    pub(super) accounts: Vec<Account>,
    pub(super) quotes: HashMap<String, MockQuote>,
    pub(super) transfers: Vec<MockTransfer>,
    pub(super) balances: BTreeMap<String, i64>,
    pub(super) clock_offset: chrono::Duration,
    /// At most this many transfers per listing page, whatever `limit` asks: Wise may answer
    /// a short page that is not the last.
    pub(super) page_cap: Option<usize>,
    pub(super) next_id: u64,
    pub(super) process_after: Duration,
    pub(super) late_after: Duration,
    pub(super) repeat_mode: RepeatMode,
    pub(super) funding_quirks: FundingQuirks,
    pub(super) duplicate_webhooks: bool,
    pub(super) out_of_order_webhooks: bool,
    pub(super) signer: SigningKey<Sha256>,
    pub(super) outbox: Outbox,
}

pub(super) type Shared = Arc<Mutex<Inner>>;

pub(super) fn moved(inner: &Inner) -> Vec<MovedMoney> {
    inner
        .transfers
        .iter()
        .filter_map(|t| {
            let minor = t.funded_minor?;
            let state = match t.transfer.status.as_str() {
                "outgoing_payment_sent" => RailState::Paid,
                "funds_refunded" | "charged_back" => RailState::Returned,
                "cancelled" => RailState::Failed,
                _ => RailState::InFlight,
            };
            Some(MovedMoney {
                payout_id: t.transfer.details.reference.clone().unwrap_or_default(),
                provider_ref: t.transfer.id.to_string(),
                currency: t.transfer.source_currency.clone(),
                minor,
                state,
            })
        })
        .collect()
}

pub(super) fn advance(inner: &mut Inner, transfer_id: &str, status: &str) -> bool {
    let Some(i) = inner
        .transfers
        .iter()
        .position(|t| t.transfer.id.to_string() == transfer_id)
    else {
        return false;
    };
    inner.transfers[i].script.clear();
    set_status(inner, i, status);
    true
}

/// Applies every scripted step that is due.
pub(super) fn progress_due(inner: &mut Inner, now: Instant) {
    for i in 0..inner.transfers.len() {
        while let Some((due, status)) = inner.transfers[i].script.front().copied() {
            if due > now {
                break;
            }
            inner.transfers[i].script.pop_front();
            set_status(inner, i, status);
        }
    }
}

/// Changes a transfer's status, returns money to the balance where the status says it came
/// back, and sends the webhook.
pub(super) fn set_status(inner: &mut Inner, i: usize, status: &str) {
    let previous = inner.transfers[i].transfer.status.clone();
    if previous == status {
        return;
    }
    let t = &mut inner.transfers[i];
    t.transfer.status = status.to_string();
    if matches!(status, "funds_refunded" | "cancelled")
        && !t.refunded
        && let Some(minor) = t.funded_minor
    {
        t.refunded = true;
        let currency = t.transfer.source_currency.clone();
        *inner.balances.entry(currency).or_insert(0) += minor;
    }
    let transfer = inner.transfers[i].transfer.clone();
    deliver(inner, &transfer, Some(previous));
}

/// Sends a signed `transfers#state-change` v2 event through the outbox.
pub(super) fn deliver(inner: &mut Inner, t: &Transfer, previous: Option<String>) {
    let now = crate::clock::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let body = serde_json::json!({
        "data": {
            "resource": {
                "type": "transfer",
                "id": t.id,
                "profile_id": inner.profile_id,
                "account_id": t.target_account,
            },
            "current_state": t.status,
            "previous_state": previous,
            "occurred_at": now,
        },
        "subscription_id": SUBSCRIPTION_ID,
        "event_type": "transfers#state-change",
        "schema_version": "2.0.0",
        "sent_at": now,
    });
    let Ok(bytes) = serde_json::to_vec(&body) else {
        return;
    };
    let signature = STANDARD.encode(inner.signer.sign(&bytes).to_bytes());
    let copies = if inner.duplicate_webhooks { 2 } else { 1 };
    for copy in 0..copies {
        let delay = if inner.out_of_order_webhooks {
            Duration::from_millis(inner.dice.pick(5) as u64 * 100)
        } else {
            Duration::from_millis(copy * 20)
        };
        let headers = vec![
            ("X-Signature-SHA256".to_string(), signature.clone()),
            ("X-Delivery-Id".to_string(), Uuid::new_v4().to_string()),
        ];
        inner.outbox.send(headers, bytes.clone(), delay);
    }
}

pub(super) fn mock_now(inner: &Inner) -> DateTime<Utc> {
    crate::clock::now() + inner.clock_offset
}

pub(super) fn minor_decimals(code: &str) -> u32 {
    Currency::from_str(code)
        .map(|c| c.minor_decimals())
        .unwrap_or(2)
}

pub(super) fn find(inner: &Inner, id: &str) -> Option<usize> {
    inner
        .transfers
        .iter()
        .position(|t| t.transfer.id.to_string() == id)
}
