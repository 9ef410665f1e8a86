//! Stripe Connect: transfers from the platform balance to a referrer's connected account.
//!
//! Exactly-once rests on two Stripe mechanisms: the `Idempotency-Key` header (one per
//! attempt, replayed by Stripe for at least 24 h) and `transfer_group` set to our payout id,
//! which lets a lookup list every transfer any attempt of the payout made.
//!
//! An uncertain attempt is settled by replaying its request under its own key while Stripe
//! still keeps the key ([`SETTLE`]): the answer is authoritative, where a listing can lag
//! and miss a request that commits late. Only a replay that shows the request finished
//! without a transfer (a stored 500) or an attempt past the window falls back to listing.

pub mod classify;
pub mod facts;
pub mod records;
pub mod statement;
pub mod webhook;
pub mod wire;

use crate::providers::pacing::SendPaced;
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
use crate::domain::settle::{self, Settle, SettleTiming};
use crate::domain::tracking::{Observation, RailState};
use wire::{ErrorBody, List, SHOULD_RETRY, Transfer};

/// Where and how to reach Stripe. The key is a secret: it is never printed or logged.
#[derive(Clone)]
pub struct StripeConfig {
    pub api_base: String,
    pub secret_key: SecretString,
    pub timeout: Duration,
    /// How long Stripe's list endpoints may lag behind a write (`STRIPE_LIST_LAG_SECS`,
    /// default [`SETTLE`]'s): a listing proves a transfer absent only this long after the
    /// request finished.
    pub list_lag: Duration,
    /// Webhook endpoint secrets (`STRIPE_WEBHOOK_SECRETS`); several during a rotation. None:
    /// every delivery is refused.
    pub webhook_secrets: Vec<SecretString>,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("api_base", &self.api_base)
            .field("secret_key", &"[redacted]")
            .field("timeout", &self.timeout)
            .field("list_lag", &self.list_lag)
            .field(
                "webhook_secrets",
                &format!("[{} redacted]", self.webhook_secrets.len()),
            )
            .finish()
    }
}

/// Stripe keeps idempotency keys at least 24 h; its list endpoints are assumed to show a
/// transfer within 5 minutes of its creation (not published: a conservative bound). Stripe
/// bounds no execution time: a replay says when a request finished.
pub const SETTLE: SettleTiming = SettleTiming {
    window: Duration::from_secs(24 * 3600),
    list_lag: Duration::from_secs(300),
    max_execution: None,
};

#[derive(Debug, Clone)]
pub struct StripeAdapter {
    http: reqwest::Client,
    config: StripeConfig,
    settle: SettleTiming,
    pacer: std::sync::Arc<crate::providers::pacing::Pacer>,
}

impl StripeAdapter {
    /// Paces every request to the provider (`None`: as they come); one pacer per process.
    pub fn with_pace(mut self, pace: Option<crate::domain::pacing::Pace>) -> Self {
        self.pacer = std::sync::Arc::new(crate::providers::pacing::Pacer::new(pace));
        self
    }

    /// The pacer every request of this rail waits on.
    pub fn pacer(&self) -> &crate::providers::pacing::Pacer {
        &self.pacer
    }

