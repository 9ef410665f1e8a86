//! `payouts reconcile`: check every provider record of a period against our payouts, show
//! the result (text, JSON, CSV or a self-contained HTML page), and resolve exceptions.
//!
//! Exit status: 0 when nothing is open, 3 when open exceptions remain (so a cron job can
//! alert), 1 on errors.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use payouts::app::config::{WorkerSettings, recon_settings_from_env};
use payouts::domain::ids::Rail;
use payouts::domain::reconcile::{ExceptionId, Period, Severity, explain};
use payouts::providers::rail::Rails;
use payouts::reconcile::report::{self, Report};
use payouts::reconcile::{Progress, ReconcileRequest, RecordsFrom, reconcile};
use payouts::storage::{ReconRun, Store, Trigger};

/// Exit status when a run leaves open exceptions.
pub const OPEN_EXCEPTIONS: i32 = 3;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ReconcileArgs {
    #[command(subcommand)]
    pub command: Option<ReconcileCommand>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Default)]
pub struct RunArgs {
    /// First day (UTC, YYYY-MM-DD).
    #[arg(long)]
    pub from: Option<String>,
    /// Last day, included (UTC, YYYY-MM-DD).
    #[arg(long)]
    pub to: Option<String>,
    /// Only this rail (repeat for several); default every configured rail.
    #[arg(long = "rail")]
    pub rails: Vec<String>,
    /// Read this statement file (the provider's CSV export) instead of the provider's API;
    /// needs --rail.
    #[arg(long)]
    pub statement: Option<PathBuf>,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Default, Clone)]
