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

use super::accrual::{Maturing, maturing};
use super::balances::{BookSums, assess};
use super::book_balances::{BookKey, chunk_after};
use super::{
    PACKED_READS, Store, StoreError, StoreResult, WriteLock, from_millis, hex_text, packed,
    parse_stored, to_millis,
};
use crate::domain::cooling_off::held_until;
use crate::domain::ids::{AccountId, PayoutId, ProgramId, Rail};
use crate::domain::money::{Currency, Money};
use crate::domain::payout_run::{
    Method, RunPeriod, RunProblem, RunReport, Skip, choose_method, run_key,
};
use crate::domain::withdrawal::RunPayout;
use crate::storage::sums::{join, wide_sum};

/// Payee balances decided (and their payouts written) per chunk of a run.
const RUN_CHUNK: i64 = 100_000;

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
        self.run_payouts_in_chunks(period, dry_run, RUN_CHUNK).await
    }

    async fn run_payouts_in_chunks(
        &self,
        period: &RunPeriod,
        dry_run: bool,
        chunk: i64,
    ) -> StoreResult<RunReport> {
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

        // Payee balances in key order, a chunk at a time: each chunk's spend, hosting and
        // payout methods are read for its holders alone, and its payouts written before the next
        // chunk is read, so memory stays flat whatever the payee count. One transaction still
        // holds the whole run, so the period's payouts appear all at once or not at all.
        for statement in super::RUN_PREPARE {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        let mut report = RunReport::new(period.clone(), dry_run);
        let mut after: BookKey = Default::default();
        loop {
            let rows = chunk_after(&mut tx, &after, chunk).await?;
            let (Some((first, _)), Some((last, _))) = (rows.first(), rows.last()) else {
                break;
            };
            let payees = self.payees(&mut tx, &first.0, &last.0).await?;
            after = last.clone();
            let planned = self.plan_chunk(&payees, rows, &mut report);
            if !dry_run {
                report.held += self.create_payouts(&mut tx, period, &planned).await?;
                report.created += u64::try_from(planned.len()).unwrap_or(u64::MAX);
            }
        }
        if dry_run {
            tx.rollback().await?;
            return Ok(report);
        }

        let json = serde_json::to_string(&report)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode the run report: {e}")))?;
        sqlx::query(
            "INSERT INTO payout_runs (id, period, created_at, payouts, report) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(format!("run_{}", crate::clock::ulid()))
        .bind(period.as_str())
        .bind(to_millis(crate::clock::now()))
        .bind(i64::try_from(report.created).unwrap_or(i64::MAX))
        .bind(&json)
        .execute(&mut *tx)
        .await?;
        super::commit(tx).await?;
        Ok(report)
    }
}

/// What the run knows about every payee beside its books.
struct Payees {
    /// Lifetime spend net of refunds, per account then currency, in stored units (looked up
    /// by `&str` for every balance, so keyed by account alone).
    spend: HashMap<String, Vec<(String, i128)>>,
    hosted: HashSet<String>,
    methods: HashMap<String, Vec<Method>>,
    /// Cashable parts still in their program's holding period, by holder and program.
    maturing: Maturing,
}

/// What the run does with one payee balance.
enum Decision {
    /// A balance in a program that pays only credit: not a payee.
    NotAPayee,
    Skip(Skip),
    Pay(Box<Planned>),
}

impl Store {
    /// Decides one chunk of payee balances into `report`; returns the payouts to create.
    /// One payee's figures never fail the run for the others: whatever cannot be computed is
    /// skipped, with the payee and the reason in the report.
    fn plan_chunk(
        &self,
        payees: &Payees,
        rows: Vec<(BookKey, BookSums)>,
        report: &mut RunReport,
    ) -> Vec<Planned> {
        let mut planned = Vec::new();
        for ((holder, program, currency), sums) in rows {
            let decision = self.plan(payees, &holder, &program, &currency, sums);
            if !matches!(decision, Ok(Decision::NotAPayee)) {
                report.considered += 1;
            }
            let problem = |reason: String| RunProblem {
                account: holder.clone(),
                program: program.clone(),
                currency: currency.clone(),
                reason,
            };
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
        planned
    }

    /// Spend, hosting and payout methods of the payees whose ids lie in `first..=last`:
    /// three set-based queries over index ranges.
    async fn payees(&self, tx: &mut Tx, first: &str, last: &str) -> StoreResult<Payees> {
        let spend: Vec<(String, String, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT u.account_id, u.currency, {} \
             FROM usage u \
             WHERE u.account_id BETWEEN $1 AND $2 AND u.account_id IN \
                 (SELECT holder FROM book_balances WHERE holder BETWEEN $1 AND $2) \
             GROUP BY u.account_id, u.currency",
            wide_sum(
                "u.units - COALESCE((SELECT SUM(f.units) FROM refunds f WHERE f.usage_id = u.id), 0)"
            )
        )))
        .bind(first)
        .bind(last)
        .fetch_all(&mut **tx)
        .await?;
        let mut by_account: HashMap<String, Vec<(String, i128)>> = HashMap::new();
        for (account, currency, high, low) in spend {
            by_account
                .entry(account)
                .or_default()
                .push((currency, join(high, low)));
        }
        let hosted: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM accounts WHERE hosted_machines <> 0 AND id BETWEEN $1 AND $2",
        )
        .bind(first)
        .bind(last)
        .fetch_all(&mut **tx)
        .await?;
        let now = crate::clock::now();
        let cooling_off = self.safeguards.method_cooling_off;
        let mut methods: HashMap<String, Vec<Method>> = HashMap::new();
        for (account, rail, destination, auto, changed_at) in method_rows(tx, first, last).await? {
            methods.entry(account).or_default().push(Method {
                rail: parse_stored("rail", &rail)?,
                destination,
                auto_payout: auto != 0,
                cooling_off: held_until(changed_at.map(from_millis), cooling_off, now).is_some(),
            });
        }
        // Only where a program holds commissions: one more pass, over the window's spend.
        let maturing = if self.programs().iter().any(|p| p.cash_out.hold_days > 0) {
            let holders: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT holder FROM book_balances WHERE holder BETWEEN $1 AND $2",
            )
            .bind(first)
            .bind(last)
            .fetch_all(&mut **tx)
            .await?;
            maturing(tx, self.programs(), &holders, now).await?
        } else {
            Maturing::new()
        };
        Ok(Payees {
            spend: by_account,
            hosted: hosted.into_iter().collect(),
            methods,
            maturing,
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
        let spent_by_currency = payees.spend.get(holder);
        let spent = spent_by_currency
            .and_then(|all| all.iter().find(|(c, _)| c == currency))
            .map_or(0, |(_, units)| *units);
        let shares = payees
            .maturing
            .get(&(holder.to_string(), program_id.to_string()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let (balance, verdict) = assess(
            self.programs(),
            program.clone(),
            currency_code,
            sums,
            shares,
            Money::from_total_units(spent, currency_code)?,
            spent_by_currency.is_some(),
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
            id: PayoutId::from_ulid(crate::clock::ulid()),
            account: parse_stored("account id", holder)?,
            program,
            rail: method.rail,
            destination: method.destination.clone(),
            amount: balance.payable_now,
            available: balance.available,
        })))
    }
}

