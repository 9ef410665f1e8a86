//! Wise: business payouts from the Wise balance to a referrer's recipient account.
//!
//! One attempt is three calls: a quote (locks the rate for 30 minutes), a transfer (created
//! under `customerTransactionId`, a UUID v5 of the attempt's idempotency key, so a repeat of
//! the same attempt returns the same transfer), and funding from the balance (the only call
//! that moves money; it has no idempotency key, so we read the transfer first and fund only an
//! unfunded one). Progress is saved through [`Checkpoints`] after the quote and after the
//! transfer, so a crash resumes instead of quoting or creating again. A saved quote that
//! expired before its transfer was created is replaced by a fresh one.
//!
//! Uncertain attempts are never settled by re-sending into a dedupe window: `resolve` lists
//! the profile's transfers and matches the `customerTransactionId` of every attempt.

pub mod classify;
pub mod facts;
pub mod records;
pub mod statement;
pub mod webhook;
pub mod wire;

mod http;
mod resolve;

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use super::rail::{Checkpoints, PastAttempt, PayoutRail, RailFuture, Submission};
use super::webhook::{InboundEvent, WebhookError};
use super::{Class, ProviderError};
use crate::domain::ids::Rail;
use crate::domain::payout::{LookupFinding, SendDecision};
use crate::domain::tracking::Observation;
use http::Failure;
use wire::{Num, Transfer};

pub use facts::customer_transaction_id;

/// Quotes closer than this to their expiry are not used for a new transfer.
const QUOTE_MARGIN: chrono::Duration = chrono::Duration::minutes(2);

/// Where and how to reach Wise. The token is a secret: it is never printed or logged.
#[derive(Clone)]
pub struct WiseConfig {
    pub api_base: String,
    pub api_token: SecretString,
    pub profile_id: u64,
    pub timeout: Duration,
    /// Wise's public key for `X-Signature-SHA256` (PEM). Empty: webhooks are not accepted.
    pub webhook_public_key_pem: String,
}

impl std::fmt::Debug for WiseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WiseConfig")
            .field("api_base", &self.api_base)
            .field("api_token", &"[redacted]")
            .field("profile_id", &self.profile_id)
            .field("timeout", &self.timeout)
            .field(
                "webhook_public_key_pem",
                &format!("{} bytes", self.webhook_public_key_pem.len()),
            )
            .finish()
    }
}

/// What one attempt has created so far, saved through [`Checkpoints`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub quote_id: String,
    pub rate: Decimal,
    pub source_amount: Decimal,
    pub target_amount: Decimal,
    pub target_currency: String,
    pub expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_id: Option<u64>,
}

impl Progress {
    fn from_checkpoint(value: &serde_json::Value) -> Result<Self, String> {
        serde_json::from_value(value.clone()).map_err(|e| format!("unreadable checkpoint: {e}"))
    }

    /// Still usable for creating a transfer.
    fn quote_is_live(&self, now: DateTime<Utc>) -> bool {
        now + QUOTE_MARGIN < self.expires_at
    }
}

#[derive(Debug, Clone)]
pub struct WiseAdapter {
    http: http::Api,
    profile_id: u64,
    webhook_key: Option<webhook::WebhookKey>,
}

impl WiseAdapter {
    /// Paces every request to the provider (`None`: as they come); one pacer per process.
    pub fn with_pace(mut self, pace: Option<crate::domain::pacing::Pace>) -> Self {
        self.http.pacer = std::sync::Arc::new(crate::providers::pacing::Pacer::new(pace));
        self
    }

    /// The pacer every request of this rail waits on.
    pub fn pacer(&self) -> &crate::providers::pacing::Pacer {
        &self.http.pacer
    }

    pub fn new(config: WiseConfig) -> Result<Self, ProviderError> {
        let webhook_key = if config.webhook_public_key_pem.trim().is_empty() {
            None
        } else {
            Some(webhook::WebhookKey::from_pem(
                &config.webhook_public_key_pem,
            )?)
        };
        Ok(WiseAdapter {
            http: http::Api::new(&config)?,
            profile_id: config.profile_id,
            webhook_key,
        })
    }

