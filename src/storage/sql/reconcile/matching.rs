//! The set-based matching of one run: link records to payouts, classify every
//! disagreement into an exception, and total records and payouts per rail and currency.

use std::collections::BTreeMap;

use sqlx::Row;

use super::super::{BATCH_ROWS, Db, StoreResult, Tx, parse_stored, to_millis};
use crate::domain::ids::Rail;
use crate::domain::money::{Currency, Money};
use crate::domain::payout::PayoutStatus;
use crate::domain::reconcile::{
    ExceptionId, ExceptionKind, Tolerances, money_left, status_agrees, status_severity,
};
use crate::domain::tracking::RailState;
use crate::storage::reconcile_views::{NewRun, RailTotals};
use crate::storage::sums::{join, wide_sum};

/// SQL literal tables built from the domain's rules, so the set-based statements apply the
/// same rules the unit tests pin down. Only our own enum codes and integers go in them.
fn rule_tables(tolerances: &Tolerances) -> String {
    let tol: Vec<String> = Currency::all()
        .map(|c| {
            // A tolerance that does not fit in units is no tolerance a person meant.
            let units = tolerances.amount(c).to_units().unwrap_or(i64::MAX);
            format!("('{}', {units})", c.code())
        })
        .collect();
    let mut rules = Vec::new();
    for ours in PayoutStatus::ALL {
        for theirs in RailState::ALL {
            if !status_agrees(ours, theirs) {
                rules.push(format!(
                    "('{}', '{}', '{}')",
                    ours.code(),
                    theirs.code(),
                    status_severity(ours, theirs).code()
                ));
            }
        }
    }
    format!(
        "tol (currency, units) AS (VALUES {}), \
         rules (ours, theirs, severity) AS (VALUES {})",
        tol.join(", "),
        rules.join(", ")
    )
}

