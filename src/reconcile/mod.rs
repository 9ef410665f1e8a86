//! Reconciliation as a service: read every record of money moved from each provider (its API,
//! or a statement file finance trusts), store them in bounded batches, match them against our
//! payouts in the database, and keep the result as a run with its exceptions.
//!
//! Used by `payouts reconcile`, the worker's daily schedule and the HTTP API alike.

pub mod report;
pub mod schedule;

use std::path::PathBuf;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};
use tracing::{Instrument, info, info_span};

use crate::domain::ids::Rail;
use crate::domain::reconcile::{Period, ProviderRecord, Tolerances};
use crate::providers::ProviderError;
use crate::providers::rail::Rails;
use crate::providers::records::{StatementError, read_statement};
use crate::storage::{NewRun, ReconRun, Store, StoreError, Trigger};

/// Records stored per batch: bounds memory whatever the period's length (20,000 hold a few
/// MiB). On PostgreSQL each batch is linked by two lookups and COPYd in one transaction; at a
/// million records 10,000 a batch took as long (with 60 instead of 100 MiB at the peak) and
/// 50,000 longer (8.2 s of storing instead of 6.6 s).
const BATCH: usize = 20_000;

/// Where a run reads the providers' records from.
#[derive(Debug, Clone)]
pub enum RecordsFrom {
    /// Each rail's API, through its adapter.
    Api,
    /// One rail's statement file in that provider's export format.
    Statement { rail: Rail, path: PathBuf },
}

#[derive(Debug, Clone)]
pub struct ReconcileRequest {
    pub period: Period,
    /// Empty: every rail this process is configured for (API) / the statement's rail.
    pub rails: Vec<Rail>,
    pub from: RecordsFrom,
    pub trigger: Trigger,
    pub tolerances: Tolerances,
    /// The run's id, when the caller needs it before the run ends (the API answers with it
    /// at once); `None` makes one.
    pub run_id: Option<String>,
}

/// A new reconciliation run id.
pub fn new_run_id() -> String {
    format!("rr_{}", crate::clock::ulid())
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{rail} is not configured in this process; set its credentials (see .env.example)")]
    RailNotConfigured { rail: Rail },
    #[error("no rail is configured to reconcile; set a provider's credentials (see .env.example)")]
    NoRails,
    #[error("reading {rail}'s records failed: {source}")]
    Provider {
        rail: Rail,
        #[source]
        source: ProviderError,
    },
    #[error("{path}: {source}")]
    Statement {
        path: String,
        #[source]
        source: StatementError,
    },
    #[error("a statement holds one rail's records: --rail {statement} or no --rail, not {asked}")]
    StatementRail { statement: Rail, asked: String },
}

/// Progress of a long run, for the CLI to show.
pub trait Progress: Send + Sync {
    fn records_read(&self, rail: Rail, total: u64);
    fn matching(&self, records: u64);
}

/// Reports nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn records_read(&self, _rail: Rail, _total: u64) {}
    fn matching(&self, _records: u64) {}
}

/// Runs one reconciliation to the end. A run that fails part-way is stored as failed with
/// the reason, and the error is returned.
pub async fn reconcile(
    store: &Store,
    rails: &Rails,
    request: &ReconcileRequest,
    progress: &dyn Progress,
) -> Result<ReconRun, ReconcileError> {
    let run = begin(store, rails, request).await?;
    finish(store, rails, &run, progress).await
}

/// A run that is stored (as running) and has yet to read its records.
#[derive(Debug, Clone)]
pub struct StartedRun {
    pub run: NewRun,
    from: RecordsFrom,
}

