//! PartnerStack's own record of money moved: its rewards, read page by page from
//! `GET /rewards`, as [`ProviderRecord`]s.
//!
//! `record_id` and `reference` are both the reward `key` (PartnerStack has no other id for a
//! reward, and the key is our [`super::reward_key`] of the attempt);
//! `payee` is the `partner_key` exactly as sent (payouts store it as their destination);
//! `amount` is the integer minor units in the reward's currency. `created_at` is kept to the
//! whole second, the precision of the rewards export, so a record read from the API and one
//! read from the export are equal.

use crate::providers::pacing::SendPaced;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use futures::StreamExt;

use super::wire::{self, Envelope, PAYOUT_ID, Page, Reward};
use super::{PartnerstackAdapter, observe, read_ok};
use crate::domain::ids::Rail;
use crate::domain::money::{Currency, Money};
use crate::domain::reconcile::{ProviderRecord, RecordKind};
use crate::providers::records::{RecordPages, RecordSource};
use crate::providers::{ProviderError, error_chain};

/// Rewards asked for per page of a records listing (PartnerStack's largest page).
pub const PAGE: usize = wire::MAX_LIMIT;

/// Upper bound on pages read by one listing, so a misbehaving cursor cannot loop for ever.
const MAX_PAGES: usize = 100_000;

/// A reward's creation time (epoch ms) to the whole second.
fn created_second(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(ms.div_euclid(1000), 0).single()
}

/// One PartnerStack reward as a provider record.
pub fn reward_record(r: &Reward) -> Result<ProviderRecord, ProviderError> {
    let currency = Currency::from_str(&r.currency)
        .map_err(|e| ProviderError::Decode(format!("reward {}: currency: {e}", r.key)))?;
    if r.amount <= 0 {
        return Err(ProviderError::Decode(format!(
            "reward {}: amount {} is not a positive number of minor units",
            r.key, r.amount
        )));
    }
    let created_at = created_second(r.created_at).ok_or_else(|| {
        ProviderError::Decode(format!(
            "reward {}: created_at {} is not a time in epoch milliseconds",
            r.key, r.created_at
        ))
    })?;
    let observation = observe(r);
    Ok(ProviderRecord {
        rail: Rail::Partnerstack,
        kind: RecordKind::Reward,
        record_id: r.key.clone(),
        reference: Some(r.key.clone()),
        payout_hint: r
            .metadata
            .get(PAYOUT_ID)
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(str::to_string),
        group_id: None,
        payee: r.partner_key.clone(),
        amount: Money::from_minor_units(r.amount, currency),
        state: observation.state,
        provider_status: observation.provider_status,
        created_at,
    })
}

/// Where a listing is.
struct Cursor {
    after: Option<String>,
    pages: usize,
    done: bool,
}

