//! `payouts review`: the payouts held for review or a tax form, and an operator's decision.

use anyhow::Result;
use clap::{Args, Subcommand};
use payouts::domain::operator::Action;
use payouts::storage::Store;

use super::operate::{ActArgs, act};
use super::print_json;

#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// The held payouts, oldest first, each with the rules that hold it and their evidence.
    List {
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Approve a held payout: its review flags are cleared and it is sent (a missing tax
    /// form still holds it until the form arrives).
    Approve(ActArgs),
    /// Reject a held payout: its hold is voided (the amount is the payee's again, unless
    /// `--clawback` takes back the commissions behind it).
    Reject(RejectArgs),
}

#[derive(Debug, Args)]
pub struct RejectArgs {
    #[command(flatten)]
    pub act: ActArgs,
    /// Also claw the amount back from the payee's balance (farming, fraud).
    #[arg(long)]
    pub clawback: bool,
}

pub async fn run(store: &Store, command: ReviewCommand) -> Result<i32> {
    match command {
        ReviewCommand::List { limit, json } => {
            let held = store.review_queue(limit).await?;
            if json {
                print_json(&held)?;
                return Ok(0);
            }
            if held.is_empty() {
                outln!("no payout is held");
            }
            for h in &held {
                let p = &h.payout;
                outln!(
                    "{} {} {} {} via {} to {} (since {})",
                    p.id,
                    p.account,
                    p.program,
                    p.amount,
                    p.rail,
                    p.destination,
                    p.created_at.format("%Y-%m-%d %H:%M UTC")
                );
                for f in &h.flags {
                    outln!("  {}: {}", f.rule, f.evidence);
                }
            }
            Ok(0)
        }
        ReviewCommand::Approve(args) => act(store, args, Action::Approve).await,
        ReviewCommand::Reject(args) => {
            let action = Action::Reject {
                clawback: args.clawback,
            };
            act(store, args.act, action).await
        }
    }
}