/// `'paid', 'in_flight', ...`: the provider states in which money is with the payee.
fn money_left_states() -> String {
    RailState::ALL
        .into_iter()
        .filter(|s| money_left(*s))
        .map(|s| format!("'{}'", s.code()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rail_list(rails: &[Rail]) -> String {
    rails
        .iter()
        .map(|r| format!("'{}'", r.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What classification found, before ids are derived.
pub(super) struct Found {
    kind: String,
    severity: String,
    rail: String,
    payout_id: Option<String>,
    seq: Option<i64>,
    record_id: Option<String>,
    /// Every provider record behind a duplicate (empty for the other kinds).
    records: Vec<String>,
}

const DUPLICATE: &str = "duplicate_at_provider";

/// A duplicate is one exception per payout listing every record behind it, however many
/// rows found it (one per record carrying money, one per object a webhook showed). Shown
/// with one record of this run where there is one. Duplicates are few; the rest pass through.
fn fold_duplicates(found: Vec<Found>) -> Vec<Found> {
    let mut folded: BTreeMap<(String, String), Found> = BTreeMap::new();
    let mut out = Vec::with_capacity(found.len());
    for f in found {
        let Some(payout) = f.payout_id.clone().filter(|_| f.kind == DUPLICATE) else {
            out.push(f);
            continue;
        };
        let (seq, record) = (f.seq, f.record_id.clone());
        let entry = folded.entry((f.rail.clone(), payout)).or_insert(Found {
            records: Vec::new(),
            ..f
        });
        if seq.is_some() && (entry.seq.is_none() || seq < entry.seq) {
            entry.seq = seq;
            entry.record_id = record.clone();
        }
        entry.records.extend(record);
    }
    for (_, mut f) in folded {
        f.records.sort();
        f.records.dedup();
        out.push(f);
    }
    out
}

/// Links the run's records to payouts, most specific link first: our payout id, then our
/// attempt token (both done as records are stored on PostgreSQL), then payee, amount and
/// date.
pub(super) async fn link_records(tx: &mut Tx, run: &NewRun) -> StoreResult<()> {
    let id = run.id.as_str();
    let tables = rule_tables(&run.tolerances);
    if !super::super::RECORDS_LINKED_ON_STORE {
        link_by_ours(tx, id).await?;
    }
    // 3. No reference: same rail, payee and currency, amount and date within tolerance,
    //    each record and each payout used once, nearest in time first.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH {tables}, cand AS ( \
           SELECT r.seq AS seq, p.id AS payout_id, \
             ROW_NUMBER() OVER (PARTITION BY r.seq \
               ORDER BY ABS(r.created_at - p.created_at), p.id) AS rn_r, \
             ROW_NUMBER() OVER (PARTITION BY p.id \
               ORDER BY ABS(r.created_at - p.created_at), r.seq) AS rn_p \
           FROM recon_records r \
           JOIN tol t ON t.currency = r.currency \
           JOIN payouts p ON p.rail = r.rail AND lower(p.destination) = lower(r.payee) \
             AND p.currency = r.currency \
           WHERE r.run_id = $1 AND r.payout_id IS NULL AND r.kind <> 'bank_payout' \
             AND ABS(CAST(p.units AS BIGINT) - CAST(r.units AS BIGINT)) <= t.units \
             AND ABS(r.created_at - p.created_at) <= $2 \
             AND NOT EXISTS (SELECT 1 FROM recon_records o \
                              WHERE o.run_id = $1 AND o.payout_id = p.id)) \
         UPDATE recon_records SET payout_id = cand.payout_id, matched_by = 'amount_date' \
         FROM cand \
         WHERE recon_records.run_id = $1 AND recon_records.seq = cand.seq \
           AND cand.rn_r = 1 AND cand.rn_p = 1"
    )))
    .bind(id)
    .bind(run.tolerances.date.num_milliseconds())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Steps 1 and 2 of `link_records`, where the backend does not link records as it stores
/// them.
async fn link_by_ours(tx: &mut Tx, id: &str) -> StoreResult<()> {
    // 1. Our payout id echoed item by item (PayPal sender_item_id, Stripe metadata) is the
    //    most specific link: one PayPal batch may carry several payouts.
    sqlx::query(
        "UPDATE recon_records SET payout_id = p.id, matched_by = 'payout_id' \
         FROM payouts p \
         WHERE recon_records.run_id = $1 AND recon_records.payout_hint = p.id \
           AND p.rail = recon_records.rail",
    )
    .bind(id)
    .execute(&mut **tx)
    .await?;
    // 2. Our attempt token (transfer_group, sender_batch_id, customerTransactionId, key).
    sqlx::query(
        "UPDATE recon_records SET payout_id = a.payout_id, matched_by = 'reference' \
         FROM payout_attempts a \
         WHERE recon_records.run_id = $1 AND recon_records.payout_id IS NULL \
           AND a.rail_ref = recon_records.reference AND a.rail = recon_records.rail",
    )
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One row per disagreement; ids are derived when they are stored. Objects a webhook showed
/// naming a payout without being its payment (payout_duplicates) are duplicates too, whether
/// or not this run's records still carry money for them.
///
/// One pass over the linked records and their payouts judges every pair at once; only
/// the few rows that disagree are kept (`judged`) and split into one row per kind. Each
/// payout's count of records (`n`) and of records carrying money (`n_money`) come from
/// one window over the records in payout order (the index's order: no sort). The
/// payout's chosen record (money first, then the latest) needs looking at the others
/// only where there are others, a few rows in a million: a lookup by the index, not a
/// second, sorted window over every row. The filter is one CASE on purpose: PostgreSQL
/// splits a plain OR into a guess made before the join (a few thousand rows, not a
/// million) and then probes the payouts' index a million times.
pub(super) async fn classify(tx: &mut Tx, run: &NewRun) -> StoreResult<Vec<Found>> {
    let id = run.id.as_str();
    let tables = rule_tables(&run.tolerances);
    let money = money_left_states();
    let rails = rail_list(&run.rails);
    let found: Vec<Found> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH {tables}, linked AS ( \
           SELECT r.seq, r.rail, r.record_id, r.payout_id, r.state, r.payee, r.currency, \
             r.created_at, CAST(r.units AS BIGINT) AS units, \
             CASE WHEN r.state IN ({money}) THEN 1 ELSE 0 END AS money, \
             SUM(CASE WHEN r.state IN ({money}) THEN 1 ELSE 0 END) \
               OVER (PARTITION BY r.payout_id) AS n_money, \
             COUNT(*) OVER (PARTITION BY r.payout_id) AS n \
           FROM recon_records r \
           WHERE r.run_id = $1 AND r.payout_id IS NOT NULL AND r.kind <> 'bank_payout'), \
         checked AS ( \
           SELECT l.rail, l.payout_id, l.seq, l.record_id, \
             (l.n_money > 1 AND l.state IN ({money})) AS dup, \
             (l.n_money <= 1 AND CASE WHEN l.n = 1 THEN 1 \
               WHEN EXISTS (SELECT 1 FROM recon_records o \
                 WHERE o.run_id = $1 AND o.payout_id = l.payout_id \
                   AND o.kind <> 'bank_payout' AND o.seq <> l.seq \
                   AND (CASE WHEN o.state IN ({money}) THEN 1 ELSE 0 END > l.money \
                     OR (CASE WHEN o.state IN ({money}) THEN 1 ELSE 0 END = l.money \
                         AND (o.created_at > l.created_at \
                              OR (o.created_at = l.created_at AND o.seq > l.seq))))) \
               THEN 0 ELSE 1 END = 1) AS pair, \
             l.currency <> p.currency AS cur, \
             (l.currency = p.currency AND ABS(l.units - CAST(p.units AS BIGINT)) > t.units) AS amt, \
             l.payee <> lower(p.destination) AS pay, \
             s.severity AS st \
           FROM linked l \
           LEFT JOIN payouts p ON p.id = l.payout_id \
           LEFT JOIN tol t ON t.currency = l.currency \
           LEFT JOIN rules s ON s.ours = p.status AND s.theirs = l.state), \
         judged AS ( \
           SELECT rail, payout_id, seq, record_id, dup, \
             (pair AND cur) AS cur, (pair AND amt) AS amt, (pair AND pay) AS pay, \
             CASE WHEN pair THEN st END AS st \
           FROM checked \
           WHERE CASE WHEN dup THEN 1 \
             WHEN pair AND (cur OR amt OR pay OR st IS NOT NULL) THEN 1 ELSE 0 END = 1) \
         SELECT 'duplicate_at_provider' AS kind, 'critical' AS severity, rail, payout_id, \
           seq, record_id FROM judged WHERE dup \
         UNION ALL \
         SELECT 'currency_mismatch', 'high', rail, payout_id, seq, record_id \
           FROM judged WHERE cur \
         UNION ALL \
         SELECT 'amount_mismatch', 'high', rail, payout_id, seq, record_id \
           FROM judged WHERE amt \
         UNION ALL \
         SELECT 'payee_mismatch', 'high', rail, payout_id, seq, record_id \
           FROM judged WHERE pay \
         UNION ALL \
         SELECT 'status_mismatch', st, rail, payout_id, seq, record_id \
           FROM judged WHERE st IS NOT NULL \
         UNION ALL \
         SELECT 'missing_at_provider', 'high', p.rail, p.id, CAST(NULL AS BIGINT), \
           CAST(NULL AS TEXT) \
           FROM payouts p \
           WHERE p.rail IN ({rails}) AND p.status IN ('processing', 'paid', 'returned') \
             AND p.created_at >= $2 AND p.created_at < $3 \
             AND NOT EXISTS (SELECT 1 FROM recon_records r \
                              WHERE r.run_id = $1 AND r.payout_id = p.id) \
         UNION ALL \
         SELECT 'duplicate_at_provider', 'critical', d.rail, d.payout_id, \
           CAST(NULL AS BIGINT), d.object_ref FROM payout_duplicates d \
           WHERE d.rail IN ({rails}) AND d.first_seen_at >= $2 AND d.first_seen_at < $3 \
         UNION ALL \
         SELECT 'unknown_at_provider', 'critical', r.rail, CAST(NULL AS TEXT), r.seq, \
           r.record_id \
           FROM recon_records r \
           WHERE r.run_id = $1 AND r.payout_id IS NULL AND r.kind <> 'bank_payout' \
             AND r.state IN ({money}) AND r.created_at >= $2 AND r.created_at < $3"
    )))
    .bind(id)
    .bind(to_millis(run.period.start()))
    .bind(to_millis(run.period.end()))
    .try_map(|row: <Db as sqlx::Database>::Row| {
        Ok(Found {
            kind: row.try_get(0)?,
            severity: row.try_get(1)?,
            rail: row.try_get(2)?,
            payout_id: row.try_get(3)?,
            seq: row.try_get(4)?,
            record_id: row.try_get(5)?,
            records: Vec::new(),
        })
    })
    .fetch_all(&mut **tx)
    .await?;
    Ok(fold_duplicates(found))
}

/// Records carrying money for a payout beside the one it is paid through become duplicate
/// evidence (`payout_duplicates`), so an operator resolves them as one a webhook showed.
/// Only where a record of this run is the payout's own payment (its provider reference):
/// where the paying record cannot be told from the others nothing is guessed, and the
/// exception stands alone.
pub(super) async fn keep_duplicate_evidence(tx: &mut Tx, run: &NewRun) -> StoreResult<()> {
    let money = money_left_states();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO payout_duplicates (payout_id, rail, object_ref, state, provider_status, \
           source, first_seen_at, last_seen_at) \
         SELECT r.payout_id, r.rail, r.record_id, r.state, r.provider_status, \
           'reconciliation', r.created_at, r.created_at \
         FROM recon_records r JOIN payouts p ON p.id = r.payout_id \
         WHERE r.run_id = $1 AND r.kind <> 'bank_payout' AND r.state IN ({money}) \
           AND r.record_id <> p.provider_ref \
           AND r.payout_id IN (SELECT payout_id FROM recon_exceptions \
                               WHERE run_id = $1 AND kind = 'duplicate_at_provider') \
           AND EXISTS (SELECT 1 FROM recon_records q WHERE q.run_id = $1 \
                        AND q.payout_id = r.payout_id AND q.record_id = p.provider_ref) \
         ON CONFLICT (payout_id, object_ref) DO NOTHING"
    )))
    .bind(run.id.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Stores the exceptions under their derived ids; returns how many of each kind.
pub(super) async fn store_exceptions(
    tx: &mut Tx,
    id: &str,
    found: &[Found],
) -> StoreResult<BTreeMap<String, u64>> {
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for chunk in found.chunks(BATCH_ROWS) {
        let mut insert = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO recon_exceptions (run_id, id, kind, severity, rail, payout_id, \
             record_seq, record_id, records) ",
        );
        insert.push_values(chunk, |mut b, f| {
            let kind = ExceptionKind::from_code(&f.kind);
            let rail = f.rail.parse::<Rail>().ok();
            // A duplicate is the payout's, whichever records show it: its resolution holds
            // in later runs, and an operator's resolve-duplicate can name it.
            let record = match kind {
                Some(ExceptionKind::DuplicateAtProvider) => None,
                _ => f.record_id.as_deref(),
            };
            let exception_id = match (kind, rail) {
                (Some(k), Some(r)) => {
                    ExceptionId::derive(k, r, f.payout_id.as_deref(), record).to_string()
                }
                // Our own SQL produced the codes; an unknown one is kept visible.
                _ => format!("rx_invalid_{}_{}", f.kind, f.seq.unwrap_or(-1)),
            };
            *by_kind.entry(f.kind.clone()).or_default() += 1;
            b.push_bind(id)
                .push_bind(exception_id)
                .push_bind(&f.kind)
                .push_bind(&f.severity)
                .push_bind(&f.rail)
                .push_bind(&f.payout_id)
                .push_bind(f.seq)
                .push_bind(&f.record_id)
                .push_bind(
                    (!f.records.is_empty())
                        .then(|| serde_json::to_string(&f.records).unwrap_or_default()),
                );
        });
        // Two rules can describe one pair twice only through a bug; keep the first.
        insert.push(" ON CONFLICT (run_id, id) DO NOTHING");
        insert.build().execute(&mut **tx).await?;
    }
    Ok(by_kind)
}

