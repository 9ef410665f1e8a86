//! Per-template reporting: referrals attributed through template links (Vast) and creator
//! earnings from runs (Runpod), from the same tables accrual reads.

pub(crate) use crate::storage::templates::*;
use std::collections::BTreeMap;

use super::{Store, StoreResult};
use crate::domain::money::{Currency, Money};

impl Store {
    pub async fn template_report(&self) -> StoreResult<Vec<TemplateReport>> {
        let mut out: BTreeMap<String, TemplateReport> = BTreeMap::new();
        let currency_of = |program: &str| {
            self.programs()
                .get_str(program)
                .map_or(Currency::Usd, |p| p.currency)
        };
        fn entry<'a>(
            out: &'a mut BTreeMap<String, TemplateReport>,
            t: &str,
        ) -> &'a mut TemplateReport {
            out.entry(t.to_string()).or_insert_with(|| TemplateReport {
                template: t.to_string(),
                ..TemplateReport::default()
            })
        }

        let rows: Vec<(String, String, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT r.template_id, r.program, COUNT(*), \
               CAST(SUM(CASE WHEN r.status = 'qualified' THEN 1 ELSE 0 END) AS BIGINT), \
               CAST(COALESCE(SUM(CASE WHEN r.status = 'qualified' THEN \
                 (SELECT SUM(u.units) FROM usage u \
                  WHERE u.account_id = r.referred_id AND u.at >= r.referred_at) END), 0) AS BIGINT), \
               CAST(COALESCE(SUM((SELECT -SUM(p.units) FROM ledger_transactions t \
                  JOIN ledger_postings p ON p.txn_id = t.id AND p.book = 'commission_expense' \
                  WHERE t.subject = r.id AND t.stream IN ('referral', 'affiliate'))), 0) AS BIGINT) \
             FROM referrals r WHERE r.template_id IS NOT NULL \
             GROUP BY r.template_id, r.program",
        )
        .fetch_all(self.pool())
        .await?;
        for (template, program, n, qualified, spend, commission) in rows {
            let currency = currency_of(&program);
            let r = entry(&mut out, &template);
            r.referrals += u64::try_from(n).unwrap_or(0);
            r.qualified_referrals += u64::try_from(qualified).unwrap_or(0);
            r.referred_spend = Some(Money::from_units(spend, currency));
            r.referral_commission = Some(Money::from_units(commission, currency));
        }

        let rows: Vec<(String, String, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT t.id, t.program, t.creator_id, \
               (SELECT COUNT(*) FROM usage u WHERE u.template_id = t.id), \
               CAST((SELECT COALESCE(SUM(u.runtime_secs), 0) FROM usage u WHERE u.template_id = t.id) AS BIGINT), \
               CAST(COALESCE((SELECT -SUM(p.units) FROM ledger_transactions x \
                  JOIN ledger_postings p ON p.txn_id = x.id AND p.book = 'commission_expense' \
                  WHERE x.subject = t.id AND x.stream = 'creator'), 0) AS BIGINT) \
             FROM templates t",
        )
        .fetch_all(self.pool())
        .await?;
        for (template, program, creator, runs, runtime, earned) in rows {
            let currency = currency_of(&program);
            let r = entry(&mut out, &template);
            r.creator_program = Some(program);
            r.creator = Some(creator);
            r.runs = u64::try_from(runs).unwrap_or(0);
            r.runtime_secs = u64::try_from(runtime).unwrap_or(0);
            r.creator_earned = Some(Money::from_units(earned, currency));
        }
        Ok(out.into_values().collect())
    }
}
