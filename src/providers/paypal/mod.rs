//! PayPal Payouts v1: one single-item batch per attempt, paid to the payee's PayPal email.
//!
//! Exactly-once rests on `sender_batch_id`: PayPal refuses a second batch under one id for
//! 30 days and completes at most one payment per id. Each attempt's id is its idempotency key,
//! so an uncertain attempt is settled by re-sending it unchanged: a duplicate refusal proves
//! the first send landed and links to it. PayPal offers no lookup by sender_batch_id, so once
//! the dedupe window may have passed nothing can be proven and an operator must look.

pub mod classify;
pub mod facts;
pub mod records;
mod send;
pub mod statement;
pub mod webhook;
pub mod wire;

use crate::providers::pacing::SendPaced;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tracing::{debug, warn};

use super::rail::{Checkpoints, PastAttempt, PayoutRail, RailFuture, Submission};
use super::webhook::{InboundEvent, WebhookError};
use super::{ProviderError, error_chain, http_client};
use crate::domain::ids::Rail;
use crate::domain::payout::{LookupFinding, SendDecision};
use crate::domain::tracking::Observation;
use send::{Found, Sent, created};
use wire::{ErrorBody, OAuthError, PayoutBatch, PayoutItem, TokenResponse, VerifyResponse};

/// PayPal keeps a sender_batch_id for 30 days [spec].
pub const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// Where and how to reach PayPal. The client secret is never printed or logged.
#[derive(Clone)]
pub struct PaypalConfig {
    pub api_base: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub timeout: Duration,
    /// Our webhook subscription id, sent with every signature postback.
    pub webhook_id: String,
    /// How long PayPal deduplicates a sender_batch_id; `resolve` never re-sends past it.
    pub dedupe_window: Duration,
}

impl PaypalConfig {
    /// A config with the defaults: 30 s timeout, 30-day dedupe window.
    pub fn new(
        api_base: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
        webhook_id: impl Into<String>,
    ) -> Self {
        PaypalConfig {
            api_base: api_base.into(),
            client_id: client_id.into(),
            client_secret,
            timeout: Duration::from_secs(30),
            webhook_id: webhook_id.into(),
            dedupe_window: DEFAULT_DEDUPE_WINDOW,
        }
    }
}

impl std::fmt::Debug for PaypalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaypalConfig")
            .field("api_base", &self.api_base)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("timeout", &self.timeout)
            .field("webhook_id", &self.webhook_id)
            .field("dedupe_window", &self.dedupe_window)
            .finish()
    }
}

/// A bearer token and when to stop using it (shortly before PayPal expires it).
struct CachedToken {
    value: SecretString,
    refresh_at: Instant,
}

#[derive(Clone)]
pub struct PaypalAdapter {
    http: reqwest::Client,
    config: PaypalConfig,
    /// One token for every call; the lock is held while fetching so concurrent callers share
    /// one token request (PayPal asks integrators to cache tokens).
    token: Arc<Mutex<Option<CachedToken>>>,
    pacer: std::sync::Arc<crate::providers::pacing::Pacer>,
}

impl std::fmt::Debug for PaypalAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaypalAdapter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PaypalAdapter {
    /// Paces every request to the provider (`None`: as they come); one pacer per process.
    pub fn with_pace(mut self, pace: Option<crate::domain::pacing::Pace>) -> Self {
        self.pacer = std::sync::Arc::new(crate::providers::pacing::Pacer::new(pace));
        self
    }

    /// The pacer every request of this rail waits on.
    pub fn pacer(&self) -> &crate::providers::pacing::Pacer {
        &self.pacer
    }

