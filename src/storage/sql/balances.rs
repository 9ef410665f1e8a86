//! Balances, read from the maintained totals (`book_balances`), with the eligibility verdict.

pub(crate) use crate::storage::balance_views::*;
use std::collections::BTreeMap;

use super::Conn;
use crate::storage::sums::{join, wide_sum};

use super::accrual::maturing;
use super::affiliate::paying_referrals;
use super::{StoreError, StoreResult, from_millis, parse_stored};
use crate::domain::ids::{AccountId, ProgramId};
use crate::domain::money::{Currency, Money};
use crate::domain::program::{LateDisqualification, ProgramSet};
use crate::domain::referral::Disqualification;

pub async fn load_balance(
    conn: &mut Conn,
    programs: &ProgramSet,
    account: &AccountId,
) -> StoreResult<AccountBalance> {
    let standing = load_standing(conn, programs, account).await?;
    let non_earning_referrals = non_earning_referrals(conn, programs, account).await?;
    let affiliate = affiliate_statuses(conn, programs, account).await?;
    let held_payouts = super::review::held_notes(conn, account).await?;
    Ok(AccountBalance {
        account: account.clone(),
        has_rented: standing.has_rented,
        hosted_machines: standing.hosted_machines,
        programs: standing.programs,
        affiliate,
        non_earning_referrals,
        held_payouts,
    })
}

/// What a withdrawal decides by: the account's balance and verdict per program and currency,
/// without the notes a person reads beside them.
pub struct AccountStanding {
    pub has_rented: bool,
    pub hosted_machines: bool,
    pub programs: Vec<ProgramBalance>,
}

impl AccountStanding {
    pub fn program(&self, program: &str, currency: Currency) -> Option<&ProgramBalance> {
        program_in(&self.programs, program, currency)
    }
}

