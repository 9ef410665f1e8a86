//! Wise's own record of money moved: its transfers, read page by page from
//! `GET /v1/transfers`, as [`ProviderRecord`]s.
//!
//! A record is in the payout's terms: `amount` is `sourceValue` in `sourceCurrency` (the
//! adapter quotes by source amount, so that is exactly the payout's amount; the recipient may
//! receive another currency), `payee` is the recipient account id as decimal text (the form
//! payouts store as their Wise destination), and `reference` is the `customerTransactionId`.

use std::collections::HashSet;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use futures::StreamExt;

use super::http::Failure;
use super::wire::Transfer;
use super::{WiseAdapter, observe};
use crate::domain::ids::Rail;
use crate::domain::money::{Currency, Money};
use crate::domain::reconcile::{ProviderRecord, RecordKind};
use crate::providers::ProviderError;
use crate::providers::records::{RecordPages, RecordSource};

/// Transfers asked for per page of a records listing.
pub const PAGE: usize = 100;

/// Upper bound on pages read by one listing, so a misbehaving API cannot loop for ever.
pub(super) const MAX_PAGES: usize = 100_000;

/// The form of a transfer's `created` (always UTC).
pub const CREATED_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Reads a transfer's `created` (`YYYY-MM-DD HH:MM:SS`, UTC; fractional seconds tolerated).
pub fn parse_created(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
}

/// One Wise transfer as a provider record.
pub fn transfer_record(t: &Transfer) -> Result<ProviderRecord, ProviderError> {
    let currency = Currency::from_str(&t.source_currency)
        .map_err(|e| ProviderError::Decode(format!("transfer {}: sourceCurrency: {e}", t.id)))?;
    if t.source_value.0 <= rust_decimal::Decimal::ZERO {
        return Err(ProviderError::Decode(format!(
            "transfer {}: sourceValue {} is not a positive amount",
            t.id, t.source_value.0
        )));
    }
    let created_at = parse_created(&t.created).ok_or_else(|| {
        ProviderError::Decode(format!(
            "transfer {}: created {:?} is not \"YYYY-MM-DD HH:MM:SS\"",
            t.id, t.created
        ))
    })?;
    let observation = observe(t);
    // The adapter puts our payout id in details.reference; the deprecated top-level
    // `reference` is read too, for transfers made by older integrations.
    let payout_hint = [t.details.reference.as_deref(), t.reference.as_deref()]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|r| !r.is_empty())
        .map(str::to_string);
    Ok(ProviderRecord {
        rail: Rail::Wise,
        kind: RecordKind::Transfer,
        record_id: t.id.to_string(),
        reference: t
            .customer_transaction_id
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        payout_hint,
        group_id: None,
        payee: t.target_account.to_string(),
        amount: Money::new(t.source_value.0, currency),
        state: observation.state,
        provider_status: observation.provider_status,
        created_at,
    })
}

/// The `createdDateStart`/`createdDateEnd` days covering `[from, to)`. Wise takes days (both
/// ends inclusive); the end is one day further so the query also covers `[from, to)` if the
/// API reads a day as its midnight. The listing then keeps only records inside `[from, to)`.
fn date_bounds(from: DateTime<Utc>, to: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
    let start = from.date_naive();
    let last = (to - chrono::Duration::nanoseconds(1)).date_naive();
    let end = last.succ_opt().unwrap_or(last).max(start);
    (start, end)
}

/// Where a listing is.
struct Cursor {
    offset: usize,
    pages: usize,
    /// Ids of the page before, to drop a transfer seen again when new transfers push the
    /// offsets along between two requests. Bounded by one page.
    previous: HashSet<u64>,
    done: bool,
}

