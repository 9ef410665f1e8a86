//! The fault decisions around Wise's money-moving requests: what fails or waits before one
//! executes, and what is lost after it committed.

use std::time::Duration;

use axum::response::Response;

use super::reply::system;
use super::state::{Inner, Shared};
use crate::sim::kit;
use crate::sim::kit::{dropped_connection, lock, with_retry_after};

/// Fault decisions taken before a money-moving request executes.
pub(super) async fn before_execution(shared: &Shared, path: &str) -> Result<(), Response> {
    let latency = {
        let mut guard = lock(shared);
        let inner = &mut *guard;
        if inner
            .dice
            .fault(kit::RATE_LIMITED, inner.faults.rate_limit_rate)
        {
            let r = system(429, "Too Many Requests", "Rate limit exceeded", path);
            return Err(with_retry_after(r, 1));
        }
        if inner.dice.fault(kit::REFUSED_5XX, inner.faults.error_rate) {
            return Err(system(
                500,
                "Internal Server Error",
                "mock: failed before executing",
                path,
            ));
        }
        inner.faults.latency_ms
    };
    if latency > 0 {
        crate::clock::sleep(Duration::from_millis(latency)).await;
    }
    Ok(())
}

/// Fault decisions taken after a money-moving request committed.
pub(super) fn after_commit(inner: &mut Inner, first: bool, ok: Response, path: &str) -> Response {
    let faults = inner.faults.clone();
    if inner
        .dice
        .fault(kit::FAILED_AFTER_COMMIT, faults.error_after_commit_rate)
    {
        return system(
            500,
            "Internal Server Error",
            "mock: failed after executing",
            path,
        );
    }
    if (faults.drop_first_attempt && first) || inner.dice.roll(faults.drop_after_commit_rate) {
        kit::injected(kit::DROPPED_AFTER_COMMIT);
        return dropped_connection();
    }
    ok
}
