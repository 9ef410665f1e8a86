//! Sending an attempt's batch, and reading the batch a duplicate refusal links to: what a
//! create call came to, classified before the submit/resolve split decides what it proves.

use reqwest::header::HeaderMap;
use tracing::debug;

use super::wire::{
    self, Amount, CreatePayout, CreateResponse, ErrorBody, ItemRequest, PayoutItem,
    SenderBatchHeader,
};
use super::{PaypalAdapter, classify, observe_batch, observe_item};
use crate::domain::payout::SendDecision;
use crate::domain::tracking::Observation;
use crate::providers::rail::Submission;
use crate::providers::{ProviderError, error_chain, retry_after};

/// What one create call came to, before the submit/resolve split.
pub(super) enum Sent {
    Created(Box<CreateResponse>),
    /// The sender_batch_id was used before: that earlier send landed.
    Duplicate {
        batch_id: Option<String>,
    },
    /// Not landed; the status is `None` when no HTTP answer arrived.
    Failed {
        status: Option<u16>,
        decision: SendDecision,
        /// PayPal refused the request's content (schema or field validation), which proves
        /// the identical request could not have landed earlier either.
        content_refused: bool,
    },
}

/// The outcome of reading the batch a token points to.
pub(super) enum Found {
    Landed(String, Observation),
    /// The batch does not match what we sent: nothing can be concluded.
    Mismatch(String),
}

impl PaypalAdapter {
    fn body(sub: &Submission<'_>, amount: Amount) -> CreatePayout {
        CreatePayout {
            sender_batch_header: Some(SenderBatchHeader {
                sender_batch_id: Some(sub.idempotency_key.to_string()),
                recipient_type: Some("EMAIL".into()),
                email_subject: Some("You have a referral payout".into()),
                email_message: None,
                note: None,
            }),
            items: vec![ItemRequest {
                recipient_type: Some("EMAIL".into()),
                amount: Some(amount),
                receiver: Some(sub.destination.to_string()),
                sender_item_id: Some(sub.payout_id.to_string()),
                note: Some(format!("Referral payout {}", sub.payout_id)),
                recipient_wallet: None,
            }],
        }
    }

    /// Sends the attempt's batch (same sender_batch_id and PayPal-Request-Id every time).
    pub(super) async fn create(&self, sub: &Submission<'_>) -> Sent {
        let amount = match Amount::from_money(&sub.amount) {
            Ok(a) => a,
            Err(e) => {
                return failed(
                    None,
                    SendDecision::Permanent {
                        reason: format!("amount cannot be sent: {e}"),
                    },
                );
            }
        };
        let body = Self::body(sub, amount);
        let response = match self.post_batch(sub, &body).await {
            Ok(r) => r,
            Err(sent) => return sent,
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return failed(
                    Some(status),
                    SendDecision::Unknown {
                        reason: format!("response cut off (HTTP {status}): {}", error_chain(&e)),
                    },
                );
            }
        };
        if (200..300).contains(&status) {
            return match serde_json::from_slice::<CreateResponse>(&bytes) {
                Ok(c) => Sent::Created(Box::new(c)),
                Err(e) => failed(
                    Some(status),
                    SendDecision::Unknown {
                        reason: format!("HTTP {status} with an unreadable batch: {e}"),
                    },
                ),
            };
        }
        refusal(sub, status, &headers, &bytes)
    }

    /// POSTs the batch. A failure before any answer is already what the send came to: no
    /// token or no connection (the request never left), or no response (it may have landed).
    async fn post_batch(
        &self,
        sub: &Submission<'_>,
        body: &CreatePayout,
    ) -> Result<reqwest::Response, Sent> {
        let url = self.url("/v1/payments/payouts");
        let sent = self
            .call(|token| {
                self.http
                    .post(&url)
                    .bearer_auth(token)
                    .header(wire::REQUEST_ID, sub.idempotency_key)
                    .json(body)
            })
            .await;
        match sent {
            // No token: the payout request never left.
            Err(e) => Err(failed(
                None,
                SendDecision::Retry {
                    reason: format!("could not get a PayPal access token: {e}"),
                    retry_after: None,
                },
            )),
            Ok(Ok(r)) => Ok(r),
            // Connecting failed: the request never left, so nothing can have executed.
            Ok(Err(e)) if e.is_connect() => Err(failed(
                None,
                SendDecision::Retry {
                    reason: format!("could not connect: {}", error_chain(&e)),
                    retry_after: None,
                },
            )),
            Ok(Err(e)) => Err(failed(
                None,
                SendDecision::Unknown {
                    reason: format!("no response: {}", error_chain(&e)),
                },
            )),
        }
    }

    /// Reads the batch a duplicate refusal points to and checks it is ours.
    pub(super) async fn found(
        &self,
        batch_id: &str,
        sub: &Submission<'_>,
    ) -> Result<Found, ProviderError> {
        let batch = self.batch(batch_id).await?;
        let token = batch
            .batch_header
            .sender_batch_header
            .sender_batch_id
            .as_deref();
        if token.is_some_and(|t| t != sub.idempotency_key) {
            return Ok(Found::Mismatch(format!(
                "PayPal linked batch {batch_id} for sender_batch_id {}, but it carries {:?}",
                sub.idempotency_key, token
            )));
        }
        let ours: Vec<&PayoutItem> = batch
            .items
            .iter()
            .filter(|i| i.payout_item.sender_item_id.as_deref() == Some(sub.payout_id.as_str()))
            .collect();
        match ours.as_slice() {
            [one] => Ok(Found::Landed(batch_id.to_string(), observe_item(one))),
            [] if batch.items.is_empty() => {
                Ok(Found::Landed(batch_id.to_string(), observe_batch(&batch)))
            }
            [] => Ok(Found::Mismatch(format!(
                "batch {batch_id} has no item for payout {}",
                sub.payout_id
            ))),
            many => Ok(Found::Mismatch(format!(
                "batch {batch_id} has {} items for payout {}",
                many.len(),
                sub.payout_id
            ))),
        }
    }
}