    pub fn new(config: PaypalConfig) -> Result<Self, ProviderError> {
        let http = http_client(&config.api_base, "PAYPAL_API_BASE", config.timeout)?;
        if config.client_id.trim().is_empty() {
            return Err(ProviderError::Config("PAYPAL_CLIENT_ID is empty".into()));
        }
        Ok(PaypalAdapter {
            pacer: std::sync::Arc::default(),
            http,
            config,
            token: Arc::new(Mutex::new(None)),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.api_base.trim_end_matches('/'))
    }

    /// The cached token, or a fresh one. A failure here never moved money.
    async fn token(&self) -> Result<SecretString, ProviderError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.refresh_at
        {
            return Ok(t.value.clone());
        }
        let response = self
            .http
            .post(self.url("/v1/oauth2/token"))
            .basic_auth(
                &self.config.client_id,
                Some(self.config.client_secret.expose_secret()),
            )
            .form(&[("grant_type", "client_credentials")])
            .send_paced(&self.pacer)
            .await
            .map_err(|e| ProviderError::Transport(format!("token: {}", error_chain(&e))))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| ProviderError::Transport(format!("token: {}", error_chain(&e))))?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<OAuthError>(&body)
                .map(|e| format!("{}: {}", e.error, e.error_description.unwrap_or_default()))
                .unwrap_or_else(|_| format!("HTTP {status} from the token endpoint"));
            return Err(ProviderError::Status {
                status,
                message: format!("PayPal refused our client credentials: {message}"),
            });
        }
        let token: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Decode(format!("token answer: {e}")))?;
        let lifetime = Duration::from_secs(token.expires_in);
        // Refresh a minute early, or at half-life for short-lived tokens.
        let margin = Duration::from_secs(60).min(lifetime / 2);
        let value = SecretString::from(token.access_token);
        *cached = Some(CachedToken {
            value: value.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        debug!(expires_in = token.expires_in, "paypal token fetched");
        Ok(value)
    }

    /// Forgets `used` if it is still the cached token (another caller may have refreshed).
    async fn invalidate(&self, used: &SecretString) {
        let mut cached = self.token.lock().await;
        if cached
            .as_ref()
            .is_some_and(|t| t.value.expose_secret() == used.expose_secret())
        {
            *cached = None;
        }
    }

    /// Sends an authenticated request; on a 401 it refreshes the token once and sends again.
    /// A 401 is refused before execution, so repeating is safe. The outer error is a token
    /// failure (nothing sent); the inner one is the request's own transport error.
    async fn call(
        &self,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<Result<reqwest::Response, reqwest::Error>, ProviderError> {
        let token = self.token().await?;
        let first = build(token.expose_secret()).send_paced(&self.pacer).await;
        match first {
            Ok(r) if r.status().as_u16() == 401 => {
                debug!("paypal answered 401; refreshing the token once");
                self.invalidate(&token).await;
                let token = self.token().await?;
                Ok(build(token.expose_secret()).send_paced(&self.pacer).await)
            }
            other => Ok(other),
        }
    }

    /// Authenticated GET of a 2xx JSON answer.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, ProviderError> {
        let url = self.url(path);
        let response = self
            .call(|token| self.http.get(&url).bearer_auth(token))
            .await?
            .map_err(|e| ProviderError::Transport(error_chain(&e)))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| ProviderError::Transport(error_chain(&e)))?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|b| format!("{}: {}", b.name, b.message))
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(ProviderError::Status { status, message });
        }
        serde_json::from_slice(&body).map_err(|e| ProviderError::Decode(e.to_string()))
    }

    /// Reads a batch (`GET /v1/payments/payouts/{id}`).
    pub async fn batch(&self, batch_id: &str) -> Result<PayoutBatch, ProviderError> {
        if !classify::is_batch_id(batch_id) {
            return Err(ProviderError::Config(format!(
                "{batch_id:?} is not a PayPal payout batch id"
            )));
        }
        self.get_json(&format!("/v1/payments/payouts/{batch_id}"))
            .await
    }

    /// Reads one item (`GET /v1/payments/payouts-item/{id}`).
    pub async fn item(&self, item_id: &str) -> Result<PayoutItem, ProviderError> {
        if !classify::is_batch_id(item_id) {
            return Err(ProviderError::Config(format!(
                "{item_id:?} is not a PayPal payout item id"
            )));
        }
        self.get_json(&format!("/v1/payments/payouts-item/{item_id}"))
            .await
    }

    /// The create body for one attempt: one item, our payout id as sender_item_id.
    /// Why re-sending `last` could pay twice, if its dedupe window may have passed. The margin
    /// (10 % of the window, at least 1 s) covers clock skew and the request's own flight time.
    pub fn window_passed(
        &self,
        sub: &Submission<'_>,
        last_started: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let window = self.config.dedupe_window;
        let margin = (window / 10).max(Duration::from_secs(1));
        let usable = chrono::Duration::from_std(window.saturating_sub(margin))
            .unwrap_or(chrono::Duration::MAX);
        let deadline = last_started.checked_add_signed(usable)?;
        (now > deadline).then(|| {
            format!(
                "attempt started {last_started} is past PayPal's sender_batch_id dedupe window ({} s, less a {} s margin): re-sending could pay twice. Check the PayPal dashboard for sender_batch_id {} (sender_item_id {}) and settle the payout by hand",
                window.as_secs(),
                margin.as_secs(),
                sub.idempotency_key,
                sub.payout_id
            )
        })
    }

    /// What can be checked without calling PayPal: the transmission headers, their age, and
    /// the event's shape. The receiver uses the result only to decide whether a postback is
    /// worth making (see [`Self::verify_webhook`]); it is not authenticated.
    pub fn webhook_hint(
        &self,
        headers: &axum::http::HeaderMap,
        raw_body: &[u8],
    ) -> Result<InboundEvent, WebhookError> {
        webhook::transmission(
            headers,
            crate::clock::now(),
            webhook::DEFAULT_TOLERANCE_SECS,
        )?;
        let (_, event) = webhook::parse_body(raw_body)?;
        webhook::inbound(&event)
    }

    /// Verifies a webhook delivery by postback and turns it into an event. Stale or
    /// malformed deliveries are refused before any call is made.
    pub async fn verify_webhook(
        &self,
        headers: &axum::http::HeaderMap,
        raw_body: &[u8],
    ) -> Result<InboundEvent, WebhookError> {
        let t = webhook::transmission(
            headers,
            crate::clock::now(),
            webhook::DEFAULT_TOLERANCE_SECS,
        )?;
        let (value, event) = webhook::parse_body(raw_body)?;
        let request = webhook::verify_request(&t, &self.config.webhook_id, value);
        let url = self.url("/v1/notifications/verify-webhook-signature");
        let response = self
            .call(|token| self.http.post(&url).bearer_auth(token).json(&request))
            .await
            .map_err(|e| WebhookError::Unverifiable(e.to_string()))?
            .map_err(|e| WebhookError::Unverifiable(error_chain(&e)))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(WebhookError::Unverifiable(format!(
                "verify-webhook-signature answered HTTP {status}"
            )));
        }
        let verdict: VerifyResponse = response
            .json()
            .await
            .map_err(|e| WebhookError::Unverifiable(error_chain(&e)))?;
        if verdict.verification_status != "SUCCESS" {
            warn!(transmission_id = %t.id, "paypal webhook signature refused");
            return Err(WebhookError::BadSignature);
        }
        webhook::inbound(&event)
    }
}

fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// An item's state: its transaction_status, with the item error's name as detail.
pub fn observe_item(item: &PayoutItem) -> Observation {
    Observation::new(
        classify::item_state(&item.transaction_status),
        item.transaction_status.clone(),
    )
    .with_detail(item.errors.as_ref().map(|e| e.name.clone()))
    .at(parse_time(item.time_processed.as_deref()))
}

/// A batch's state: that of its (single) item, or of the batch itself if it has none.
pub fn observe_batch(batch: &PayoutBatch) -> Observation {
    match batch.items.first() {
        Some(item) => observe_item(item),
        None => {
            let s = &batch.batch_header.batch_status;
            Observation::new(classify::empty_batch_state(s), s.clone())
                .at(parse_time(batch.batch_header.time_completed.as_deref()))
        }
    }
}

impl PayoutRail for PaypalAdapter {
    fn rail(&self) -> Rail {
        Rail::Paypal
    }

    /// `resolve` re-sends under the same sender_batch_id, so the window matters.
    fn dedupe_window(&self) -> Option<Duration> {
        Some(self.config.dedupe_window)
    }

    fn submit<'a>(
        &'a self,
        submission: &'a Submission<'a>,
        _checkpoints: &'a dyn Checkpoints,
    ) -> RailFuture<'a, SendDecision> {
        Box::pin(async move {
            match self.create(submission).await {
                Sent::Created(c) => {
                    let (provider_ref, observation) = created(*c);
                    SendDecision::Landed {
                        provider_ref,
                        observation,
                    }
                }
                Sent::Duplicate {
                    batch_id: Some(batch_id),
                } => match self.found(&batch_id, submission).await {
                    Ok(Found::Landed(provider_ref, observation)) => SendDecision::Landed {
                        provider_ref,
                        observation,
                    },
                    Ok(Found::Mismatch(reason)) => SendDecision::Unknown { reason },
                    Err(e) => SendDecision::Unknown {
                        reason: format!(
                            "sender_batch_id {} already used (an earlier send landed) but batch {batch_id} could not be read: {e}",
                            submission.idempotency_key
                        ),
                    },
                },
                Sent::Duplicate { batch_id: None } => SendDecision::Unknown {
                    reason: format!(
                        "sender_batch_id {} already used (an earlier send landed) and PayPal gave no link to it",
                        submission.idempotency_key
                    ),
                },
                Sent::Failed { decision, .. } => decision,
            }
        })
    }

    /// PayPal cannot list by sender_batch_id, so the uncertain attempt is re-sent unchanged
    /// inside the dedupe window. `earlier` attempts need nothing: each was proven not to have
    /// landed before a later one was made.
    fn resolve<'a>(
        &'a self,
        last: &'a Submission<'a>,
        _earlier: &'a [PastAttempt],
        last_started: DateTime<Utc>,
        _checkpoints: &'a dyn Checkpoints,
    ) -> RailFuture<'a, Result<LookupFinding, ProviderError>> {
        Box::pin(async move {
            if let Some(reason) = self.window_passed(last, last_started, crate::clock::now()) {
                warn!(payout = %last.payout_id, "paypal dedupe window passed; not re-sending");
                return Ok(LookupFinding::Unprovable { reason });
            }
            match self.create(last).await {
                Sent::Created(c) => {
                    let (provider_ref, observation) = created(*c);
                    Ok(LookupFinding::Landed {
                        provider_ref,
                        observation,
                    })
                }
                Sent::Duplicate {
                    batch_id: Some(batch_id),
                } => Ok(match self.found(&batch_id, last).await? {
                    Found::Landed(provider_ref, observation) => LookupFinding::Landed {
                        provider_ref,
                        observation,
                    },
                    Found::Mismatch(reason) => LookupFinding::Unprovable { reason },
                }),
                Sent::Duplicate { batch_id: None } => Ok(LookupFinding::Unprovable {
                    reason: format!(
                        "PayPal says sender_batch_id {} exists but gives no link to it: check the PayPal dashboard",
                        last.idempotency_key
                    ),
                }),
                // Only a refusal of the request's content proves the same request could not
                // have landed before. Any other refusal of a re-send (a business rule, an
                // unrecognised duplicate wording, auth) proves nothing about the first send.
                Sent::Failed {
                    decision: SendDecision::Permanent { reason },
                    content_refused: true,
                    ..
                } => Ok(LookupFinding::Refused { reason }),
                Sent::Failed {
                    status: Some(status @ (400..=499)),
                    decision: SendDecision::Permanent { reason },
                    ..
                } if status != 401 && status != 403 && status != 404 => {
                    Ok(LookupFinding::Unprovable {
                        reason: format!(
                            "re-sending sender_batch_id {} was refused ({reason}); that does not prove the first send failed: check the PayPal dashboard",
                            last.idempotency_key
                        ),
                    })
                }
                Sent::Failed {
                    status, decision, ..
                } => Err(match (status, decision) {
                    (
                        Some(status),
                        SendDecision::Permanent { reason }
                        | SendDecision::Retry { reason, .. }
                        | SendDecision::Throttled { reason, .. }
                        | SendDecision::Unknown { reason },
                    ) => ProviderError::Status {
                        status,
                        message: reason,
                    },
                    (
                        None,
                        SendDecision::Permanent { reason }
                        | SendDecision::Retry { reason, .. }
                        | SendDecision::Throttled { reason, .. }
                        | SendDecision::Unknown { reason },
                    ) => ProviderError::Transport(format!("re-send inconclusive: {reason}")),
                    (_, SendDecision::Landed { provider_ref, .. }) => ProviderError::Decode(
                        format!("re-send answered as landed ({provider_ref}) but was not read"),
                    ),
                }),
            }
        })
    }

    fn status<'a>(
        &'a self,
        provider_ref: &'a str,
    ) -> RailFuture<'a, Result<Observation, ProviderError>> {
        Box::pin(async move { Ok(observe_batch(&self.batch(provider_ref).await?)) })
    }
}
