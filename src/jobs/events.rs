//! Delivering outgoing events: every worker claims the deliveries that are due, POSTs each
//! event's stored body signed with its endpoint's secret, and records every try. Only the
//! oldest pending delivery of a subject is ever due for an endpoint, so a receiver sees a
//! payout's events in order however many workers send; a receiver that fails holds back
//! that subject's later events until it answers or the first is given up (three days).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use secrecy::ExposeSecret;
use tracing::{error, info, warn};

use crate::domain::events::signature;
use crate::storage::{DeliveryPass, DueDelivery, Store, StoreResult, TryResult};

/// The header a delivery is signed in.
pub const SIGNATURE_HEADER: &str = "Payouts-Signature";
/// How long a receiver may take to answer; a slower one is tried again later.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claim is exclusive: past the timeout, so a live sender always finishes first.
const LEASE: Duration = Duration::from_secs(60);
/// Deliveries claimed per pass, and sent at once.
const BATCH: i64 = 64;
const IN_FLIGHT: usize = 8;
/// Accounts whose cash-out standing is looked at per pass.
const BALANCE_LOOKS: i64 = 500;
/// How often a worker looks for due deliveries.
const EVERY: Duration = Duration::from_secs(1);

/// Sends the events that are due.
#[derive(Debug, Clone)]
pub struct EventSender {
    store: Store,
    client: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the events HTTP client: {0}")]
pub struct ClientError(String);

impl EventSender {
    pub fn new(store: Store) -> Result<EventSender, ClientError> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            // A redirect would send the signed body somewhere the platform did not register.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("payouts-events/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError(e.to_string()))?;
        Ok(EventSender { store, client })
    }

    /// One pass at `now` (an injected clock in tests): claims the due deliveries, sends
    /// them, records each try and what follows it.
    pub async fn deliver_due(&self, now: DateTime<Utc>) -> StoreResult<DeliveryPass> {
        let due = self.store.claim_deliveries(now, LEASE, BATCH).await?;
        let finished: Vec<StoreResult<&'static str>> = futures::stream::iter(due)
            .map(|delivery| async move {
                let result = self.send(&delivery, now).await;
                self.store.finish_delivery(&delivery, &result, now).await
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let mut pass = DeliveryPass::default();
        for state in finished {
            match state? {
                "delivered" => pass.delivered += 1,
                "gave_up" => pass.gave_up += 1,
                _ => pass.failed += 1,
            }
        }
        Ok(pass)
    }

    async fn send(&self, delivery: &DueDelivery, now: DateTime<Utc>) -> TryResult {
        let header = signature(
            delivery.secret.expose_secret().as_bytes(),
            now.timestamp(),
            delivery.body.as_bytes(),
        );
        let started = Instant::now();
        let sent = self
            .client
            .post(&delivery.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, header)
            .body(delivery.body.clone())
            .send()
            .await;
        let took_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        match sent {
            Ok(answer) => TryResult {
                http_status: Some(answer.status().as_u16()),
                error: None,
                took_ms,
            },
            Err(e) => TryResult {
                http_status: None,
                error: Some(crate::providers::error_chain(&e)),
                took_ms,
            },
        }
    }

    /// Sends what is due and looks at the balances waiting for a look, until nothing due
    /// is left (a failing receiver's retries are not due yet): what a worker does before
    /// it stops, and what tests call.
    pub async fn drain(&self, now: DateTime<Utc>) -> StoreResult<DeliveryPass> {
        while self.store.check_balances(BALANCE_LOOKS).await? > 0 {}
        // The looks may have just written events: they are due by the wall clock too.
        self.flush(now.max(crate::clock::now())).await
    }

    /// Sends what is due at `now` until nothing is.
    async fn flush(&self, now: DateTime<Utc>) -> StoreResult<DeliveryPass> {
        let mut total = DeliveryPass::default();
        loop {
            let pass = self.deliver_due(now).await?;
            total.delivered += pass.delivered;
            total.failed += pass.failed;
            total.gave_up += pass.gave_up;
            if pass == DeliveryPass::default() {
                return Ok(total);
            }
        }
    }

    /// Runs until `stop` turns true, then sends what is due once more.
    pub async fn run(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        info!("event delivery starting");
        loop {
            if let Err(e) = self.store.check_balances(BALANCE_LOOKS).await {
                error!(error = %e, "cannot look at balances for balance.payable");
            }
            match self.deliver_due(crate::clock::now()).await {
                Ok(pass) if pass.failed + pass.gave_up > 0 => warn!(
                    delivered = pass.delivered,
                    failed = pass.failed,
                    gave_up = pass.gave_up,
                    "some event deliveries failed; they are tried again with backoff"
                ),
                Ok(_) => {}
                Err(e) => error!(error = %e, "event delivery pass failed"),
            }
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => break,
                () = tokio::time::sleep(EVERY) => {}
            }
        }
        // Balances waiting for a look stay for the next worker: a stopping one only sends.
        if let Err(e) = self.flush(crate::clock::now()).await {
            error!(error = %e, "could not send the due events before stopping");
        }
    }
}
