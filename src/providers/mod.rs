//! Payout rails: one folder per provider, each with its adapter (implementing
//! [`rail::PayoutRail`]: submit, resolve, status, webhooks, records), its wire types, its
//! error classification, its statement format and its [`RailFacts`]. This file is the
//! registry: the one place that maps a [`Rail`] to its folder. `README.md` here is the
//! checklist for a new rail.

pub mod pacing;
pub mod partnerstack;
pub mod paypal;
pub mod rail;
pub mod records;
pub mod stripe;
pub mod webhook;
pub mod wise;

/// A boxed future, so rails can sit behind `dyn PayoutRail`.
pub type RailFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What the rest of the system knows about a rail without calling it: the grammar of its
/// destinations, the token its records carry for one of our attempts, and its statement
/// format. Each rail's folder holds its value (`<rail>/facts.rs`).
pub struct RailFacts {
    pub destination: &'static Grammar,
    /// A destination that passes the grammar, for documentation.
    pub example_destination: &'static str,
    /// The token the provider echoes back for an attempt (Stripe's transfer_group, PayPal's
    /// sender_batch_id, ...), given the payout and the attempt's idempotency key. Stored with
    /// each attempt, so reconciliation and webhooks find the payout again by it.
    pub reference: fn(&PayoutId, &str) -> String,
    /// The layout of the rail's statement export.
    pub statement: &'static records::StatementFormat,
    /// How fast one process calls the provider by default: below its published limit
    /// (`PAYOUTS_<RAIL>_RATE_PER_SEC` and `_RATE_BURST` change it; docs/pacing.md).
    pub pace: crate::domain::pacing::Pace,
}

/// The facts of `rail`: the one map from a rail to its folder.
pub fn facts(rail: Rail) -> &'static RailFacts {
    match rail {
        Rail::Stripe => &stripe::facts::FACTS,
        Rail::Paypal => &paypal::facts::FACTS,
        Rail::Wise => &wise::facts::FACTS,
        Rail::Partnerstack => &partnerstack::facts::FACTS,
    }
}

/// Each rail's statement format.
pub(crate) fn rail_statement_format(rail: Rail) -> &'static records::StatementFormat {
    facts(rail).statement
}

use std::time::Duration;

use crate::domain::destination::Grammar;
use crate::domain::ids::{PayoutId, Rail};
use crate::domain::money::Money;
use crate::domain::payout::SendDecision;

/// The three classes every provider error falls into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Provably not executed: safe to send again.
    Retry,
    /// Rate limited: refused before execution, for reasons that are not the payment's. Safe
    /// to send again, and it does not use up an attempt.
    Throttled,
    /// May have executed: look up before anything else.
    Unknown,
    /// Refused for good.
    Permanent,
}

impl Class {
    /// The send decision for a refusal of this class; `retry_after` is the provider's hint,
    /// kept only where sending again is allowed.
    pub fn decision(self, reason: String, retry_after: Option<Duration>) -> SendDecision {
        match self {
            Class::Retry => SendDecision::Retry {
                reason,
                retry_after,
            },
            Class::Throttled => SendDecision::Throttled {
                reason,
                retry_after,
            },
            Class::Unknown => SendDecision::Unknown { reason },
            Class::Permanent => SendDecision::Permanent { reason },
        }
    }
}

/// One request to move money.
#[derive(Debug, Clone)]
pub struct TransferRequest<'a> {
    pub payout_id: &'a PayoutId,
    pub destination: &'a str,
    pub amount: Money,
    /// Deterministic per attempt, persisted before the request leaves.
    pub idempotency_key: &'a str,
}

/// A lookup or listing that could not be completed. Never a reason to re-send.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("could not reach the provider: {0}")]
    Transport(String),
    #[error("provider answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("provider answer was not understood: {0}")]
    Decode(String),
    #[error("invalid provider configuration: {0}")]
    Config(String),
    /// Progress could not be saved; the submit stops before doing anything it could not
    /// resume from.
    #[error("could not save progress: {0}")]
    Checkpoint(String),
}

/// Parses a `Retry-After` header given in seconds.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// reqwest's top-level message hides the cause ("error sending request"); show the chain.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The one way adapters build their HTTP client: `api_base` must be http(s) (named by its
/// environment variable in the error), connecting gets at most 5 s of the timeout.
pub(crate) fn http_client(
    api_base: &str,
    variable: &str,
    timeout: Duration,
) -> Result<reqwest::Client, ProviderError> {
    if !api_base.starts_with("http://") && !api_base.starts_with("https://") {
        return Err(ProviderError::Config(format!(
            "{variable} {api_base:?} must start with http:// or https://"
        )));
    }
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .build()
        .map_err(|e| ProviderError::Config(e.to_string()))
}

/// An HTTP answer read to the end.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: axum::body::Bytes,
}

tokio::task_local! {
    /// Until when the step making this rail call holds its lease (see [`sending_until`]).
    static SEND_BY: chrono::DateTime<chrono::Utc>;
}

/// Runs a rail call of a step whose lease is proven until `until`: a money-moving request
/// that would leave after it is not sent. A worker paused past its lease (a stalled VM, a
/// long collector pause) has been replaced by then, and its successor settles the attempt
/// believing no request of it leaves later than that; sending anyway could pay twice.
pub async fn sending_until<F: std::future::Future>(
    until: chrono::DateTime<chrono::Utc>,
    call: F,
) -> F::Output {
    SEND_BY.scope(until, call).await
}

/// Sends a money-moving request and reads the whole answer. Transport failures are already
/// classified: a failed connect never left (retry); anything later may have executed
/// (unknown).
pub(crate) async fn exchange(
    pacer: &pacing::Pacer,
    request: reqwest::RequestBuilder,
) -> Result<Answer, crate::domain::payout::SendDecision> {
    use crate::domain::payout::SendDecision;
    crate::clock::crash_point("before a provider request").await;
    if SEND_BY
        .try_with(|by| crate::clock::now() > *by)
        .unwrap_or(false)
    {
        return Err(SendDecision::Retry {
            reason: "not sent: this worker's lease lapsed before the request could leave".into(),
            retry_after: None,
        });
    }
    let response = match pacer.send(request).await {
        Ok(r) => r,
        Err(e) if e.is_connect() => {
            return Err(SendDecision::Retry {
                reason: format!("could not connect: {}", error_chain(&e)),
                retry_after: None,
            });
        }
        Err(e) => {
            return Err(SendDecision::Unknown {
                reason: format!("no response: {}", error_chain(&e)),
            });
        }
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    match response.bytes().await {
        Ok(body) => {
            crate::clock::crash_point("after a provider answered").await;
            Ok(Answer {
                status,
                headers,
                body,
            })
        }
        Err(e) => Err(SendDecision::Unknown {
            reason: format!("response cut off (HTTP {status}): {}", error_chain(&e)),
        }),
    }
}

#[cfg(test)]
mod facts_tests;
