//! Counts for the service's metrics, read from the database at scrape time so that every
//! process (API servers and workers alike) reports the same numbers.

/// Upper bounds, in seconds, of the attempt-duration histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// One backend's counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// (rail, status, payouts)
    pub payouts: Vec<(String, String, i64)>,
    /// (rail, outcome, attempts)
    pub attempts: Vec<(String, String, i64)>,
    /// (rail, attempts after the first)
    pub retries: Vec<(String, i64)>,
    /// Finished attempts' durations per rail: cumulative bucket counts (one per
    /// [`LATENCY_BUCKETS`] entry), total count and sum in seconds.
    pub latency: Vec<AttemptLatency>,
    /// (queue job status, jobs)
    pub queue: Vec<(String, i64)>,
    /// (provider, outcome, deliveries) of accepted webhook deliveries.
    pub webhook_deliveries: Vec<(String, String, i64)>,
    /// (rail, why, payouts, age in seconds of the oldest) of payouts waiting for a human:
    /// `needs_operator`, or an operator's action `awaiting_approval` by a second one.
    pub needs_human: Vec<(String, String, i64, i64)>,
    /// (state, deliveries) of outgoing events.
    pub event_deliveries: Vec<(String, i64)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttemptLatency {
    pub rail: String,
    pub buckets: Vec<i64>,
    pub count: i64,
    pub sum_seconds: f64,
}
