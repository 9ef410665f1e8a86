//! `balance.payable`: the worker looks again at accounts whose cash-out standing may have
//! changed (an accrual, a payout made, paid, failed or returned) and reports each program
//! balance that became payable. A mark remembers what was reported, so a balance that stays
//! payable is reported once, and again only after it stopped being payable.

use serde_json::json;

use super::balances::load_balance;
use super::events::{NewEvent, record_events};
use super::{Store, StoreError, StoreResult, Tx, WriteLock, parse_stored, to_millis};
use crate::domain::events::{EventType, Standing, standing};
use crate::domain::ids::AccountId;
use crate::storage::balance_views::{AccountBalance, ProgramBalance};

impl Store {
    /// Looks at up to `limit` accounts waiting for a look; returns how many it looked at.
    /// The balance is read without a write lock (it is only a read); a write happens only
    /// where the standing changed, and the mark's insert decides, so two workers looking at
    /// once report it once.
    pub async fn check_balances(&self, limit: i64) -> StoreResult<u32> {
        // `since` is when a look is due: now for a posting's, later for money still maturing.
        let due: Vec<(String, i64)> = sqlx::query_as(
            "SELECT account_id, since FROM balance_checks WHERE since <= $2 \
             ORDER BY since, account_id LIMIT $1",
        )
        .bind(limit)
        .bind(to_millis(crate::clock::now()))
        .fetch_all(&self.pool)
        .await?;
        let mut looked = 0;
        for (account, since) in due {
            let id: AccountId = parse_stored("account id", &account)?;
            let mut conn = self.pool.acquire().await?;
            let balance = match load_balance(&mut conn, &self.programs, &id).await {
                Ok(balance) => Some(balance),
                Err(StoreError::UnknownAccount(_)) => None,
                Err(e) => return Err(e),
            };
            let marks: Vec<(String, String)> =
                sqlx::query_as("SELECT program, currency FROM payable_marks WHERE account_id = $1")
                    .bind(&account)
                    .fetch_all(&mut *conn)
                    .await?;
            drop(conn);
            let changes = balance
                .as_ref()
                .map(|b| changes(b, &marks))
                .unwrap_or_default();
            let mut tx = self.begin_write(WriteLock::Account(&account)).await?;
            apply(&mut tx, &account, &changes).await?;
            // A newer request (a later `since`) stays for the next look.
            sqlx::query("DELETE FROM balance_checks WHERE account_id = $1 AND since = $2")
                .bind(&account)
                .bind(since)
                .execute(&mut *tx)
                .await?;
            // Money still maturing becomes payable by time alone: look again when the next
            // part matures (an earlier look already asked for stays).
            let next = balance
                .as_ref()
                .and_then(|b| b.programs.iter().filter_map(|p| p.next_matures_at).min());
            if let Some(next) = next {
                sqlx::query(
                    "INSERT INTO balance_checks (account_id, since) VALUES ($1, $2) \
                     ON CONFLICT (account_id) DO UPDATE SET since = CASE \
                       WHEN excluded.since < balance_checks.since THEN excluded.since \
                       ELSE balance_checks.since END",
                )
                .bind(&account)
                .bind(to_millis(next))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            looked += 1;
        }
        Ok(looked)
    }

    /// Accounts waiting for a look at their cash-out standing now (not the looks booked for
    /// when money matures).
    pub async fn balance_checks_waiting(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM balance_checks WHERE since <= $1",
        )
        .bind(to_millis(crate::clock::now()))
        .fetch_one(&self.pool)
        .await?)
    }
}

/// What changed for each program balance of `balance`, given the marks it had.
fn changes<'b>(
    balance: &'b AccountBalance,
    marks: &[(String, String)],
) -> Vec<(Standing, &'b ProgramBalance)> {
    balance
        .programs
        .iter()
        .map(|p| {
            let key = (p.program.to_string(), p.currency.code().to_string());
            (standing(marks.contains(&key), &p.payable_now), p)
        })
        .filter(|(s, _)| *s != Standing::Unchanged)
        .collect()
}

async fn apply(
    tx: &mut Tx,
    account: &str,
    changes: &[(Standing, &ProgramBalance)],
) -> StoreResult<()> {
    let mut events = Vec::new();
    for (change, p) in changes {
        let (program, currency) = (p.program.as_str(), p.currency.code());
        if *change == Standing::NoLongerPayable {
            sqlx::query(
                "DELETE FROM payable_marks WHERE account_id = $1 AND program = $2 AND currency = $3",
            )
            .bind(account)
            .bind(program)
            .bind(currency)
            .execute(&mut **tx)
            .await?;
            continue;
        }
        let marked = sqlx::query(
            "INSERT INTO payable_marks (account_id, program, currency, since) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, program, currency) DO NOTHING",
        )
        .bind(account)
        .bind(program)
        .bind(currency)
        .bind(to_millis(crate::clock::now()))
        .execute(&mut **tx)
        .await?;
        if marked.rows_affected() == 1 {
            let data = json!({
                "account": account,
                "program": p.program,
                "payable_now": p.payable_now,
                "available": p.available,
                "rails": p.rails,
            });
            events.push(NewEvent::new(
                EventType::BalancePayable,
                account.to_string(),
                data,
            ));
        }
    }
    record_events(tx, &events).await
}

/// A new payout takes its amount out of what is payable: the next time the account can cash
/// out again (a later accrual, a failed payout's money back) is news again.
pub(crate) async fn forget_payable(tx: &mut Tx, keys: &[(&str, &str, &str)]) -> StoreResult<()> {
    for chunk in keys.chunks(super::BATCH_ROWS) {
        let mut q = sqlx::QueryBuilder::<super::Db>::new(
            "DELETE FROM payable_marks WHERE (account_id, program, currency) IN (",
        );
        let mut rows = q.separated(", ");
        for (account, program, currency) in chunk {
            rows.push("(");
            rows.push_bind_unseparated(*account);
            rows.push_unseparated(", ");
            rows.push_bind_unseparated(*program);
            rows.push_unseparated(", ");
            rows.push_bind_unseparated(*currency);
            rows.push_unseparated(")");
        }
        q.push(")");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}
