//! The lease heartbeat: a step renews its payout's lease while it works, so no other worker
//! takes the payout over from a live step.

use std::time::Duration;

use tracing::warn;

use crate::storage::payout_views::Lease;
use crate::storage::{Store, StoreError, StoreResult};

/// Runs `step` while renewing `lease` for `ttl` every third of it.
pub(super) async fn with_heartbeat<T>(
    store: Store,
    lease: Lease,
    ttl: Duration,
    step: impl std::future::Future<Output = T>,
) -> T {
    let every = (ttl / 3).max(Duration::from_millis(100));
    renewing_while(step, every, move || {
        let (store, lease) = (store.clone(), lease.clone());
        async move { store.extend_lease(&lease, ttl).await }
    })
    .await
}

/// Runs `step`, calling `renew` every `every` (see [`keep_renewing`]) until it ends. The
/// renewals are polled inside the step's own future, not spawned: a step that is dropped (its
/// job cancelled, its worker stopping, a simulated crash) stops renewing with it, and its
/// lease lapses so that another worker can take the payout over.
async fn renewing_while<T, F, Fut>(
    step: impl std::future::Future<Output = T>,
    every: Duration,
    renew: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<()>>,
{
    let beat = keep_renewing(every, renew);
    futures::pin_mut!(step, beat);
    match futures::future::select(step, beat).await {
        futures::future::Either::Left((out, _)) => out,
        // The lease is lost or released: nothing left to renew; the step's own fenced writes
        // will find out.
        futures::future::Either::Right(((), step)) => step.await,
    }
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
        crate::clock::sleep(wait).await;
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

    /// A step whose future is dropped (its job cancelled, its worker stopping) must stop
    /// renewing its lease with it: otherwise the payout stays leased to a step that no longer
    /// runs, and no other worker may ever take it over while this process lives.
    #[tokio::test(start_paused = true)]
    async fn a_dropped_step_stops_renewing_its_lease() {
        let calls = std::sync::Arc::new(AtomicU32::new(0));
        let counted = std::sync::Arc::clone(&calls);
        let step = renewing_while(
            std::future::pending::<()>(),
            Duration::from_secs(1),
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            },
        );
        tokio::select! {
            () = step => unreachable!("the step never ends"),
            () = tokio::time::sleep(Duration::from_millis(1500)) => {}
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one renewal in the first 1.5 s"
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the lease went on being renewed after its step was dropped"
        );
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