    /// Checks a webhook delivery against the configured Wise public key.
    pub fn verify_webhook(
        &self,
        headers: &axum::http::HeaderMap,
        raw_body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<InboundEvent, WebhookError> {
        let key = self.webhook_key.as_ref().ok_or_else(|| {
            WebhookError::Unverifiable("no Wise webhook public key configured".into())
        })?;
        webhook::verify_at(headers, raw_body, key, now, webhook::MAX_AGE)
    }

    /// Runs (or continues, from `progress`) one attempt: quote, transfer, fund.
    async fn run(
        &self,
        sub: &Submission<'_>,
        progress: Option<Progress>,
        checkpoints: &dyn Checkpoints,
    ) -> SendDecision {
        let recipient = match sub.destination.trim().parse::<u64>() {
            Ok(id) => id,
            Err(_) => {
                return SendDecision::Permanent {
                    reason: format!(
                        "{:?} is not a Wise recipient account id (a number)",
                        sub.destination
                    ),
                };
            }
        };
        let ctid = customer_transaction_id(sub.idempotency_key).to_string();
        let transfer_id = match progress.as_ref().and_then(|p| p.transfer_id) {
            Some(id) => id,
            None => {
                let live = progress.filter(|p| p.quote_is_live(crate::clock::now()));
                let mut quoted = match live {
                    Some(p) => p,
                    None => {
                        let p = match self.quote(sub, recipient).await {
                            Ok(p) => p,
                            Err(d) => return d,
                        };
                        if let Err(e) = checkpoints.save(&progress_value(&p)).await {
                            // Only a quote exists: it moves nothing and expires on its own.
                            return SendDecision::Retry {
                                reason: format!("quote {} made but not saved: {e}", p.quote_id),
                                retry_after: None,
                            };
                        }
                        p
                    }
                };
                let transfer = match self.create_transfer(sub, recipient, &quoted, &ctid).await {
                    Ok(t) => t,
                    Err(d) => return d,
                };
                quoted.transfer_id = Some(transfer.id);
                if let Err(e) = checkpoints.save(&progress_value(&quoted)).await {
                    // Unfunded, so nothing moved; resolve finds it by customerTransactionId.
                    return SendDecision::Unknown {
                        reason: format!("transfer {} created but not saved: {e}", transfer.id),
                    };
                }
                transfer.id
            }
        };
        self.fund(transfer_id).await
    }

    /// Reads the recipient's currency and quotes the payout amount into it.
    async fn quote(&self, sub: &Submission<'_>, recipient: u64) -> Result<Progress, SendDecision> {
        if !sub.amount.is_positive() || !sub.amount.is_whole_minor() {
            return Err(SendDecision::Permanent {
                reason: format!(
                    "amount {} cannot be sent: not a positive whole minor amount",
                    sub.amount
                ),
            });
        }
        let account: wire::Account = self
            .http
            .get(&format!("/v1/accounts/{recipient}"))
            .await
            .map_err(Failure::decision)?;
        let mut amount = sub.amount.amount();
        amount.rescale(sub.amount.currency().minor_decimals());
        let request = wire::QuoteRequest {
            source_currency: sub.amount.currency().code().to_string(),
            target_currency: account.currency.clone(),
            source_amount: Some(Num(amount)),
            target_amount: None,
            target_account: Some(recipient),
            pay_out: Some(
                if account.kind == "balance" {
                    "BALANCE"
                } else {
                    "BANK_TRANSFER"
                }
                .into(),
            ),
            preferred_pay_in: Some("BALANCE".into()),
        };
        let quote: wire::Quote = self
            .http
            .post(
                &format!("/v3/profiles/{}/quotes", self.profile_id),
                &request,
            )
            .await
            .map_err(Failure::decision)?;
        let expires_at = DateTime::parse_from_rfc3339(&quote.expiration_time)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| SendDecision::Retry {
                reason: format!("quote {} has an unreadable expiry: {e}", quote.id),
                retry_after: None,
            })?;
        if quote.source_amount.0 != amount {
            return Err(SendDecision::Permanent {
                reason: format!(
                    "quote {} is for {} {}, not the payout's {}",
                    quote.id, quote.source_amount.0, quote.source_currency, sub.amount
                ),
            });
        }
        debug!(quote = %quote.id, rate = %quote.rate.0, "wise quote");
        Ok(Progress {
            quote_id: quote.id,
            rate: quote.rate.0,
            source_amount: quote.source_amount.0,
            target_amount: quote.target_amount.0,
            target_currency: quote.target_currency,
            expires_at,
            transfer_id: None,
        })
    }