    pub fn new(config: StripeConfig) -> Result<Self, ProviderError> {
        let http = http_client(&config.api_base, "STRIPE_API_BASE", config.timeout)?;
        let settle = SettleTiming {
            list_lag: config.list_lag,
            ..SETTLE
        };
        Ok(StripeAdapter {
            pacer: std::sync::Arc::default(),
            http,
            config,
            settle,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.api_base.trim_end_matches('/'))
    }

    /// How this adapter settles uncertain attempts; tests and the sandbox shorten it.
    pub fn with_settle_timing(mut self, timing: SettleTiming) -> Self {
        self.settle = timing;
        self
    }

    /// The create-transfer request of one attempt: the same bytes every time it is built,
    /// so a replay under the same key is the very same request.
    fn transfer_request(
        &self,
        req: &TransferRequest<'_>,
    ) -> Result<reqwest::RequestBuilder, SendDecision> {
        let minor = req
            .amount
            .to_minor_units()
            .map_err(|e| SendDecision::Permanent {
                reason: format!("amount cannot be sent: {e}"),
            })?;
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
        Ok(self
            .http
            .post(self.url("/v1/transfers"))
            .bearer_auth(self.config.secret_key.expose_secret())
            .header(wire::IDEMPOTENCY_KEY, req.idempotency_key)
            .form(&form))
    }

    /// Sends one transfer attempt and decides what its response means.
    pub async fn send(&self, req: &TransferRequest<'_>) -> SendDecision {
        let request = match self.transfer_request(req) {
            Ok(r) => r,
            Err(decision) => return decision,
        };
        match exchange(&self.pacer, request).await {
            Ok(answer) => decide(&answer),
            Err(decision) => decision,
        }
    }

    /// Replays an attempt's request under its own key: Stripe answers with the original's
    /// result, 409 while it still runs, or runs it now if it never arrived, so the answer
    /// settles the key for good (docs/providers/stripe.md, "Idempotency").
    pub async fn replay(&self, req: &TransferRequest<'_>) -> Result<Replayed, ProviderError> {
        let request = self
            .transfer_request(req)
            .map_err(|d| ProviderError::Config(reason_of(d)))?;
        let answer = match exchange(&self.pacer, request).await {
            Ok(a) => a,
            Err(
                SendDecision::Retry { reason, .. }
                | SendDecision::Throttled { reason, .. }
                | SendDecision::Unknown { reason }
                | SendDecision::Permanent { reason },
            ) => return Err(ProviderError::Transport(format!("replay: {reason}"))),
            Err(SendDecision::Landed { provider_ref, .. }) => {
                return Err(ProviderError::Decode(format!(
                    "replay answered as landed ({provider_ref}) without an answer"
                )));
            }
        };
        let error = serde_json::from_slice::<ErrorBody>(&answer.body).ok();
        let code = error.as_ref().and_then(|b| b.error.code.as_deref());
        let kind = error.as_ref().map(|b| b.error.kind.as_str());
        let decision = decide(&answer);
        // Refused before the idempotency layer (keys, access, route): the answer says
        // nothing about the original request.
        if matches!(answer.status, 401 | 403 | 404) {
            return Err(ProviderError::Status {
                status: answer.status,
                message: reason_of(decision),
            });
        }
        Ok(match (answer.status, decision) {
            (
                _,
                SendDecision::Landed {
                    provider_ref,
                    observation,
                },
            ) => Replayed::Landed {
                provider_ref,
                observation,
            },
            // Still executing, or refused before the idempotency layer: says nothing yet.
            (409 | 429, d) => Replayed::Running(reason_of(d)),
            (400, d) if kind == Some("idempotency_error") || code == Some("idempotency_error") => {
                Replayed::Mismatch(reason_of(d))
            }
            (_, SendDecision::Permanent { reason }) => Replayed::Refused(reason),
            // A stored (or fresh) answer that is no transfer: the key's request has finished,
            // but a 500 may have committed first, so only a listing can tell.
            (_, d) => Replayed::Finished(reason_of(d)),
        })
    }

    /// Settles an uncertain attempt (see the module doc). A replay that shows the request
    /// finished saves when, so a later listing can prove absence once its lag has passed.
    pub async fn settle_attempt(
        &self,
        last: &Submission<'_>,
        last_started: DateTime<Utc>,
        checkpoints: &dyn Checkpoints,
    ) -> Result<LookupFinding, ProviderError> {
        let now = crate::clock::now();
        let plan = settle::plan(&self.settle, last_started, now);
        let mut seen = seen_finished(last.checkpoint.as_ref());
        if plan == Settle::ByKey {
            let request = TransferRequest {
                payout_id: last.payout_id,
                destination: last.destination,
                amount: last.amount,
                idempotency_key: last.idempotency_key,
            };
            match self.replay(&request).await? {
                Replayed::Landed {
                    provider_ref,
                    observation,
                } => {
                    return self
                        .only_transfer(last.payout_id, provider_ref, observation)
                        .await;
                }
                Replayed::Running(reason) => {
                    return Ok(LookupFinding::Pending {
                        reason: format!("replay under key {}: {reason}", last.idempotency_key),
                        retry_in: Duration::ZERO,
                    });
                }
                Replayed::Refused(reason) => return Ok(LookupFinding::Refused { reason }),
                Replayed::Mismatch(reason) => {
                    return Ok(LookupFinding::Unprovable {
                        reason: format!(
                            "key {} was first used for another request ({reason}): check the Stripe dashboard",
                            last.idempotency_key
                        ),
                    });
                }
                Replayed::Finished(reason) => {
                    debug!(payout = %last.payout_id, %reason, "replay shows the request finished without a transfer");
                    if seen.is_none() {
                        checkpoints
                            .save(&serde_json::json!({ FINISHED_BY: now.to_rfc3339() }))
                            .await?;
                        seen = Some(now);
                    }
                }
            }
        }
        Ok(match self.lookup(last.payout_id).await? {
            LookupFinding::Absent => settle::nothing_found(
                plan,
                settle::finished_by(&self.settle, last_started, seen),
                self.settle.list_lag,
                now,
                &format!("listing transfer group {}", last.payout_id),
            ),
            other => other,
        })
    }

    /// `provider_ref` landed for this payout; a listing still shows any other transfer made
    /// for it (by someone else, or an earlier attempt), which is a duplicate. A listing that
    /// lags can only miss one here, never cause a send.
    async fn only_transfer(
        &self,
        payout: &PayoutId,
        provider_ref: String,
        observation: Observation,
    ) -> Result<LookupFinding, ProviderError> {
        let mut refs = vec![provider_ref.clone()];
        match self.lookup(payout).await? {
            LookupFinding::Landed {
                provider_ref: listed,
                ..
            } => refs.push(listed),
            LookupFinding::Duplicate { provider_refs } => refs.extend(provider_refs),
            _ => {}
        }
        refs.sort();
        refs.dedup();
        Ok(if refs.len() > 1 {
            warn!(payout = %payout, count = refs.len(), "more than one transfer for one payout");
            LookupFinding::Duplicate {
                provider_refs: refs,
            }
        } else {
            LookupFinding::Landed {
                provider_ref,
                observation,
            }
        })
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
            .send_paced(&self.pacer)
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
            .send_paced(&self.pacer)
            .await
            .map_err(|e| ProviderError::Transport(error_chain(&e)))?;
        let body = read_ok(response).await?;
        serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Decode(format!("{path} list page: {e}")))
    }
}

