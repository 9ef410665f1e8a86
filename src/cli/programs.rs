//! Commands about programs: the loaded terms, affiliate opt-ins, the per-template report, and
//! choosing which program a withdrawal draws on.

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use payouts::domain::ids::{AccountId, ProgramId, Rail};
use payouts::domain::money::Currency;
use payouts::domain::program::ProgramSet;
use payouts::storage::{AccountBalance, Store};

use super::{print_json, render};

#[derive(Subcommand)]
pub enum AffiliateCommand {
    /// Opt ACCOUNT into an affiliate program: cash through PartnerStack instead of credits,
    /// from now on. Needs the configured number of paying referred users. Permanent.
    OptIn {
        account: String,
        /// The affiliate program; by default the only one configured.
        #[arg(long)]
        program: Option<String>,
        /// When the choice was made (RFC 3339); default now.
        #[arg(long)]
        at: Option<DateTime<Utc>>,
        #[arg(long)]
        json: bool,
    },
}

pub async fn affiliate(store: &Store, command: AffiliateCommand) -> Result<i32> {
    let AffiliateCommand::OptIn {
        account,
        program,
        at,
        json,
    } = command;
    let account = AccountId::parse(&account)?;
    let program = match program {
        Some(p) => ProgramId::parse(&p)?,
        None => {
            let affiliates: Vec<_> = store
                .programs()
                .iter()
                .filter(|p| p.affiliate().is_some())
                .collect();
            match affiliates.as_slice() {
                [one] => one.id.clone(),
                [] => bail!(
                    "no affiliate program is configured ({})",
                    store.programs().ids()
                ),
                _ => bail!(
                    "several affiliate programs are configured; pass --program ({})",
                    affiliates
                        .iter()
                        .map(|p| p.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    };
    let enrollment = store
        .opt_in(&program, &account, at.unwrap_or_else(Utc::now))
        .await?;
    if json {
        print_json(&enrollment)?;
    } else {
        outln!(
            "{} {account} into {program} at {} ({} paying referred users); the choice is permanent",
            if enrollment.replayed {
                "already opted"
            } else {
                "opted"
            },
            enrollment.opted_in_at.to_rfc3339(),
            enrollment.paying_referrals
        );
    }
    Ok(0)
}

pub fn show_programs(store: &Store, json: bool) -> Result<i32> {
    if json {
        print_json(store.programs())?;
    } else {
        out!("{}", render::programs(store.programs()));
    }
    Ok(0)
}

pub async fn templates(store: &Store, json: bool) -> Result<i32> {
    let report = store.template_report().await?;
    if json {
        print_json(&report)?;
    } else {
        out!("{}", render::templates(&report));
    }
    Ok(0)
}

/// The rail a withdrawal pays through: the one asked for; else the program's only rail; else
/// the only one of the program's rails the account has a payout method for.
pub fn choose_rail(
    programs: &ProgramSet,
    program: &ProgramId,
    methods: &[Rail],
    asked: Option<&str>,
) -> Result<Rail> {
    if let Some(rail) = asked {
        return Ok(rail.parse()?);
    }
    let Some(terms) = programs.get(program) else {
        bail!("program {program} is not loaded")
    };
    let rails = &terms.cash_out.rails;
    let set_up: Vec<Rail> = rails
        .iter()
        .copied()
        .filter(|r| methods.contains(r))
        .collect();
    match (rails.as_slice(), set_up.as_slice()) {
        ([], _) => bail!("program {program} pays through no rail: it pays credits only"),
        ([only], _) | (_, [only]) => Ok(*only),
        _ => {
            let names: Vec<&str> = rails.iter().map(|r| r.as_str()).collect();
            bail!(
                "program {program} pays through {}: choose one with --rail",
                names.join(", ")
            )
        }
    }
}

/// The program a withdrawal draws on: the one asked for, or the only one with money payable
/// now. Credits that cannot leave as cash never make a program the default.
pub fn choose_program(
    balance: &AccountBalance,
    asked: Option<&str>,
    currency: Currency,
) -> Result<ProgramId> {
    if let Some(p) = asked {
        return Ok(ProgramId::parse(p)?);
    }
    let payable: Vec<_> = balance
        .programs
        .iter()
        .filter(|p| p.currency == currency && p.eligible && p.payable_now.is_positive())
        .collect();
    match payable.as_slice() {
        [one] => Ok(one.program.clone()),
        [] => {
            let why: Vec<String> = balance
                .programs
                .iter()
                .filter(|p| p.currency == currency)
                .map(|p| {
                    format!(
                        "{}: {}",
                        p.program,
                        p.reason.as_deref().unwrap_or("nothing payable")
                    )
                })
                .collect();
            if why.is_empty() {
                bail!("{} has no balance in {currency}", balance.account)
            }
            bail!(
                "{} has nothing payable in {currency} ({})",
                balance.account,
                why.join("; ")
            )
        }
        many => bail!(
            "{} has money payable in several programs; pass --program ({})",
            balance.account,
            many.iter()
                .map(|p| format!("{} {}", p.program, p.payable_now))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