    /// Creates the transfer, or finds the one this attempt already created.
    async fn create_transfer(
        &self,
        sub: &Submission<'_>,
        recipient: u64,
        progress: &Progress,
        ctid: &str,
    ) -> Result<Transfer, SendDecision> {
        let request = wire::TransferRequest {
            target_account: recipient,
            quote_uuid: progress.quote_id.clone(),
            customer_transaction_id: ctid.to_string(),
            details: wire::TransferDetails {
                reference: Some(sub.payout_id.to_string()),
            },
        };
        match self
            .http
            .post::<_, Transfer>("/v1/transfers", &request)
            .await
        {
            Ok(t) if t.customer_transaction_id.as_deref() == Some(ctid) => Ok(t),
            Ok(t) => Err(SendDecision::Unknown {
                reason: format!(
                    "transfer {} came back with customerTransactionId {:?}, not ours",
                    t.id, t.customer_transaction_id
                ),
            }),
            // A repeated customerTransactionId may be refused rather than replayed (which one
            // Wise does is UNCONFIRMED): if the transfer exists, the listing shows it.
            Err(
                f @ Failure::Status {
                    status: 409 | 422, ..
                },
            ) => match self.transfers_by_ctid(&[ctid], None).await {
                Ok(found) => match found.into_iter().next() {
                    Some(t) => {
                        info!(
                            transfer = t.id,
                            "repeated customerTransactionId: found the existing transfer"
                        );
                        Ok(t)
                    }
                    None => Err(f.decision()),
                },
                Err(e) => Err(SendDecision::Unknown {
                    reason: format!("transfer refused ({f:?}) and the listing failed: {e}"),
                }),
            },
            Err(f) => Err(f.decision()),
        }
    }

    /// Funds an unfunded transfer from the balance. Funding has no idempotency key, so the
    /// transfer is read first and a transfer past `incoming_payment_waiting` is never funded
    /// again. Once the transfer exists, only a provable refusal is Retry or Permanent, and
    /// then only after the unfunded transfer was cancelled.
    async fn fund(&self, transfer_id: u64) -> SendDecision {
        let before: Transfer = match self.http.get(&format!("/v1/transfers/{transfer_id}")).await {
            Ok(t) => t,
            Err(f) => {
                return SendDecision::Unknown {
                    reason: format!(
                        "transfer {transfer_id} exists but could not be read: {}",
                        f.provider_error()
                    ),
                };
            }
        };
        if before.status != wire::WAITING {
            // Funded by an earlier run of this attempt, or cancelled: report, never re-fund.
            return landed(&before);
        }
        let path = format!(
            "/v3/profiles/{}/transfers/{transfer_id}/payments",
            self.profile_id
        );
        let body = wire::FundRequest {
            kind: "BALANCE".into(),
        };
        match self.http.post::<_, wire::FundResponse>(&path, &body).await {
            Ok(r) if r.status == "COMPLETED" => {
                match self
                    .http
                    .get::<Transfer>(&format!("/v1/transfers/{transfer_id}"))
                    .await
                {
                    Ok(after) => landed(&after),
                    // Funded for sure; the state is read again by status polling.
                    Err(_) => {
                        let mut t = before;
                        t.status = "processing".into();
                        landed(&t)
                    }
                }
            }
            Ok(r) if r.status == "REJECTED" => {
                let reason = format!(
                    "funding rejected: {}{}",
                    r.error_code.as_deref().unwrap_or("no error code"),
                    r.error_message
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                );
                self.after_refusal(transfer_id, SendDecision::Permanent { reason })
                    .await
            }
            Ok(r) => SendDecision::Unknown {
                reason: format!("funding answered status {:?}", r.status),
            },
            Err(f) => match f.class() {
                Class::Unknown => f.decision(),
                Class::Retry | Class::Throttled | Class::Permanent => {
                    self.after_refusal(transfer_id, f.decision()).await
                }
            },
        }
    }

