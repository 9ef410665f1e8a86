//! PartnerStack (vendor API v2): affiliate cash is recorded as a reward on the partner's
//! PartnerStack account; PartnerStack pays the partner, who withdraws there.
//!
//! Exactly-once without trusting anything UNCONFIRMED:
//! - Each attempt records one manual reward (`POST /rewards`, endpoint and schema UNCONFIRMED:
//!   no public doc page) whose `key` is derived deterministically from the attempt's
//!   idempotency key ([`reward_key`]), with our payout id in `metadata.payout_id`.
//! - Whether PartnerStack rejects, upserts or duplicates a second reward with the same key is
//!   UNCONFIRMED, so the adapter never relies on it: it never re-sends to resolve. A 400/409
//!   naming a duplicate key is treated as Unknown, so `resolve` finds the existing reward.
//! - `resolve` reads each of the payout's attempt keys (`GET /rewards/{key}`) inside the
//!   settle window ([`SETTLE`]): a read by key does not lag as a listing can. Past the
//!   window it lists the partner's rewards (`GET /rewards?partner_key=…`, filter
//!   UNCONFIRMED; matching is done on our side by `key`, so an ignored filter only costs
//!   pages). Either way it counts the rewards under the payout's keys: one is Landed, more
//!   than one Duplicate; a single match whose amount or currency differs from the payout is
//!   Unprovable (an operator looks), never Landed on a guess. None is Absent only once the
//!   last attempt can no longer land (`SETTLE.max_execution`) and, for a listing, its lag has
//!   passed; before that the payout waits, and past the window it goes to an operator. All
//!   attempts of one payout go to the same partner key, so listing by the last attempt's
//!   destination covers them all.
//! - `status` reads `GET /rewards/{key}` (UNCONFIRMED path). `payment_status` maps through
//!   [`classify::STATUS_MAP`]: `available` and later count as paid, because the money is then
//!   committed to the partner's PartnerStack balance and leaves through PartnerStack.
//! - Webhooks carry no signature (UNCONFIRMED): see [`webhook`]; a delivery is only a hint and
//!   [`PartnerstackAdapter::confirm_event`] re-reads the reward from the API.
//!
//! Test and Production key pairs are separate worlds at PartnerStack: the adapter must list
//! with the same pair it created with, which one config guarantees.

pub mod classify;
pub mod facts;
pub mod records;
pub mod statement;
pub mod webhook;
pub mod wire;

use crate::providers::pacing::SendPaced;
use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use secrecy::{ExposeSecret, SecretString};
use tracing::{debug, warn};

use super::rail::{Checkpoints, PastAttempt, PayoutRail, RailFuture, Submission};
use super::webhook::InboundEvent;
use super::{Answer, ProviderError, error_chain, exchange, http_client, retry_after};
use crate::domain::ids::Rail;
use crate::domain::payout::{LookupFinding, SendDecision};
use crate::domain::settle::{self, Settle, SettleTiming};
use crate::domain::tracking::Observation;
use wire::{CreateReward, Envelope, ErrorBody, PAYOUT_ID, Page, Reward};

/// The production API base.
pub const DEFAULT_API_BASE: &str = "https://api.partnerstack.com/api/v2";

/// How far before the earliest attempt `resolve` starts listing, to absorb clock skew
/// between us and PartnerStack.
const LIST_SLACK: chrono::Duration = chrono::Duration::hours(24);

/// Upper bound on pages read by one listing, so a misbehaving cursor cannot loop for ever.
const MAX_PAGES: usize = 10_000;

/// Where and how to reach PartnerStack. The secret key is never printed or logged.
#[derive(Clone)]
pub struct PartnerstackConfig {
    /// `https://api.partnerstack.com/api/v2`, or a mock's `base_url()`.
    pub api_base: String,
    pub public_key: String,
    pub secret_key: SecretString,
    pub timeout: Duration,
    /// Our own shared secret in `X-Webhook-Token` (`PARTNERSTACK_WEBHOOK_TOKEN`); `None`
    /// accepts any delivery as a hint, since deliveries are re-read from the API regardless.
    pub webhook_token: Option<SecretString>,
}

