//! Storage: the only module that speaks SQL.
//!
//! Two backends sit behind one [`Store`]: embedded SQLite (the default: one file, one
//! machine) and PostgreSQL (several worker processes on several machines). Their queries are
//! one set of files, `sql/`, compiled once per backend by `sqlite.rs` and `postgres.rs`; the
//! types callers see (balances, payouts, reports) live beside this file and are shared.

pub mod accounting;
pub mod affiliate;
pub mod balances;
pub mod bulk;
pub mod database_url;
pub mod idempotency;
mod intake;
pub mod ledger;
pub mod methods;
pub mod metrics;
pub mod payouts;
pub mod postgres;
pub mod queue;
pub mod reconcile;
pub mod sqlite;
pub(crate) mod sums;
pub mod templates;
pub mod tracking;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use crate::domain::api_key::{Principal, Scope};
use crate::domain::cooling_off::Safeguards;
use crate::domain::ids::{AccountId, PayoutId, ProgramId, Rail};
use crate::domain::ledger::LedgerError;
use crate::domain::money::MoneyError;
use crate::domain::object_match::Reading;
use crate::domain::payout::PayoutStatus;
use crate::domain::payout_run::{RunPeriod, RunReport};
use crate::domain::program::ProgramSet;
use crate::domain::reconcile::{Exception, ExceptionId, ProviderRecord, Resolution};
use crate::domain::tracking::Observation;
use crate::ingest::{IngestReport, LineError, Numbered};
use crate::providers::rail::PastAttempt;

