//! One seeded run: the real store, step function, adapters, webhook receivers and mocks on one
//! thread, under a clock that moves only when this driver moves it. Each turn the seed picks
//! what happens next: a worker steps a due payout (and may crash or stall at a crash point),
//! a provider's webhook arrives (or is lost, repeated, reordered), a stalled worker resumes
//! after its lease lapsed, or time jumps to the next thing due.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;

use anyhow::{Context, Result};
use axum::body::Body;
use chrono::{DateTime, Utc};
use payouts::clock::DatabaseFault;
use payouts::clock::Manual;
use payouts::domain::ids::{PayoutId, Rail};
use payouts::jobs::{PayoutDeps, StepOutcome, advance_payout};
use payouts::sim::kit::HeldWebhook;
use payouts::sim::sandbox::Sandbox;
use payouts::storage::{Store, StoreResult};
use rand::Rng;
use rand::rngs::StdRng;
use tower::ServiceExt;

use super::Plan;
use super::checks;
use super::fresh::Fresh;
use super::setup;

/// Turns a run may take before it is called stuck.
const MAX_TURNS: usize = 2_000;

/// How long time runs on once every payout is settled: past the latest late event a mock
/// schedules (returns up to three weeks after delivery).
const DRAIN: std::time::Duration = std::time::Duration::from_secs(31 * 86_400);

/// One of our payouts, as the simulator tracks it.
#[derive(Debug, Clone)]
pub(super) struct Tracked {
    pub id: String,
    pub rail: Rail,
    pub minor: i64,
}

/// What a run found and did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub seed: u64,
    pub trace_hash: String,
    pub payouts: usize,
    /// Faults and events by kind.
    pub tally: BTreeMap<&'static str, u64>,
    pub violations: Vec<String>,
    pub trace: Vec<String>,
}

/// A step stopped at a crash point, kept to resume after its lease lapsed.
struct Stalled {
    payout: usize,
    worker: usize,
    stop: u64,
    step: Pin<Box<dyn Future<Output = StoreResult<StepOutcome>>>>,
}

struct Sim {
    world: Rc<Manual>,
    rng: StdRng,
    store: Store,
    sandbox: Sandbox,
    webhooks: axum::Router,
    /// Each worker as it is, and cut off from the providers.
    workers: Vec<(Arc<PayoutDeps>, Arc<PayoutDeps>)>,
    payouts: Vec<Tracked>,
    /// A payout whose step was deferred is not stepped again before this.
    not_before: Vec<DateTime<Utc>>,
    /// Held webhooks, with when the simulator took each from its mock.
    inbox: Vec<(Rail, HeldWebhook, DateTime<Utc>)>,
    stalled: Option<Stalled>,
    out: Outcome,
    start: DateTime<Utc>,
}

/// Runs seed `seed` on this thread, on a fresh database of `backend`.
pub(super) fn run_seed(seed: u64, plan: &Plan) -> Outcome {
    let start = DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default();
    let (world, _installed) = Manual::install(start, seed);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return failed(seed, format!("no runtime: {e}")),
    };
    let outcome = runtime.block_on(async {
        let fresh = Fresh::create(seed, &plan.backend).await?;
        let outcome = simulate(seed, world, fresh.store.clone(), start, plan.stray).await;
        fresh.remove().await;
        outcome
    });
    drop(runtime);
    outcome.unwrap_or_else(|e| failed(seed, format!("the simulation could not run: {e:#}")))
}

fn failed(seed: u64, why: String) -> Outcome {
    Outcome {
        seed,
        violations: vec![why],
        ..Outcome::default()
    }
}

async fn simulate(
    seed: u64,
    world: Rc<Manual>,
    store: Store,
    start: DateTime<Utc>,
    stray: bool,
) -> Result<Outcome> {
    // The mocks count the faults they inject on this thread; start this run's count afresh.
    payouts::sim::kit::take_injected();
    let mut rng: StdRng = rand::SeedableRng::seed_from_u64(seed ^ 0x5eed_5eed);
    let faults = setup::faults(&mut rng, seed);
    let mut configured = Vec::new();
    if faults.key_ttl_ms > 0 {
        configured.push("runs whose providers forget keys");
    }
    let sandbox = setup::sandbox(&mut rng, faults).await?;
    let unreachable = sandbox.unreachable_rails()?;
    let workers = (0..rng.random_range(1..=3))
        .map(|n| setup::worker(&store, &sandbox, &unreachable, n))
        .collect::<Result<Vec<_>>>()?;
    // As `payouts serve` does: a payout a webhook makes paid is watched like one a step
    // settles. (The receivers share the first worker's adapters, as a process does.)
    let webhooks = payouts::http::router(payouts::http::WebhookState {
        store: store.clone(),
        rails: workers[0].0.rails.clone(),
        watch_for: Some(setup::policy().watch_for),
        verify_limit: payouts::http::webhooks::default_verify_limit(),
    });
    let mut sim = Sim {
        world,
        rng,
        store,
        sandbox,
        webhooks,
        workers,
        payouts: Vec::new(),
        not_before: Vec::new(),
        inbox: Vec::new(),
        stalled: None,
        out: Outcome {
            seed,
            ..Outcome::default()
        },
        start,
    };
    for kind in configured {
        sim.count(kind);
    }
    sim.populate().await?;
    if stray {
        sim.pay_stray().await?;
    }
    let finished = sim.turns().await?;
    sim.settle_stalled().await;
    sim.out.violations = checks::check(&sim.store, &sim.sandbox, &sim.payouts, finished).await?;
    sim.sandbox.stop();
    sim.out.tally.extend(payouts::sim::kit::take_injected());
    sim.out.payouts = sim.payouts.len();
    sim.out.trace_hash = checks::hash(&sim.out.trace);
    Ok(sim.out)
}

