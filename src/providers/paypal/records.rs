//! PayPal's own records of money moved, for reconciliation: one record per payout item.
//!
//! Payouts v1 cannot list batches, so the listing finds them through the Transaction Search
//! API (`GET /v1/reporting/transactions`, at most 31 days per request, 500 rows per page),
//! then reads each batch found, its items 1000 per page. PayPal refreshes search data with a
//! delay (`last_refreshed_datetime`, up to a few hours): a window that ends near now may miss
//! the latest batches, so reconcile closed periods.

use std::collections::{HashSet, VecDeque};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use futures::stream;

use super::PaypalAdapter;
use super::classify::is_batch_id;
use super::wire::{
    BATCH_PAGE_SIZE, PAYOUT_EVENT_CODE, PayoutBatch, PayoutItem, SEARCH_MAX_DAYS, SEARCH_PAGE_SIZE,
    TransactionInfo, TransactionSearch,
};
use crate::domain::ids::Rail;
use crate::domain::money::{Currency, Money};
use crate::domain::reconcile::{ProviderRecord, RecordKind};
use crate::providers::ProviderError;
use crate::providers::records::{RecordPages, RecordSource};

/// One payout item as a provider record: `reference` is the batch's sender_batch_id (our
/// attempt key), `payout_hint` the item's sender_item_id (our payout id), `group_id` the
/// payout_batch_id. Dated by `time_processed`, else the batch's `time_created`.
pub fn item_record(
    batch: &PayoutBatch,
    item: &PayoutItem,
) -> Result<ProviderRecord, ProviderError> {
    item_record_at(batch, item, None)
}

/// [`item_record`], dated `found_at` (the transaction search row's date) when neither the
/// item nor the batch carries a time.
pub fn item_record_at(
    batch: &PayoutBatch,
    item: &PayoutItem,
    found_at: Option<DateTime<Utc>>,
) -> Result<ProviderRecord, ProviderError> {
    let id = &item.payout_item_id;
    let decode = |why: String| ProviderError::Decode(format!("PayPal payout item {id}: {why}"));
    let wire_amount = item
        .payout_item
        .amount
        .as_ref()
        .ok_or_else(|| decode("has no amount".into()))?;
    let currency: Currency = wire_amount.currency.parse().map_err(|_| {
        decode(format!(
            "is in currency {:?}, which this system does not handle",
            wire_amount.currency
        ))
    })?;
    let amount = Money::parse(&wire_amount.value, currency, currency.minor_decimals())
        .map_err(|e| decode(format!("amount {:?}: {e}", wire_amount.value)))?;
    if amount.is_negative() {
        return Err(decode(format!("negative amount {:?}", wire_amount.value)));
    }
    let payee = item
        .payout_item
        .receiver
        .as_deref()
        .ok_or_else(|| decode("has no receiver".into()))?
        .to_lowercase();
    let header = &batch.batch_header;
    let created_at = match (
        time(item.time_processed.as_deref(), "time_processed", id)?,
        time(header.time_created.as_deref(), "time_created", id)?,
        found_at,
    ) {
        (Some(t), _, _) | (None, Some(t), _) | (None, None, Some(t)) => t,
        (None, None, None) => return Err(decode("neither it nor its batch has a time".into())),
    };
    let observation = super::observe_item(item);
    Ok(ProviderRecord {
        rail: Rail::Paypal,
        kind: RecordKind::BatchItem,
        record_id: id.clone(),
        reference: header
            .sender_batch_header
            .sender_batch_id
            .clone()
            .or_else(|| item.sender_batch_id.clone()),
        payout_hint: item.payout_item.sender_item_id.clone(),
        group_id: Some(header.payout_batch_id.clone()),
        payee,
        amount,
        state: observation.state,
        provider_status: observation.provider_status,
        created_at,
    })
}

fn time(
    value: Option<&str>,
    field: &str,
    id: &str,
) -> Result<Option<DateTime<Utc>>, ProviderError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    ProviderError::Decode(format!(
                        "PayPal payout item {id}: {field} {v:?} is not an RFC 3339 time: {e}"
                    ))
                })
        })
        .transpose()
}

/// The batch a transaction search row names, and when the row says it began.
pub fn batch_of(row: &TransactionInfo) -> Option<(String, Option<DateTime<Utc>>)> {
    let payout = row.paypal_reference_id_type.as_deref() == Some("PAYOUT")
        || row.transaction_event_code.as_deref() == Some(PAYOUT_EVENT_CODE);
    let id = row
        .paypal_reference_id
        .as_deref()
        .filter(|id| is_batch_id(id))?;
    let at = row
        .transaction_initiation_date
        .as_deref()
        .and_then(report_time);
    payout.then(|| (id.to_string(), at))
}