pub struct Output {
    /// Print the run and its exceptions as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write the exceptions as CSV to this file.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write the report as one self-contained HTML page to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum ReconcileCommand {
    /// Mark an exception resolved, with a note saying what was done. It stays resolved in
    /// every later run that finds the same disagreement.
    Resolve {
        /// The exception id (rx_…), from the report.
        id: String,
        #[arg(long)]
        note: String,
        /// Who resolved it; default $USER.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// List the latest runs.
    Runs {
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Show a stored run again (latest if no id), in any output form.
    Show {
        run: Option<String>,
        #[command(flatten)]
        output: Output,
    },
}

/// Progress on standard error, so standard output stays the report.
struct Stderr;

impl Progress for Stderr {
    fn records_read(&self, rail: Rail, total: u64) {
        if total.is_multiple_of(50_000) || total < 50_000 {
            eprint!("\rreading {}: {total} records", rail.as_str());
        }
    }

    fn matching(&self, records: u64) {
        eprintln!("\rread {records} provider records; matching against our payouts");
    }
}

pub async fn run(store: &Store, args: ReconcileArgs) -> Result<i32> {
    match args.command {
        Some(ReconcileCommand::Resolve { id, note, by }) => resolve(store, &id, &note, &by).await,
        Some(ReconcileCommand::Runs { limit, json }) => runs(store, limit, json).await,
        Some(ReconcileCommand::Show { run, output }) => {
            let run = match run {
                Some(id) => store.recon_run(&id).await?,
                None => store.recon_runs(1).await?.into_iter().next(),
            };
            let Some(run) = run else {
                bail!("no such reconciliation run; `payouts reconcile runs` lists them");
            };
            show(store, run, &output).await
        }
        None => {
            let rails = match &args.run.statement {
                Some(_) => Rails::default(),
                None => WorkerSettings::from_env()?.rails()?,
            };
            reconcile_period(store, &rails, args.run).await
        }
    }
}

/// Runs a reconciliation with the given adapters and shows it.
pub async fn reconcile_period(store: &Store, rails: &Rails, args: RunArgs) -> Result<i32> {
    let (Some(from), Some(to)) = (&args.from, &args.to) else {
        bail!("say which days to reconcile: --from YYYY-MM-DD --to YYYY-MM-DD");
    };
    let period = Period::parse(from, to)?;
    let wanted = args
        .rails
        .iter()
        .map(|r| r.parse::<Rail>())
        .collect::<Result<Vec<_>, _>>()?;
    let from = match args.statement {
        Some(path) => {
            let [rail] = wanted.as_slice() else {
                bail!(
                    "--statement reads one provider's export: say which with --rail ({})",
                    Rail::ALL.map(Rail::as_str).join(", ")
                );
            };
            RecordsFrom::Statement { rail: *rail, path }
        }
        None => RecordsFrom::Api,
    };
    let request = ReconcileRequest {
        period,
        rails: wanted,
        from,
        trigger: Trigger::Cli,
        tolerances: recon_settings_from_env()?.tolerances,
        run_id: None,
    };
    let run = reconcile(store, rails, &request, &Stderr).await?;
    show(store, run, &args.output).await
}

async fn show(store: &Store, run: ReconRun, output: &Output) -> Result<i32> {
    let exceptions = store.recon_exceptions(&run.id, false).await?;
    let open = run.exceptions.open;
    let report = Report::new(run, exceptions);
    if let Some(path) = &output.csv {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        report::write_csv(&report, std::io::BufWriter::new(file))?;
        eprintln!(
            "wrote {} exception(s) to {}",
            report.exceptions.len(),
            path.display()
        );
    }
    if let Some(path) = &output.html {
        std::fs::write(path, report::html(&report))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote the report to {}", path.display());
    }
    if output.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        out!("{}", text(&report));
    }
    Ok(if open == 0 { 0 } else { OPEN_EXCEPTIONS })
}

/// The run as a terminal summary.
pub fn text(report: &Report) -> String {
    let run = &report.run;
    let mut out = format!(
        "reconciliation {} of {} ({}; {}): {}\n",
        run.id,
        run.period(),
        run.rails
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        run.source,
        run.status
    );
    if let Some(error) = &run.error {
        out.push_str(&format!("  failed: {error}\n"));
    }
    for t in &run.totals {
        out.push_str(&format!(
            "  {:<12} {}  provider {:>7} records {:>14}   ours {:>7} payouts {:>14}   matched {}\n",
            t.rail.as_str(),
            t.currency,
            t.provider_records,
            t.provider_amount,
            t.payouts_expected,
            t.payouts_amount,
            t.matched
        ));
    }
    let counts = &run.exceptions;
    if counts.open == 0 {
        out.push_str(&format!(
            "  all matched: no open exceptions{}\n",
            if counts.resolved > 0 {
                format!(" ({} resolved earlier)", counts.resolved)
            } else {
                String::new()
            }
        ));
    } else {
        out.push_str(&format!(
            "  {} open exception(s), {} CRITICAL\n",
            counts.open, counts.open_critical
        ));
    }
    for e in report
        .exceptions
        .iter()
        .filter(|e| e.exception.resolution.is_none())
    {
        let x = &e.exception;
        out.push_str(&format!(
            "  [{}] {} {} {}\n      {}\n",
            if x.severity == Severity::Critical {
                "CRITICAL"
            } else {
                "high"
            },
            x.id,
            x.kind.code(),
            x.rail.as_str(),
            explain(x)
        ));
    }
    out
}

async fn resolve(store: &Store, id: &str, note: &str, by: &str) -> Result<i32> {
    let id = ExceptionId::parse(id).map_err(anyhow::Error::msg)?;
    if note.trim().is_empty() {
        bail!("say what was done in --note; the note is what finance reads later");
    }
    match store.recon_resolve(&id, note.trim(), by).await? {
        Some(r) => {
            outln!(
                "{id} resolved by {} at {}: {}",
                r.by,
                r.at.to_rfc3339(),
                r.note
            );
            Ok(0)
        }
        None => bail!("no reconciliation run has found an exception {id}"),
    }
}

async fn runs(store: &Store, limit: i64, json: bool) -> Result<i32> {
    let runs = store.recon_runs(limit.clamp(1, 1000)).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(0);
    }
    if runs.is_empty() {
        outln!("no reconciliation runs yet; `payouts reconcile --from D --to D` makes one");
    }
    for r in runs {
        outln!(
            "{}  {}  {:<10} {:<9} {:<8} open {:>5}  critical {:>4}",
            r.id,
            r.started_at.format("%Y-%m-%d %H:%M"),
            r.period().to_string(),
            r.status,
            r.trigger.code(),
            r.exceptions.open,
            r.exceptions.open_critical
        );
    }
    Ok(0)
}
