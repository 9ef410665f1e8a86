//! What the engine takes from the world besides its inputs: the time, fresh randomness (ids,
//! jitter), and the places where a process may die.
//!
//! Production reads the system clock and the operating system's generator, and its crash
//! points do nothing. The deterministic simulator installs a [`Manual`] world on its own
//! thread (a current-thread runtime runs the whole engine there): time moves only when the
//! simulator moves it, so backoffs, leases, settle delays and month-long watch periods pass in
//! microseconds; ids and jitter come from the run's seed; and a crash point may stop the step
//! that reaches it, so the simulator can drop that step's future as a dying worker would.
//! Nothing else installs one.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

thread_local! {
    static WORLD: RefCell<Option<Rc<Manual>>> = const { RefCell::new(None) };
}

fn installed() -> Option<Rc<Manual>> {
    WORLD.with(|w| w.borrow().clone())
}

/// The current time.
pub fn now() -> DateTime<Utc> {
    installed().map_or_else(Utc::now, |m| m.now())
}

/// `wait` after `at`, or the end of time if that is beyond it (a sleep "for ever").
fn later(at: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(wait)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The current instant, for durations measured on this clock (a simulated world's instants
/// move with its clock).
pub fn instant() -> std::time::Instant {
    match installed() {
        None => std::time::Instant::now(),
        Some(m) => m.base + (m.now() - m.start).to_std().unwrap_or_default(),
    }
}

/// How long ago `at` (an [`instant`]) was, on this clock.
pub fn elapsed(at: std::time::Instant) -> Duration {
    instant().saturating_duration_since(at)
}

/// A fresh ULID: its time part is [`now`], its random part from the world's generator.
pub fn ulid() -> ulid::Ulid {
    match installed() {
        None => ulid::Ulid::generate(),
        Some(m) => {
            let ms = u64::try_from(m.now().timestamp_millis()).unwrap_or(0);
            let random: u128 = m.rng.borrow_mut().random();
            ulid::Ulid::from_parts(ms, random)
        }
    }
}

/// A uniform number in `[0, 1)`, for jitter.
pub fn unit_random() -> f64 {
    match installed() {
        None => rand::random::<f64>(),
        Some(m) => m.rng.borrow_mut().random::<f64>(),
    }
}

/// Waits `wait`: on the system clock, or until the simulator's clock has passed it.
pub async fn sleep(wait: Duration) {
    // The world is looked up and let go before awaiting: engine futures must stay `Send`.
    let until = installed().map(|m| later(m.now(), wait));
    match until {
        None => tokio::time::sleep(wait).await,
        Some(until) => Timer { until, slot: None }.await,
    }
}

/// Waits `wait` as a worker that has nothing else to do (a rail held after a 429): on the
/// system clock; in a simulated world, the world's time jumps to the deadline at once, since
/// the simulator moves time only between steps and would otherwise never wake this one.
pub async fn pause(wait: Duration) {
    // The world is let go before awaiting: engine futures must stay `Send`.
    let simulated = installed().map(|m| m.advance(wait)).is_some();
    if !simulated {
        tokio::time::sleep(wait).await;
    }
}

/// A place where a worker may die (before or after a commit, before or after a provider
/// request). In production it returns at once. Under the simulator, the step that reaches
/// the crash point the simulator armed never returns from it, and the simulator drops it.
pub async fn crash_point(at: &'static str) {
    if let Some(stop) = installed().and_then(|m| m.pass(at)) {
        Stalled(stop).await;
    }
}

/// How the database fails at a [`database_point`] under the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseFault {
    /// Every connection busy past the wait (or SQLite's one writer held): nothing ran.
    Busy,
    /// The server went away: nothing ran, or (after a commit) the answer was lost.
    Unreachable,
}

/// A place where the database may fail (a transaction's start, a commit, a commit's answer).
/// In production it answers `None` at once; under the simulator, the armed fault strikes at
/// the point it was armed for, and the store reports it as its driver would.
pub fn database_point(at: &'static str) -> Option<DatabaseFault> {
    installed().and_then(|m| m.database_pass(at))
}

/// A step stopped at its crash point (by the number of its stop): it goes on only once the
/// simulator releases it (a paused worker resuming); a crashed worker's step is dropped.
struct Stalled(u64);

impl Future for Stalled {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(m) = installed() else {
            return Poll::Ready(());
        };
        let mut crash = m.crash.borrow_mut();
        match crash.stopped.get_mut(&self.0) {
            Some(waker) => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            None => Poll::Ready(()),
        }
    }
}

/// The simulator's world: a clock that moves only when told, a seeded generator, timers, and
/// an armed crash.
#[derive(Debug)]
pub struct Manual {
    start: DateTime<Utc>,
    /// The real instant the world was installed at: its [`instant`]s count from here.
    base: std::time::Instant,
    now: std::cell::Cell<DateTime<Utc>>,
    rng: RefCell<StdRng>,
    timers: RefCell<Timers>,
    crash: RefCell<Crash>,
    database: RefCell<Outage>,
}