impl WiseAdapter {
    /// One page of the profile's transfers, newest first as Wise lists them.
    async fn transfer_page(
        &self,
        start: NaiveDate,
        end: NaiveDate,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Transfer>, ProviderError> {
        let query = [
            ("profile", self.profile_id.to_string()),
            ("createdDateStart", start.format("%Y-%m-%d").to_string()),
            ("createdDateEnd", end.format("%Y-%m-%d").to_string()),
            ("limit", limit.to_string()),
            ("offset", offset.to_string()),
        ];
        self.http
            .get_query("/v1/transfers", &query)
            .await
            .map_err(Failure::provider_error)
    }

    /// [`RecordSource::record_pages`] with `page` transfers asked for per request.
    pub fn record_pages_of(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        page: usize,
    ) -> RecordPages<'_> {
        let (start, end) = date_bounds(from, to);
        let page = page.max(1);
        let cursor = Cursor {
            offset: 0,
            pages: 0,
            previous: HashSet::new(),
            done: to <= from,
        };
        futures::stream::unfold(cursor, move |mut cursor| async move {
            // Pages whose transfers all fall outside [from, to) are skipped, not yielded.
            while !cursor.done {
                if cursor.pages >= MAX_PAGES {
                    cursor.done = true;
                    let e = ProviderError::Decode(format!(
                        "transfer listing did not end within {MAX_PAGES} pages"
                    ));
                    return Some((Err(e), cursor));
                }
                cursor.pages += 1;
                let transfers = match self.transfer_page(start, end, page, cursor.offset).await {
                    Ok(t) => t,
                    Err(e) => {
                        cursor.done = true;
                        return Some((Err(e), cursor));
                    }
                };
                cursor.offset += transfers.len();
                // Only an empty page ends the listing: Wise may answer fewer than asked for
                // on a page that is not the last.
                cursor.done = transfers.is_empty();
                let mut records = Vec::with_capacity(transfers.len());
                let mut ids = HashSet::with_capacity(transfers.len());
                for t in &transfers {
                    ids.insert(t.id);
                    if cursor.previous.contains(&t.id) {
                        continue;
                    }
                    match transfer_record(t) {
                        Ok(r) if r.created_at >= from && r.created_at < to => records.push(r),
                        Ok(_) => {}
                        Err(e) => {
                            cursor.done = true;
                            return Some((Err(e), cursor));
                        }
                    }
                }
                cursor.previous = ids;
                if !records.is_empty() {
                    return Some((Ok(records), cursor));
                }
            }
            None
        })
        .boxed()
    }
}

impl RecordSource for WiseAdapter {
    fn rail(&self) -> Rail {
        Rail::Wise
    }

    /// `GET /v1/transfers?profile=…&createdDateStart=…&createdDateEnd=…&limit=100&offset=…`
    /// until an empty page; only transfers created in `[from, to)` are yielded.
    fn record_pages<'a>(&'a self, from: DateTime<Utc>, to: DateTime<Utc>) -> RecordPages<'a> {
        self.record_pages_of(from, to, PAGE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::tracking::RailState;
    use crate::providers::wise::wire::{Num, TransferDetails};
    use rust_decimal::Decimal;

    fn sample() -> Transfer {
        Transfer {
            id: 50_000_123,
            user: Some(1),
            target_account: 1002,
            source_account: None,
            quote_uuid: None,
            status: "outgoing_payment_sent".into(),
            reference: None,
            rate: Num(Decimal::new(9210, 4)),
            created: "2025-03-04 05:06:07".into(),
            business: Some(16_000_001),
            details: TransferDetails {
                reference: Some("po_01JTEST".into()),
            },
            has_active_issues: false,
            source_currency: "USD".into(),
            source_value: Num(Decimal::new(1250, 2)),
            target_currency: "EUR".into(),
            target_value: Num(Decimal::new(1151, 2)),
            customer_transaction_id: Some("6f1c2d9e-0000-5000-8000-000000000001".into()),
        }
    }

    #[test]
    fn a_transfer_is_a_record_in_the_payouts_terms() {
        let r = transfer_record(&sample()).unwrap();
        assert_eq!(r.rail, Rail::Wise);
        assert_eq!(r.kind, RecordKind::Transfer);
        assert_eq!(r.record_id, "50000123");
        assert_eq!(
            r.reference.as_deref(),
            Some("6f1c2d9e-0000-5000-8000-000000000001")
        );
        assert_eq!(r.payout_hint.as_deref(), Some("po_01JTEST"));
        assert_eq!(r.payee, "1002");
        // The source side: what the payout paid, not what the recipient received.
        assert_eq!(r.amount, Money::new(Decimal::new(125, 1), Currency::Usd));
        assert_eq!(r.state, RailState::Paid);
        assert_eq!(r.provider_status, "outgoing_payment_sent");
        assert_eq!(r.created_at, parse_created("2025-03-04T05:06:07Z").unwrap());
    }

    #[test]
    fn unreadable_transfers_are_errors_not_guesses() {
        let mut t = sample();
        t.source_currency = "XXX".into();
        assert!(transfer_record(&t).is_err());
        let mut t = sample();
        t.created = "yesterday".into();
        assert!(transfer_record(&t).is_err());
        let mut t = sample();
        t.details.reference = None;
        t.reference = Some(" po_old ".into());
        assert_eq!(
            transfer_record(&t).unwrap().payout_hint.as_deref(),
            Some("po_old")
        );
    }

    #[test]
    fn date_bounds_cover_the_window() {
        let at = |s: &str| parse_created(s).unwrap();
        let (s, e) = date_bounds(at("2025-03-01 00:00:00"), at("2025-04-01 00:00:00"));
        assert_eq!(s.to_string(), "2025-03-01");
        assert_eq!(e.to_string(), "2025-04-01");
        let (s, e) = date_bounds(at("2025-03-01 10:00:00"), at("2025-03-01 12:00:00"));
        assert_eq!(
            (s.to_string(), e.to_string()),
            ("2025-03-01".into(), "2025-03-02".into())
        );
    }
}