pub async fn load_standing(
    conn: &mut Conn,
    programs: &ProgramSet,
    account: &AccountId,
) -> StoreResult<AccountStanding> {
    let known: Option<i64> =
        sqlx::query_scalar("SELECT hosted_machines FROM accounts WHERE id = $1")
            .bind(account.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    let rows: Vec<BookRow> = sqlx::query_as(sqlx::AssertSqlSafe(
        super::book_balances::stored_book_rows("AND holder = $1"),
    ))
    .bind(account.as_str())
    .fetch_all(&mut *conn)
    .await?;
    if known.is_none() && rows.is_empty() {
        return Err(StoreError::UnknownAccount(account.to_string()));
    }
    let spend = lifetime_spend(conn, account).await?;
    let has_rented = !spend.is_empty();
    let hosted_machines = known.unwrap_or(0) != 0;
    let holder = [account.to_string()];
    let maturing = maturing(conn, programs, &holder, crate::clock::now()).await?;

    let mut balances = Vec::with_capacity(rows.len());
    for row in rows {
        let (_, program, currency, sums) = split_book_row(row);
        let program: ProgramId = parse_stored("program", &program)?;
        let currency: Currency = parse_stored("currency", &currency)?;
        let lifetime_spend = spend
            .get(&currency)
            .copied()
            .unwrap_or(Money::zero(currency));
        let shares = maturing
            .get(&(holder[0].clone(), program.to_string()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let (balance, _) = assess(
            programs,
            program,
            currency,
            sums,
            shares,
            lifetime_spend,
            has_rented,
            hosted_machines,
        )?;
        balances.push(balance);
    }
    Ok(AccountStanding {
        has_rented,
        hosted_machines,
        programs: balances,
    })
}

/// The account's spend per currency over its lifetime, net of refunds.
async fn lifetime_spend(
    conn: &mut Conn,
    account: &AccountId,
) -> StoreResult<BTreeMap<Currency, Money>> {
    // Net of refunds per charge (a charge's refunds never exceed it), then summed exactly.
    // Each charge's refunds through their index: a join to refunds grouped by charge would
    // aggregate every refund ever made on every read.
    let spend_rows: Vec<(String, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT u.currency, {} FROM usage u WHERE u.account_id = $1 GROUP BY u.currency",
        wide_sum(
            "u.units - COALESCE((SELECT SUM(f.units) FROM refunds f WHERE f.usage_id = u.id), 0)"
        )
    )))
    .bind(account.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let mut spend: BTreeMap<Currency, Money> = BTreeMap::new();
    for (currency, high, low) in spend_rows {
        let currency: Currency = parse_stored("currency", &currency)?;
        spend.insert(
            currency,
            Money::from_total_units(join(high, low), currency)?,
        );
    }
    Ok(spend)
}

/// The account's referrals that do not (or no longer) earn, each with why in words.
async fn non_earning_referrals(
    conn: &mut Conn,
    programs: &ProgramSet,
    account: &AccountId,
) -> StoreResult<Vec<ReferralNote>> {
    let notes: Vec<ReferralRow> = sqlx::query_as(
        "SELECT program, referred_id, status, disqualification, template_id, disqualified_late_at \
         FROM referrals \
         WHERE referrer_id = $1 AND status <> 'qualified' ORDER BY referred_at, id",
    )
    .bind(account.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let mut non_earning_referrals = Vec::with_capacity(notes.len());
    for (program, referred, status, reason, template_id, late_at) in notes {
        let clawed_back = programs
            .get_str(&program)
            .and_then(|p| p.referral())
            .is_none_or(|t| t.late_disqualification == LateDisqualification::ClawBack);
        let reason = match (
            reason.as_deref().and_then(Disqualification::from_code),
            late_at,
        ) {
            (Some(d), Some(at)) => d.explain_late(from_millis(at), clawed_back),
            (Some(d), None) => d.explain().to_string(),
            (None, _) => {
                "waiting for both accounts' records before the referral can be judged".into()
            }
        };
        non_earning_referrals.push(ReferralNote {
            program: parse_stored("program", &program)?,
            referred,
            status,
            template_id,
            reason,
        });
    }
    Ok(non_earning_referrals)
}

/// The affiliate upgrades of every referral program this account refers in.
async fn affiliate_statuses(
    conn: &mut Conn,
    programs: &ProgramSet,
    account: &AccountId,
) -> StoreResult<Vec<AffiliateStatus>> {
    let referring: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT program FROM referrals WHERE referrer_id = $1")
            .bind(account.as_str())
            .fetch_all(&mut *conn)
            .await?;
    let mut out = Vec::new();
    for referral_program in referring {
        let Some(affiliate) = programs
            .get_str(&referral_program)
            .and_then(|p| programs.affiliate_of(&p.id))
        else {
            continue;
        };
        let Some(terms) = affiliate.affiliate() else {
            continue;
        };
        let enrolled: Option<(i64, i64)> = sqlx::query_as(
            "SELECT opted_in_at, paying_referrals FROM affiliate_enrollments              WHERE program = $1 AND account_id = $2",
        )
        .bind(affiliate.id.as_str())
        .bind(account.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        let now = crate::clock::now();
        let count = paying_referrals(conn, &referral_program, account.as_str(), now).await?;
        let required = terms.min_paying_referrals;
        let (opted_in_at, can_opt_in, note) = match enrolled {
            Some((at, _)) => {
                let at = from_millis(at);
                (
                    Some(at),
                    false,
                    format!(
                        "opted in at {}: spend within each referred user's window earns {} cash (permanent)",
                        at.to_rfc3339(),
                        affiliate.id
                    ),
                )
            }
            None if count >= required => (
                None,
                true,
                format!(
                    "may opt in: {count} paying referred users (needs {required}); `payouts affiliate opt-in {account}`; the choice is permanent"
                ),
            ),
            None => (
                None,
                false,
                format!("cannot opt in yet: {count} paying referred users, needs {required}"),
            ),
        };
        out.push(AffiliateStatus {
            program: affiliate.id.clone(),
            referral_program: parse_stored("program", &referral_program)?,
            paying_referrals: count,
            required,
            opted_in_at,
            can_opt_in,
            note,
        });
    }
    Ok(out)
}

/// program, referred, status, disqualification, template_id, disqualified_late_at.
type ReferralRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
);

impl super::Store {
    /// An account's balance under the loaded programs.
    pub async fn balance(
        &self,
        account: &crate::domain::ids::AccountId,
    ) -> StoreResult<AccountBalance> {
        let mut conn = self.pool().acquire().await?;
        load_balance(&mut conn, self.programs(), account).await
    }

    /// Every account that referred someone, in id order.
    pub async fn referrers(&self) -> StoreResult<Vec<AccountId>> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT referrer_id FROM referrals ORDER BY referrer_id")
                .fetch_all(self.pool())
                .await?;
        ids.iter()
            .map(|id| parse_stored("account id", id))
            .collect()
    }
}
