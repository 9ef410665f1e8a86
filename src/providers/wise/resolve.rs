//! Settling an uncertain Wise payout by listing the profile's transfers by
//! `customerTransactionId`, never by trusting a dedupe window.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tracing::{info, warn};

use super::http::Failure;
use super::wire::{self, Transfer};
use super::{Progress, WiseAdapter, customer_transaction_id, observe, records};
use crate::domain::payout::{LookupFinding, SendDecision};
use crate::providers::ProviderError;
use crate::providers::rail::{Checkpoints, PastAttempt, Submission};

impl WiseAdapter {
    /// Every transfer of the profile whose customerTransactionId is one of `ctids`, following
    /// offset pagination to the end: an empty page, never merely a short one (Wise may answer
    /// fewer than asked for before the end, and a transfer missed here reads as absent).
    /// `since` bounds the listing to transfers created on or after that day, so a resolve
    /// does not page through the profile's whole history.
    pub async fn transfers_by_ctid(
        &self,
        ctids: &[&str],
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<Transfer>, ProviderError> {
        const PAGE: usize = 100;
        let mut found = Vec::new();
        let mut offset = 0usize;
        for _ in 0..records::MAX_PAGES {
            let mut query = vec![
                ("profile", self.profile_id.to_string()),
                ("limit", PAGE.to_string()),
                ("offset", offset.to_string()),
            ];
            if let Some(since) = since {
                query.push(("createdDateStart", since.format("%Y-%m-%d").to_string()));
            }
            let page: Vec<Transfer> = self
                .http
                .get_query("/v1/transfers", &query)
                .await
                .map_err(Failure::provider_error)?;
            let n = page.len();
            if n == 0 {
                return Ok(found);
            }
            found.extend(page.into_iter().filter(|t| {
                t.customer_transaction_id
                    .as_deref()
                    .is_some_and(|c| ctids.contains(&c))
            }));
            offset += n;
        }
        Err(ProviderError::Decode(format!(
            "transfer listing did not end within {} pages",
            records::MAX_PAGES
        )))
    }

    /// Settles an uncertain payout by listing, never by trusting a dedupe window.
    ///
    /// A transfer counts as funded when it is past `incoming_payment_waiting` and not
    /// `cancelled`. A transfer cancelled after funding (a payout failure) therefore reads as
    /// "nothing moved": true for the money, which Wise returns to the balance.
    pub(super) async fn settle(
        &self,
        last: &Submission<'_>,
        earlier: &[PastAttempt],
        last_started: DateTime<Utc>,
        checkpoints: &dyn Checkpoints,
    ) -> Result<LookupFinding, ProviderError> {
        let last_ctid = customer_transaction_id(last.idempotency_key).to_string();
        let last_progress = match last.checkpoint.as_ref().map(Progress::from_checkpoint) {
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => {
                warn!(payout = %last.payout_id, error = %e, "ignoring the checkpoint; the listing decides");
                None
            }
            None => None,
        };
        let found = self
            .attempts_transfers(&last_ctid, earlier, last_started, last_progress.as_ref())
            .await?;
        let funded: Vec<&Transfer> = found
            .values()
            .filter(|t| t.status != wire::WAITING && t.status != wire::CANCELLED)
            .collect();
        match funded.as_slice() {
            [one] => return Ok(found_landed(one)),
            [] => {}
            many => {
                warn!(payout = %last.payout_id, count = many.len(), "more than one funded Wise transfer for one payout");
                return Ok(LookupFinding::Duplicate {
                    provider_refs: many.iter().map(|t| t.id.to_string()).collect(),
                });
            }
        }
        // Nothing funded. Unfunded transfers of earlier attempts are dead ends: cancel them.
        let last_transfer = self.cancel_earlier_unfunded(&found, &last_ctid).await;
        let Some(progress) = resume(last_transfer, last_progress) else {
            return Ok(LookupFinding::Absent);
        };
        // Safe to continue under the same customerTransactionId: the listing proved no
        // funded transfer exists for any attempt.
        info!(payout = %last.payout_id, transfer = ?progress.transfer_id, "continuing the uncertain attempt");
        Ok(match self.run(last, Some(progress), checkpoints).await {
            SendDecision::Landed {
                provider_ref,
                observation,
            } => LookupFinding::Landed {
                provider_ref,
                observation,
            },
            SendDecision::Permanent { reason } => LookupFinding::Refused { reason },
            // Nothing was created, or the unfunded transfer was cancelled: nothing exists.
            SendDecision::Retry { .. } | SendDecision::Throttled { .. } => LookupFinding::Absent,
            SendDecision::Unknown { reason } => return Err(ProviderError::Transport(reason)),
        })
    }

    /// Every transfer made under any attempt of the payout, by id: those the listing finds
    /// by `customerTransactionId`, plus those whose ids we know directly (from checkpoints
    /// and provider refs), in case the listing lags behind.
    async fn attempts_transfers(
        &self,
        last_ctid: &str,
        earlier: &[PastAttempt],
        last_started: DateTime<Utc>,
        last_progress: Option<&Progress>,
    ) -> Result<BTreeMap<u64, Transfer>, ProviderError> {
        // A day of slack for clock differences between us and Wise.
        let since = earlier
            .iter()
            .map(|a| a.started_at)
            .chain([last_started])
            .min()
            .map(|t| t - chrono::Duration::days(1));
        let mut ctids: Vec<String> = earlier
            .iter()
            .map(|a| customer_transaction_id(&a.idempotency_key).to_string())
            .collect();
        ctids.push(last_ctid.to_string());
        let wanted: Vec<&str> = ctids.iter().map(String::as_str).collect();
        let mut found: BTreeMap<u64, Transfer> = self
            .transfers_by_ctid(&wanted, since)
            .await?
            .into_iter()
            .map(|t| (t.id, t))
            .collect();
        let mut known: Vec<u64> = earlier
            .iter()
            .filter_map(|a| {
                a.checkpoint
                    .as_ref()
                    .and_then(|c| Progress::from_checkpoint(c).ok())
                    .and_then(|p| p.transfer_id)
                    .or_else(|| a.provider_ref.as_deref().and_then(|r| r.parse().ok()))
            })
            .collect();
        known.extend(last_progress.and_then(|p| p.transfer_id));
        for id in known {
            if let Entry::Vacant(slot) = found.entry(id) {
                slot.insert(self.transfer(id).await?);
            }
        }
        Ok(found)
    }

    /// Cancels the unfunded transfers of earlier attempts (best effort) and returns the last
    /// attempt's transfer, if it made one.
    async fn cancel_earlier_unfunded<'t>(
        &self,
        found: &'t BTreeMap<u64, Transfer>,
        last_ctid: &str,
    ) -> Option<&'t Transfer> {
        let mut last_transfer: Option<&Transfer> = None;
        for t in found.values() {
            if t.customer_transaction_id.as_deref() == Some(last_ctid) {
                last_transfer = last_transfer.or(Some(t));
            } else if t.status == wire::WAITING
                && let Err(e) = self.cancel(t.id).await
            {
                warn!(transfer = t.id, error = %e, "could not cancel an earlier attempt's unfunded transfer");
            }
        }
        last_transfer
    }
}

