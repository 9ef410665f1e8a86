//! How an uncertain attempt is settled (no I/O): by asking the provider about the attempt's
//! own key while the provider still answers for it, and by listing only after that.
//!
//! A listing alone is not proof: a request can still commit after our timeout and after the
//! settle delay, and list endpoints lag behind writes. So "nothing listed" proves absence
//! only once the attempt's request is known to have finished at least the listing's lag
//! earlier; until then the payout waits (inside the window) or goes to an operator (past
//! it). A new key is never the answer to an absence that is not proven.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::payout::LookupFinding;

/// What a rail knows about its provider's timing, for settling. Defaults are per rail and
/// documented with the rail (docs/providers/*.md, "Idempotency").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettleTiming {
    /// How long the provider answers for an attempt's key authoritatively (Stripe replays
    /// the original result of a repeat for at least 24 h).
    pub window: Duration,
    /// How long a list endpoint may lag behind a write.
    pub list_lag: Duration,
    /// How long after it was sent a request may still land, where the provider bounds it.
    /// `None`: only the provider's own answer can tell that a request finished.
    pub max_execution: Option<Duration>,
}

/// How to settle an attempt, decided from its age alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Inside the window: ask under the attempt's own key (replay the request, or read by
    /// key); the answer is authoritative.
    ByKey,
    /// Past the window: the key may be forgotten, so only a listing can tell.
    List,
}

/// Inside or past the window. A margin of a tenth of the window (at least 1 s) covers clock
/// skew and the request's own flight time, so "inside" is never a guess at the edge.
pub fn plan(timing: &SettleTiming, started: DateTime<Utc>, now: DateTime<Utc>) -> Settle {
    let margin = (timing.window / 10).max(Duration::from_secs(1));
    let usable = chrono::Duration::from_std(timing.window.saturating_sub(margin))
        .unwrap_or(chrono::Duration::MAX);
    match started.checked_add_signed(usable) {
        Some(deadline) if now <= deadline => Settle::ByKey,
        _ => Settle::List,
    }
}

/// The latest time the attempt's request can have been running: when the provider showed
/// it finished (`seen_finished`), or its start plus the provider's execution bound.
pub fn finished_by(
    timing: &SettleTiming,
    started: DateTime<Utc>,
    seen_finished: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let bound = timing
        .max_execution
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .and_then(|d| started.checked_add_signed(d));
    match (seen_finished, bound) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether finding nothing at `now` proves nothing landed: the request finished at least
/// `lag` ago (zero for a read by key, the listing's lag for a listing).
pub fn absence_proven(
    finished_by: Option<DateTime<Utc>>,
    lag: Duration,
    now: DateTime<Utc>,
) -> bool {
    let Ok(lag) = chrono::Duration::from_std(lag) else {
        return false;
    };
    finished_by
        .and_then(|f| f.checked_add_signed(lag))
        .is_some_and(|proof| proof <= now)
}

/// What finding nothing under the payout's keys means. Proven: absent, a new attempt may
/// go. Not proven inside the window: look again later under the same key. Not proven past
/// it: an operator, never a new key.
pub fn nothing_found(
    plan: Settle,
    finished_by: Option<DateTime<Utc>>,
    lag: Duration,
    now: DateTime<Utc>,
    what: &str,
) -> LookupFinding {
    if absence_proven(finished_by, lag, now) {
        return LookupFinding::Absent;
    }
    let wait = finished_by
        .and_then(|f| {
            chrono::Duration::from_std(lag)
                .ok()
                .and_then(|l| f.checked_add_signed(l))
        })
        .and_then(|proof| (proof - now).to_std().ok())
        .unwrap_or_default();
    match plan {
        Settle::ByKey => LookupFinding::Pending {
            reason: format!(
                "{what} shows nothing yet, but the attempt may still land (or the listing may lag): looking again under the same key"
            ),
            retry_in: wait,
        },
        Settle::List => LookupFinding::Unprovable {
            reason: format!(
                "{what} shows nothing, but past the provider's idempotency window that cannot prove the attempt did not land (it may still commit, or the listing may lag); not re-sending under a new key: check the provider's dashboard"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(max_execution: Option<u64>) -> SettleTiming {
        SettleTiming {
            window: Duration::from_secs(24 * 3600),
            list_lag: Duration::from_secs(300),
            max_execution: max_execution.map(Duration::from_secs),
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("valid time")
    }

    #[test]
    fn inside_the_window_settles_by_key_and_past_it_lists() {
        let t = timing(None);
        assert_eq!(plan(&t, at(0), at(1)), Settle::ByKey);
        assert_eq!(plan(&t, at(0), at(20 * 3600)), Settle::ByKey);
        // The last tenth of the window is margin: already past.
        assert_eq!(plan(&t, at(0), at(22 * 3600)), Settle::List);
        assert_eq!(plan(&t, at(0), at(25 * 3600)), Settle::List);
    }

    #[test]
    fn past_the_window_an_unproven_absence_goes_to_an_operator() {
        let t = timing(None);
        let now = at(25 * 3600);
        let found = nothing_found(
            plan(&t, at(0), now),
            finished_by(&t, at(0), None),
            t.list_lag,
            now,
            "the listing",
        );
        assert!(
            matches!(&found, LookupFinding::Unprovable { reason } if reason.contains("not re-sending under a new key")),
            "{found:?}"
        );
    }

    #[test]
    fn inside_the_window_an_unproven_absence_waits_under_the_same_key() {
        let t = timing(None);
        let found = nothing_found(
            plan(&t, at(0), at(60)),
            finished_by(&t, at(0), None),
            t.list_lag,
            at(60),
            "the listing",
        );
        assert!(matches!(found, LookupFinding::Pending { .. }), "{found:?}");
    }

    #[test]
    fn absence_is_proven_only_a_lag_after_the_request_finished() {
        let t = timing(None);
        let seen = finished_by(&t, at(0), Some(at(10)));
        assert_eq!(seen, Some(at(10)));
        assert!(!absence_proven(seen, t.list_lag, at(309)));
        assert!(absence_proven(seen, t.list_lag, at(310)));
        // A read by key has no lag.
        assert!(absence_proven(seen, Duration::ZERO, at(10)));
        match nothing_found(Settle::ByKey, seen, t.list_lag, at(100), "x") {
            LookupFinding::Pending { retry_in, .. } => {
                assert_eq!(retry_in, Duration::from_secs(210))
            }
            other => panic!("expected Pending, got {other:?}"),
        }
        assert_eq!(
            nothing_found(Settle::List, seen, t.list_lag, at(400), "x"),
            LookupFinding::Absent
        );
        // Never seen finished and no bound: never proven.
        assert!(!absence_proven(None, Duration::ZERO, at(1_000_000)));
    }

    #[test]
    fn an_execution_bound_proves_a_request_finished() {
        let t = timing(Some(3600));
        assert_eq!(finished_by(&t, at(0), None), Some(at(3600)));
        assert_eq!(finished_by(&t, at(0), Some(at(5))), Some(at(5)));
        assert!(!absence_proven(
            finished_by(&t, at(0), None),
            Duration::ZERO,
            at(3599)
        ));
        assert!(absence_proven(
            finished_by(&t, at(0), None),
            Duration::ZERO,
            at(3600)
        ));
    }
}
