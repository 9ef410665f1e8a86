//! `balance.payable`: the worker looks again at accounts whose cash-out standing may have
//! changed (an accrual, a payout made, paid, failed or returned) and reports each program
//! balance that became payable. A mark remembers what was reported, so a balance that stays
//! payable is reported once, and again only after it stopped being payable.

use chrono::Utc;
use serde_json::json;

use super::balances::load_balance;
use super::events::{NewEvent, record_events};
use super::{Store, StoreError, StoreResult, Tx, WriteLock, parse_stored, to_millis};
use crate::domain::events::{EventType, Standing, standing};
use crate::domain::ids::AccountId;
use crate::storage::balance_views::AccountBalance;

impl Store {
    /// Looks at up to `limit` accounts waiting for a look; returns how many it looked at.
    pub async fn check_balances(&self, limit: i64) -> StoreResult<u32> {
        let due: Vec<(String, i64)> = sqlx::query_as(
            "SELECT account_id, since FROM balance_checks ORDER BY since, account_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut looked = 0;
        for (account, since) in due {
            let mut tx = self.begin_write(WriteLock::Account(&account)).await?;
            let id: AccountId = parse_stored("account id", &account)?;
            match load_balance(&mut tx, &self.programs, &id).await {
                Ok(balance) => report_payable(&mut tx, &balance).await?,
                Err(StoreError::UnknownAccount(_)) => {}
                Err(e) => return Err(e),
            }
            // A newer request (a later `since`) stays for the next look.
            sqlx::query("DELETE FROM balance_checks WHERE account_id = $1 AND since = $2")
                .bind(&account)
                .bind(since)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            looked += 1;
        }
        Ok(looked)
    }

    /// Accounts waiting for a look at their cash-out standing.
    pub async fn balance_checks_waiting(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM balance_checks")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

async fn report_payable(tx: &mut Tx, balance: &AccountBalance) -> StoreResult<()> {
    let account = balance.account.as_str();
    let marks: Vec<(String, String)> =
        sqlx::query_as("SELECT program, currency FROM payable_marks WHERE account_id = $1")
            .bind(account)
            .fetch_all(&mut **tx)
            .await?;
    let mut events = Vec::new();
    for p in &balance.programs {
        let key = (p.program.to_string(), p.currency.code().to_string());
        match standing(marks.contains(&key), &p.payable_now) {
            Standing::BecamePayable => {
                sqlx::query(
                    "INSERT INTO payable_marks (account_id, program, currency, since) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(account)
                .bind(&key.0)
                .bind(&key.1)
                .bind(to_millis(Utc::now()))
                .execute(&mut **tx)
                .await?;
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
            Standing::NoLongerPayable => {
                sqlx::query(
                    "DELETE FROM payable_marks \
                     WHERE account_id = $1 AND program = $2 AND currency = $3",
                )
                .bind(account)
                .bind(&key.0)
                .bind(&key.1)
                .execute(&mut **tx)
                .await?;
            }
            Standing::Unchanged => {}
        }
    }
    record_events(tx, &events).await
}
