//! Judging referrals, and judging them again whenever evidence about their two accounts
//! arrives: a link, or an account's email or payment fingerprint.
//!
//! Every email and fingerprint an account ever had is kept in `account_identities`, so a
//! connection once seen stays seen and the verdict is the same whatever order account versions,
//! links, referrals and usage arrived in. A referral whose verdict changes is put in the
//! accrual scope, so its streams are trued up in the same transaction.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::QueryBuilder;

use super::{
    BATCH_ROWS, Db, Store, StoreResult, Tx, from_millis, parse_code, parse_stored, to_millis,
};
use crate::domain::referral::{
    AccountFacts, Disqualification, StoredVerdict, judge_referral, normalize_email, rejudge,
};
use crate::ingest::{Numbered, Record};

/// One referral to judge, with its stored verdict (id, referred_at, status, disqualification,
/// disqualified_late_at, referrer id/created/hosted, referred id/created/hosted, linked).
type JudgeRow = (
    String,
    i64,
    String,
    Option<String>,
    Option<i64>,
    String,
    i64,
    i64,
    String,
    i64,
    i64,
    i64,
);

/// status, disqualification and disqualified_late_at of an update.
type VerdictKey = (&'static str, Option<&'static str>, Option<i64>);

impl Store {
    /// Records what accounts and links written by an ingest say about who is connected, and
    /// marks their accounts so [`Store::judge_referrals`] looks at their referrals again.
    /// `written`: the lines of the records that were inserted or updated.
    pub(super) async fn record_evidence(
        tx: &mut Tx,
        records: &[Numbered],
        written: &HashSet<usize>,
    ) -> StoreResult<()> {
        let mut identities: Vec<(&str, &'static str, String)> = Vec::new();
        let mut touched: Vec<&str> = Vec::new();
        let written = records.iter().filter(|n| written.contains(&n.line));
        let (mut accounts, mut links) = (Vec::new(), Vec::new());
        for n in written {
            match &n.record {
                Record::Account(a) => accounts.push(a),
                Record::Link(l) => links.push(l),
                _ => {}
            }
        }
        for a in accounts {
            identities.push((a.id.as_str(), "email", normalize_email(&a.email)));
            if let Some(fp) = a.payment_fingerprint.as_deref().map(str::trim)
                && !fp.is_empty()
            {
                identities.push((a.id.as_str(), "payment_fingerprint", fp.to_string()));
            }
            touched.push(a.id.as_str());
        }
        for l in links {
            touched.extend([l.a.as_str(), l.b.as_str()]);
        }
        for chunk in identities.chunks(BATCH_ROWS) {
            let mut q = QueryBuilder::<Db>::new(
                "INSERT INTO account_identities (account_id, kind, value) ",
            );
            q.push_values(chunk, |mut b, (id, kind, value)| {
                b.push_bind(*id).push_bind(*kind).push_bind(value.clone());
            });
            q.push(" ON CONFLICT DO NOTHING");
            q.build().execute(&mut **tx).await?;
        }
        touched.sort_unstable();
        touched.dedup();
        for chunk in touched.chunks(BATCH_ROWS) {
            let mut q = QueryBuilder::<Db>::new("INSERT INTO evidence_scope (account_id) ");
            q.push_values(chunk, |mut b, id| {
                b.push_bind(*id);
            });
            q.push(" ON CONFLICT DO NOTHING");
            q.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Judges every pending referral whose two accounts are both known, and judges again every
    /// referral of an account with new evidence. Writes only verdicts that change, and scopes
    /// their referred accounts for accrual. Returns how many verdicts changed.
    pub(super) async fn judge_referrals(tx: &mut Tx) -> StoreResult<usize> {
        let rows: Vec<JudgeRow> = sqlx::query_as(
            "SELECT r.id, r.referred_at, r.status, r.disqualification, r.disqualified_late_at, \
                    a.id, a.created_at, a.hosted_machines, \
                    b.id, b.created_at, b.hosted_machines, \
                    CASE WHEN EXISTS (SELECT 1 FROM account_links l \
                            WHERE (l.account_a = a.id AND l.account_b = b.id) \
                               OR (l.account_a = b.id AND l.account_b = a.id)) \
                    THEN CAST(1 AS BIGINT) ELSE 0 END \
             FROM referrals r \
             JOIN accounts a ON a.id = r.referrer_id \
             JOIN accounts b ON b.id = r.referred_id \
             WHERE r.id IN (SELECT id FROM referrals WHERE status = 'pending' \
                 UNION SELECT x.id FROM evidence_scope e JOIN referrals x ON x.referrer_id = e.account_id \
                 UNION SELECT x.id FROM evidence_scope e JOIN referrals x ON x.referred_id = e.account_id)",
        )
        .fetch_all(&mut **tx)
        .await?;
        sqlx::query("DELETE FROM evidence_scope")
            .execute(&mut **tx)
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut ids: Vec<&str> = rows
            .iter()
            .flat_map(|r| [r.5.as_str(), r.8.as_str()])
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let identities = load_identities(tx, &ids).await?;
        let facts = |id: &str, created: i64, hosted: i64| -> StoreResult<AccountFacts> {
            let (emails, payment_fingerprints) = identities.get(id).cloned().unwrap_or_default();
            Ok(AccountFacts {
                id: parse_stored("account id", id)?,
                created_at: from_millis(created),
                emails,
                payment_fingerprints,
                hosted_machines: hosted != 0,
            })
        };

        let now = to_millis(crate::clock::now());
        // (status, reason, late_at) -> referral ids; and the referred accounts to re-accrue.
        let mut updates: BTreeMap<VerdictKey, Vec<String>> = BTreeMap::new();
        let mut rescope = Vec::new();
        for (id, at, status, reason, late_at, a_id, a_c, a_h, b_id, b_c, b_h, linked) in rows {
            let previous = match (status.as_str(), reason.as_deref()) {
                ("pending", _) => StoredVerdict::Pending,
                ("qualified", _) => StoredVerdict::Qualified,
                (_, code) => StoredVerdict::Disqualified(parse_code(
                    "disqualification",
                    code.unwrap_or_default(),
                    Disqualification::from_code,
                )?),
            };
            let verdict = judge_referral(
                &facts(&a_id, a_c, a_h)?,
                &facts(&b_id, b_c, b_h)?,
                from_millis(at),
                linked != 0,
            );
            let Some(change) = rejudge(
                previous,
                late_at.map(from_millis),
                verdict,
                from_millis(now),
            ) else {
                continue;
            };
            let key = match change.verdict {
                Ok(()) => ("qualified", None, None),
                Err(d) => (
                    "disqualified",
                    Some(d.code()),
                    change.late_at.map(to_millis),
                ),
            };
            updates.entry(key).or_default().push(id);
            rescope.push(b_id);
        }
        let changed = rescope.len();
        write_verdicts(tx, updates, now).await?;
        rescope.sort_unstable();
        rescope.dedup();
        Self::scope(tx, "account", rescope).await?;
        Ok(changed)
    }
}

/// Stores changed verdicts, one UPDATE per verdict and chunk.
async fn write_verdicts(
    tx: &mut Tx,
    updates: BTreeMap<VerdictKey, Vec<String>>,
    now: i64,
) -> StoreResult<()> {
    for ((status, reason, late_at), ids) in updates {
        for chunk in ids.chunks(BATCH_ROWS) {
            let mut q = QueryBuilder::<Db>::new("UPDATE referrals SET status = ");
            q.push_bind(status)
                .push(", disqualification = ")
                .push_bind(reason)
                .push(", disqualified_late_at = ")
                .push_bind(late_at)
                .push(", judged_at = ")
                .push_bind(now)
                .push(" WHERE id IN (");
            let mut sep = q.separated(", ");
            for id in chunk {
                sep.push_bind(id.as_str());
            }
            q.push(")");
            q.build().execute(&mut **tx).await?;
        }
    }
    Ok(())
}

/// Every normalized email and payment fingerprint each account has had.
async fn load_identities(
    tx: &mut Tx,
    ids: &[&str],
) -> StoreResult<HashMap<String, (Vec<String>, Vec<String>)>> {
    let mut out: HashMap<String, (Vec<String>, Vec<String>)> = HashMap::new();
    for chunk in ids.chunks(BATCH_ROWS) {
        let mut q = QueryBuilder::<Db>::new(
            "SELECT account_id, kind, value FROM account_identities WHERE account_id IN (",
        );
        let mut sep = q.separated(", ");
        for id in chunk {
            sep.push_bind(*id);
        }
        q.push(")");
        let rows: Vec<(String, String, String)> = q.build_query_as().fetch_all(&mut **tx).await?;
        for (account, kind, value) in rows {
            let entry = out.entry(account).or_default();
            match kind.as_str() {
                "email" => entry.0.push(value),
                _ => entry.1.push(value),
            }
        }
    }
    Ok(out)
}