/// A payout method as stored: account, rail, destination, auto payout, changed at.
type MethodRow = (String, String, String, i64, Option<i64>);

/// The payout methods of the accounts in `first..=last` (packed where the backend packs bulk
/// reads: about one method per payee).
async fn method_rows(tx: &mut Tx, first: &str, last: &str) -> StoreResult<Vec<MethodRow>> {
    let range = "FROM payout_methods WHERE account_id BETWEEN $1 AND $2";
    if !PACKED_READS {
        let sql = format!("SELECT account_id, rail, destination, auto_payout, changed_at {range}");
        return Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(first)
            .bind(last)
            .fetch_all(&mut **tx)
            .await?);
    }
    let destination = hex_text("destination");
    let line = packed::line(&[
        "account_id",
        "rail",
        &destination,
        "auto_payout",
        "COALESCE(CAST(changed_at AS TEXT), '')",
    ]);
    let inner = format!("SELECT account_id, rail, {line} AS line {range}");
    let (rows, text): (i64, String) = sqlx::query_as(sqlx::AssertSqlSafe(packed::packed(
        &inner,
        "account_id, rail",
    )))
    .bind(first)
    .bind(last)
    .fetch_one(&mut **tx)
    .await?;
    let mut out = Vec::with_capacity(usize::try_from(rows).unwrap_or(0));
    for row in packed::unpack::<5>(&text) {
        let [account, rail, destination, auto, changed_at] = row?;
        let changed_at = match changed_at {
            "" => None,
            at => Some(packed::int(at)?),
        };
        out.push((
            account.to_string(),
            rail.to_string(),
            packed::text_from_hex(destination)?,
            packed::int(auto)?,
            changed_at,
        ));
    }
    Ok(out)
}