/// Where the last attempt can continue from when nothing was funded: its unfunded transfer,
/// or its saved quote while still live. `None`: nothing exists to continue.
fn resume(last_transfer: Option<&Transfer>, last_progress: Option<Progress>) -> Option<Progress> {
    match last_transfer {
        Some(t) if t.status == wire::WAITING => {
            let mut p = last_progress.unwrap_or_else(Progress::placeholder);
            p.transfer_id = Some(t.id);
            Some(p)
        }
        // The last attempt's transfer was cancelled unfunded: nothing moved under it.
        Some(_) => None,
        None => last_progress
            .filter(|p| p.transfer_id.is_none() && p.quote_is_live(crate::clock::now())),
    }
}

impl Progress {
    /// Progress for a transfer found by listing when no checkpoint was saved: only the
    /// transfer id matters from here on.
    fn placeholder() -> Self {
        Progress {
            quote_id: String::new(),
            rate: Decimal::ZERO,
            source_amount: Decimal::ZERO,
            target_amount: Decimal::ZERO,
            target_currency: String::new(),
            expires_at: DateTime::<Utc>::MIN_UTC,
            transfer_id: None,
        }
    }
}

fn found_landed(t: &Transfer) -> LookupFinding {
    LookupFinding::Landed {
        provider_ref: t.id.to_string(),
        observation: observe(t),
    }
}