impl std::fmt::Debug for PartnerstackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerstackConfig")
            .field("api_base", &self.api_base)
            .field("public_key", &self.public_key)
            .field("secret_key", &"[redacted]")
            .field("timeout", &self.timeout)
            .field(
                "webhook_token",
                &self.webhook_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// PartnerStack publishes no idempotency window, list lag or request time limit: these are
/// conservative assumptions (UNCONFIRMED). Reads by key settle for 24 h; a listing is
/// assumed to show a reward within 5 minutes; a request is assumed to land within an hour of
/// being sent, if at all.
pub const SETTLE: SettleTiming = SettleTiming {
    window: Duration::from_secs(24 * 3600),
    list_lag: Duration::from_secs(300),
    max_execution: Some(Duration::from_secs(3600)),
};

#[derive(Debug, Clone)]
pub struct PartnerstackAdapter {
    http: reqwest::Client,
    config: PartnerstackConfig,
    settle: SettleTiming,
    pacer: std::sync::Arc<crate::providers::pacing::Pacer>,
}

pub use facts::reward_key;

fn millis(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

/// A reward's state in our terms.
pub fn observe(r: &Reward) -> Observation {
    let state = classify::rail_state(&r.payment_status);
    let detail = (!r.status.is_empty() && r.status != "approved")
        .then(|| format!("reward status {}", r.status));
    Observation::new(state, r.payment_status.clone())
        .with_detail(detail)
        .at(millis(r.updated_at.unwrap_or(r.created_at)))
}

impl PartnerstackAdapter {
    /// Paces every request to the provider (`None`: as they come); one pacer per process.
    pub fn with_pace(mut self, pace: Option<crate::domain::pacing::Pace>) -> Self {
        self.pacer = std::sync::Arc::new(crate::providers::pacing::Pacer::new(pace));
        self
    }

    /// The pacer every request of this rail waits on.
    pub fn pacer(&self) -> &crate::providers::pacing::Pacer {
        &self.pacer
    }

    pub fn new(config: PartnerstackConfig) -> Result<Self, ProviderError> {
        let http = http_client(&config.api_base, "PARTNERSTACK_API_BASE", config.timeout)?;
        if config.public_key.trim().is_empty() {
            return Err(ProviderError::Config(
                "PARTNERSTACK_PUBLIC_KEY must not be empty".into(),
            ));
        }
        Ok(PartnerstackAdapter {
            pacer: std::sync::Arc::default(),
            http,
            config,
            settle: SETTLE,
        })
    }

    /// How this adapter settles uncertain attempts; tests and the sandbox shorten it.
    pub fn with_settle_timing(mut self, timing: SettleTiming) -> Self {
        self.settle = timing;
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.api_base.trim_end_matches('/'))
    }

    fn authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.basic_auth(
            &self.config.public_key,
            Some(self.config.secret_key.expose_secret()),
        )
    }

    /// Records one attempt's reward and decides what the answer means.
    pub async fn send(&self, submission: &Submission<'_>) -> SendDecision {
        let minor = match submission.amount.to_minor_units() {
            Ok(m) if m > 0 => m,
            Ok(m) => {
                return SendDecision::Permanent {
                    reason: format!("amount {m} minor units is not positive"),
                };
            }
            Err(e) => {
                return SendDecision::Permanent {
                    reason: format!("amount cannot be sent: {e}"),
                };
            }
        };
        let key = reward_key(submission.idempotency_key);
        let body = CreateReward {
            partner_key: submission.destination.to_string(),
            amount: minor,
            currency: submission.amount.currency().code().to_string(),
            description: Some(format!("Affiliate payout {}", submission.payout_id)),
            key: key.clone(),
            metadata: [(PAYOUT_ID.to_string(), submission.payout_id.to_string())].into(),
        };
        let request = self
            .authed(self.http.post(self.url("/rewards")))
            .json(&body);
        let Answer {
            status,
            headers,
            body: raw,
        } = match exchange(&self.pacer, request).await {
            Ok(a) => a,
            Err(decision) => return decision,
        };
        if (200..300).contains(&status) {
            return match serde_json::from_slice::<Envelope<Reward>>(&raw) {
                // Only a reward under our key and for our amount proves this attempt landed.
                Ok(e) if e.data.key == key && e.data.amount == minor => SendDecision::Landed {
                    observation: observe(&e.data),
                    provider_ref: e.data.key,
                },
                Ok(e) => SendDecision::Unknown {
                    reason: format!(
                        "HTTP {status} answered with reward {:?} of {} minor units, not ours",
                        e.data.key, e.data.amount
                    ),
                },
                Err(e) => SendDecision::Unknown {
                    reason: format!("HTTP {status} with an unreadable reward: {e}"),
                },
            };
        }
        let message = error_message(&raw);
        let (class, why) = classify::classify(status, &message);
        let reason = format!("HTTP {status}: {message} ({why})");
        debug!(status, ?class, "partnerstack reward refused");
        class.decision(reason, retry_after(&headers))
    }

    /// Reads one reward by its key.
    pub async fn reward(&self, key: &str) -> Result<Reward, ProviderError> {
        if !(wire::KEY_MIN..=wire::KEY_MAX).contains(&key.len())
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        {
            return Err(ProviderError::Config(format!(
                "{key:?} is not a reward key this adapter makes"
            )));
        }
        let response = self
            .authed(self.http.get(self.url(&format!("/rewards/{key}"))))
            .send_paced(&self.pacer)
            .await
            .map_err(|e| ProviderError::Transport(error_chain(&e)))?;
        let body = read_ok(response).await?;
        let envelope: Envelope<Reward> =
            serde_json::from_slice(&body).map_err(|e| ProviderError::Decode(e.to_string()))?;
        Ok(envelope.data)
    }

    /// Lists a partner's rewards created since `min_created`, following the cursor to the end.
    pub async fn list_rewards(
        &self,
        partner_key: &str,
        min_created: Option<DateTime<Utc>>,
    ) -> Result<Vec<Reward>, ProviderError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        let limit = wire::MAX_LIMIT.to_string();
        let min = min_created.map(|t| t.timestamp_millis().to_string());
        for _ in 0..MAX_PAGES {
            let mut query: Vec<(&str, &str)> =
                vec![("partner_key", partner_key), ("limit", &limit)];
            if let Some(m) = &min {
                query.push(("min_created", m));
            }
            if let Some(c) = &cursor {
                query.push(("starting_after", c));
            }
            let response = self
                .authed(self.http.get(self.url("/rewards")))
                .query(&query)
                .send_paced(&self.pacer)
                .await
                .map_err(|e| ProviderError::Transport(error_chain(&e)))?;
            let body = read_ok(response).await?;
            let page: Envelope<Page<Reward>> =
                serde_json::from_slice(&body).map_err(|e| ProviderError::Decode(e.to_string()))?;
            let next = page.data.items.last().map(|r| r.key.clone());
            all.extend(page.data.items);
            if !page.data.has_more {
                return Ok(all);
            }
            if next.is_none() || next == cursor {
                return Err(ProviderError::Decode(
                    "listing says has_more but its cursor does not advance".into(),
                ));
            }
            cursor = next;
        }
        Err(ProviderError::Decode(format!(
            "listing did not end within {MAX_PAGES} pages"
        )))
    }

    /// Settles a payout by counting the rewards under any of its attempt keys: read by key
    /// inside the settle window, listed past it. Never sends.
    pub async fn lookup(
        &self,
        last: &Submission<'_>,
        earlier: &[PastAttempt],
        last_started: DateTime<Utc>,
    ) -> Result<LookupFinding, ProviderError> {
        let mut keys: BTreeSet<String> = BTreeSet::new();
        keys.insert(reward_key(last.idempotency_key));
        for past in earlier {
            keys.insert(reward_key(&past.idempotency_key));
            if let Some(r) = &past.provider_ref {
                keys.insert(r.clone());
            }
        }
        let now = crate::clock::now();
        let plan = settle::plan(&self.settle, last_started, now);
        let (rewards, lag, what) = match plan {
            Settle::ByKey => (
                self.read_keys(&keys).await?,
                Duration::ZERO,
                "reading the payout's reward keys",
            ),
            Settle::List => {
                let earliest = earlier
                    .iter()
                    .map(|p| p.started_at)
                    .chain(std::iter::once(last_started))
                    .min()
                    .unwrap_or(last_started);
                let listed = self
                    .list_rewards(last.destination, Some(earliest - LIST_SLACK))
                    .await?
                    .into_iter()
                    .filter(|r| keys.contains(&r.key))
                    .collect();
                (
                    listed,
                    self.settle.list_lag,
                    "listing the partner's rewards",
                )
            }
        };
        if rewards.is_empty() {
            // A request leaves by its sender's lease end at the latest, and may land up to
            // the provider's execution bound after that.
            let left = last.left_by.map_or(last_started, |l| l.max(last_started));
            let finished = settle::finished_by(&self.settle, left, None);
            return Ok(settle::nothing_found(plan, finished, lag, now, what));
        }
        Ok(found(last, &rewards))
    }

    /// The rewards under `keys`, read one by one; an unknown key is simply not there.
    async fn read_keys(&self, keys: &BTreeSet<String>) -> Result<Vec<Reward>, ProviderError> {
        let mut rewards = Vec::new();
        for key in keys {
            match self.reward(key).await {
                Ok(r) => rewards.push(r),
                Err(ProviderError::Status { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(rewards)
    }

    /// Turns an unauthenticated webhook hint into an authoritative reading: the reward named
    /// by the event is re-read from the API and the event's own content is ignored.
    pub async fn confirm_event(&self, event: InboundEvent) -> Result<InboundEvent, ProviderError> {
        let key = event
            .provider_ref
            .clone()
            .ok_or_else(|| ProviderError::Decode("event names no reward".into()))?;
        let observation = observe(&self.reward(&key).await?);
        Ok(InboundEvent {
            observation: Some(observation),
            ..event
        })
    }
}

/// What the rewards found under a payout's keys (at least one) say.
fn found(last: &Submission<'_>, rewards: &[Reward]) -> LookupFinding {
    let expected = last.amount.to_minor_units().ok();
    let currency = last.amount.currency().code();
    match rewards {
        [one] if Some(one.amount) != expected || !one.currency.eq_ignore_ascii_case(currency) => {
            LookupFinding::Unprovable {
                reason: format!(
                    "reward {} under our key holds {} {} minor units, not {} {currency}",
                    one.key,
                    one.amount,
                    one.currency,
                    last.amount.display_amount()
                ),
            }
        }
        [one] => LookupFinding::Landed {
            provider_ref: one.key.clone(),
            observation: observe(one),
        },
        many => {
            warn!(payout = %last.payout_id, count = many.len(), "more than one reward for one payout");
            LookupFinding::Duplicate {
                provider_refs: many.iter().map(|r| r.key.clone()).collect(),
            }
        }
    }
}

fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).chars().take(200).collect())
}

