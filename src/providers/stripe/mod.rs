//! Stripe Connect: transfers from the platform balance to a referrer's connected account.
//!
//! Exactly-once rests on two Stripe mechanisms: the `Idempotency-Key` header (one per
//! attempt, replayed by Stripe for at least 24 h) and `transfer_group` set to our payout id,
//! which lets a lookup list every transfer any attempt of the payout made.

pub mod classify;
pub mod records;
pub mod statement;
pub mod webhook;
pub mod wire;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tracing::{debug, warn};

use chrono::{DateTime, Utc};

use super::rail::{Checkpoints, PastAttempt, PayoutRail, RailFuture, Submission};
use super::{
    Answer, Class, ProviderError, TransferRequest, error_chain, exchange, http_client, retry_after,
};
use crate::domain::ids::{PayoutId, Rail};
use crate::domain::payout::{LookupFinding, SendDecision};
use crate::domain::tracking::{Observation, RailState};
use wire::{ErrorBody, List, SHOULD_RETRY, Transfer};

/// Where and how to reach Stripe. The key is a secret: it is never printed or logged.
#[derive(Clone)]
pub struct StripeConfig {
    pub api_base: String,
    pub secret_key: SecretString,
    pub timeout: Duration,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("api_base", &self.api_base)
            .field("secret_key", &"[redacted]")
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct StripeAdapter {
    http: reqwest::Client,
    config: StripeConfig,
}

impl StripeAdapter {
    pub fn new(config: StripeConfig) -> Result<Self, ProviderError> {
        let http = http_client(&config.api_base, "STRIPE_API_BASE", config.timeout)?;
        Ok(StripeAdapter { http, config })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.api_base.trim_end_matches('/'))
    }

    /// Sends one transfer attempt and decides what its response means.
    pub async fn send(&self, req: &TransferRequest<'_>) -> SendDecision {
        let minor = match req.amount.to_minor_units() {
            Ok(m) => m,
            Err(e) => {
                return SendDecision::Permanent {
                    reason: format!("amount cannot be sent: {e}"),
                };
            }
        };
        let form = [
            ("amount", minor.to_string()),
            (
                "currency",
                req.amount.currency().code().to_ascii_lowercase(),
            ),
            ("destination", req.destination.to_string()),
            ("transfer_group", req.payout_id.to_string()),
            ("description", format!("Referral payout {}", req.payout_id)),
            ("metadata[payout_id]", req.payout_id.to_string()),
        ];
        let request = self
            .http
            .post(self.url("/v1/transfers"))
            .bearer_auth(self.config.secret_key.expose_secret())
            .header(wire::IDEMPOTENCY_KEY, req.idempotency_key)
            .form(&form);
        let Answer {
            status,
            headers,
            body,
        } = match exchange(request).await {
            Ok(a) => a,
            Err(decision) => return decision,
        };
        if (200..300).contains(&status) {
            return match serde_json::from_slice::<Transfer>(&body) {
                Ok(t) => SendDecision::Landed {
                    observation: observe(&t),
                    provider_ref: t.id,
                },
                Err(e) => SendDecision::Unknown {
                    reason: format!("HTTP {status} with an unreadable transfer: {e}"),
                },
            };
        }
        let error = serde_json::from_slice::<ErrorBody>(&body).ok();
        let code = error.as_ref().and_then(|b| b.error.code.as_deref());
        let kind = error.as_ref().map(|b| b.error.kind.as_str());
        let (mut class, why) = classify::classify(status, code, kind);
        // Stripe may steer: `false` never turns an unknown into a re-send; `true` upgrades a
        // refusal to a retry (the lookup still guards anything uncertain).
        let should_retry = headers.get(SHOULD_RETRY).and_then(|v| v.to_str().ok());
        if should_retry == Some("true") && class == Class::Permanent {
            class = Class::Retry;
        }
        let message = error
            .as_ref()
            .map(|b| b.error.message.clone())
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        let reason = format!(
            "HTTP {status}{}: {message} ({why})",
            code.map(|c| format!(" {c}")).unwrap_or_default()
        );
        debug!(status, ?code, ?class, "stripe transfer refused");
        match class {
            Class::Retry => SendDecision::Retry {
                reason,
                retry_after: retry_after(&headers),
            },
            Class::Throttled => SendDecision::Throttled {
                reason,
                retry_after: retry_after(&headers),
            },
            Class::Unknown => SendDecision::Unknown { reason },
            Class::Permanent => SendDecision::Permanent { reason },
        }
    }

    /// Lists every transfer made for a payout, across all its attempts.
    pub async fn lookup(&self, payout: &PayoutId) -> Result<LookupFinding, ProviderError> {
        let transfers: Vec<Transfer> = self
            .list_transfers(&[("transfer_group", payout.as_str())])
            .await?
            .into_iter()
            // Defensive: only transfers that name this payout count.
            .filter(|t| {
                t.metadata
                    .get("payout_id")
                    .is_none_or(|p| p == payout.as_str())
            })
            .collect();
        Ok(match transfers.as_slice() {
            [] => LookupFinding::Absent,
            [one] => LookupFinding::Landed {
                provider_ref: one.id.clone(),
                observation: observe(one),
            },
            many => {
                warn!(payout = %payout, count = many.len(), "more than one transfer for one payout");
                LookupFinding::Duplicate {
                    provider_refs: many.iter().map(|t| t.id.clone()).collect(),
                }
            }
        })
    }

