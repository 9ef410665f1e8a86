//! `payouts payouts retry|cancel|mark-paid|release-hold ID --reason TEXT`: an operator's
//! action on one payout. The safety rules are the domain's (`domain::operator`); a refusal
//! says why and what to do instead. Also `payouts rails list|pause|resume`.

use anyhow::Result;
use clap::Args;
use payouts::domain::ids::{AccountId, PayoutId, Rail};
use payouts::domain::operator::{Acted, Action, ActionRequest, ActionState, PayoutFilter};
use payouts::domain::payout::PayoutStatus;
use payouts::storage::{Store, StoreError};

use super::print_json;

#[derive(Debug, Args)]
pub struct ActArgs {
    /// The payout (po_…).
    pub id: String,
    /// Why, for whoever reads the payout's history; mandatory.
    #[arg(long)]
    pub reason: String,
    /// Who acts, as the history shows it (default: $PAYOUTS_OPERATOR, else cli:$USER).
    #[arg(long = "as", value_name = "NAME")]
    pub operator: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DisputeArgs {
    #[command(flatten)]
    pub act: ActArgs,
    /// How the dispute ended: the payee kept the money (paid) or it came back (returned,
    /// credited to the payee's balance).
    #[arg(long, value_parser = ["kept", "returned"])]
    pub outcome: String,
    /// With --outcome returned: only this part came back (in the payout's currency, less than
    /// its amount); the payout is paid and the part credited to the payee.
    #[arg(long, value_parser = part_amount)]
    pub amount: Option<rust_decimal::Decimal>,
}

/// A plain decimal string ("2.50"): no sign, no exponent, no separators.
fn part_amount(text: &str) -> Result<rust_decimal::Decimal, String> {
    payouts::domain::money::parse_decimal(text, payouts::domain::money::UNIT_SCALE)
        .map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct DuplicateArgs {
    #[command(flatten)]
    pub act: ActArgs,
    /// The provider's id of the duplicate payment (`payouts payouts duplicates` lists them).
    #[arg(long)]
    pub object: String,
    /// Who bears it: the payee owes it (their balance goes negative; later earnings repay
    /// it) or the company writes it off as a loss.
    #[arg(long, value_parser = ["owed", "loss"])]
    pub booking: String,
}

#[derive(Debug, Args)]
pub struct MarkPaidArgs {
    #[command(flatten)]
    pub act: ActArgs,
    /// The payment made outside the rails (a bank transfer id, a cheque number).
    #[arg(long)]
    pub reference: String,
}

/// Does `action` and prints what it did. Exit 0 when done (or already done), 4 when its
/// safety rules refuse it.
pub async fn act(store: &Store, args: ActArgs, action: Action) -> Result<i32> {
    let id = PayoutId::parse(&args.id)?;
    let actor = args.operator.clone().unwrap_or_else(default_operator);
    let request = ActionRequest {
        action,
        reason: args.reason.clone(),
        actor,
    };
    match store.operator_act(&id, &request).await {
        Ok(acted) => {
            if args.json {
                print_json(&acted)?;
            } else {
                outln!("{}", describe(&acted));
            }
            Ok(0)
        }
        Err(StoreError::Operator(refusal)) => refused(&refusal),
        Err(e) => Err(e.into()),
    }
}

fn describe(acted: &Acted) -> String {
    if acted.state == ActionState::PendingApproval {
        return format!(
            "{} {}: waits for a second operator's approval (payouts approvals approve {}){}",
            acted.action,
            acted.payout_id,
            acted.action_id,
            if acted.replayed {
                "; asked already"
            } else {
                ""
            }
        );
    }
    let again = if acted.replayed {
        " (already done; nothing was done again)"
    } else {
        ""
    };
    format!(
        "{} {}: {} -> {}{again}\n{}",
        acted.action, acted.payout_id, acted.from, acted.to, acted.summary
    )
}

pub(super) fn default_operator() -> String {
    std::env::var("PAYOUTS_OPERATOR")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| format!("cli:{}", std::env::var("USER").unwrap_or_default()))
}

#[derive(Debug, clap::Subcommand)]
pub enum RailsCommand {
    /// Every rail, paused or not.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stop sending on a rail: its payouts wait (never fail) and work already on the wire
    /// finishes. Pausing a paused rail changes nothing.
    Pause(RailArgs),
    /// Send on a rail again; the payouts that waited for it go at once.
    Resume(RailArgs),
}

#[derive(Debug, Args)]
pub struct RailArgs {
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(Rail::ALL.map(Rail::as_str)))]
    pub rail: String,
    /// Why, for whoever reads the rail's history; mandatory.
    #[arg(long)]
    pub reason: String,
    /// Who acts (default: $PAYOUTS_OPERATOR, else cli:$USER).
    #[arg(long = "as", value_name = "NAME")]
    pub operator: Option<String>,
}

