//! `payouts payouts retry|cancel|mark-paid|release-hold ID --reason TEXT`: an operator's
//! action on one payout. The safety rules are the domain's (`domain::operator`); a refusal
//! says why and what to do instead.

use anyhow::Result;
use clap::Args;
use payouts::domain::ids::PayoutId;
use payouts::domain::operator::{Acted, Action, ActionRequest};
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
        Err(StoreError::Operator(refusal)) => {
            eprintln!("refused: {refusal}");
            Ok(4)
        }
        Err(e) => Err(e.into()),
    }
}

fn describe(acted: &Acted) -> String {
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

fn default_operator() -> String {
    std::env::var("PAYOUTS_OPERATOR")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| format!("cli:{}", std::env::var("USER").unwrap_or_default()))
}