    /// Reads one transfer.
    pub async fn transfer(&self, id: &str) -> Result<Transfer, ProviderError> {
        if !id.starts_with("tr_") || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ProviderError::Config(format!(
                "{id:?} is not a Stripe transfer id"
            )));
        }
        let response = self
            .http
            .get(self.url(&format!("/v1/transfers/{id}")))
            .bearer_auth(self.config.secret_key.expose_secret())
            .send()
            .await
            .map_err(|e| ProviderError::Transport(error_chain(&e)))?;
        let body = read_ok(response).await?;
        serde_json::from_slice(&body).map_err(|e| ProviderError::Decode(e.to_string()))
    }

    /// Lists transfers matching `filters`, following pagination to the end.
    pub async fn list_transfers(
        &self,
        filters: &[(&str, &str)],
    ) -> Result<Vec<Transfer>, ProviderError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page: List<Transfer> = self
                .list_page("/v1/transfers", filters, cursor.as_deref())
                .await?;
            cursor = page.data.last().map(|t| t.id.clone());
            all.extend(page.data);
            if !page.has_more || cursor.is_none() {
                return Ok(all);
            }
        }
    }

    /// One page (at most 100, newest first) of a list endpoint such as `/v1/transfers` or
    /// `/v1/payouts`, after the object `starting_after` if given.
    pub async fn list_page<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        filters: &[(&str, &str)],
        starting_after: Option<&str>,
    ) -> Result<List<T>, ProviderError> {
        let mut query: Vec<(&str, &str)> = filters.to_vec();
        query.push(("limit", "100"));
        if let Some(c) = starting_after {
            query.push(("starting_after", c));
        }
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(self.config.secret_key.expose_secret())
            .query(&query)
            .send()
            .await
            .map_err(|e| ProviderError::Transport(error_chain(&e)))?;
        let body = read_ok(response).await?;
        serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Decode(format!("{path} list page: {e}")))
    }
}

/// The body of a 2xx answer, or the provider's error as a `ProviderError`.
async fn read_ok(response: reqwest::Response) -> Result<axum::body::Bytes, ProviderError> {
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|e| ProviderError::Transport(error_chain(&e)))?;
    if !(200..300).contains(&status) {
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
        return Err(ProviderError::Status { status, message });
    }
    Ok(body)
}

/// A transfer has no status of its own: it exists (delivered to the connected account) until
/// it is reversed in full, which is the money coming back. A partial reversal is disputed.
pub fn observe(t: &Transfer) -> Observation {
    observe_reversal(t.amount, t.amount_reversed, t.reversed)
}

/// [`observe`] from a transfer's amounts alone (minor units), as a statement row gives them.
pub fn observe_reversal(amount: i64, amount_reversed: i64, reversed: bool) -> Observation {
    if reversed || (amount > 0 && amount_reversed >= amount) {
        Observation::new(RailState::Returned, "reversed")
    } else if amount_reversed > 0 {
        // Part of the money came back: a payout is all or nothing here, so an operator books
        // the part (the payee is not credited meanwhile, so nothing can be paid twice).
        Observation::new(RailState::Disputed, "partially_reversed").with_detail(Some(format!(
            "{amount_reversed} of {amount} minor units reversed"
        )))
    } else {
        Observation::new(RailState::Paid, "transferred")
    }
}

impl PayoutRail for StripeAdapter {
    fn rail(&self) -> Rail {
        Rail::Stripe
    }

    /// Stripe is resolved by listing the payout's transfer group, never by re-sending.
    fn dedupe_window(&self) -> Option<Duration> {
        None
    }

    fn submit<'a>(
        &'a self,
        submission: &'a Submission<'a>,
        _checkpoints: &'a dyn Checkpoints,
    ) -> RailFuture<'a, SendDecision> {
        Box::pin(async move {
            let request = TransferRequest {
                payout_id: submission.payout_id,
                destination: submission.destination,
                amount: submission.amount,
                idempotency_key: submission.idempotency_key,
            };
            self.send(&request).await
        })
    }

    fn resolve<'a>(
        &'a self,
        last: &'a Submission<'a>,
        _earlier: &'a [PastAttempt],
        _last_started: DateTime<Utc>,
        _checkpoints: &'a dyn Checkpoints,
    ) -> RailFuture<'a, Result<LookupFinding, ProviderError>> {
        Box::pin(self.lookup(last.payout_id))
    }

    fn status<'a>(
        &'a self,
        provider_ref: &'a str,
    ) -> RailFuture<'a, Result<Observation, ProviderError>> {
        Box::pin(async move { Ok(observe(&self.transfer(provider_ref).await?)) })
    }
}