impl PartnerstackAdapter {
    /// One page of rewards created in `[min_ms, max_ms]`, after `starting_after`.
    async fn reward_page(
        &self,
        min_ms: i64,
        max_ms: i64,
        limit: usize,
        starting_after: Option<&str>,
    ) -> Result<Page<Reward>, ProviderError> {
        let mut query = vec![
            ("min_created", min_ms.to_string()),
            ("max_created", max_ms.to_string()),
            ("limit", limit.to_string()),
        ];
        if let Some(after) = starting_after {
            query.push(("starting_after", after.to_string()));
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
        Ok(page.data)
    }

    /// [`RecordSource::record_pages`] with `page` rewards asked for per request (1–250).
    pub fn record_pages_of(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        page: usize,
    ) -> RecordPages<'_> {
        let limit = page.clamp(1, wire::MAX_LIMIT);
        let min_ms = from.timestamp_millis();
        // max_created is read as inclusive: stop one millisecond before `to`.
        let max_ms = to.timestamp_millis() - 1;
        let cursor = Cursor {
            after: None,
            pages: 0,
            done: max_ms < min_ms,
        };
        futures::stream::unfold(cursor, move |mut cursor| async move {
            while !cursor.done {
                if cursor.pages >= MAX_PAGES {
                    cursor.done = true;
                    let e = ProviderError::Decode(format!(
                        "reward listing did not end within {MAX_PAGES} pages"
                    ));
                    return Some((Err(e), cursor));
                }
                cursor.pages += 1;
                let page = match self
                    .reward_page(min_ms, max_ms, limit, cursor.after.as_deref())
                    .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        cursor.done = true;
                        return Some((Err(e), cursor));
                    }
                };
                let next = page.items.last().map(|r| r.key.clone());
                if page.has_more && (next.is_none() || next == cursor.after) {
                    cursor.done = true;
                    let e = ProviderError::Decode(
                        "reward listing says has_more but its cursor does not advance".into(),
                    );
                    return Some((Err(e), cursor));
                }
                cursor.done = !page.has_more;
                cursor.after = next;
                let mut records = Vec::with_capacity(page.items.len());
                // The filter is applied again here, in case the API ignores it.
                for r in page
                    .items
                    .iter()
                    .filter(|r| (min_ms..=max_ms).contains(&r.created_at))
                {
                    match reward_record(r) {
                        Ok(record) => records.push(record),
                        Err(e) => {
                            cursor.done = true;
                            return Some((Err(e), cursor));
                        }
                    }
                }
                if !records.is_empty() {
                    return Some((Ok(records), cursor));
                }
            }
            None
        })
        .boxed()
    }
}

impl RecordSource for PartnerstackAdapter {
    fn rail(&self) -> Rail {
        Rail::Partnerstack
    }

    /// `GET /rewards?min_created=<ms>&max_created=<ms>&limit=250&starting_after=<key>` while
    /// `has_more`; only rewards created in `[from, to)` are yielded.
    fn record_pages<'a>(&'a self, from: DateTime<Utc>, to: DateTime<Utc>) -> RecordPages<'a> {
        self.record_pages_of(from, to, PAGE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::tracking::RailState;

    fn sample() -> Reward {
        Reward {
            key: "po_01JTEST-attempt-1".into(),
            partner_key: "pk_alice".into(),
            amount: 1250,
            currency: "USD".into(),
            description: Some("Affiliate payout po_01JTEST".into()),
            status: "approved".into(),
            payment_status: "available".into(),
            created_at: 1_741_064_767_891,
            updated_at: None,
            metadata: [(PAYOUT_ID.to_string(), "po_01JTEST".to_string())].into(),
            test: false,
        }
    }

    #[test]
    fn a_reward_is_a_record_in_the_payouts_terms() {
        let r = reward_record(&sample()).unwrap();
        assert_eq!((r.rail, r.kind), (Rail::Partnerstack, RecordKind::Reward));
        assert_eq!(r.record_id, "po_01JTEST-attempt-1");
        assert_eq!(r.reference.as_deref(), Some("po_01JTEST-attempt-1"));
        assert_eq!(r.payout_hint.as_deref(), Some("po_01JTEST"));
        assert_eq!(r.payee, "pk_alice");
        assert_eq!(r.amount, Money::from_minor_units(1250, Currency::Usd));
        assert_eq!(r.state, RailState::Paid);
        assert_eq!(r.provider_status, "available");
        assert_eq!(r.created_at.timestamp(), 1_741_064_767);
        assert_eq!(r.created_at.timestamp_subsec_millis(), 0);
    }

    #[test]
    fn unreadable_rewards_are_errors_not_guesses() {
        let mut r = sample();
        r.currency = "usdx".into();
        assert!(reward_record(&r).is_err());
        let mut r = sample();
        r.amount = -5;
        assert!(reward_record(&r).is_err());
        let mut r = sample();
        r.metadata.clear();
        assert_eq!(reward_record(&r).unwrap().payout_hint, None);
    }
}