/// A database fault armed to strike after some database points have passed, and where it
/// struck.
#[derive(Debug, Default)]
struct Outage {
    armed: Option<(u32, DatabaseFault)>,
    struck: Option<(&'static str, DatabaseFault)>,
}

#[derive(Debug, Default)]
struct Timers {
    next_slot: u64,
    due: BinaryHeap<Reverse<(DateTime<Utc>, u64)>>,
    wakers: BTreeMap<u64, Waker>,
}

#[derive(Debug, Default)]
struct Crash {
    /// Crash at the crash point after this many more have passed.
    after: Option<u32>,
    /// The stop the armed crash just made, and where, until the simulator takes it.
    struck: Option<(u64, &'static str)>,
    /// Steps stopped at a crash point, by stop number, until released.
    stopped: BTreeMap<u64, Option<Waker>>,
    next_stop: u64,
    passed: Vec<&'static str>,
}

/// Removes the installed world when dropped.
#[derive(Debug)]
pub struct Installed(());

impl Drop for Installed {
    fn drop(&mut self) {
        WORLD.with(|w| w.borrow_mut().take());
    }
}

impl Manual {
    /// Installs a world on this thread, starting at `start`, its randomness from `seed`.
    pub fn install(start: DateTime<Utc>, seed: u64) -> (Rc<Manual>, Installed) {
        let manual = Rc::new(Manual {
            start,
            base: std::time::Instant::now(),
            now: std::cell::Cell::new(start),
            rng: RefCell::new(StdRng::seed_from_u64(seed)),
            timers: RefCell::new(Timers::default()),
            crash: RefCell::new(Crash::default()),
            database: RefCell::new(Outage::default()),
        });
        WORLD.with(|w| *w.borrow_mut() = Some(Rc::clone(&manual)));
        (manual, Installed(()))
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.now.get()
    }

