//! Wise's transfer listing may answer a short page that is not its last: every listing reads
//! on until an empty page, or a transfer past the short page is never seen (a reconciliation
//! misses it; a lookup calls it absent and the payout could be sent again).

use chrono::Utc;
use futures::TryStreamExt;
use payouts::domain::payout::LookupFinding;
use payouts::providers::rail::{NoCheckpoints, PayoutRail};

use crate::provider_records_wise_partnerstack::{send_all, wise, wise_payouts};

#[tokio::test]
async fn the_records_listing_reads_past_a_short_page() {
    let (mock, adapter) = wise().await;
    send_all(&adapter, wise_payouts("WISESHORT", 9)).await;
    // Wise answers at most three per page although four are asked for.
    mock.set_page_cap(Some(3));
    let now = Utc::now();
    let (from, to) = (
        now - chrono::Duration::hours(1),
        now + chrono::Duration::hours(1),
    );
    let pages: Vec<_> = adapter
        .record_pages_of(from, to, 4)
        .try_collect()
        .await
        .unwrap();
    let read: usize = pages.iter().map(Vec::len).sum();
    assert_eq!(read, 9, "the listing stopped at a short page");
    mock.stop();
}

#[tokio::test]
async fn a_lookup_finds_a_transfer_past_a_short_page() {
    let (mock, adapter) = wise().await;
    let sent = send_all(&adapter, wise_payouts("WISELOOK", 5)).await;
    mock.set_page_cap(Some(2));
    // The oldest transfer is listed last, past two short pages.
    let oldest = sent
        .iter()
        .min_by_key(|s| s.provider_ref.parse::<u64>().unwrap())
        .unwrap();
    let found = adapter
        .resolve(&oldest.sub(), &[], Utc::now(), &NoCheckpoints)
        .await
        .unwrap();
    assert!(
        matches!(&found, LookupFinding::Landed { provider_ref, .. } if *provider_ref == oldest.provider_ref),
        "a landed transfer past a short page was not found: {found:?}"
    );
    mock.stop();
}
