//! Scheduled payout runs: one set-based pass over every payee's books, then every payout of
//! the run (holds, payouts, first events, jobs) written in batches in the same transaction.
//!
//! A run is idempotent by its period: the `payout_runs` row (unique period) is written in the
//! transaction that creates the payouts, so a second run for the period, from this process or
//! another, creates nothing and returns the first run's report. Each payout's idempotency key
//! is also derived from the period, as a second guard. A dry run reads the same state and
//! writes nothing.

use std::collections::{HashMap, HashSet};

use super::Tx;
use chrono::Utc;

use super::balances::{BookRow, BookSums, assess, split_book_row};
use super::book_balances::stored_book_rows;
use super::{Store, StoreError, StoreResult, WriteLock, from_millis, parse_stored, to_millis};
use crate::domain::cooling_off::held_until;
use crate::domain::ids::{AccountId, PayoutId, ProgramId, Rail};
use crate::domain::money::{Currency, Money};
use crate::domain::payout_run::{
    Method, RunPeriod, RunProblem, RunReport, Skip, choose_method, run_key,
};
use crate::domain::withdrawal::RunPayout;
use crate::storage::sums::{join, wide_sum};

/// A payout the run will create.
struct Planned {
    id: PayoutId,
    account: AccountId,
    program: ProgramId,
    rail: Rail,
    destination: String,
    amount: Money,
    available: Money,
}

