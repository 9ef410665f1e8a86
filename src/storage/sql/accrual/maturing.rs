//! Commissions still maturing. A program with `hold_days` lets the cashable part of a
//! commission leave only that many days after the spend that earned it.
//!
//! Nothing in the ledger marks it: accrual posts what spend earns at once, as without a hold,
//! and what is still maturing is read from the spend itself: the charges of the last
//! `hold_days`, net of their refunds, at the rates accrual used (a commission is its charge
//! times its rate, so each charge's share is exact). So a refund inside the window simply
//! removes the maturing amount, and no posting has to move when time passes.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::{QueryBuilder, Row};

use super::super::{BATCH_ROWS, Conn, Db, StoreError, StoreResult, from_millis, to_millis};
use super::dec;
use super::referrals::{Referrals, scoped_referrals, stream_program};
use crate::domain::program::ProgramSet;
use crate::domain::usage::UsageCategory;

/// The cashable parts still maturing, by holder and program: when each matures, and how much.
pub(crate) type Maturing = HashMap<(String, String), Vec<(DateTime<Utc>, Decimal)>>;

/// What is still maturing at `now` for each of `holders`, under the loaded programs. Empty
/// (and free) when no program holds.
pub(crate) async fn maturing(
    conn: &mut Conn,
    programs: &ProgramSet,
    holders: &[String],
    now: DateTime<Utc>,
) -> StoreResult<Maturing> {
    let mut out = Maturing::new();
    let longest = programs
        .iter()
        .map(|p| p.cash_out.hold_days)
        .max()
        .unwrap_or(0);
    if longest == 0 || holders.is_empty() {
        return Ok(out);
    }
    let from = to_millis(now - chrono::Duration::days(i64::from(longest)));
    for chunk in holders.chunks(BATCH_ROWS) {
        let (accs, by_referred) =
            scoped_referrals(&mut *conn, programs, Referrals::By(chunk)).await?;
        let referred: Vec<&String> = by_referred.keys().collect();
        for accounts in referred.chunks(BATCH_ROWS) {
            // Each charge net of its refunds (never below zero: refunds never exceed it).
            let mut q = QueryBuilder::<Db>::new(
                "SELECT u.account_id, u.at, u.category, u.currency, \
                        CAST(u.units - COALESCE((SELECT SUM(f.units) FROM refunds f \
                                                 WHERE f.usage_id = u.id), 0) AS BIGINT) \
                 FROM usage u WHERE u.at > ",
            );
            q.push_bind(from).push(" AND u.account_id IN (");
            let mut list = q.separated(", ");
            for id in accounts {
                list.push_bind(id.as_str());
            }
            q.push(")");
            let mut rows = q.build().fetch(&mut *conn);
            while let Some(row) = rows.try_next().await? {
                let account: &str = row.try_get(0)?;
                let at_ms: i64 = row.try_get(1)?;
                let category: &str = row.try_get(2)?;
                let currency: &str = row.try_get(3)?;
                let units = dec(i128::from(row.try_get::<i64, _>(4)?));
                let category = UsageCategory::ALL
                    .iter()
                    .find(|c| c.code() == category)
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("unknown usage category {category:?}"))
                    })?;
                let at = from_millis(at_ms);
                for &i in by_referred.get(account).into_iter().flatten() {
                    let acc = &accs[i];
                    let Some(plan) = acc.plan_for(at_ms, currency) else {
                        continue;
                    };
                    let Some(stream) = plan.stream_at(at) else {
                        continue;
                    };
                    let Some(program) = stream_program(plan, stream) else {
                        continue;
                    };
                    let matures_at = at + program.cash_out.hold();
                    let rate = plan.rate(stream, *category);
                    if matures_at <= now || rate.is_zero() || units.is_zero() {
                        continue;
                    }
                    let (cashable, _) = program.split(units * rate);
                    out.entry((acc.referrer().to_string(), program.id.to_string()))
                        .or_default()
                        .push((matures_at, cashable));
                }
            }
        }
    }
    Ok(out)
}
