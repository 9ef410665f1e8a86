//! `payouts withdraw`: one payee's withdrawal, with the program, rail and amount chosen the
//! way a payee would expect when they are left out.

use anyhow::{Result, bail};
use clap::Args;
use payouts::domain::ids::{AccountId, IdempotencyKey, Rail};
use payouts::domain::money::{Currency, Money};
use payouts::storage::Store;
use payouts::storage::payout_views::WithdrawalRequest;

use super::{print_json, programs};

// No doc comment: the `Withdraw` variant's is the command's help.
#[derive(Args)]
pub struct WithdrawArgs {
    pub account: String,
    /// Amount in the currency's major unit (e.g. 12.50), or "all" for everything payable.
    #[arg(long)]
    pub amount: String,
    /// The rail to pay through; by default the program's only rail, when it has one.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(Rail::ALL.map(Rail::as_str)))]
    pub rail: Option<String>,
    /// The program to cash out; by default the one program with money payable now.
    #[arg(long)]
    pub program: Option<String>,
    #[arg(long, default_value = "USD")]
    pub currency: String,
    /// Repeat a request safely: the same key returns the same payout.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(store: &Store, args: WithdrawArgs) -> Result<i32> {
    let json = args.json;
    let request = request(store, args).await?;
    let outcome = store.create_withdrawal(&request).await?;
    if json {
        print_json(&outcome)?;
    } else {
        outln!(
            "{} payout {} of {} to {} via {} ({})",
            if outcome.replayed {
                "existing"
            } else {
                "created"
            },
            outcome.payout.id,
            outcome.payout.amount,
            outcome.payout.destination,
            outcome.payout.rail,
            outcome.payout.status
        );
    }
    Ok(0)
}

/// The request the arguments mean: the program and rail chosen when left out, and "all"
/// resolved to everything payable now.
async fn request(store: &Store, args: WithdrawArgs) -> Result<WithdrawalRequest> {
    let WithdrawArgs {
        account,
        amount,
        rail,
        program,
        currency,
        idempotency_key,
        json: _,
    } = args;
    let account = AccountId::parse(&account)?;
    let currency: Currency = currency.parse()?;
    // A malformed amount is the caller's first problem; say so before anything else.
    let exact = if amount.trim().eq_ignore_ascii_case("all") {
        None
    } else {
        Some(Money::parse_payable(&amount, currency)?)
    };
    let balance = store.balance(&account).await?;
    let program = programs::choose_program(&balance, program.as_deref(), currency)?;
    let methods: Vec<Rail> = store
        .payout_methods(&account)
        .await?
        .iter()
        .map(|m| m.rail)
        .collect();
    let rail = programs::choose_rail(store.programs(), &program, &methods, rail.as_deref())?;
    let amount = match exact {
        Some(amount) => amount,
        None => match balance.program(program.as_str(), currency) {
            Some(p) if p.eligible && p.payable_now.is_positive() => p.payable_now,
            Some(p) => bail!(
                "{account} has nothing payable: {}",
                p.reason.as_deref().unwrap_or("nothing available")
            ),
            None => bail!("{account} has no {program} balance in {currency}"),
        },
    };
    Ok(WithdrawalRequest {
        account,
        program,
        rail,
        amount,
        idempotency_key: match idempotency_key {
            Some(k) => IdempotencyKey::parse(&k)?,
            None => IdempotencyKey::generate(),
        },
    })
}