/// The body of a 2xx answer, or the provider's error as a `ProviderError`.
async fn read_ok(response: reqwest::Response) -> Result<axum::body::Bytes, ProviderError> {
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|e| ProviderError::Transport(error_chain(&e)))?;
    if !(200..300).contains(&status) {
        return Err(ProviderError::Status {
            status,
            message: error_message(&body),
        });
    }
    Ok(body)
}

impl PayoutRail for PartnerstackAdapter {
    fn rail(&self) -> Rail {
        Rail::Partnerstack
    }

    /// Duplicate-key handling is UNCONFIRMED, so resolve reads and lists, never re-sends.
    fn dedupe_window(&self) -> Option<Duration> {
        None
    }

    fn submit<'a>(
        &'a self,
        submission: &'a Submission<'a>,
        _checkpoints: &'a dyn Checkpoints,
    ) -> RailFuture<'a, SendDecision> {
        Box::pin(self.send(submission))
    }

    fn resolve<'a>(
        &'a self,
        last: &'a Submission<'a>,
        earlier: &'a [PastAttempt],
        last_started: DateTime<Utc>,
        _checkpoints: &'a dyn Checkpoints,
    ) -> RailFuture<'a, Result<LookupFinding, ProviderError>> {
        Box::pin(self.lookup(last, earlier, last_started))
    }

    fn status<'a>(
        &'a self,
        provider_ref: &'a str,
    ) -> RailFuture<'a, Result<Observation, ProviderError>> {
        Box::pin(async move { Ok(observe(&self.reward(provider_ref).await?)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reward_keys_are_deterministic_and_bounded() {
        let k = "po_01JABCDEF-attempt-1";
        assert_eq!(reward_key(k), k);
        assert_eq!(reward_key(k), reward_key(k));
        assert_ne!(reward_key(k), reward_key("po_01JABCDEF-attempt-2"));
        let long = "x".repeat(300);
        let hashed = reward_key(&long);
        assert!(hashed.len() <= wire::KEY_MAX && hashed.len() >= wire::KEY_MIN);
        assert_eq!(hashed, reward_key(&long));
        assert!(reward_key("abc").starts_with("payout-"));
        assert!(reward_key("a b+c@d").starts_with("payout-"));
    }

    #[test]
    fn config_debug_redacts_the_secret() {
        let c = PartnerstackConfig {
            api_base: DEFAULT_API_BASE.into(),
            public_key: "pub".into(),
            secret_key: SecretString::from("very-secret"),
            timeout: Duration::from_secs(5),
            webhook_token: Some(SecretString::from("token-secret")),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret") && shown.contains("[redacted]"));
        assert!(!shown.contains("token-secret"));
        let bad = PartnerstackConfig {
            api_base: "ftp://x".into(),
            ..c
        };
        assert!(PartnerstackAdapter::new(bad).is_err());
    }
}