impl Store {
    /// The report of the run for `period`, if it ran.
    pub async fn run_report(&self, period: &RunPeriod) -> StoreResult<Option<RunReport>> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT report FROM payout_runs WHERE period = $1")
                .bind(period.as_str())
                .fetch_optional(&self.pool)
                .await?;
        stored
            .map(|report| {
                serde_json::from_str(&report).map_err(|e| {
                    StoreError::Corrupt(format!("stored report of run {}: {e}", period.as_str()))
                })
            })
            .transpose()
    }

    /// Runs (or, with `dry_run`, plans) the payouts of `period`.
    pub async fn run_payouts(&self, period: &RunPeriod, dry_run: bool) -> StoreResult<RunReport> {
        let mut tx = self.begin_write(WriteLock::Run).await?;
        let done: Option<String> =
            sqlx::query_scalar("SELECT report FROM payout_runs WHERE period = $1")
                .bind(period.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(report) = done {
            let mut report: RunReport = serde_json::from_str(&report).map_err(|e| {
                StoreError::Corrupt(format!("stored report of run {}: {e}", period.as_str()))
            })?;
            report.already_ran = true;
            report.dry_run = dry_run;
            return Ok(report);
        }

        // Every payee's maintained balances, spend, hosting and payout methods: four queries.
        let rows: Vec<BookRow> = sqlx::query_as(sqlx::AssertSqlSafe(stored_book_rows("")))
            .fetch_all(&mut *tx)
            .await?;
        let payees = self.payees(&mut tx).await?;

        // One payee's figures never fail the run for the others: whatever cannot be computed
        // is skipped, with the payee and the reason in the report.
        let mut report = RunReport::new(period.clone(), dry_run);
        let mut planned = Vec::new();
        for row in rows {
            let (holder, program, currency, sums) = split_book_row(row);
            let problem = |reason: String| RunProblem {
                account: holder.clone(),
                program: program.clone(),
                currency: currency.clone(),
                reason,
            };
            let decision = self.plan(&payees, &holder, &program, &currency, sums);
            if !matches!(decision, Ok(Decision::NotAPayee)) {
                report.considered += 1;
            }
            match decision {
                Ok(Decision::NotAPayee) => {}
                Ok(Decision::Skip(why)) => report.skip(why),
                Ok(Decision::Pay(plan)) => match report.pay(plan.rail, plan.amount) {
                    Ok(()) => planned.push(*plan),
                    Err(e) => report.cannot_compute(problem(e.to_string())),
                },
                Err(e) => report.cannot_compute(problem(e.to_string())),
            }
        }
        if dry_run {
            tx.rollback().await?;
            return Ok(report);
        }

        create_payouts(&mut tx, period, &planned).await?;
        report.created = u64::try_from(planned.len()).unwrap_or(u64::MAX);
        let json = serde_json::to_string(&report)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode the run report: {e}")))?;
        sqlx::query(
            "INSERT INTO payout_runs (id, period, created_at, payouts, report) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(format!("run_{}", ulid::Ulid::generate()))
        .bind(period.as_str())
        .bind(to_millis(Utc::now()))
        .bind(i64::try_from(planned.len()).unwrap_or(i64::MAX))
        .bind(&json)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(report)
    }
}

/// What the run knows about every payee beside its books.
struct Payees {
    /// Lifetime spend net of refunds, per (account, currency), in stored units.
    spend: HashMap<(String, String), i128>,
    rented: HashSet<String>,
    hosted: HashSet<String>,
    methods: HashMap<String, Vec<Method>>,
}

/// What the run does with one payee balance.
enum Decision {
    /// A balance in a program that pays only credit: not a payee.
    NotAPayee,
    Skip(Skip),
    Pay(Box<Planned>),
}

impl Store {
    /// Spend, hosting and payout methods of every payee: three set-based queries.
    async fn payees(&self, tx: &mut Tx) -> StoreResult<Payees> {
        let spend: Vec<(String, String, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT u.account_id, u.currency, {} \
             FROM usage u \
             WHERE u.account_id IN (SELECT DISTINCT holder FROM ledger_postings WHERE holder IS NOT NULL) \
             GROUP BY u.account_id, u.currency",
            wide_sum(
                "u.units - COALESCE((SELECT SUM(f.units) FROM refunds f WHERE f.usage_id = u.id), 0)"
            )
        )))
        .fetch_all(&mut **tx)
        .await?;
        let spend: HashMap<(String, String), i128> = spend
            .into_iter()
            .map(|(a, c, high, low)| ((a, c), join(high, low)))
            .collect();
        let rented = spend.keys().map(|(a, _)| a.clone()).collect();
        let hosted: Vec<String> =
            sqlx::query_scalar("SELECT id FROM accounts WHERE hosted_machines <> 0")
                .fetch_all(&mut **tx)
                .await?;
        let method_rows: Vec<(String, String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT account_id, rail, destination, auto_payout, changed_at FROM payout_methods",
        )
        .fetch_all(&mut **tx)
        .await?;
        let now = Utc::now();
        let cooling_off = self.safeguards.method_cooling_off;
        let mut methods: HashMap<String, Vec<Method>> = HashMap::new();
        for (account, rail, destination, auto, changed_at) in method_rows {
            methods.entry(account).or_default().push(Method {
                rail: parse_stored("rail", &rail)?,
                destination,
                auto_payout: auto != 0,
                cooling_off: held_until(changed_at.map(from_millis), cooling_off, now).is_some(),
            });
        }
        Ok(Payees {
            spend,
            rented,
            hosted: hosted.into_iter().collect(),
            methods,
        })
    }

    /// Decides one payee balance. An error means its figures cannot be computed (or its
    /// payable amount cannot move as one payout): the caller skips it with the reason.
    fn plan(
        &self,
        payees: &Payees,
        holder: &str,
        program_id: &str,
        currency: &str,
        sums: BookSums,
    ) -> StoreResult<Decision> {
        let program: ProgramId = parse_stored("program", program_id)?;
        let currency_code: Currency = parse_stored("currency", currency)?;
        // Programs that pay only credits have no payees.
        if self
            .programs()
            .get(&program)
            .is_some_and(|p| p.cash_out.cashable_fraction.is_zero())
        {
            return Ok(Decision::NotAPayee);
        }
        let spent = payees
            .spend
            .get(&(holder.to_string(), currency.to_string()))
            .copied()
            .unwrap_or(0);
        let (balance, verdict) = assess(
            self.programs(),
            program.clone(),
            currency_code,
            sums,
            Money::from_total_units(spent, currency_code)?,
            payees.rented.contains(holder),
            payees.hosted.contains(holder),
        )?;
        let Some(verdict) = verdict else {
            return Ok(Decision::Skip(Skip::NotConfigured));
        };
        if let Err(why) = verdict {
            return Ok(Decision::Skip(Skip::from_ineligible(&why)));
        }
        let Some(terms) = self.programs().get(&program) else {
            return Ok(Decision::Skip(Skip::NotConfigured));
        };
        let own = payees.methods.get(holder).map(Vec::as_slice).unwrap_or(&[]);
        let method = match choose_method(terms, own) {
            Ok(m) => m,
            Err(why) => return Ok(Decision::Skip(why)),
        };
        // One payout moves at most the per-amount cap.
        balance.payable_now.check_cap()?;
        Ok(Decision::Pay(Box::new(Planned {
            id: PayoutId::generate(),
            account: parse_stored("account id", holder)?,
            program,
            rail: method.rail,
            destination: method.destination.clone(),
            amount: balance.payable_now,
            available: balance.available,
        })))
    }
}

/// The run's payouts, through the one writer of new payouts.
async fn create_payouts(tx: &mut Tx, period: &RunPeriod, planned: &[Planned]) -> StoreResult<()> {
    let payouts: Vec<_> = planned
        .iter()
        .map(|p| {
            RunPayout {
                period: period.as_str(),
                account: p.account.clone(),
                program: p.program.clone(),
                rail: p.rail,
                destination: p.destination.clone(),
                amount: p.amount,
                available: p.available,
                idempotency_key: run_key(period, &p.program, p.amount.currency()),
            }
            .into_new(p.id.clone())
        })
        .collect();
    super::new_payouts::insert_payouts(tx, &payouts).await
}