/// The run's payouts, through the one writer of new payouts.
impl Store {
    /// Writes a chunk's payouts, each held where a review or tax rule says so; returns how
    /// many are held.
    async fn create_payouts(
        &self,
        tx: &mut Tx,
        period: &RunPeriod,
        planned: &[Planned],
    ) -> StoreResult<u64> {
        let mut payouts: Vec<_> = planned
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
        self.screen(tx, &mut payouts).await?;
        super::new_payouts::insert_payouts(tx, &payouts).await?;
        let held = payouts.iter().filter(|p| !p.flags.is_empty()).count();
        Ok(u64::try_from(held).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    //! A run walks payee balances in chunks; wherever the chunks fall (inside one holder's
    //! balances too), it decides and creates exactly what one pass over every payee would.
    use std::sync::Arc;

    use super::super::ledger::{TxnMeta, insert_transactions};
    use super::*;
    use crate::domain::ledger::{Book, TransactionDraft, TransactionKind, TransactionStatus};
    use crate::domain::program::ProgramSet;

    /// Units per cent (amounts are stored at 10 decimal places).
    const CENT: i64 = 100_000_000;

    /// Seven payees of the Vast program: p0..p4 earned $20 in USD (p1 has no payout method,
    /// p2 turned automatic payouts off), p5 earned half a cent, and p3 also earned $15 in EUR,
    /// so one holder has two balances a chunk boundary can split.
    async fn seed(store: &Store) {
        let mut tx = store.begin_write(WriteLock::Accrual).await.unwrap();
        let earned = [
            (0, Currency::Usd, 2000 * CENT),
            (1, Currency::Usd, 2000 * CENT),
            (2, Currency::Usd, 2000 * CENT),
            (3, Currency::Usd, 2000 * CENT),
            (3, Currency::Eur, 1500 * CENT),
            (4, Currency::Usd, 2000 * CENT),
            (5, Currency::Usd, CENT / 2),
        ];
        for (n, (who, currency, units)) in earned.into_iter().enumerate() {
            let account = AccountId::parse(&format!("p{who}")).unwrap();
            let program = ProgramId::parse("vast").unwrap();
            let txn = TransactionDraft::new(TransactionKind::Accrual, TransactionStatus::Posted)
                .transfer(
                    Book::CommissionExpense {
                        program: program.clone(),
                    },
                    Book::ReferrerCashable { account, program },
                    Money::from_units(units, currency),
                )
                .finish()
                .unwrap();
            let meta = TxnMeta {
                id: format!("lt_seed{n}"),
                source_id: None,
                referral_id: None,
                payout_id: None,
                stream: None,
                subject: None,
                note: None,
            };
            insert_transactions(&mut tx, &[(meta, txn)]).await.unwrap();
        }
        for who in 0..6 {
            sqlx::query(
                "INSERT INTO accounts (id, created_at, email, email_normalized, content_hash) \
                 VALUES ($1, 0, $2, $2, 'seed')",
            )
            .bind(format!("p{who}"))
            .bind(format!("p{who}@example.com"))
            .execute(&mut *tx)
            .await
            .unwrap();
            if who == 1 {
                continue;
            }
            sqlx::query(
                "INSERT INTO payout_methods \
                   (account_id, rail, destination, content_hash, updated_at, auto_payout) \
                 VALUES ($1, 'stripe', $2, 'seed', 0, $3)",
            )
            .bind(format!("p{who}"))
            // A tab, a newline and a non-ASCII letter: packed reads carry any text.
            .bind(format!("acct_1seed{who}\t\nü"))
            .bind(i64::from(who != 2))
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn chunks_decide_and_create_what_one_pass_would() {
        let programs = ProgramSet::load(&["vast".into()], &|_| None).unwrap();
        let (store, _guard) = super::super::super::test_store_with(Arc::new(programs)).await;
        seed(&store).await;
        let period = RunPeriod::parse("2026-12").unwrap();

        let whole = store
            .run_payouts_in_chunks(&period, true, 1_000)
            .await
            .unwrap();
        // p0, p3 (in USD and in EUR) and p4 are paid; p1 has no method, p2 pays by hand, p5
        // is under the minimum.
        assert_eq!(whole.eligible, 4, "{whole:?}");
        assert_eq!(whole.considered, 7, "{whole:?}");
        for chunk in 1..=3 {
            let chunked = store
                .run_payouts_in_chunks(&period, true, chunk)
                .await
                .unwrap();
            assert_eq!(chunked, whole, "chunks of {chunk}");
        }

        let run = store
            .run_payouts_in_chunks(&period, false, 2)
            .await
            .unwrap();
        assert_eq!(run.created, 4);
        let payouts: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT account_id, currency, CAST(units AS BIGINT) FROM payouts \
             ORDER BY account_id, currency",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        let usd = |who: &str| (who.to_string(), "USD".to_string(), 2000 * CENT);
        let eur = ("p3".to_string(), "EUR".to_string(), 1500 * CENT);
        assert_eq!(payouts, [usd("p0"), eur, usd("p3"), usd("p4")]);
        let destination: String =
            sqlx::query_scalar("SELECT destination FROM payouts WHERE account_id = 'p4'")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(destination, "acct_1seed4\t\nü");
        let again = store
            .run_payouts_in_chunks(&period, false, 1)
            .await
            .unwrap();
        assert!(again.already_ran);
        assert_eq!(again.created, 4);
    }
}
