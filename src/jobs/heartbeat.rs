//! The lease heartbeat: a step renews its payout's lease while it works, so no other worker
//! takes the payout over from a live step.

use std::time::Duration;

use tracing::warn;

use crate::storage::payout_views::Lease;
use crate::storage::{Store, StoreError, StoreResult};

/// Renews `lease` for `ttl` every third of it, until aborted or lost.
pub(super) fn heartbeat(store: Store, lease: Lease, ttl: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = (ttl / 3).max(Duration::from_millis(100));
        keep_renewing(every, || store.extend_lease(&lease, ttl)).await;
    })
}

/// Calls `renew` every `every` until the lease is lost. A renewal that fails for another
/// reason (a database hiccup) is tried again sooner, backing off up to `every`: giving up
/// would let a live step's lease lapse. Should the lease lapse anyway, the step's own fenced
/// writes fail and it stops before sending or recording anything.
pub(crate) async fn keep_renewing<F, Fut>(every: Duration, mut renew: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<()>>,
{
    let first_retry = (every / 8).max(Duration::from_millis(1));
    let mut wait = every;
    loop {
        tokio::time::sleep(wait).await;
        match renew().await {
            Ok(()) => wait = every,
            Err(e @ StoreError::LeaseLost { .. }) => {
                // Released by the step itself, or taken over: either way, stop renewing.
                tracing::debug!(error = %e, "lease no longer renewed");
                return;
            }
            Err(e) => {
                wait = if wait >= every {
                    first_retry
                } else {
                    (wait * 2).min(every)
                };
                warn!(error = %e, retry_in = ?wait, "lease renewal failed; trying again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn transient() -> StoreError {
        StoreError::Sqlx(sqlx::Error::PoolTimedOut)
    }

    #[tokio::test]
    async fn the_heartbeat_keeps_renewing_after_a_transient_error() {
        let calls = AtomicU32::new(0);
        let (third, mut on_third) = tokio::sync::mpsc::unbounded_channel();
        let beat = keep_renewing(Duration::from_millis(1), || {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            let third = third.clone();
            async move {
                if n == 3 {
                    let _ = third.send(());
                }
                // The first two renewals hit a database hiccup; later ones go through.
                if n <= 2 { Err(transient()) } else { Ok(()) }
            }
        });
        tokio::select! {
            () = beat => panic!(
                "the heartbeat stopped after {} renewal(s): a transient error must not end it",
                calls.load(Ordering::SeqCst)
            ),
            _ = on_third.recv() => {}
        }
    }

    #[tokio::test]
    async fn the_heartbeat_stops_once_the_lease_is_lost() {
        let calls = AtomicU32::new(0);
        keep_renewing(Duration::from_millis(1), || {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                Err(StoreError::LeaseLost {
                    payout: "po_1".into(),
                    fence: 1,
                })
            }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
