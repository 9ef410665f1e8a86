//! Pacing: how fast one process may call a provider. A rail's requests share one schedule
//! (GCRA, the generic cell rate algorithm): up to `burst` go at once, then one every
//! `1/per_second`; each request reserves the next slot and waits for it, so however many
//! workers send, the process stays under the provider's limit instead of meeting it as a
//! storm of 429s. A 429 that arrives anyway (another process shares the account's limit)
//! holds every request of the rail until the provider's `Retry-After`.
//!
//! Time is a `Duration` since any fixed origin, passed in: the rule reads no clock.

use std::time::Duration;

/// A rate: `per_second` requests a second, `burst` at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub per_second: u32,
    pub burst: u32,
}

impl Pace {
    /// The spacing between two requests at the steady rate.
    fn interval(self) -> Duration {
        Duration::from_secs(1) / self.per_second.max(1)
    }

    /// How far ahead of its slot a request may go: the burst's worth of intervals.
    fn tolerance(self) -> Duration {
        self.interval() * self.burst.max(1).saturating_sub(1)
    }
}

/// The schedule of one rail's requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    /// The theoretical arrival time of the next request at the steady rate.
    next: Duration,
    /// No request before this (a provider's `Retry-After`).
    held_until: Duration,
}

impl Schedule {
    /// Reserves a slot for a request wanted at `now`; returns how long to wait for it.
    pub fn reserve(&mut self, pace: Pace, now: Duration) -> Duration {
        let earliest = now.max(self.held_until);
        let slot = self.next.max(earliest);
        let may_go = slot.saturating_sub(pace.tolerance()).max(earliest);
        self.next = slot + pace.interval();
        may_go.saturating_sub(now)
    }

    /// Holds every request until `now + wait` (a 429's `Retry-After`); from there the queue
    /// goes on as after a quiet spell: one burst, then the steady rate.
    pub fn hold(&mut self, now: Duration, wait: Duration) {
        let until = now + wait;
        self.held_until = self.held_until.max(until);
        self.next = self.next.max(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACE: Pace = Pace {
        per_second: 10,
        burst: 3,
    };

    /// Sends `n` requests all wanted at `at`; returns when each may go.
    fn go(s: &mut Schedule, n: usize, at: Duration) -> Vec<Duration> {
        (0..n).map(|_| at + s.reserve(PACE, at)).collect()
    }

    #[test]
    fn a_burst_goes_at_once_then_the_steady_rate() {
        let mut s = Schedule::default();
        let t0 = Duration::from_secs(100);
        let times = go(&mut s, 6, t0);
        let ms: Vec<u128> = times.iter().map(|t| (*t - t0).as_millis()).collect();
        assert_eq!(ms, [0, 0, 0, 100, 200, 300]);
    }

    #[test]
    fn no_second_ever_holds_more_than_rate_plus_burst() {
        let mut s = Schedule::default();
        let mut times = Vec::new();
        // 1,000 requests wanted at scattered moments, many at once.
        for i in 0..1_000u64 {
            let at = Duration::from_millis((i * 37) % 5_000 + i * 3);
            times.push(at + s.reserve(PACE, at));
        }
        times.sort();
        for (i, start) in times.iter().enumerate() {
            let within = times[i..]
                .iter()
                .take_while(|t| **t < *start + Duration::from_secs(1))
                .count();
            assert!(
                within <= 10 + 3,
                "{within} requests in the second from {start:?}"
            );
        }
    }

    #[test]
    fn a_429_holds_every_request_until_retry_after_then_resumes_at_the_rate() {
        let mut s = Schedule::default();
        let t0 = Duration::from_secs(100);
        go(&mut s, 3, t0);
        s.hold(t0, Duration::from_secs(2));
        let times = go(&mut s, 5, t0 + Duration::from_millis(10));
        let ms: Vec<u128> = times.iter().map(|t| (*t - t0).as_millis()).collect();
        assert_eq!(ms, [2000, 2000, 2000, 2100, 2200], "{ms:?}");
    }

    #[test]
    fn a_quiet_spell_earns_the_burst_back_but_no_more() {
        let mut s = Schedule::default();
        go(&mut s, 20, Duration::from_secs(1));
        let later = Duration::from_secs(60);
        let times = go(&mut s, 5, later);
        let waits: Vec<u128> = times.iter().map(|t| (*t - later).as_millis()).collect();
        assert_eq!(waits, [0, 0, 0, 100, 200]);
    }
}
