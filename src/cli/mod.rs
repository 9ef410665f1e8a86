//! The command line: argument parsing and one function per command.

/// `println!` for command output. A reader that went away (`payouts ... --json | head`) ends
/// the program quietly with status 0, as a tool stopped by SIGPIPE would, instead of the
/// panic `println!` gives.
macro_rules! outln {
    () => {
        $crate::cli::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for command output; see [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!($($arg)*))
    };
}

pub mod events;
pub mod keys;
pub mod ledger;
mod operate;
pub mod programs;
pub mod reconcile;
pub mod render;
mod review;
#[cfg(feature = "simulators")]
mod sim;
pub(crate) mod statements;
mod tax;
pub mod withdraw;

use std::io::BufReader;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use payouts::app::config::{WebhookSettings, WorkerSettings};
use payouts::domain::ids::{AccountId, PayoutId};
use payouts::domain::operator::{Action, DisputeOutcome, DuplicateBooking};
use payouts::domain::program::ProgramSet;
use payouts::jobs::{PayoutDeps, WorkerOptions, run_worker, shutdown_signal};
use payouts::storage::{DatabaseUrl, Store};

/// Payout orchestration for referral, affiliate and creator programs.
///
/// Accrues commissions from platform usage into a double-entry ledger, decides who may cash
/// out, and pays through Stripe Connect, PayPal Payouts, Wise and PartnerStack exactly once,
/// with retries driven by a job queue.
#[derive(Parser)]
#[command(name = "payouts", version, propagate_version = true)]
pub struct Cli {
    /// Database to use: a SQLite path or sqlite:// URL (one machine), or a postgres:// URL
    /// (many workers on many machines sharing one database). Shown only with its password
    /// hidden.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite://payouts.db",
        global = true
    )]
    pub database_url: DatabaseUrl,

    /// Program configuration: preset names (vast, runpod) and/or paths to TOML files, comma
    /// separated. The format is in programs/README.md.
    #[arg(
        long,
        env = "PAYOUTS_PROGRAMS",
        default_value = "vast,runpod",
        value_delimiter = ',',
        global = true
    )]
    pub programs: Vec<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// The simulators' commands: demo, bench, mock-providers (not in a production build).
    #[cfg(feature = "simulators")]
    #[command(flatten)]
    Sim(sim::SimCommand),
    /// Ingest NDJSON platform records (accounts, referrals, usage, refunds, ...).
    ///
    /// Idempotent by record id: the same file twice changes nothing. Bad lines are reported
    /// with their line number; the rest goes in unless --strict. Exit status 2 when any line
    /// was rejected.
    Ingest {
        /// The file to read, or - for standard input.
        file: String,
        /// All or nothing: any bad line rolls the whole file back.
        #[arg(long)]
        strict: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show an account's balance per program, with its cash-out eligibility (or, with
    /// `--at`, as it stood at an instant).
    Balance(statements::BalanceArgs),
    /// An account's monthly statement: opening balance, earnings, clawbacks, payouts,
    /// returns and closing balance per program.
    Statement(statements::StatementArgs),
    /// Tax: the year-end report of cash paid per payee and rail against the forms on file.
    Tax {
        #[command(subcommand)]
        command: tax::TaxCommand,
    },
    /// Payouts held for review or a tax form: list them, approve or reject one.
    Review {
        #[command(subcommand)]
        command: review::ReviewCommand,
    },
    /// Request a withdrawal: checks, holds the amount, and queues the payout, atomically.
    Withdraw(withdraw::WithdrawArgs),
    /// API keys for the HTTP API (`payouts serve`).
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Affiliate upgrades: opt in (permanent).
    Affiliate {
        #[command(subcommand)]
        command: programs::AffiliateCommand,
    },
    /// Pay every payee whose cashable balance is payable, through the first of its program's
    /// rails with automatic payouts on, in one pass. Idempotent by period: a second run for
    /// the same period creates nothing and shows the first run's report.
    RunPayouts {
        /// The period this run pays for; default today (UTC), e.g. 2026-11-21.
        #[arg(long)]
        period: Option<String>,
        /// Show what would be paid and skipped, and change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Re-accrue every earning stream under the loaded programs (after a configuration
    /// change): posts only the differences, so an up-to-date ledger gets nothing.
    Accrue,
    /// Show the loaded programs' terms.
    Programs {
        #[arg(long)]
        json: bool,
    },
    /// Referrals and creator earnings per template.
    Templates {
        #[arg(long)]
        json: bool,
    },
    /// Operator actions waiting for a second operator (four eyes): list, approve, reject.
    Approvals {
        #[command(subcommand)]
        command: operate::ApprovalsCommand,
    },
    /// Rails: which are paused; pause and resume one (operators).
    Rails {
        #[command(subcommand)]
        command: operate::RailsCommand,
    },
    /// Inspect payouts.
    Payouts {
        #[command(subcommand)]
        command: PayoutsCommand,
    },
    /// Accounting exports for finance: a trial balance at a date and the journal of a period,
    /// as CSV in debits and credits, balanced to the cent.
    Ledger {
        #[command(subcommand)]
        command: ledger::LedgerCommand,
    },
    /// Reconcile a period: every provider record against our payouts, read from each rail's
    /// API or from a statement file (`--statement FILE --rail R`). Exceptions can be
    /// resolved with a note (`reconcile resolve ID --note ...`). Exit status 3 when open
    /// exceptions remain.
    Reconcile(reconcile::ReconcileArgs),
    /// Outgoing events: the endpoints the platform registered, the events with their
    /// delivery log, and replays.
    Events {
        #[command(subcommand)]
        command: events::EventsCommand,
    },
    /// Delete what is kept only for a while once past its age (finished jobs, webhook
    /// deliveries, idempotent responses, delivered events, old reconciliations' record
    /// copies; ages from PAYOUTS_RETAIN_*_DAYS). Never a ledger posting, a payout, a payout
    /// event or an audit record. The worker also prunes daily (PAYOUTS_PRUNE_SCHEDULE).
    Prune {
        /// Count what would go, delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Check the ledger's invariants (balanced transactions, holds matching payouts).
    LedgerCheck {
        #[arg(long)]
        json: bool,
    },
    /// Serve the providers' webhook receivers at /webhooks/{stripe,paypal,wise,partnerstack}
    /// (verification material from the environment; see .env.example) and the JSON API
    /// under /v1 (API keys from `payouts keys create`).
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Also run the payout worker in this process (needs rail credentials; see
        /// .env.example). Without it, run `payouts work` apart.
        #[arg(long)]
        worker: bool,
        /// Payouts the in-process worker works on at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// Run the payout worker (needs STRIPE_SECRET_KEY; see .env.example).
    Work {
        /// Exit once no payout is waiting for a worker.
        #[arg(long)]
        until_idle: bool,
        /// Payouts worked on at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
}

#[derive(Subcommand)]
pub enum PayoutsCommand {
    /// List payouts, newest first.
    List {
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one payout with its attempts and full event history.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Provider objects that named a payout but were not its payment: possible duplicate
    /// payments to check at the provider, newest first.
    Duplicates {
        /// Only this payout's.
        #[arg(long)]
        payout: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Let the worker try a payout waiting for an operator again, with a fresh attempt
    /// budget. Where an attempt may have landed the worker first proves what it did (a
    /// same-key replay or a lookup); it never sends blind. Exit 4 when refused.
    Retry(operate::ActArgs),
    /// Void the payout's hold (the amount is available again). Only when nothing can land:
    /// a queued payout, or one waiting for an operator whose attempts all provably failed.
    Cancel(operate::ActArgs),
    /// Record a payment made outside the rails (posts the hold). Same rule as cancel.
    MarkPaid(operate::MarkPaidArgs),
    /// End a cooling-off hold early: the payout is sent now.
    ReleaseHold(operate::ActArgs),
    /// Book how a disputed payout ended (its provider reported a dispute or a partial
    /// reversal): --outcome kept (paid) or returned (credited to the payee).
    ResolveDispute(operate::DisputeArgs),
    /// Book a second payment that landed for the payout (--object, as `payouts payouts
    /// duplicates` lists it) as owed by the payee or as a loss; its reconciliation exception
    /// resolves once every duplicate of the payout is booked.
    ResolveDuplicate(operate::DuplicateArgs),
    /// One action over every payout a filter matches (each under its own safety rules);
    /// --dry-run shows what would change. Exit 4 when any payout was refused.
    Bulk(operate::BulkArgs),
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Writes command output to standard output; see [`outln!`]. Any other write error is as
/// fatal as it is for `println!`, but reported as a message rather than a panic.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to standard output: {e}");
        std::process::exit(1);
    }
}

/// Runs a command; returns the process exit code.
impl Cli {
    /// Whether the command injects faults on purpose (the simulator), so that the engine's
    /// warnings are expected noise.
    pub fn injects_faults(&self) -> bool {
        #[cfg(feature = "simulators")]
        if let Command::Sim(sim::SimCommand::Sim(_)) = &self.command {
            return true;
        }
        false
    }
}

pub async fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        #[cfg(feature = "simulators")]
        Command::Sim(command) => sim::run(command).await,
        Command::Keys {
            command: keys::KeysCommand::Hash,
        } => keys::hash(),
        command => {
            let programs = ProgramSet::load(&cli.programs, &|k| std::env::var(k).ok())
                .context("loading program configuration")?;
            let safeguards = payouts::app::config::safeguards_from_env()?;
            let store = Store::open(&cli.database_url, Arc::new(programs))
                .await
                // Display is the redacted form: the password never reaches a message.
                .with_context(|| format!("opening database {}", cli.database_url))?
                .with_safeguards(safeguards)
                .with_tax_rules(payouts::app::config::tax_rules_from_env()?);
            // A bonus seed other than the one the database's draws were made with stops every
            // command, unless a rotation is asked for: drawn bonuses are never re-drawn.
            let rotate = payouts::app::config::rotate_bonus_seed_from_env()?;
            if let Err(e) = store.check_bonus_seeds(rotate).await {
                store.close().await;
                return Err(e.into());
            }
            let code = run_with_store(&store, command).await;
            store.close().await;
            code
        }
    }
}

async fn run_with_store(store: &Store, command: Command) -> Result<i32> {
    match command {
        Command::Ingest { file, strict, json } => ingest(store, &file, strict, json).await,
        Command::Balance(args) => statements::balance(store, args).await,
        Command::Statement(args) => statements::statement(store, args).await,
        Command::Tax { command } => tax::run(store, command).await,
        Command::Review { command } => review::run(store, command).await,
        Command::Withdraw(args) => withdraw::run(store, args).await,
        Command::Affiliate { command } => programs::affiliate(store, command).await,
        Command::Keys { command } => keys::keys(store, command).await,
        Command::Ledger { command } => ledger::run(store, command).await,
        Command::Reconcile(args) => reconcile::run(store, args).await,
        Command::Events { command } => events::run(store, command).await,
        Command::Prune { dry_run, json } => {
            let (retention, _) = payouts::app::config::retention_from_env()?;
            let report = store.prune(&retention, chrono::Utc::now(), dry_run).await?;
            if json {
                print_json(&report)?;
            } else {
                out!("{}", render::prune(&report));
            }
            Ok(0)
        }
        Command::RunPayouts {
            period,
            dry_run,
            json,
        } => {
            let period = match period {
                Some(p) => payouts::domain::payout_run::RunPeriod::parse(&p)?,
                None => payouts::domain::payout_run::RunPeriod::day_of(payouts::clock::now()),
            };
            let report = store.run_payouts(&period, dry_run).await?;
            if json {
                print_json(&report)?;
            } else {
                out!("{}", render::run_report(&report));
            }
            Ok(0)
        }
        Command::Accrue => {
            let posted = store.reaccrue_all().await?;
            outln!("re-accrued every stream: {posted} ledger transaction(s) posted");
            Ok(0)
        }
        Command::Programs { json } => programs::show_programs(store, json),
        Command::Templates { json } => programs::templates(store, json).await,
        Command::Payouts { command } => payouts_command(store, command).await,
        Command::Rails { command } => operate::rails(store, command).await,
        Command::Approvals { command } => operate::approvals(store, command).await,
        Command::LedgerCheck { json } => {
            let check = store.check_ledger().await?;
            if json {
                print_json(&check)?;
            } else {
                outln!("{}", render::ledger_check(&check));
            }
            Ok(if check.is_ok() { 0 } else { 1 })
        }
        Command::Work {
            until_idle,
            concurrency,
        } => {
            work(store, concurrency, until_idle).await?;
            Ok(0)
        }
        Command::Serve {
            listen,
            worker,
            concurrency,
        } => serve(store, listen, worker, concurrency).await,
        #[cfg(feature = "simulators")]
        Command::Sim(_) => {
            anyhow::bail!(
                "this command does not use a database; it is dispatched before one is opened"
            )
        }
    }
}

/// `payouts ingest`: a file (or `-` for stdin) of NDJSON records. Exit status 2 when lines
/// were rejected.
async fn ingest(store: &Store, file: &str, strict: bool, json: bool) -> Result<i32> {
    use payouts::app::ingest::ingest_with_progress;
    let chunk = payouts::app::config::ingest_chunk_lines()?;
    let report = if file == "-" {
        let input = BufReader::with_capacity(1 << 20, std::io::stdin());
        let progress = render::IngestProgress::new(None);
        ingest_with_progress(store, input, strict, chunk, &|r, b| progress.show(r, b)).await?
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("opening {file}"))?;
        let size = f.metadata().ok().map(|m| m.len());
        let progress = render::IngestProgress::new(size);
        let input = BufReader::with_capacity(1 << 20, f);
        ingest_with_progress(store, input, strict, chunk, &|r, b| progress.show(r, b)).await?
    };
    render::IngestProgress::done();
    if json {
        print_json(&report)?;
    } else {
        for (kind, c) in &report.by_type {
            outln!(
                "{kind:<14} {:>6} new  {:>6} updated  {:>6} unchanged",
                c.inserted,
                c.updated,
                c.unchanged
            );
        }
        outln!(
            "referrals judged: {}, commission entries posted: {}",
            report.referrals_judged,
            report.accruals_posted
        );
        if report.payouts_released > 0 {
            outln!(
                "held payouts released by a tax form on file: {}",
                report.payouts_released
            );
        }
        for e in &report.rejected {
            eprintln!("line {}: {}", e.line, e.message);
        }
        if report.rolled_back {
            eprintln!(
                "--strict: {} bad line(s); nothing was written",
                report.rejected.len()
            );
        } else if !report.rejected.is_empty() {
            eprintln!(
                "{} line(s) rejected; the other {} went in",
                report.rejected.len(),
                report.lines_read - report.rejected.len()
            );
        }
    }
    Ok(if report.rejected.is_empty() { 0 } else { 2 })
}

/// `payouts payouts ...`: list, show, look for duplicates, and act as an operator.
async fn payouts_command(store: &Store, command: PayoutsCommand) -> Result<i32> {
    match command {
        PayoutsCommand::List { account, json } => {
            let account = account.as_deref().map(AccountId::parse).transpose()?;
            let list = store.list_payouts(account.as_ref()).await?;
            if json {
                print_json(&list)?;
            } else {
                outln!("{}", render::payouts(&list));
            }
        }
        PayoutsCommand::Show { id, json } => {
            let detail = store.payout(&id).await?;
            if json {
                print_json(&detail)?;
            } else {
                out!("{}", render::payout_detail(&detail));
            }
        }
        PayoutsCommand::Retry(args) => return operate::act(store, args, Action::Retry).await,
        PayoutsCommand::Cancel(args) => return operate::act(store, args, Action::Cancel).await,
        PayoutsCommand::MarkPaid(args) => {
            let action = Action::MarkPaid {
                reference: args.reference,
            };
            return operate::act(store, args.act, action).await;
        }
        PayoutsCommand::ReleaseHold(args) => {
            return operate::act(store, args, Action::ReleaseHold).await;
        }
        PayoutsCommand::Bulk(args) => return operate::bulk(store, args).await,
        PayoutsCommand::ResolveDispute(args) => {
            let outcome = DisputeOutcome::with_amount(&args.outcome, args.amount).ok_or_else(
                || anyhow::anyhow!("--amount goes with --outcome returned (the part that came back); kept takes none"),
            )?;
            let action = Action::ResolveDispute { outcome };
            return operate::act(store, args.act, action).await;
        }
        PayoutsCommand::ResolveDuplicate(args) => {
            let booking = DuplicateBooking::from_code(&args.booking)
                .ok_or_else(|| anyhow::anyhow!("--booking is owed or loss"))?;
            let action = Action::ResolveDuplicate {
                object: args.object,
                booking,
            };
            return operate::act(store, args.act, action).await;
        }
        PayoutsCommand::Duplicates { payout, json } => {
            let payout = payout.as_deref().map(PayoutId::parse).transpose()?;
            let found = store.payout_duplicates(payout.as_ref()).await?;
            if json {
                print_json(&found)?;
            } else {
                println!("{}", render::duplicates(&found));
            }
        }
    }
    Ok(0)
}

/// `payouts serve`: the HTTP API and the webhook receivers until SIGTERM/SIGINT, with the
/// payout worker beside them when `worker` is set.
async fn serve(store: &Store, listen: SocketAddr, worker: bool, concurrency: usize) -> Result<i32> {
    let hooks = WebhookSettings::from_env()?;
    let state = WorkerSettings::from_env()?.webhook_state(store.clone(), hooks)?;
    let api = payouts::app::config::api_settings_from_env()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    outln!("serving the API on http://{addr}/v1 (document: http://{addr}/openapi.json)");
    outln!("serving webhooks on http://{addr}/v1/webhooks/<rail>");
    let server = axum::serve(listener, payouts::http::app(state, api))
        .with_graceful_shutdown(shutdown_signal())
        .into_future();
    if worker {
        outln!("running the payout worker in this process");
        let (served, worked) = tokio::join!(server, work(store, concurrency, false));
        served?;
        worked?;
    } else {
        server.await?;
    }
    Ok(0)
}

/// The payout worker, until SIGTERM/SIGINT (or, with `until_idle`, until nothing waits).
async fn work(store: &Store, concurrency: usize, until_idle: bool) -> Result<()> {
    let settings = WorkerSettings::from_env()?;
    let recon = payouts::app::config::recon_settings_from_env()?;
    let (retention, prune_schedule) = payouts::app::config::retention_from_env()?;
    let deps = Arc::new(PayoutDeps {
        store: store.clone(),
        rails: settings.rails()?,
        policy: settings.policy,
        lease_ttl: settings.lease_ttl,
        worker_id: format!("payouts-{}-{}", std::process::id(), ulid::Ulid::generate()),
    });
    let options = WorkerOptions {
        concurrency,
        until_idle,
        schedule: settings.run_schedule.clone(),
        reconcile: recon.daily.map(|daily| (daily, recon.tolerances)),
        prune: prune_schedule.map(|schedule| (schedule, retention)),
        shutdown_deadline: settings.shutdown_deadline,
        ..WorkerOptions::default()
    };
    run_worker(deps, options, shutdown_signal(), |_| {}).await?;
    Ok(())
}