/// A send that did not land, without the content-refusal proof.
fn failed(status: Option<u16>, decision: SendDecision) -> Sent {
    Sent::Failed {
        status,
        decision,
        content_refused: false,
    }
}

/// A non-2xx answer: a duplicate refusal (an earlier send landed), or a failure classified
/// by status, error name and issues.
fn refusal(sub: &Submission<'_>, status: u16, headers: &HeaderMap, bytes: &[u8]) -> Sent {
    let error = serde_json::from_slice::<ErrorBody>(bytes).ok();
    if let Some(b) = &error
        && classify::is_duplicate_batch(status, b)
    {
        debug!(
            sender_batch_id = sub.idempotency_key,
            "paypal: duplicate batch"
        );
        return Sent::Duplicate {
            batch_id: classify::duplicate_batch_id(b),
        };
    }
    let name = error.as_ref().map(|b| b.name.as_str());
    let issues: Vec<&str> = error
        .as_ref()
        .map(|b| {
            b.details
                .iter()
                .filter_map(|d| d.issue.as_deref())
                .collect()
        })
        .unwrap_or_default();
    let (class, why) = classify::classify(status, name, &issues);
    let message = error_message(error.as_ref(), bytes);
    let reason = format!(
        "HTTP {status}{}: {message} ({why})",
        name.map(|n| format!(" {n}")).unwrap_or_default()
    );
    debug!(status, ?name, ?class, "paypal payout refused");
    let decision = class.decision(reason, retry_after(headers));
    Sent::Failed {
        status: Some(status),
        decision,
        content_refused: classify::is_content_refusal(status, name, &issues),
    }
}

/// The error's message with each detail's field and issue, or the start of the raw body.
fn error_message(error: Option<&ErrorBody>, bytes: &[u8]) -> String {
    error
        .map(|b| {
            let fields: Vec<String> = b
                .details
                .iter()
                .map(|d| {
                    format!(
                        "{}: {}",
                        d.field.as_deref().unwrap_or("-"),
                        d.issue.as_deref().unwrap_or("-")
                    )
                })
                .collect();
            if fields.is_empty() {
                b.message.clone()
            } else {
                format!("{} [{}]", b.message, fields.join("; "))
            }
        })
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).chars().take(200).collect())
}

/// Right after creation the batch is only accepted: in flight under the batch's status word.
pub(super) fn created(c: CreateResponse) -> (String, Observation) {
    let status = c.batch_header.batch_status.clone();
    (
        c.batch_header.payout_batch_id,
        Observation::new(crate::domain::tracking::RailState::InFlight, status),
    )
}
