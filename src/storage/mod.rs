//! Storage: the only module that speaks SQL.
//!
//! Two backends sit behind one [`Store`]: embedded SQLite (the default: one file, one
//! machine) and PostgreSQL (several worker processes on several machines). Their queries are
//! one set of files, `sql/`, compiled once per backend by `sqlite.rs` and `postgres.rs`; the
//! types callers see (balances, payouts, reports) live beside this file in `*_views.rs` and
//! are shared.
//!
//! # Adding a query
//!
//! 1. Write it once, as a `pub async fn name(&self, ...) -> StoreResult<T>` in an
//!    `impl Store` block of the matching `sql/*.rs` file (a new file: add its `mod` line in
//!    `sql/mod.rs`). Use `$N` placeholders and `CAST(.. AS BIGINT)` for sums and money, so
//!    the same text runs on both backends.
//! 2. That is all: `build.rs` reads every such function under `sql/` and writes the public
//!    `Store` method with the same signature and doc comment (included below). If the
//!    signature names a type this file does not import yet, the compiler says so; add the
//!    `use` here.
//! 3. Test it on both backends (`PAYOUTS_TEST_BACKEND=sqlite|postgres`).
//!
//! A function in `sql/` that must not be public is `pub(crate)` or private; `sql/mod.rs`
//! (the backend handle's own plumbing) is not read.

pub mod accounting_views;
pub mod affiliate_views;
pub mod balance_views;
pub mod bulk;
pub mod console_views;
pub mod database_url;
pub mod event_views;
pub mod idempotency_views;
mod intake;
pub mod ledger_views;
pub mod methods;
pub mod metrics_views;
pub(crate) mod packed;
pub mod payout_views;
pub mod postgres;
pub mod queue;
pub mod reconcile_views;
pub mod retention_views;
pub mod sqlite;
pub(crate) mod sums;
pub mod template_views;
pub mod tracking_views;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde_json::Value;

use crate::domain::api_key::{Principal, Scope};
use crate::domain::cooling_off::Safeguards;
use crate::domain::events::{EndpointUrl, EventType};
use crate::domain::ids::{AccountId, PayoutId, ProgramId, Rail};
use crate::domain::ledger::LedgerError;
use crate::domain::money::MoneyError;
use crate::domain::object_match::Reading;
use crate::domain::operator::{Acted, ActionRequest, PayoutFilter, PendingApproval, RailPause};
use crate::domain::payout::PayoutStatus;
use crate::domain::payout_run::{RunPeriod, RunReport};
use crate::domain::program::ProgramSet;
use crate::domain::reconcile::{Exception, ExceptionId, ProviderRecord, Resolution};
use crate::domain::retention::Retention;
use crate::domain::statement::{BalanceAt, Month, Statement};
use crate::domain::step::PastAttempt;
use crate::domain::step::Step;
use crate::domain::tax::{TaxReport, TaxThresholds};
use crate::domain::tracking::Observation;
use crate::ingest::{Feed, IngestReport, LineError, Numbered};

pub use accounting_views::{BookBalance, JournalEntry, JournalLine, TrialBalance};
pub use affiliate_views::{Enrollment, OptInError};
pub use balance_views::{AccountBalance, ProgramBalance, ReferralNote};
pub use console_views::{Attention, AttentionReason, PaidDay};
pub use database_url::DatabaseUrl;
pub use event_views::{
    DeliveryPass, DeliveryView, DueDelivery, EndpointView, EventView, NewEndpoint, ReplaySelector,
    TryResult, TryView,
};
pub use idempotency_views::{Answer, Answerer, Keyed};
pub use ledger_views::{LedgerCheck, RailTotal};
pub use methods::PayoutMethodView;
pub use metrics_views::MetricsSnapshot;
pub use payout_views::{
    Claim, FlagView, HeldPayout, Lease, PayoutCursor, PayoutDetail, PayoutPage, PayoutView,
    WithdrawError, WithdrawalOutcome, WithdrawalRequest,
};
pub use reconcile_views::{NewRun, RailTotals, ReconRun, Trigger};
pub use retention_views::{PruneReport, TablePruned};
pub use template_views::TemplateReport;
pub use tracking_views::{Applied, DuplicateEvidence};

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
    #[error("event {0} does not exist (or was pruned)")]
    UnknownEvent(String),
    #[error("event endpoint {0} does not exist (or was removed)")]
    UnknownEndpoint(String),
    #[error("lost the lease on payout {payout} (fence {fence}): another worker took it over")]
    LeaseLost { payout: String, fence: i64 },
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    /// A status write the transition table refuses: the decision behind it is a bug.
    #[error(transparent)]
    Transition(#[from] crate::domain::transition::Refused),
    #[error(transparent)]
    BonusSeed(#[from] crate::domain::program::bonus::SeedError),
    /// The group commit a withdrawal was in failed (SQLite): none of its withdrawals exists.
    #[error("the withdrawal could not be committed: {0}")]
    GroupCommit(String),
    /// An ingest's input could not be read to its end (see `ingest::Feed`).
    #[error("the input could not be read to its end: {0}")]
    Input(String),
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

    /// The same store with the platform's tax rules (which payouts wait for a tax form).
    pub fn with_tax_rules(mut self, rules: crate::domain::tax::TaxRules) -> Store {
        on_backend!(&mut self, s => s.set_tax_rules(rules));
        self
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

    /// How many independent bulk loads of one job (a reconciliation's record batches) are
    /// worth running at once: SQLite has one writer, PostgreSQL a backend per connection.
    pub fn bulk_writers(&self) -> usize {
        match self {
            Store::Sqlite(_) => sqlite::BULK_WRITERS,
            Store::Postgres(_) => postgres::BULK_WRITERS,
        }
    }

    pub async fn close(&self) {
        on_backend!(self, s => s.close().await)
    }
}

// The public queries: one method per `pub async fn` of the backends' `impl Store` blocks in
// `sql/`, written by build.rs with the same signature and docs (see the recipe above).
include!(concat!(env!("OUT_DIR"), "/store_dispatch.rs"));

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