    /// Moves the clock to `to` (never back) and wakes every timer due by then.
    pub fn advance_to(&self, to: DateTime<Utc>) {
        if to > self.now.get() {
            self.now.set(to);
        }
        let mut timers = self.timers.borrow_mut();
        while let Some(Reverse((at, slot))) = timers.due.peek().copied() {
            if at > self.now.get() {
                break;
            }
            timers.due.pop();
            if let Some(waker) = timers.wakers.remove(&slot) {
                waker.wake();
            }
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.advance_to(later(self.now(), by));
    }

    /// When the earliest timer still waiting is due.
    pub fn next_timer(&self) -> Option<DateTime<Utc>> {
        let timers = self.timers.borrow();
        timers
            .due
            .iter()
            .filter(|Reverse((_, slot))| timers.wakers.contains_key(slot))
            .map(|Reverse((at, _))| *at)
            .min()
    }

    /// Notes that a step passed crash point `at`; the stop's number if the armed crash
    /// strikes there.
    fn pass(&self, at: &'static str) -> Option<u64> {
        let mut crash = self.crash.borrow_mut();
        crash.passed.push(at);
        match crash.after {
            Some(0) => {
                crash.after = None;
                let stop = crash.next_stop;
                crash.next_stop += 1;
                crash.stopped.insert(stop, None);
                crash.struck = Some((stop, at));
                Some(stop)
            }
            Some(ref mut n) => {
                *n -= 1;
                None
            }
            None => None,
        }
    }

    /// Arms a crash: the step stops at the crash point after `after` more have passed.
    pub fn arm_crash(&self, after: u32) {
        self.crash.borrow_mut().after = Some(after);
    }

    /// Disarms a crash that has not struck.
    pub fn disarm_crash(&self) {
        self.crash.borrow_mut().after = None;
    }

    /// The stop the armed crash just made (its number, and where), if it struck.
    pub fn struck(&self) -> Option<(u64, &'static str)> {
        self.crash.borrow().struck
    }

    /// Takes the stop just made: the simulator now drops its step or keeps it to resume.
    pub fn take_struck(&self) -> Option<(u64, &'static str)> {
        self.crash.borrow_mut().struck.take()
    }

    /// Lets stopped step `stop` go on (a paused worker resuming), or forgets it once the
    /// simulator has dropped it.
    pub fn release(&self, stop: u64) {
        let waker = self.crash.borrow_mut().stopped.remove(&stop).flatten();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Arms a database fault: it strikes at the database point after `after` more have passed.
    pub fn arm_database_fault(&self, after: u32, fault: DatabaseFault) {
        self.database.borrow_mut().armed = Some((after, fault));
    }

    /// Disarms a database fault that has not struck.
    pub fn disarm_database_fault(&self) {
        self.database.borrow_mut().armed = None;
    }

    /// Takes where the armed database fault struck, and what it was.
    pub fn take_database_fault(&self) -> Option<(&'static str, DatabaseFault)> {
        self.database.borrow_mut().struck.take()
    }

    fn database_pass(&self, at: &'static str) -> Option<DatabaseFault> {
        let mut outage = self.database.borrow_mut();
        match outage.armed {
            Some((0, fault)) => {
                outage.armed = None;
                outage.struck = Some((at, fault));
                Some(fault)
            }
            Some((n, fault)) => {
                outage.armed = Some((n - 1, fault));
                None
            }
            None => None,
        }
    }

    /// The crash points passed since the last call, in order.
    pub fn take_passed(&self) -> Vec<&'static str> {
        std::mem::take(&mut self.crash.borrow_mut().passed)
    }
}

/// A simulated sleep: done once the world's clock has passed `until`.
struct Timer {
    until: DateTime<Utc>,
    slot: Option<u64>,
}

impl Future for Timer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(m) = installed() else {
            // The world went away (its run ended): nothing will ever move its clock.
            return Poll::Ready(());
        };
        if m.now() >= self.until {
            return Poll::Ready(());
        }
        let mut timers = m.timers.borrow_mut();
        let slot = match self.slot {
            Some(slot) => slot,
            None => {
                let slot = timers.next_slot;
                timers.next_slot += 1;
                timers.due.push(Reverse((self.until, slot)));
                slot
            }
        };
        timers.wakers.insert(slot, cx.waker().clone());
        drop(timers);
        self.slot = Some(slot);
        Poll::Pending
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let (Some(slot), Some(m)) = (self.slot, installed()) {
            m.timers.borrow_mut().wakers.remove(&slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("a valid instant")
    }

    #[test]
    fn without_a_world_the_clock_is_the_systems() {
        let before = Utc::now();
        let now = now();
        assert!(now >= before && now <= Utc::now());
    }

    #[test]
    fn a_manual_world_moves_only_when_told_and_replays_its_randomness() {
        let (world, _installed) = Manual::install(start(), 7);
        assert_eq!(now(), start());
        let first = (ulid(), unit_random());
        world.advance(Duration::from_secs(30 * 24 * 3600));
        assert_eq!(now(), start() + chrono::Duration::days(30));
        drop(_installed);
        let (_world, _again) = Manual::install(start(), 7);
        assert_eq!(
            (ulid(), unit_random()),
            first,
            "the same seed, the same ids"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_simulated_sleep_ends_when_the_clock_passes_it_and_not_before() {
        let (world, _installed) = Manual::install(start(), 1);
        let mut sleeping = Box::pin(sleep(Duration::from_secs(60)));
        assert!(futures::poll!(sleeping.as_mut()).is_pending());
        assert_eq!(
            world.next_timer(),
            Some(start() + chrono::Duration::seconds(60))
        );
        world.advance(Duration::from_secs(59));
        assert!(futures::poll!(sleeping.as_mut()).is_pending());
        world.advance(Duration::from_secs(1));
        assert!(futures::poll!(sleeping.as_mut()).is_ready());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_armed_crash_stops_the_step_at_its_crash_point_until_released() {
        let (world, _installed) = Manual::install(start(), 1);
        world.arm_crash(1);
        let mut step = Box::pin(async {
            crash_point("one").await;
            crash_point("two").await;
            crash_point("three").await;
        });
        assert!(futures::poll!(step.as_mut()).is_pending());
        assert!(futures::poll!(step.as_mut()).is_pending());
        let (stop, at) = world.take_struck().expect("the crash struck");
        assert_eq!(at, "two");
        assert_eq!(world.take_passed(), vec!["one", "two"]);
        world.release(stop);
        assert!(futures::poll!(step.as_mut()).is_ready());
        assert_eq!(world.take_passed(), vec!["three"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_pause_moves_a_simulated_clock_at_once() {
        let (world, _installed) = Manual::install(start(), 1);
        pause(Duration::from_secs(5)).await;
        assert_eq!(world.now(), start() + chrono::Duration::seconds(5));
    }

    #[test]
    fn an_armed_database_fault_strikes_once_at_its_point() {
        let (world, _installed) = Manual::install(start(), 1);
        world.arm_database_fault(1, DatabaseFault::Busy);
        assert_eq!(database_point("a transaction's start"), None);
        assert_eq!(database_point("a commit"), Some(DatabaseFault::Busy));
        assert_eq!(database_point("a commit's answer"), None);
        assert_eq!(
            world.take_database_fault(),
            Some(("a commit", DatabaseFault::Busy))
        );
        assert_eq!(world.take_database_fault(), None);
    }

    #[test]
    fn without_a_world_the_database_never_fails_here() {
        assert_eq!(database_point("a commit"), None);
    }

    #[tokio::test]
    async fn without_a_world_crash_points_do_nothing() {
        crash_point("anywhere").await;
    }
}