/// Checks the request and stores the run as running, so it can be polled at once.
pub async fn begin(
    store: &Store,
    rails: &Rails,
    request: &ReconcileRequest,
) -> Result<StartedRun, ReconcileError> {
    let run_rails = rails_to_read(rails, request)?;
    let run = NewRun {
        id: request.run_id.clone().unwrap_or_else(new_run_id),
        period: request.period,
        rails: run_rails,
        source: match &request.from {
            RecordsFrom::Api => "api".to_string(),
            RecordsFrom::Statement { path, .. } => format!(
                "statement:{}",
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
        },
        trigger: request.trigger,
        tolerances: request.tolerances,
    };
    store
        .recon_backfill_references(|rail, payout, key| {
            (crate::providers::facts(rail).reference)(payout, key)
        })
        .await?;
    store.recon_begin(&run).await?;
    Ok(StartedRun {
        run,
        from: request.from.clone(),
    })
}

/// Reads the records of a started run, matches them and stores the result.
pub async fn finish(
    store: &Store,
    rails: &Rails,
    started: &StartedRun,
    progress: &dyn Progress,
) -> Result<ReconRun, ReconcileError> {
    let run = &started.run;
    let span = info_span!("reconcile", run = %run.id, period = %run.period);
    async {
        let read = match &started.from {
            RecordsFrom::Api => read_apis(store, rails, run, progress).await,
            RecordsFrom::Statement { rail, path } => {
                read_file(store, run, *rail, path.clone(), progress).await
            }
        };
        let outcome = match read {
            Ok(total) => {
                progress.matching(total);
                info!(records = total, "matching");
                store.recon_match(run).await.map_err(ReconcileError::from)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            store.recon_fail(&run.id, &e.to_string()).await?;
            return Err(e);
        }
        let stored = store
            .recon_run(&run.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("run {} vanished", run.id)))?;
        info!(
            open = stored.exceptions.open,
            critical = stored.exceptions.open_critical,
            "reconciliation done"
        );
        Ok(stored)
    }
    .instrument(span)
    .await
}

/// The rails a request reads, checked against what this process can read: errors here are
/// the caller's, found before any run is stored.
pub fn rails_to_read(
    rails: &Rails,
    request: &ReconcileRequest,
) -> Result<Vec<Rail>, ReconcileError> {
    match &request.from {
        RecordsFrom::Api => {
            let wanted = if request.rails.is_empty() {
                rails.configured()
            } else {
                request.rails.clone()
            };
            if wanted.is_empty() {
                return Err(ReconcileError::NoRails);
            }
            if let Some(missing) = wanted.iter().find(|r| rails.get(**r).is_none()) {
                return Err(ReconcileError::RailNotConfigured { rail: *missing });
            }
            Ok(wanted)
        }
        RecordsFrom::Statement { rail, .. } => {
            if request.rails.iter().any(|r| r != rail) {
                return Err(ReconcileError::StatementRail {
                    statement: *rail,
                    asked: request
                        .rails
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                });
            }
            Ok(vec![*rail])
        }
    }
}

/// Reads every rail's API page by page into the run.
async fn read_apis(
    store: &Store,
    rails: &Rails,
    run: &NewRun,
    progress: &dyn Progress,
) -> Result<u64, ReconcileError> {
    let (from, to) = run.period.fetch_window(&run.tolerances);
    let mut seq = 0i64;
    for rail in &run.rails {
        let adapter = rails
            .get(*rail)
            .ok_or(ReconcileError::RailNotConfigured { rail: *rail })?;
        let mut pages = adapter.record_pages(from, to);
        let mut read = 0u64;
        while let Some(page) =
            pages
                .try_next()
                .await
                .map_err(|source| ReconcileError::Provider {
                    rail: *rail,
                    source,
                })?
        {
            store.recon_add_records(&run.id, seq, &page).await?;
            seq += page.len() as i64;
            read += page.len() as u64;
            progress.records_read(*rail, read);
        }
        info!(
            rail = rail.as_str(),
            records = read,
            "provider records read"
        );
    }
    Ok(seq as u64)
}

/// One run's record batches being stored, up to the backend's bulk writers at once (each
/// batch is its own transaction on its own connection), numbered in the order they arrive.
struct Batches<'a> {
    store: &'a Store,
    run_id: &'a str,
    next_seq: i64,
    /// Records whose batch has been stored.
    done: u64,
    in_flight: FuturesUnordered<BoxFuture<'a, Result<u64, StoreError>>>,
}

impl<'a> Batches<'a> {
    fn new(store: &'a Store, run_id: &'a str) -> Batches<'a> {
        Batches {
            store,
            run_id,
            next_seq: 0,
            done: 0,
            in_flight: FuturesUnordered::new(),
        }
    }

    /// Starts storing `batch`; returns once fewer than the writers' limit are in flight,
    /// with the records stored so far. A failed batch fails the run (its records are those
    /// of a failed run, kept for inspection).
    async fn store(&mut self, batch: Vec<ProviderRecord>) -> Result<u64, StoreError> {
        let (store, run_id, first) = (self.store, self.run_id, self.next_seq);
        self.next_seq += batch.len() as i64;
        self.in_flight.push(Box::pin(async move {
            store.recon_add_records(run_id, first, &batch).await?;
            Ok(batch.len() as u64)
        }));
        while self.in_flight.len() >= self.store.bulk_writers().max(1) {
            match self.in_flight.next().await {
                Some(stored) => self.done += stored?,
                None => break,
            }
        }
        Ok(self.done)
    }

    /// Waits for every batch in flight; returns the records stored.
    async fn finish(&mut self) -> Result<u64, StoreError> {
        while let Some(stored) = self.in_flight.next().await {
            self.done += stored?;
        }
        Ok(self.done)
    }
}

/// Reads a statement file in batches: a blocking thread parses, this task stores (see
/// `Batches`), and the channel between them holds at most two batches.
async fn read_file(
    store: &Store,
    run: &NewRun,
    rail: Rail,
    path: PathBuf,
    progress: &dyn Progress,
) -> Result<u64, ReconcileError> {
    let shown = path.display().to_string();
    let statement_error = |source| ReconcileError::Statement {
        path: shown.clone(),
        source,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<ProviderRecord>>(2);
    let reader = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        read_statement(rail, std::io::BufReader::new(file), BATCH, |batch| {
            // The receiver only goes away when storing failed; that error is the one reported.
            tx.blocking_send(batch)
                .map_err(|_| StatementError::Io(std::io::Error::other("reconciliation stopped")))
        })
    });
    let mut batches = Batches::new(store, &run.id);
    let mut stored: Result<(), ReconcileError> = Ok(());
    while let Some(batch) = rx.recv().await {
        if stored.is_ok() {
            stored = batches
                .store(batch)
                .await
                .map(|done| progress.records_read(rail, done))
                .map_err(ReconcileError::from);
        }
        if stored.is_err() {
            rx.close();
        }
    }
    if stored.is_ok() {
        stored = batches
            .finish()
            .await
            .map(|done| progress.records_read(rail, done))
            .map_err(ReconcileError::from);
    }
    stored?;
    let read = reader
        .await
        .map_err(|e| statement_error(StatementError::Io(std::io::Error::other(e))))?
        .map_err(statement_error)?;
    Ok(read)
}