    /// A refused funding proves nothing by itself: the refusal may be "already funded" by a
    /// request whose answer we lost, or a provider that took the money and said no. The
    /// transfer is read again; one that moved on is reported as it is. Only a transfer still
    /// provably unfunded is cancelled, and only once it is cancelled (it can then never be
    /// funded later) does the refusal stand; anything unproven is `Unknown`.
    async fn after_refusal(&self, transfer_id: u64, refusal: SendDecision) -> SendDecision {
        let why = match &refusal {
            SendDecision::Permanent { reason }
            | SendDecision::Unknown { reason }
            | SendDecision::Retry { reason, .. }
            | SendDecision::Throttled { reason, .. } => reason.clone(),
            SendDecision::Landed { provider_ref, .. } => provider_ref.clone(),
        };
        match self
            .http
            .get::<Transfer>(&format!("/v1/transfers/{transfer_id}"))
            .await
        {
            Ok(now) if now.status != wire::WAITING => return landed(&now),
            Ok(_) => {}
            Err(e) => {
                return SendDecision::Unknown {
                    reason: format!(
                        "funding refused ({why}) and transfer {transfer_id} could not be read again: {}",
                        e.provider_error()
                    ),
                };
            }
        }
        match self.cancel(transfer_id).await {
            Ok(()) => refusal,
            Err(e) => SendDecision::Unknown {
                reason: format!(
                    "funding refused ({why}) and the unfunded transfer {transfer_id} could not be cancelled: {e}"
                ),
            },
        }
    }

    /// Cancels an unfunded transfer, so it can never be funded later.
    async fn cancel(&self, transfer_id: u64) -> Result<(), ProviderError> {
        self.http
            .put::<Transfer>(&format!("/v1/transfers/{transfer_id}/cancel"))
            .await
            .map(|t| debug!(transfer = t.id, status = %t.status, "cancelled"))
            .map_err(Failure::provider_error)
    }

    /// Reads one transfer.
    pub async fn transfer(&self, id: u64) -> Result<Transfer, ProviderError> {
        self.http
            .get(&format!("/v1/transfers/{id}"))
            .await
            .map_err(Failure::provider_error)
    }
}

/// The observation of a transfer, with the conversion spelled out when currencies differ.
pub fn observe(t: &Transfer) -> Observation {
    let observation = classify::observe_status(&t.status);
    if t.source_currency.eq_ignore_ascii_case(&t.target_currency) {
        return observation;
    }
    let detail = format!(
        "rate {} {}\u{2192}{}, recipient gets {} {}",
        t.rate.0, t.source_currency, t.target_currency, t.target_value.0, t.target_currency
    );
    let detail = match observation.detail.clone() {
        Some(d) => format!("{d}; {detail}"),
        None => detail,
    };
    observation.with_detail(Some(detail))
}

fn landed(t: &Transfer) -> SendDecision {
    SendDecision::Landed {
        provider_ref: t.id.to_string(),
        observation: observe(t),
    }
}

fn progress_value(p: &Progress) -> serde_json::Value {
    serde_json::to_value(p).unwrap_or(serde_json::Value::Null)
}

impl PayoutRail for WiseAdapter {
    fn rail(&self) -> Rail {
        Rail::Wise
    }

    /// Wise is resolved by listing transfers by customerTransactionId, never by re-sending.
    fn dedupe_window(&self) -> Option<Duration> {
        None
    }

    fn submit<'a>(
        &'a self,
        submission: &'a Submission<'a>,
        checkpoints: &'a dyn Checkpoints,
    ) -> RailFuture<'a, SendDecision> {
        Box::pin(async move {
            let progress = match submission
                .checkpoint
                .as_ref()
                .map(Progress::from_checkpoint)
            {
                Some(Ok(p)) => Some(p),
                // Something was made under this attempt that we cannot read: settle it.
                Some(Err(reason)) => return SendDecision::Unknown { reason },
                None => None,
            };
            self.run(submission, progress, checkpoints).await
        })
    }

    fn resolve<'a>(
        &'a self,
        last: &'a Submission<'a>,
        earlier: &'a [PastAttempt],
        last_started: DateTime<Utc>,
        checkpoints: &'a dyn Checkpoints,
    ) -> RailFuture<'a, Result<LookupFinding, ProviderError>> {
        Box::pin(self.settle(last, earlier, last_started, checkpoints))
    }

    fn status<'a>(
        &'a self,
        provider_ref: &'a str,
    ) -> RailFuture<'a, Result<Observation, ProviderError>> {
        Box::pin(async move {
            let id = provider_ref.trim().parse::<u64>().map_err(|_| {
                ProviderError::Config(format!("{provider_ref:?} is not a Wise transfer id"))
            })?;
            Ok(observe(&self.transfer(id).await?))
        })
    }
}
