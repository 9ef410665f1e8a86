//! Counters kept in this process, for what the database does not record: webhook deliveries
//! refused before anything was stored. Process-wide, as a metrics registry is.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::domain::ids::Rail;

static WEBHOOK_REJECTIONS: Mutex<BTreeMap<(Rail, &'static str), u64>> = Mutex::new(BTreeMap::new());

/// Counts a refused webhook delivery by rail and reason (`unauthenticated`, `malformed`,
/// `unverifiable`).
pub fn webhook_rejected(rail: Rail, reason: &'static str) {
    // A poisoned lock only means a panic elsewhere mid-increment; the counts still stand.
    let mut counts = WEBHOOK_REJECTIONS.lock().unwrap_or_else(|p| p.into_inner());
    *counts.entry((rail, reason)).or_default() += 1;
}

pub fn webhook_rejections() -> Vec<(Rail, &'static str, u64)> {
    let counts = WEBHOOK_REJECTIONS.lock().unwrap_or_else(|p| p.into_inner());
    counts.iter().map(|(&(r, why), &n)| (r, why, n)).collect()
}