pub use accounting::{BookBalance, JournalEntry, JournalLine, TrialBalance};
pub use affiliate::{Enrollment, OptInError};
pub use balances::{AccountBalance, ProgramBalance, ReferralNote};
pub use database_url::DatabaseUrl;
pub use idempotency::IdempotencyBegin;
pub use ledger::{LedgerCheck, RailTotal};
pub use methods::PayoutMethodView;
pub use metrics::MetricsSnapshot;
pub use payouts::{
    Claim, Lease, PayoutCursor, PayoutDetail, PayoutPage, PayoutView, WithdrawError,
    WithdrawalOutcome, WithdrawalRequest,
};
pub use reconcile::{NewRun, RailTotals, ReconRun, Trigger};
pub use templates::TemplateReport;
pub use tracking::{Applied, DuplicateEvidence};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("job queue error: {0}")]
    Queue(#[from] apalis_sqlite::Error),
    #[error("job queue error: {0}")]
    QueuePg(#[from] apalis_postgres::Error),
    #[error(transparent)]
    Money(#[from] MoneyError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("account {0} is not known; ingest an account record for it first")]
    UnknownAccount(String),
    #[error("payout {0} does not exist")]
    UnknownPayout(String),
    #[error("lost the lease on payout {payout} (fence {fence}): another worker took it over")]
    LeaseLost { payout: String, fence: i64 },
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    /// A status write the transition table refuses: the decision behind it is a bug.
    #[error(transparent)]
    Transition(#[from] crate::domain::transition::Refused),
    #[error(transparent)]
    BonusSeed(#[from] crate::domain::program::bonus::SeedError),
    /// An operator action refused by its safety rules (`domain::operator`).
    #[error(transparent)]
    Operator(#[from] crate::domain::operator::Refusal),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The table our own migrations are tracked in, apart from apalis's.
const MIGRATIONS_TABLE: &str = "_payouts_migrations";

/// Which other writers a write transaction must exclude. SQLite has one writer and ignores
/// this; PostgreSQL takes the matching advisory locks (`postgres.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteLock<'a> {
    /// Ingest and accrual: they read posted commissions and post the difference.
    Accrual,
    /// A payout run: it reads every balance, so it excludes every withdrawal.
    Run,
    /// One account's withdrawal: exclusive per account, shared with other accounts.
    Account(&'a str),
    /// One payout's state: claims, steps and observations, in order.
    Payout(&'a str),
    /// The overdue sweep: one sweeper at a time, so two processes do not race on its jobs.
    Sweep,
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

/// Handle to the database and the programs whose rules it accrues. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(sqlite::Store),
    Postgres(postgres::Store),
}

/// Runs the same code against whichever backend a [`Store`] holds: the expression is compiled
/// once per backend, so `$s.pool()` and `$s.begin_write(..)` have that backend's types. Used
/// by the delegating methods below, the benchmarks and tests that read tables directly.
#[macro_export]
macro_rules! on_backend {
    ($store:expr, $s:ident => $body:expr) => {
        match $store {
            $crate::storage::Store::Sqlite($s) => $body,
            $crate::storage::Store::Postgres($s) => $body,
        }
    };
}

/// Public methods that simply run the backend's copy of the same code.
macro_rules! delegate {
    ($( $(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )*) => {
        impl Store {
            $(
                $(#[$doc])*
                pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    on_backend!(self, s => s.$name($($arg),*).await)
                }
            )*
        }
    };
}

impl Store {
    /// Opens a database from a URL: `postgres://…` for PostgreSQL, otherwise `sqlite://…`,
    /// `sqlite:…` or a plain file path for SQLite. The URL is a secret: errors never carry it.
    pub async fn open(url: &DatabaseUrl, programs: Arc<ProgramSet>) -> StoreResult<Store> {
        let url = url.expose();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Store::Postgres(postgres::open(url, programs).await?));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let path = path.split('?').next().unwrap_or(path);
        Store::open_sqlite(Path::new(path), programs).await
    }

    /// Opens (creating if needed) the SQLite database at `path`.
    pub async fn open_sqlite(path: &Path, programs: Arc<ProgramSet>) -> StoreResult<Store> {
        Ok(Store::Sqlite(sqlite::open(path, programs).await?))
    }

    /// The same store with other safety settings (cooling-off after method changes).
    pub fn with_safeguards(mut self, safeguards: Safeguards) -> Store {
        on_backend!(&mut self, s => s.set_safeguards(safeguards));
        self
    }

    pub fn safeguards(&self) -> Safeguards {
        on_backend!(self, s => s.safeguards())
    }

    pub fn kind(&self) -> BackendKind {
        match self {
            Store::Sqlite(_) => BackendKind::Sqlite,
            Store::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// The programs this store accrues and pays by.
    pub fn programs(&self) -> &ProgramSet {
        on_backend!(self, s => s.programs())
    }

    pub async fn close(&self) {
        on_backend!(self, s => s.close().await)
    }

    /// Applies parsed records in one transaction with their accruals. Returns the rows
    /// rejected at this stage (conflicts, unknown references); with `strict`, any rejection
    /// rolls the whole batch back.
    pub async fn ingest_batch(
        &self,
        records: &[Numbered],
        report: &mut IngestReport,
        strict: bool,
    ) -> StoreResult<Vec<LineError>> {
        on_backend!(self, s => s.ingest_batch(records, report, strict).await)
    }
}

delegate! {
    /// Re-derives every commission from the facts (after a change of program terms).
    fn reaccrue_all(&self) -> StoreResult<usize>;
    /// Refuses a bonus seed other than the one the database's draws were made with, unless
    /// `rotate` (see `sql/bonus.rs`).
    fn check_bonus_seeds(&self, rotate: bool) -> StoreResult<()>;
    fn opt_in(&self, program: &ProgramId, account: &AccountId, at: DateTime<Utc>) -> Result<Enrollment, OptInError>;
    /// An account's balance under the loaded programs.
    fn balance(&self, account: &AccountId) -> StoreResult<AccountBalance>;
    /// Every account that referred someone, in id order.
    fn referrers(&self) -> StoreResult<Vec<AccountId>>;
    fn paid_out_by_rail(&self) -> StoreResult<Vec<RailTotal>>;
    fn check_ledger(&self) -> StoreResult<LedgerCheck>;
    /// The ledger as of an instant (exclusive), for finance (see `storage/accounting.rs`).
    fn trial_balance(&self, until: DateTime<Utc>) -> StoreResult<TrialBalance>;
    fn run_payouts(&self, period: &RunPeriod, dry_run: bool) -> StoreResult<RunReport>;
    fn create_withdrawal(&self, req: &WithdrawalRequest) -> Result<WithdrawalOutcome, WithdrawError>;
    fn payout(&self, id: &str) -> StoreResult<PayoutDetail>;
    fn list_payouts(&self, account: Option<&AccountId>) -> StoreResult<Vec<PayoutView>>;
    /// One page of an account's payouts, newest first.
    fn payouts_page(&self, account: &AccountId, cursor: Option<&PayoutCursor>, limit: u32) -> StoreResult<PayoutPage>;
    /// An account's payout methods, with any cooling-off hold.
    fn payout_methods(&self, account: &AccountId) -> StoreResult<Vec<PayoutMethodView>>;
    /// The stored report of a payout run.
    fn run_report(&self, period: &RunPeriod) -> StoreResult<Option<RunReport>>;
    /// Counts for the metrics endpoint.
    fn metrics_snapshot(&self) -> StoreResult<MetricsSnapshot>;
    /// Claims an Idempotency-Key for one request (see `sql/idempotency.rs`).
    fn idempotency_begin(&self, scope: &str, key: &str, request_hash: &str, stale_after: Duration) -> StoreResult<IdempotencyBegin>;
    fn idempotency_complete(&self, scope: &str, key: &str, status: u16, body: &str) -> StoreResult<()>;
    fn idempotency_abandon(&self, scope: &str, key: &str) -> StoreResult<()>;
    fn payout_status_counts(&self) -> StoreResult<Vec<(PayoutStatus, i64)>>;
    /// Queued payouts waiting out a cooling-off hold.
    fn held_payouts(&self) -> StoreResult<i64>;
    fn claim(&self, id: &PayoutId, owner: &str, ttl: Duration) -> StoreResult<Claim>;
    fn extend_lease(&self, lease: &Lease, ttl: Duration) -> StoreResult<()>;
    fn lookup_failures(&self, id: &PayoutId) -> StoreResult<u32>;
    /// Attempts that used up one of the payout's `max_attempts`.
    fn attempts_used(&self, id: &PayoutId) -> StoreResult<u32>;
    fn last_attempt_started(&self, id: &PayoutId) -> StoreResult<Option<DateTime<Utc>>>;
    fn begin_attempt(&self, lease: &Lease, from: PayoutStatus, attempt: u32, provider_key: &str, rail_ref: &str, context: Option<&str>) -> StoreResult<()>;
    fn record_step(&self, lease: &Lease, from: PayoutStatus, step: &crate::domain::step::Step) -> StoreResult<()>;
    fn release(&self, lease: &Lease, delay: Duration, why: &str) -> StoreResult<()>;
    fn schedule_check(&self, id: &PayoutId, at: DateTime<Utc>) -> StoreResult<()>;
    fn enqueue_overdue(&self, grace: Duration) -> StoreResult<usize>;
    fn template_report(&self) -> StoreResult<Vec<TemplateReport>>;
    fn past_attempts(&self, id: &PayoutId) -> StoreResult<Vec<PastAttempt>>;
    fn save_checkpoint(&self, lease: &Lease, attempt: u32, state: &Value) -> StoreResult<()>;
    fn payout_for_event(&self, rail: Rail, provider_ref: Option<&str>, our_token: Option<&str>) -> StoreResult<Option<PayoutId>>;
    fn apply_observation(&self, id: &PayoutId, reading: Reading<'_>, observation: &Observation, source: &str, watch_for: Option<Duration>) -> StoreResult<Applied>;
    /// Provider objects that named a payout but were not its payment (possible duplicates).
    fn payout_duplicates(&self, id: Option<&PayoutId>) -> StoreResult<Vec<DuplicateEvidence>>;
    fn record_delivery(&self, provider: Rail, event_id: &str, payout: Option<&PayoutId>, outcome: &str) -> StoreResult<bool>;
    fn delivery_seen(&self, provider: Rail, event_id: &str) -> StoreResult<bool>;
    /// Creates an API key: (id, the key's text, shown once).
    fn create_api_key(&self, name: &str, scope: Scope, account: Option<&AccountId>) -> StoreResult<(String, String)>;
    /// Revokes an API key for good; `false` when no such live key exists.
    fn revoke_api_key(&self, id: &str) -> StoreResult<bool>;
    /// The caller a presented API key identifies.
    fn principal(&self, presented: &str) -> StoreResult<Option<Principal>>;
    /// Whether the database answers.
    fn ping(&self) -> StoreResult<()>;
    /// Reconciliation (`sql/reconcile.rs`): a run reads provider records in batches, then
    /// matches them against our payouts in one go.
    fn recon_begin(&self, run: &NewRun) -> StoreResult<()>;
    fn recon_add_records(&self, run_id: &str, first_seq: i64, records: &[ProviderRecord]) -> StoreResult<()>;
    fn recon_match(&self, run: &NewRun) -> StoreResult<()>;
    fn recon_fail(&self, run_id: &str, error: &str) -> StoreResult<()>;
    fn recon_run(&self, run_id: &str) -> StoreResult<Option<ReconRun>>;
    /// The latest reconciliation runs, newest first.
    fn recon_runs(&self, limit: i64) -> StoreResult<Vec<ReconRun>>;
    fn recon_exceptions(&self, run_id: &str, open_only: bool) -> StoreResult<Vec<Exception>>;
    /// Resolves an exception in every run, present and future; `None` if no run found it.
    fn recon_resolve(&self, id: &ExceptionId, note: &str, by: &str) -> StoreResult<Option<Resolution>>;
    /// Fills the tokens of attempts made before they were stored, by `rail_reference`.
    fn recon_backfill_references(&self, rail_reference: fn(Rail, &PayoutId, &str) -> String) -> StoreResult<u64>;
    /// Claims the daily reconciliation of a day for a run (see `sql/recon_daily.rs`).
    fn recon_claim_day(&self, day: chrono::NaiveDate, run_id: &str, ttl: Duration) -> StoreResult<bool>;
    /// Gives back the claim of a run that failed or stopped, marking it failed.
    fn recon_abandon_day(&self, day: chrono::NaiveDate, run_id: &str, reason: &str) -> StoreResult<()>;
    /// Keeps a day for good: its run completed.
    fn recon_complete_day(&self, day: chrono::NaiveDate, run_id: &str) -> StoreResult<()>;
    /// Days whose claim lapsed without a completed run.
    /// An operator's action on a payout, checked by `domain::operator` (see `sql/operator.rs`).
    fn operator_act(&self, id: &PayoutId, request: &crate::domain::operator::ActionRequest) -> StoreResult<crate::domain::operator::Acted>;
    /// What `operator_act` would do, rolled back: a bulk action's dry run.
    fn operator_preview(&self, id: &PayoutId, request: &crate::domain::operator::ActionRequest) -> StoreResult<crate::domain::operator::Acted>;
    /// Payouts matching a bulk action's filter, oldest first.
    fn payouts_matching(&self, filter: &crate::domain::operator::PayoutFilter, limit: u32) -> StoreResult<Vec<PayoutId>>;
    /// A second operator approves a pending action (four eyes): decided again and done.
    fn approve_action(&self, action_id: &str, approver: &str) -> StoreResult<crate::domain::operator::Acted>;
    /// A second operator rejects a pending action: nothing changes on the payout.
    fn reject_action(&self, action_id: &str, approver: &str, reason: &str) -> StoreResult<()>;
    /// Actions waiting for a second operator, oldest first.
    fn pending_approvals(&self) -> StoreResult<Vec<crate::domain::operator::PendingApproval>>;
    /// Pauses a rail (idempotent): (the live pause, whether this call made it).
    fn pause_rail(&self, rail: Rail, reason: &str, actor: &str) -> StoreResult<(crate::domain::operator::RailPause, bool)>;
    /// Resumes a rail and wakes its waiting payouts; `None` when it was not paused.
    fn resume_rail(&self, rail: Rail, reason: &str, actor: &str) -> StoreResult<Option<crate::domain::operator::RailPause>>;
    /// The rails paused now.
    fn rail_pauses(&self) -> StoreResult<Vec<crate::domain::operator::RailPause>>;
    fn rail_pause(&self, rail: Rail) -> StoreResult<Option<crate::domain::operator::RailPause>>;
    /// A step that found its rail paused waits (see `sql/operator.rs`).
    fn wait_for_rail(&self, lease: &Lease, status: PayoutStatus, pause: &crate::domain::operator::RailPause) -> StoreResult<()>;
    fn recon_days_to_retry(&self, since: chrono::NaiveDate, before: chrono::NaiveDate) -> StoreResult<Vec<chrono::NaiveDate>>;
}

/// Milliseconds since the epoch, the stored form of a time.
pub fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_millis(ms: i64) -> DateTime<Utc> {
    // Out-of-range values cannot come from to_millis; fall back to the epoch rather than panic.
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Parses a stored enum code, turning an unknown one into a clear error.
pub(crate) fn parse_code<T>(
    what: &str,
    code: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> StoreResult<T> {
    parse(code).ok_or_else(|| StoreError::Corrupt(format!("unknown {what} {code:?}")))
}

pub(crate) fn parse_stored<T: FromStr>(what: &str, value: &str) -> StoreResult<T>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("{what} {value:?}: {e}")))
}

/// Rows per multi-row INSERT: well under SQLite's 32,766 bound parameters.
pub(crate) const BATCH_ROWS: usize = 500;
