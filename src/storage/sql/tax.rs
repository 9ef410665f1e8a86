//! The year-end tax report: cash paid per payee, tax year and rail, beside the form on file
//! and the year's threshold, and balanced against the ledger's paid-out total.
//!
//! Cash counts when it left: a payout when the provider confirmed it, a return (money back)
//! when it came back, by the accounting exports' rule; a tax year is a calendar year in UTC.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};

use super::{Store, StoreError, StoreResult, parse_code, parse_stored, to_millis};
use crate::domain::ids::AccountId;
use crate::domain::money::{Currency, Money};
use crate::domain::tax::{
    RailCash, TaxForm, TaxPayee, TaxReport, TaxThresholds, TaxTotal, reportable,
};
use crate::storage::sums::{join, wide_sum};

/// account, rail, currency, net cash in halves, country, form, last 4.
type CashRow = (
    String,
    Option<String>,
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Cash posted to the payee's cashable book by payouts, returns and corrections, as paid out.
const PAID: &str = "p.book = 'referrer_cashable' AND t.kind NOT IN ('accrual', 'clawback') \
                    AND t.status = 'posted'";

impl Store {
    /// The tax report for the calendar year `year` (UTC).
    pub async fn tax_report(
        &self,
        year: i32,
        thresholds: &TaxThresholds,
    ) -> StoreResult<TaxReport> {
        let start = year_start(year)?;
        let end = year_start(year + 1)?;
        let sql = format!(
            "SELECT p.holder, o.rail, p.currency, {}, \
                    COALESCE(x.country, a.country), x.status, x.tin_last4 \
             FROM ledger_postings p JOIN ledger_transactions t ON t.id = p.txn_id \
             LEFT JOIN payouts o ON o.id = t.payout_id \
             LEFT JOIN tax_profiles x ON x.account_id = p.holder \
             LEFT JOIN accounts a ON a.id = p.holder \
             WHERE {PAID} AND COALESCE(t.resolved_at, t.created_at) >= $1 \
               AND COALESCE(t.resolved_at, t.created_at) < $2 \
             GROUP BY p.holder, o.rail, p.currency, COALESCE(x.country, a.country), x.status, \
                      x.tin_last4 \
             ORDER BY p.holder, o.rail, p.currency",
            wide_sum("-p.units")
        );
        let rows: Vec<CashRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(to_millis(start))
            .bind(to_millis(end))
            .fetch_all(&self.pool)
            .await?;
        let threshold = thresholds.for_year(year);
        let mut payees: Vec<TaxPayee> = Vec::new();
        let mut report: BTreeMap<Currency, i128> = BTreeMap::new();
        for (holder, rail, currency, high, low, country, form, last4) in rows {
            let currency: Currency = parse_stored("currency", &currency)?;
            let units = join(high, low);
            *report.entry(currency).or_default() += units;
            let amount = Money::from_total_units(units, currency)?;
            let form = match form {
                Some(code) => parse_code("tax form", &code, TaxForm::from_code)?,
                None => TaxForm::None,
            };
            let account: AccountId = parse_stored("account id", &holder)?;
            if payees.last().is_none_or(|p| p.account != account) {
                payees.push(TaxPayee {
                    account,
                    country,
                    form,
                    tin_last4: last4,
                    by_rail: Vec::new(),
                    paid_usd: Money::zero(Currency::Usd),
                    reportable: false,
                    form_missing: false,
                });
            }
            let Some(payee) = payees.last_mut() else {
                continue;
            };
            if currency == Currency::Usd {
                payee.paid_usd = payee.paid_usd.checked_add(&amount)?;
            }
            payee.by_rail.push(RailCash { rail, amount });
        }
        for p in &mut payees {
            p.reportable = reportable(p.country.as_deref(), p.paid_usd.amount(), threshold);
            p.form_missing = p.reportable && p.form != TaxForm::W9;
        }
        let totals = self.paid_out_totals(start, end, &report).await?;
        Ok(TaxReport {
            year,
            threshold: Money::new(threshold, Currency::Usd),
            payees,
            totals,
        })
    }

    /// The ledger's paid-out total per currency between two instants, read as the change of
    /// every payee's paid-out book (not from the report's rows), beside the report's.
    async fn paid_out_totals(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        report: &BTreeMap<Currency, i128>,
    ) -> StoreResult<Vec<TaxTotal>> {
        let paid_before = |at: &str| {
            wide_sum(&format!(
                "CASE WHEN COALESCE(t.resolved_at, t.created_at) < {at} THEN -p.units END"
            ))
        };
        let sql = format!(
            "SELECT p.currency, {}, {} \
             FROM ledger_postings p JOIN ledger_transactions t ON t.id = p.txn_id \
             WHERE {PAID} AND p.holder IS NOT NULL GROUP BY p.currency",
            paid_before("$2"),
            paid_before("$1"),
        );
        let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(to_millis(start))
            .bind(to_millis(end))
            .fetch_all(&self.pool)
            .await?;
        let mut ledger: BTreeMap<Currency, i128> = BTreeMap::new();
        for (currency, eh, el, sh, sl) in rows {
            let currency: Currency = parse_stored("currency", &currency)?;
            ledger.insert(currency, join(eh, el) - join(sh, sl));
        }
        let currencies: std::collections::BTreeSet<Currency> =
            ledger.keys().chain(report.keys()).copied().collect();
        currencies
            .into_iter()
            .filter(|c| ledger.get(c).copied().unwrap_or(0) != 0 || report.contains_key(c))
            .map(|c| {
                let (r, l) = (
                    report.get(&c).copied().unwrap_or(0),
                    ledger.get(&c).copied().unwrap_or(0),
                );
                Ok(TaxTotal {
                    currency: c,
                    report: Money::from_total_units(r, c)?,
                    ledger: Money::from_total_units(l, c)?,
                    balanced: r == l,
                })
            })
            .collect()
    }
}

fn year_start(year: i32) -> StoreResult<DateTime<Utc>> {
    Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("{year} is not a year we can date")))
}
