//! One rail's pacer, shared by every worker task of a process (the adapter holds it, and the
//! process builds each adapter once): every request to the provider waits for its slot
//! (`domain::pacing`), and a 429 holds the rail's next requests until `Retry-After`.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::pacing::{Pace, Schedule};

/// When a 429 names no `Retry-After`.
const DEFAULT_HOLD: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Pacer {
    /// `None`: requests go as they come.
    pace: Option<Pace>,
    /// When the pacer started; its schedule counts from here (on `clock`'s time, so a
    /// simulated run paces in simulated time).
    origin: DateTime<Utc>,
    schedule: Mutex<Schedule>,
    throttled: AtomicU64,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer::new(None)
    }
}

impl Pacer {
    pub fn new(pace: Option<Pace>) -> Pacer {
        Pacer {
            pace: pace.filter(|p| p.per_second > 0),
            origin: crate::clock::now(),
            schedule: Mutex::new(Schedule::default()),
            throttled: AtomicU64::new(0),
        }
    }

    fn elapsed(&self) -> Duration {
        (crate::clock::now() - self.origin)
            .to_std()
            .unwrap_or_default()
    }

    pub fn pace(&self) -> Option<Pace> {
        self.pace
    }

    /// 429s this rail got since the process started.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Waits for this request's slot.
    pub async fn ready(&self) {
        let wait = {
            // A poisoned lock only means a request panicked mid-reservation; the schedule is
            // still a valid pair of times.
            let mut schedule = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
            let now = self.elapsed();
            match self.pace {
                Some(pace) => schedule.reserve(pace, now),
                None => schedule.reserve(UNPACED, now),
            }
        };
        if !wait.is_zero() {
            crate::clock::pause(wait).await;
        }
    }

    /// The provider said 429: every request of the rail waits `retry_after` (or a second).
    pub fn throttled_for(&self, retry_after: Option<Duration>) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        let mut schedule = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
        schedule.hold(self.elapsed(), retry_after.unwrap_or(DEFAULT_HOLD));
    }

    /// Sends a request in its slot; a 429 answer holds the rail.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> reqwest::Result<reqwest::Response> {
        self.ready().await;
        let response = request.send().await?;
        if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            self.throttled_for(super::retry_after(response.headers()));
        }
        Ok(response)
    }
}

/// Without a pace only a 429's hold delays a request: a rate no provider could reach.
const UNPACED: Pace = Pace {
    per_second: 1_000_000,
    burst: 1_000_000,
};

/// `request.send_paced(&pacer)`: a request builder sent in its slot.
pub(crate) trait SendPaced {
    fn send_paced(
        self,
        pacer: &Pacer,
    ) -> impl Future<Output = reqwest::Result<reqwest::Response>> + Send + '_;
}

impl SendPaced for reqwest::RequestBuilder {
    fn send_paced(
        self,
        pacer: &Pacer,
    ) -> impl Future<Output = reqwest::Result<reqwest::Response>> + Send + '_ {
        pacer.send(self)
    }
}