/// `payouts rails ...`.
pub async fn rails(store: &Store, command: RailsCommand) -> Result<i32> {
    match command {
        RailsCommand::List { json } => {
            let paused = store.rail_pauses().await?;
            if json {
                print_json(&paused)?;
                return Ok(0);
            }
            for rail in Rail::ALL {
                match paused.iter().find(|p| p.rail == rail) {
                    Some(p) => outln!(
                        "{rail:<13} paused by {} since {} ({})",
                        p.paused_by,
                        p.paused_at.format("%Y-%m-%d %H:%M UTC"),
                        p.reason
                    ),
                    None => outln!("{rail:<13} sending"),
                }
            }
        }
        RailsCommand::Pause(args) => {
            let rail: Rail = args.rail.parse()?;
            let actor = args.operator.unwrap_or_else(default_operator);
            match store.pause_rail(rail, &args.reason, &actor).await {
                Ok((_, true)) => outln!("{rail} paused: nothing new is sent until resumed"),
                Ok((p, false)) => outln!(
                    "{rail} was already paused by {} ({}); nothing changed",
                    p.paused_by,
                    p.reason
                ),
                Err(StoreError::Operator(refusal)) => return refused(&refusal),
                Err(e) => return Err(e.into()),
            }
        }
        RailsCommand::Resume(args) => {
            let rail: Rail = args.rail.parse()?;
            let actor = args.operator.unwrap_or_else(default_operator);
            match store.resume_rail(rail, &args.reason, &actor).await {
                Ok(Some(_)) => outln!("{rail} resumed: waiting payouts go now"),
                Ok(None) => outln!("{rail} was not paused; nothing changed"),
                Err(StoreError::Operator(refusal)) => return refused(&refusal),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(0)
}

fn refused(refusal: &payouts::domain::operator::Refusal) -> Result<i32> {
    eprintln!("refused: {refusal}");
    Ok(4)
}

#[derive(Debug, clap::Subcommand)]
pub enum ApprovalsCommand {
    /// Actions waiting for a second operator (above PAYOUTS_FOUR_EYES_ABOVE), oldest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Approve another operator's action: it is decided again on the payout as it is now,
    /// and done.
    Approve {
        /// The action's id (oa_…).
        id: String,
        /// Who approves (default: $PAYOUTS_OPERATOR, else cli:$USER); never the asker.
        #[arg(long = "as", value_name = "NAME")]
        operator: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Reject another operator's action: nothing changes on the payout.
    Reject {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long = "as", value_name = "NAME")]
        operator: Option<String>,
    },
}

/// `payouts approvals ...`.
pub async fn approvals(store: &Store, command: ApprovalsCommand) -> Result<i32> {
    match command {
        ApprovalsCommand::List { json } => {
            let pending = store.pending_approvals().await?;
            if json {
                print_json(&pending)?;
            } else if pending.is_empty() {
                outln!("nothing waits for approval");
            } else {
                for p in &pending {
                    outln!("{}", p.describe());
                }
            }
        }
        ApprovalsCommand::Approve { id, operator, json } => {
            let approver = operator.unwrap_or_else(default_operator);
            let acted = match store.approve_action(&id, &approver).await {
                Ok(acted) => acted,
                Err(StoreError::Operator(refusal)) => return refused(&refusal),
                Err(e) => return Err(e.into()),
            };
            if json {
                print_json(&acted)?;
            } else {
                outln!("{}", describe(&acted));
            }
        }
        ApprovalsCommand::Reject {
            id,
            reason,
            operator,
        } => {
            let approver = operator.unwrap_or_else(default_operator);
            match store.reject_action(&id, &approver, &reason).await {
                Ok(()) => outln!("{id} rejected; the payout is unchanged"),
                Err(StoreError::Operator(refusal)) => return refused(&refusal),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(0)
}

#[derive(Debug, Args)]
pub struct BulkArgs {
    /// The action for every matched payout.
    #[arg(value_parser = ["retry", "cancel", "mark-paid", "release-hold"])]
    pub action: String,
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(Rail::ALL.map(Rail::as_str)))]
    pub rail: Option<String>,
    /// A payout status, e.g. needs_operator.
    #[arg(long)]
    pub status: Option<String>,
    /// Words in the payout's last error.
    #[arg(long)]
    pub error_contains: Option<String>,
    /// Only payouts created at least this many hours ago.
    #[arg(long)]
    pub older_than_hours: Option<u64>,
    #[arg(long)]
    pub account: Option<String>,
    /// Why, for every matched payout's history; mandatory.
    #[arg(long)]
    pub reason: String,
    /// For mark-paid: the external payment's reference.
    #[arg(long)]
    pub reference: Option<String>,
    /// Show what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long = "as", value_name = "NAME")]
    pub operator: Option<String>,
    #[arg(long)]
    pub json: bool,
}

/// `payouts payouts bulk ACTION --filter ... [--dry-run]`. Exit 4 when any payout was
/// refused.
pub async fn bulk(store: &Store, args: BulkArgs) -> Result<i32> {
    let action = match args.action.as_str() {
        "retry" => Action::Retry,
        "cancel" => Action::Cancel,
        "release-hold" => Action::ReleaseHold,
        _ => Action::MarkPaid {
            reference: args.reference.clone().unwrap_or_default(),
        },
    };
    let filter = PayoutFilter {
        rail: args.rail.as_deref().map(str::parse).transpose()?,
        status: args
            .status
            .as_deref()
            .map(|s| {
                PayoutStatus::from_code(s)
                    .ok_or_else(|| anyhow::anyhow!("--status {s:?} is not a payout status"))
            })
            .transpose()?,
        reason: args.error_contains.clone(),
        older_than: args
            .older_than_hours
            .map(|h| std::time::Duration::from_secs(h * 3600)),
        account: args.account.as_deref().map(AccountId::parse).transpose()?,
    };
    let request = ActionRequest {
        action,
        reason: args.reason.clone(),
        actor: args.operator.clone().unwrap_or_else(default_operator),
    };
    let report = match store.bulk_act(&filter, &request, args.dry_run).await {
        Ok(report) => report,
        Err(StoreError::Operator(refusal)) => return refused(&refusal),
        Err(e) => return Err(e.into()),
    };
    if args.json {
        print_json(&report)?;
    } else {
        let verb = if report.dry_run { "would be" } else { "was" };
        for r in &report.results {
            match (&r.acted, &r.refused) {
                (Some(a), _) => outln!("{}: {verb} {} -> {}", r.payout_id, a.from, a.to),
                (None, Some(why)) => outln!("{}: refused: {why}", r.payout_id),
                (None, None) => {}
            }
        }
        outln!(
            "{} payout(s) matched{}{}",
            report.matched,
            if report.truncated {
                "; more match: run it again for the rest"
            } else {
                ""
            },
            if report.dry_run {
                "; dry run: nothing changed"
            } else {
                ""
            }
        );
    }
    let any_refused = report.results.iter().any(|r| r.refused.is_some());
    Ok(if any_refused { 4 } else { 0 })
}
