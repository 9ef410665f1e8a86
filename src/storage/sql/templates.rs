//! Per-template reporting: referrals attributed through template links (Vast) and creator
//! earnings from runs (Runpod), from the same tables accrual reads.

pub(crate) use crate::storage::template_views::*;
use std::collections::BTreeMap;

use super::{Store, StoreResult};
use crate::domain::money::{Currency, Money};
use crate::storage::sums::{halves, join};

/// template, program, referrals, qualified, referred spend and commission (each in halves).
type TemplateReferralRow = (String, String, i64, i64, i64, i64, i64, i64);

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

        // Sums of per-referral sums, each total summed exactly in halves (see `sums`).
        let spend = halves("u.units").map(|part| {
            format!(
                "CAST(COALESCE(SUM(CASE WHEN r.status = 'qualified' THEN \
                   (SELECT SUM({part}) FROM usage u \
                    WHERE u.account_id = r.referred_id AND u.at >= r.referred_at) END), 0) AS BIGINT)"
            )
        });
        let commission = halves("-p.units").map(|part| {
            format!(
                "CAST(COALESCE(SUM((SELECT SUM({part}) FROM ledger_transactions t \
                   JOIN ledger_postings p ON p.txn_id = t.id AND p.book = 'commission_expense' \
                   WHERE t.subject = r.id AND t.stream IN ('referral', 'affiliate'))), 0) AS BIGINT)"
            )
        });
        let rows: Vec<TemplateReferralRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT r.template_id, r.program, COUNT(*), \
               CAST(SUM(CASE WHEN r.status = 'qualified' THEN 1 ELSE 0 END) AS BIGINT), \
               {}, {}, {}, {} \
             FROM referrals r WHERE r.template_id IS NOT NULL \
             GROUP BY r.template_id, r.program",
            spend[0], spend[1], commission[0], commission[1]
        )))
        .fetch_all(self.pool())
        .await?;
        for (template, program, n, qualified, s1, s2, c1, c2) in rows {
            let currency = currency_of(&program);
            let r = entry(&mut out, &template);
            r.referrals += u64::try_from(n).unwrap_or(0);
            r.qualified_referrals += u64::try_from(qualified).unwrap_or(0);
            r.referred_spend = Some(Money::from_total_units(join(s1, s2), currency)?);
            r.referral_commission = Some(Money::from_total_units(join(c1, c2), currency)?);
        }

        let earned = halves("-p.units").map(|part| {
            format!(
                "CAST(COALESCE((SELECT SUM({part}) FROM ledger_transactions x \
                  JOIN ledger_postings p ON p.txn_id = x.id AND p.book = 'commission_expense' \
                  WHERE x.subject = t.id AND x.stream = 'creator'), 0) AS BIGINT)"
            )
        });
        let rows: Vec<(String, String, String, i64, i64, i64, i64)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT t.id, t.program, t.creator_id, \
               (SELECT COUNT(*) FROM usage u WHERE u.template_id = t.id), \
               CAST((SELECT COALESCE(SUM(u.runtime_secs), 0) FROM usage u WHERE u.template_id = t.id) AS BIGINT), \
               {}, {} \
             FROM templates t",
                earned[0], earned[1]
            )))
            .fetch_all(self.pool())
            .await?;
        for (template, program, creator, runs, runtime, e1, e2) in rows {
            let currency = currency_of(&program);
            let r = entry(&mut out, &template);
            r.creator_program = Some(program);
            r.creator = Some(creator);
            r.runs = u64::try_from(runs).unwrap_or(0);
            r.runtime_secs = u64::try_from(runtime).unwrap_or(0);
            r.creator_earned = Some(Money::from_total_units(join(e1, e2), currency)?);
        }
        Ok(out.into_values().collect())
    }
}
