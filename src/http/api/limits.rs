//! Per-key rate limiting (a token bucket per key, in this process) and the request deadline.
//! Limits are per process: behind a load balancer each server allows the rate on its own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

#[derive(Debug)]
pub struct RateLimiter {
    /// Tokens per second; 0 turns limiting off.
    per_second: u32,
    /// Bucket size: how many requests a quiet key may send at once.
    burst: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub fn new(per_second: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            per_second,
            burst: burst.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Takes a token for `key`, or says how many whole seconds until one is free.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), u64> {
        if self.per_second == 0 {
            return Ok(());
        }
        // A poisoned lock only means another request panicked mid-update; the map is still
        // a valid set of buckets.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let rate = f64::from(self.per_second);
        let burst = f64::from(self.burst);
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// Answers 503 `timeout` when a request takes longer than the deadline. Dropping the handler
/// rolls back any transaction it had open, so a timed-out request changed nothing, unless it
/// had already committed, which its idempotency key then replays.
pub async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {} s and was abandoned; retry it (with the same Idempotency-Key for a withdrawal)",
                limit.as_secs()
            ),
        )
        .retry_after(1)
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(2, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check_at("k", t0), Ok(()));
        }
        assert_eq!(limiter.check_at("k", t0), Err(1));
        // Other keys have their own bucket.
        assert_eq!(limiter.check_at("other", t0), Ok(()));
        // Half a second at 2/s refills one token.
        assert_eq!(
            limiter.check_at("k", t0 + Duration::from_millis(500)),
            Ok(())
        );
        assert_eq!(
            limiter.check_at("k", t0 + Duration::from_millis(500)),
            Err(1)
        );
    }

    #[test]
    fn zero_turns_limiting_off() {
        let limiter = RateLimiter::new(0, 0);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(limiter.check_at("k", t0), Ok(()));
        }
    }
}