/// A reporting API time: `2024-06-01T12:00:00+0000` (PayPal's form) or RFC 3339.
pub fn report_time(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .or_else(|_| DateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Where a listing is.
struct Listing {
    to: DateTime<Utc>,
    /// The search window being read (at most 31 days) and its next page, if any is left.
    chunk: (DateTime<Utc>, DateTime<Utc>),
    search_page: Option<u64>,
    /// Batches found and not read yet, with their rows' dates.
    queue: VecDeque<(String, Option<DateTime<Utc>>)>,
    /// The batch being read and its next page of items.
    batch: Option<(String, Option<DateTime<Utc>>, u64)>,
    seen: HashSet<String>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn query(pairs: &[(&str, String)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

impl PaypalAdapter {
    /// One page of the transaction search over `[start, end)`.
    async fn search_page(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        page: u64,
    ) -> Result<TransactionSearch, ProviderError> {
        let q = query(&[
            ("start_date", rfc3339(start)),
            ("end_date", rfc3339(end)),
            ("fields", "transaction_info".into()),
            ("page_size", SEARCH_PAGE_SIZE.to_string()),
            ("page", page.to_string()),
        ]);
        self.get_json(&format!("/v1/reporting/transactions?{q}"))
            .await
    }

    /// One page of a batch's items.
    async fn batch_page(&self, batch_id: &str, page: u64) -> Result<PayoutBatch, ProviderError> {
        let q = query(&[
            ("page", page.to_string()),
            ("page_size", BATCH_PAGE_SIZE.to_string()),
            ("total_required", "true".into()),
        ]);
        self.get_json(&format!("/v1/payments/payouts/{batch_id}?{q}"))
            .await
    }

    /// The next non-empty page of records, or `None` at the end.
    async fn next_records(
        &self,
        mut at: Listing,
    ) -> Result<Option<(Vec<ProviderRecord>, Listing)>, ProviderError> {
        loop {
            if let Some((id, found_at, page)) = at.batch.take() {
                let batch = self.batch_page(&id, page).await?;
                let more = match batch.total_pages {
                    Some(pages) => page < pages,
                    None => batch.items.len() >= BATCH_PAGE_SIZE as usize,
                };
                if more && !batch.items.is_empty() {
                    at.batch = Some((id, found_at, page + 1));
                }
                let records = batch
                    .items
                    .iter()
                    .map(|item| item_record_at(&batch, item, found_at))
                    .collect::<Result<Vec<_>, _>>()?;
                if !records.is_empty() {
                    return Ok(Some((records, at)));
                }
            } else if let Some((id, found_at)) = at.queue.pop_front() {
                at.batch = Some((id, found_at, 1));
            } else if let Some(page) = at.search_page {
                let (start, end) = at.chunk;
                let found = self.search_page(start, end, page).await?;
                at.search_page = (page < found.total_pages
                    && !found.transaction_details.is_empty())
                .then_some(page + 1);
                for row in &found.transaction_details {
                    let Some((id, when)) = batch_of(&row.transaction_info) else {
                        continue;
                    };
                    // The search's end may be inclusive: the window is half-open.
                    if when.is_some_and(|w| w < start || w >= end) {
                        continue;
                    }
                    if at.seen.insert(id.clone()) {
                        at.queue.push_back((id, when));
                    }
                }
            } else if at.chunk.1 < at.to {
                let start = at.chunk.1;
                at.chunk = (start, (start + Duration::days(SEARCH_MAX_DAYS)).min(at.to));
                at.search_page = Some(1);
            } else {
                return Ok(None);
            }
        }
    }
}

impl RecordSource for PaypalAdapter {
    fn rail(&self) -> Rail {
        Rail::Paypal
    }

    /// Every item of every payout batch the transaction search finds in `[from, to)`, one
    /// page per batch page (each batch read once per run).
    fn record_pages<'a>(&'a self, from: DateTime<Utc>, to: DateTime<Utc>) -> RecordPages<'a> {
        let start = Listing {
            to,
            chunk: (from, (from + Duration::days(SEARCH_MAX_DAYS)).min(to)),
            search_page: (from < to).then_some(1),
            queue: VecDeque::new(),
            batch: None,
            seen: HashSet::new(),
        };
        Box::pin(stream::try_unfold(start, move |at| self.next_records(at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::tracking::RailState;
    use crate::providers::paypal::wire::{Amount, BatchHeader, ItemRequest, SenderBatchHeader};

    fn batch(items: Vec<PayoutItem>) -> PayoutBatch {
        PayoutBatch {
            batch_header: BatchHeader {
                payout_batch_id: "BATCH1".into(),
                batch_status: "SUCCESS".into(),
                time_created: Some("2024-06-01T12:00:00Z".into()),
                time_completed: None,
                time_closed: None,
                sender_batch_header: SenderBatchHeader {
                    sender_batch_id: Some("attempt-key-1".into()),
                    ..Default::default()
                },
                funding_source: None,
                amount: None,
                fees: None,
            },
            items,
            total_items: None,
            total_pages: None,
            links: Vec::new(),
        }
    }

    fn item(value: &str, currency: &str, status: &str, processed: Option<&str>) -> PayoutItem {
        PayoutItem {
            payout_item_id: "ITEM1".into(),
            transaction_id: None,
            activity_id: None,
            transaction_status: status.into(),
            payout_item_fee: None,
            payout_batch_id: "BATCH1".into(),
            sender_batch_id: None,
            payout_item: ItemRequest {
                amount: Some(Amount {
                    value: value.into(),
                    currency: currency.into(),
                }),
                receiver: Some("Alice@Example.TEST".into()),
                sender_item_id: Some("payout-1".into()),
                ..Default::default()
            },
            time_processed: processed.map(str::to_string),
            errors: None,
            links: Vec::new(),
        }
    }

    #[test]
    fn an_item_becomes_a_record_with_its_batch_as_group() {
        let i = item("12.50", "USD", "UNCLAIMED", Some("2024-06-02T08:30:00Z"));
        let r = item_record(&batch(vec![i.clone()]), &i).unwrap();
        assert_eq!(r.kind, RecordKind::BatchItem);
        assert_eq!(r.record_id, "ITEM1");
        assert_eq!(r.reference.as_deref(), Some("attempt-key-1"));
        assert_eq!(r.payout_hint.as_deref(), Some("payout-1"));
        assert_eq!(r.group_id.as_deref(), Some("BATCH1"));
        assert_eq!(r.payee, "alice@example.test");
        assert_eq!(r.amount, Money::parse("12.5", Currency::Usd, 2).unwrap());
        assert_eq!(
            (r.state, r.provider_status.as_str()),
            (RailState::InFlight, "UNCLAIMED")
        );
        assert_eq!(rfc3339(r.created_at), "2024-06-02T08:30:00Z");

        let pending = item("1230", "JPY", "PENDING", None);
        let r = item_record(&batch(vec![]), &pending).unwrap();
        assert_eq!(rfc3339(r.created_at), "2024-06-01T12:00:00Z");
        assert_eq!(r.amount, Money::from_minor_units(1230, Currency::Jpy));
    }

    #[test]
    fn amounts_are_exact_and_bad_ones_are_refused() {
        for (value, currency) in [
            ("12.345", "USD"),
            ("12.3", "JPY"),
            ("abc", "USD"),
            ("1", "XYZ"),
        ] {
            let i = item(value, currency, "SUCCESS", None);
            let err = item_record(&batch(vec![]), &i).unwrap_err();
            assert!(
                matches!(&err, ProviderError::Decode(m) if m.contains("ITEM1")),
                "{err}"
            );
        }
        let mut undated = batch(vec![]);
        undated.batch_header.time_created = None;
        let i = item("1.00", "USD", "SUCCESS", None);
        assert!(item_record(&undated, &i).is_err());
        let found = DateTime::parse_from_rfc3339("2024-06-03T00:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            item_record_at(&undated, &i, Some(found))
                .unwrap()
                .created_at,
            found
        );
    }

    #[test]
    fn search_rows_name_payout_batches_only() {
        let row = |kind: Option<&str>, code: Option<&str>, id: &str| TransactionInfo {
            paypal_reference_id: Some(id.into()),
            paypal_reference_id_type: kind.map(str::to_string),
            transaction_event_code: code.map(str::to_string),
            transaction_initiation_date: Some("2024-06-01T12:00:00+0000".into()),
            ..Default::default()
        };
        let (id, at) = batch_of(&row(Some("PAYOUT"), None, "B1")).unwrap();
        assert_eq!(id, "B1");
        assert_eq!(at.map(rfc3339).as_deref(), Some("2024-06-01T12:00:00Z"));
        assert!(batch_of(&row(None, Some("T0001"), "B2")).is_some());
        assert!(batch_of(&row(Some("TXN"), Some("T0006"), "B3")).is_none());
        assert!(batch_of(&row(Some("PAYOUT"), None, "../x")).is_none());
    }
}