impl Sim {
    fn note(&mut self, line: String) {
        let at = (self.world.now() - self.start).num_milliseconds();
        self.out
            .trace
            .push(format!("{:>12.3}s {line}", at as f64 / 1000.0));
    }

    fn count(&mut self, kind: &'static str) {
        *self.out.tally.entry(kind).or_default() += 1;
    }

    /// Ingests the payees and lets each withdraw.
    async fn populate(&mut self) -> Result<()> {
        let count = self.rng.random_range(2..=6);
        let (payees, ndjson) = setup::payees(&mut self.rng, count);
        let report = payouts::app::ingest::ingest(&self.store, std::io::Cursor::new(ndjson), true)
            .await
            .context("ingesting the payees")?;
        self.note(format!(
            "ingested {} lines, {} rejected",
            report.lines_read,
            report.rejected.len()
        ));
        for payee in &payees {
            match setup::withdraw(&self.store, payee).await? {
                Ok((id, minor)) => {
                    if setup::comes_back(&payee.destination) {
                        self.count("payouts scripted to come back after delivery");
                    }
                    self.note(format!(
                        "p{} withdraws {minor} cents via {} to {}",
                        self.payouts.len(),
                        payee.rail,
                        payee.destination
                    ));
                    self.not_before.push(self.start);
                    self.payouts.push(Tracked {
                        id,
                        rail: payee.rail,
                        minor,
                    });
                }
                Err(refused) => self.note(format!("{} refused: {refused}", payee.account)),
            }
        }
        Ok(())
    }

    /// Pays 12.34 USD at the Stripe mock for a payout that does not exist, retrying under one
    /// key through the mock's faults, as someone holding our key might.
    async fn pay_stray(&mut self) -> Result<()> {
        let http = reqwest::Client::new();
        for _ in 0..50 {
            let sent = http
                .post(format!(
                    "{}/v1/transfers",
                    self.sandbox.base_url(Rail::Stripe)
                ))
                .bearer_auth("sk_test_mock")
                .header("Idempotency-Key", "sim-stray")
                .form(&[
                    ("amount", "1234"),
                    ("currency", "usd"),
                    ("destination", "acct_1Stray"),
                    ("metadata[payout_id]", "po_stray"),
                ])
                .send()
                .await;
            if sent.is_ok_and(|r| r.status().is_success()) {
                self.note("a stray transfer of 1234 cents is paid at stripe".into());
                return Ok(());
            }
        }
        anyhow::bail!("the Stripe mock never took the stray transfer")
    }

    /// Plays turns until nothing is left to do; false if the turns ran out first. Once no
    /// payout has a step ahead, time runs on past every provider's late events (returns,
    /// late commits) once more, so that what they cause is seen and checked too.
    async fn turns(&mut self) -> Result<bool> {
        let mut drained = false;
        for _ in 0..MAX_TURNS {
            let now = self.world.now();
            let held = self.sandbox.take_webhooks().into_iter();
            self.inbox
                .extend(held.map(|(rail, hook)| (rail, hook, now)));
            let (due, next) = self.due().await?;
            let choices = [
                (!due.is_empty(), 6),
                (!self.inbox.is_empty(), 3),
                (self.stalled.is_some(), 1),
                (next.is_some(), 1),
            ];
            let total: u32 = choices.iter().filter(|c| c.0).map(|c| c.1).sum();
            if total == 0 {
                if drained {
                    return Ok(true);
                }
                drained = true;
                self.world.advance(DRAIN);
                self.note("time runs on past the providers' late events".into());
                self.let_timers_run().await;
                continue;
            }
            drained = false;
            let mut pick = self.rng.random_range(0..total);
            let mut chosen = 0;
            for (i, (on, weight)) in choices.iter().enumerate() {
                if !on {
                    continue;
                }
                if pick < *weight {
                    chosen = i;
                    break;
                }
                pick -= weight;
            }
            match chosen {
                0 => {
                    let payout = due[self.rng.random_range(0..due.len())];
                    self.step(payout).await;
                }
                1 => self.deliver().await?,
                2 => self.resume().await,
                _ => self.advance(next).await,
            }
        }
        Ok(false)
    }