/// What a replay under an attempt's own key showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// The attempt's transfer (the original result, or the replay ran it now).
    Landed {
        provider_ref: String,
        observation: Observation,
    },
    /// The request still executes (409), or the replay was refused before execution (429).
    Running(String),
    /// The request was refused for good: nothing moved under this key.
    Refused(String),
    /// The key was first used with other parameters: not our request.
    Mismatch(String),
    /// The request finished without a transfer in its answer (500, balance_insufficient): a
    /// listing decides, once its lag has passed.
    Finished(String),
}

fn reason_of(d: SendDecision) -> String {
    match d {
        SendDecision::Retry { reason, .. }
        | SendDecision::Throttled { reason, .. }
        | SendDecision::Unknown { reason }
        | SendDecision::Permanent { reason } => reason,
        SendDecision::Landed { provider_ref, .. } => format!("landed as {provider_ref}"),
    }
}

/// Where a replay last showed the request finished, as saved in the attempt's checkpoint.
const FINISHED_BY: &str = "finished_by";

fn seen_finished(checkpoint: Option<&serde_json::Value>) -> Option<DateTime<Utc>> {
    checkpoint?
        .get(FINISHED_BY)?
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// What one create-transfer answer means.
fn decide(answer: &Answer) -> SendDecision {
    let Answer {
        status,
        headers,
        body,
    } = answer;
    let status = *status;
    if (200..300).contains(&status) {
        return match serde_json::from_slice::<Transfer>(body) {
            Ok(t) => SendDecision::Landed {
                observation: observe(&t),
                provider_ref: t.id,
            },
            Err(e) => SendDecision::Unknown {
                reason: format!("HTTP {status} with an unreadable transfer: {e}"),
            },
        };
    }
    let error = serde_json::from_slice::<ErrorBody>(body).ok();
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
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
    let reason = format!(
        "HTTP {status}{}: {message} ({why})",
        code.map(|c| format!(" {c}")).unwrap_or_default()
    );
    debug!(status, ?code, ?class, "stripe transfer refused");
    class.decision(reason, retry_after(headers))
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

    /// `resolve` replays the attempt under its own key inside this window.
    fn dedupe_window(&self) -> Option<Duration> {
        Some(self.settle.window)
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

    /// Inside the window, replays `last` under its key; `earlier` attempts need nothing, as
    /// each was settled before a later one was made. Past it, or when the replay shows the
    /// request finished without a transfer, lists the transfer group.
    fn resolve<'a>(
        &'a self,
        last: &'a Submission<'a>,
        _earlier: &'a [PastAttempt],
        last_started: DateTime<Utc>,
        checkpoints: &'a dyn Checkpoints,
    ) -> RailFuture<'a, Result<LookupFinding, ProviderError>> {
        Box::pin(self.settle_attempt(last, last_started, checkpoints))
    }

    fn status<'a>(
        &'a self,
        provider_ref: &'a str,
    ) -> RailFuture<'a, Result<Observation, ProviderError>> {
        Box::pin(async move { Ok(observe(&self.transfer(provider_ref).await?)) })
    }
}