/// Records (linked, matched) and expected payouts per rail and currency. Money totals are
/// summed exactly (see `storage::sums`): a period's can pass the cap. The exceptions are
/// looked up with `IN` (a hashed set on PostgreSQL, an ephemeral index on SQLite): joined
/// as derived tables, SQLite scanned them once per record (175 s for a million).
pub(super) async fn rail_totals(tx: &mut Tx, run: &NewRun) -> StoreResult<Vec<RailTotals>> {
    let id = run.id.as_str();
    let rails = rail_list(&run.rails);
    let record_totals = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT r.rail, r.currency, COUNT(*), {}, \
           SUM(CASE WHEN r.payout_id IS NOT NULL THEN 1 ELSE 0 END), \
           SUM(CASE WHEN r.payout_id IS NOT NULL \
               AND r.seq NOT IN (SELECT record_seq FROM recon_exceptions \
                                  WHERE run_id = $1 AND record_seq IS NOT NULL) \
               AND r.payout_id NOT IN (SELECT payout_id FROM recon_exceptions \
                                        WHERE run_id = $1 AND kind = 'duplicate_at_provider' \
                                          AND payout_id IS NOT NULL) \
               THEN 1 ELSE 0 END) \
         FROM recon_records r \
         WHERE r.run_id = $1 GROUP BY r.rail, r.currency",
        wide_sum("r.units")
    )))
    .bind(id)
    .fetch_all(&mut **tx)
    .await?;
    let payout_totals = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT p.rail, p.currency, COUNT(*), {} \
         FROM payouts p \
         WHERE p.rail IN ({rails}) AND p.status IN ('processing', 'paid', 'returned') \
           AND p.created_at >= $1 AND p.created_at < $2 \
         GROUP BY p.rail, p.currency",
        wide_sum("p.units")
    )))
    .bind(to_millis(run.period.start()))
    .bind(to_millis(run.period.end()))
    .fetch_all(&mut **tx)
    .await?;
    let mut totals: BTreeMap<(String, String), RailTotalsAcc> = BTreeMap::new();
    for row in record_totals {
        let key = (row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?);
        let acc = totals.entry(key).or_default();
        acc.records = row.try_get::<i64, _>(2)?;
        acc.record_units = join(row.try_get(3)?, row.try_get(4)?);
        acc.linked = row.try_get::<Option<i64>, _>(5)?.unwrap_or(0);
        acc.matched = row.try_get::<Option<i64>, _>(6)?.unwrap_or(0);
    }
    for row in payout_totals {
        let key = (row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?);
        let acc = totals.entry(key).or_default();
        acc.payouts = row.try_get::<i64, _>(2)?;
        acc.payout_units = join(row.try_get(3)?, row.try_get(4)?);
    }
    let totals = totals
        .into_iter()
        .map(|((rail, currency), acc)| acc.finish(&rail, &currency))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(totals)
}

#[derive(Default)]
struct RailTotalsAcc {
    records: i64,
    record_units: i128,
    linked: i64,
    matched: i64,
    payouts: i64,
    payout_units: i128,
}

impl RailTotalsAcc {
    fn finish(self, rail: &str, currency: &str) -> StoreResult<RailTotals> {
        let currency: Currency = parse_stored("currency", currency)?;
        let amount = |u| Money::from_total_units(u, currency).map(|m| m.display_amount());
        Ok(RailTotals {
            rail: parse_stored("rail", rail)?,
            currency,
            provider_records: self.records as u64,
            provider_amount: amount(self.record_units)?,
            linked: self.linked as u64,
            matched: self.matched as u64,
            payouts_expected: self.payouts as u64,
            payouts_amount: amount(self.payout_units)?,
        })
    }
}