    /// The payouts due for a step now, and when the next one falls due.
    async fn due(&self) -> Result<(Vec<usize>, Option<DateTime<Utc>>)> {
        let now = self.world.now();
        let mut due = Vec::new();
        let mut next: Option<DateTime<Utc>> = None;
        // One query for every payout (the run's database holds only its own).
        let steps: BTreeMap<String, Option<DateTime<Utc>>> = self
            .store
            .list_payouts(None)
            .await?
            .into_iter()
            .map(|p| (p.id.to_string(), p.next_step_at))
            .collect();
        for (i, p) in self.payouts.iter().enumerate() {
            let Some(at) = steps.get(&p.id).copied().flatten() else {
                continue;
            };
            let not_before = self.not_before.get(i).copied().unwrap_or(at);
            if not_before == DateTime::<Utc>::MAX_UTC {
                continue;
            }
            let at = at.max(not_before);
            if at <= now {
                due.push(i);
            }
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        Ok((due, next))
    }

    /// Moves time to when the next payout falls due; the mocks' timers due by then (late
    /// commits, progressions, returns) fire on the way.
    async fn advance(&mut self, next: Option<DateTime<Utc>>) {
        let now = self.world.now();
        let to = next
            .filter(|n| *n > now)
            .unwrap_or(now + chrono::Duration::seconds(1));
        self.world.advance_to(to);
        self.count("time jumps");
        self.let_timers_run().await;
    }

    /// Lets the mocks' tasks whose timers just fired run before the next turn.
    async fn let_timers_run(&self) {
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }

    /// Worker `w` steps payout `i`; the seed may make it crash or stall at a crash point.
    async fn step(&mut self, i: usize) {
        let w = self.rng.random_range(0..self.workers.len());
        let cut_off = self.rng.random_bool(0.05);
        let deps = if cut_off {
            self.count("connections refused (worker cut off)");
            Arc::clone(&self.workers[w].1)
        } else {
            Arc::clone(&self.workers[w].0)
        };
        let id = match PayoutId::parse(&self.payouts[i].id) {
            Ok(id) => id,
            Err(e) => {
                self.out.violations.push(format!("p{i}: bad id: {e}"));
                return;
            }
        };
        let fault = self.rng.random_range(0..10);
        if fault < 2 {
            self.world.arm_crash(self.rng.random_range(0..8));
        } else if fault == 2 {
            self.arm_database_fault(1.0);
        }
        let mut step: Pin<Box<dyn Future<Output = StoreResult<StepOutcome>>>> =
            Box::pin(async move { advance_payout(&deps, &id).await });
        let outcome = self.drive(step.as_mut()).await;
        self.database_fault_struck(&format!("w{w} on p{i}"));
        match outcome {
            Some(outcome) => {
                self.world.disarm_crash();
                if matches!(outcome, Ok(StepOutcome::LeaseLost)) {
                    self.count("steps fenced out after a takeover");
                }
                if matches!(outcome, Ok(StepOutcome::NothingToDo(_))) {
                    // Its job ends without a follow-up: no worker takes it up again.
                    self.not_before[i] = DateTime::<Utc>::MAX_UTC;
                }
                if matches!(outcome, Ok(StepOutcome::Deferred)) {
                    // Its job was put off until the lease it found lapses.
                    self.not_before[i] = self.world.now()
                        + chrono::Duration::from_std(setup::LEASE_TTL).unwrap_or_default()
                        + chrono::Duration::seconds(1);
                }
                self.note(format!("w{w} steps p{i}: {}", describe(&outcome)));
            }
            None => {
                let (stop, at) = self.world.take_struck().unwrap_or((u64::MAX, "?"));
                // A worker stalled inside a transaction would hold the database's write lock
                // (SQLite has one writer): there it only crashes, which rolls back.
                if fault == 0 && self.stalled.is_none() && at != "before a commit" {
                    self.note(format!("w{w} stalls on p{i} {at}"));
                    self.count("workers stalled past their lease");
                    self.stalled = Some(Stalled {
                        payout: i,
                        worker: w,
                        stop,
                        step,
                    });
                } else {
                    drop(step);
                    self.world.release(stop);
                    self.note(format!("w{w} crashes on p{i} {at}"));
                    self.count("worker crashes");
                }
            }
        }
    }

    /// Polls `step` until it ends (Some) or stops at a struck crash point (None).
    async fn drive<'a>(
        &self,
        mut step: Pin<&mut (dyn Future<Output = StoreResult<StepOutcome>> + 'a)>,
    ) -> Option<StoreResult<StepOutcome>> {
        let world = Rc::clone(&self.world);
        std::future::poll_fn(move |cx| match step.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending if world.struck().is_some() => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await
    }

    /// The stalled worker wakes up (its lease may have lapsed meanwhile) and finishes its step.
    async fn resume(&mut self) {
        let Some(mut stalled) = self.stalled.take() else {
            return;
        };
        self.world.release(stalled.stop);
        self.world.disarm_crash();
        let outcome = self.drive(stalled.step.as_mut()).await;
        if matches!(outcome, Some(Ok(StepOutcome::LeaseLost))) {
            self.count("steps fenced out after a takeover");
        }
        let text = match &outcome {
            Some(out) => describe(out),
            None => "stalled again".into(),
        };
        self.note(format!(
            "w{} resumes p{}: {text}",
            stalled.worker, stalled.payout
        ));
        if outcome.is_none()
            && let Some((stop, _)) = self.world.take_struck()
        {
            self.world.release(stop);
        }
    }

    /// A stalled worker left at the end finishes, as a paused process eventually does.
    async fn settle_stalled(&mut self) {
        if self.stalled.is_some() {
            self.resume().await;
        }
    }

    /// Delivers one held webhook: usually the oldest; sometimes another (reordered), twice
    /// (repeated), or never (lost).
    async fn deliver(&mut self) -> Result<()> {
        let pick = if self.rng.random_bool(0.3) {
            self.count("webhooks reordered");
            self.rng.random_range(0..self.inbox.len())
        } else {
            0
        };
        let (rail, hook, held_at) = self.inbox.remove(pick);
        if self.world.now() > held_at {
            self.count("webhooks delayed past a time jump");
        }
        if self.rng.random_bool(0.15) {
            self.count("webhooks lost");
            self.note(format!("{rail} webhook lost"));
            return Ok(());
        }
        if self.rng.random_bool(0.15) {
            self.count("webhooks repeated");
            let at = self.rng.random_range(0..=self.inbox.len());
            self.inbox.insert(at, (rail, hook.clone(), held_at));
        }
        let mut request = axum::http::Request::post(format!("/webhooks/{}", rail.as_str()))
            .header("content-type", "application/json");
        for (name, value) in &hook.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request.body(Body::from(hook.body.clone()))?;
        self.arm_database_fault(0.1);
        let answer = self.webhooks.clone().oneshot(request).await?;
        self.database_fault_struck("the webhook receiver");
        self.count("webhooks delivered");
        self.note(format!(
            "{rail} webhook answered {}",
            answer.status().as_u16()
        ));
        if answer.status().is_server_error() {
            // Providers deliver again later what a receiver failed to take.
            self.count("webhooks redelivered after a 5xx");
            let at = self.rng.random_range(0..=self.inbox.len());
            self.inbox.insert(at, (rail, hook, held_at));
        }
        Ok(())
    }

    /// With probability `p`, the database fails at one of the next few points it passes.
    fn arm_database_fault(&mut self, p: f64) {
        if self.rng.random_bool(p) {
            let kind = if self.rng.random_bool(0.5) {
                DatabaseFault::Busy
            } else {
                DatabaseFault::Unreachable
            };
            self.world
                .arm_database_fault(self.rng.random_range(0..6), kind);
        }
    }

    /// Disarms the database fault armed for `who`, counting it if it struck.
    fn database_fault_struck(&mut self, who: &str) {
        self.world.disarm_database_fault();
        if let Some((at, kind)) = self.world.take_database_fault() {
            self.note(format!("{who}: the database fails at {at} ({kind:?})"));
            self.count(database_fault_kind(at, kind));
        }
    }
}

/// The summary's name for a database fault struck at `at`.
fn database_fault_kind(at: &str, kind: DatabaseFault) -> &'static str {
    match (at, kind) {
        ("a commit's answer", _) => "database gone after a commit",
        ("a commit", DatabaseFault::Busy) => "database busy at a commit",
        ("a commit", DatabaseFault::Unreachable) => "database unreachable at a commit",
        (_, DatabaseFault::Busy) => "database busy at a start",
        (_, DatabaseFault::Unreachable) => "database unreachable at a start",
    }
}

fn describe(outcome: &StoreResult<StepOutcome>) -> String {
    match outcome {
        Ok(StepOutcome::Moved(status)) => format!("moved to {status}"),
        Ok(StepOutcome::NothingToDo(status)) => format!("nothing to do ({status})"),
        Ok(StepOutcome::Deferred) => "deferred".into(),
        Ok(StepOutcome::LeaseLost) => "lease lost".into(),
        Err(e) => format!("error: {e}"),
    }
}
