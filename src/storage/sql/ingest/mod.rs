//! Applying parsed records: batched multi-row statements in one transaction.
//!
//! Every record kind goes through the same three set-based steps: fetch the stored content
//! hashes of the batch's keys, classify each row (new, unchanged, changed), then one multi-row
//! INSERT per chunk. Facts that platforms correct (accounts, payout methods) are upserted;
//! events (usage, refunds, purchases, referrals, links) are immutable, and a changed one is
//! reported as a conflict instead of silently rewriting history.

mod rows;

use std::collections::{HashMap, HashSet};

use sqlx::QueryBuilder;

use super::affiliate::enroll;
use super::{BATCH_ROWS, Db, Store, StoreError, StoreResult, Tx, WriteLock, to_millis};
use crate::domain::fingerprint::content_hash;
use crate::domain::ids::ProgramId;
use crate::domain::money::{Currency, Money};
use crate::domain::program::ProgramSet;
use crate::ingest::record::{OptInRecord, RefundRecord};
use crate::ingest::{Feed, IngestReport, LineError, Numbered, Record};
use rows::{
    ACCOUNTS, LINKS, PAYOUT_METHODS, PURCHASES, REFERRALS, REFUNDS, Row, TAX_PROFILES, TEMPLATES,
    TableSpec, USAGE, Val, to_row,
};

impl Store {
    /// Applies a batch in one write transaction, committed unless `strict` and a row was
    /// rejected.
    pub async fn ingest_batch(
        &self,
        records: &[Numbered],
        report: &mut IngestReport,
        strict: bool,
    ) -> StoreResult<Vec<LineError>> {
        let mut tx = self.begin_write(WriteLock::Accrual).await?;
        let errors = self.apply_records(&mut tx, records, report).await?;
        if strict && !errors.is_empty() {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(errors)
    }

    /// Ingests a stream a chunk at a time, so memory stays flat whatever its size. Each
    /// chunk is applied with the accruals it causes in one transaction: committed chunk by
    /// chunk, or with `strict` all in one transaction that commits only if no line of the
    /// whole input was bad (it holds the ingest lock throughout; the rest of the input is
    /// still read after a bad line, to report every bad line). `progress` hears after each
    /// chunk.
    pub async fn ingest_stream(
        &self,
        chunks: &mut Feed,
        strict: bool,
        progress: &(dyn Fn(&IngestReport, u64) + Sync),
    ) -> StoreResult<IngestReport> {
        let mut report = IngestReport::default();
        let mut bytes = 0;
        let mut whole = match strict {
            true => Some(self.begin_write(WriteLock::Accrual).await?),
            false => None,
        };
        // A reader that stops early fails the ingest: under `strict` nothing commits, and
        // otherwise what committed is what the progress showed.
        while let Some(chunk) = chunks
            .next()
            .await
            .map_err(|e| StoreError::Input(e.to_string()))?
        {
            report.lines_read += chunk.lines;
            bytes += chunk.bytes;
            report.rejected.extend(chunk.rejected);
            let failed = strict && !report.rejected.is_empty();
            match whole.as_mut() {
                _ if failed => {}
                Some(tx) => {
                    let errors = self.apply_records(tx, &chunk.records, &mut report).await?;
                    report.rejected.extend(errors);
                }
                None => {
                    let mut tx = self.begin_write(WriteLock::Accrual).await?;
                    let errors = self
                        .apply_records(&mut tx, &chunk.records, &mut report)
                        .await?;
                    tx.commit().await?;
                    report.rejected.extend(errors);
                }
            }
            progress(&report, bytes);
        }
        report.rejected.sort_by_key(|e| e.line);
        if strict && !report.rejected.is_empty() {
            if let Some(tx) = whole {
                tx.rollback().await?;
            }
            return Ok(IngestReport {
                lines_read: report.lines_read,
                rejected: report.rejected,
                rolled_back: true,
                ..IngestReport::default()
            });
        }
        if let Some(tx) = whole {
            tx.commit().await?;
        }
        Ok(report)
    }

    /// Applies parsed records. Returns the rows rejected at this stage (conflicts, unknown
    /// references); the caller decides whether to commit. Accruals are posted in the same
    /// transaction, so a committed ingest and its ledger entries are never apart.
    async fn apply_records(
        &self,
        tx: &mut Tx,
        records: &[Numbered],
        report: &mut IngestReport,
    ) -> StoreResult<Vec<LineError>> {
        let (programs, tax) = (self.programs(), self.tax_rules());
        let mut errors = Vec::new();
        let posted_before = super::events::last_posting(tx).await?;
        let now = to_millis(crate::clock::now());
        let mut sorted = Sorted::of(programs, records, now, &mut errors)?;
        // Order matters only for refunds, which must see their usage.
        let mut written = HashSet::new();
        let mut fresh = Vec::new();
        for spec in [
            &ACCOUNTS,
            &LINKS,
            &REFERRALS,
            &PAYOUT_METHODS,
            &TAX_PROFILES,
            &TEMPLATES,
            &USAGE,
            &PURCHASES,
        ] {
            let rows = sorted.by_kind.remove(spec.kind).unwrap_or_default();
            let stored = apply_kind(tx, spec, rows, report, &mut errors).await?;
            if spec.kind == USAGE.kind {
                fresh = stored
                    .iter()
                    .map(rows::fresh_charge)
                    .collect::<StoreResult<_>>()?;
            }
            written.extend(stored.iter().map(|r| r.line));
        }
        // A tax form on file, or a country now known, releases the payouts that waited for it.
        report.payouts_released += super::tax_holds::recheck_ingested(tx, tax, records).await?;
        let refund_rows = refund_rows(tx, &sorted.refunds, &mut errors).await?;
        apply_kind(tx, &REFUNDS, refund_rows, report, &mut errors).await?;

        // Accounts and links written are evidence: their referrals are judged again.
        Self::record_evidence(tx, records, &written).await?;
        report.referrals_judged += Self::judge_referrals(tx).await?;
        // What changed is re-accrued: the accounts and templates the records touch, and the
        // accounts and templates of refunded charges. New charges alone are folded as fresh
        // (accrual/fresh.rs), unless their account is in scope for another reason.
        let Sorted {
            mut accounts,
            mut templates,
            refunds,
            opt_ins,
            ..
        } = sorted;
        accounts.sort_unstable();
        accounts.dedup();
        templates.sort_unstable();
        templates.dedup();
        Self::scope(tx, "account", accounts).await?;
        Self::scope(tx, "template", templates).await?;
        scope_refunded(tx, &refunds).await?;
        // Opt-ins last: they count paying referrals, which the other records may add.
        apply_opt_ins(tx, programs, opt_ins, report, &mut errors).await?;
        report.accruals_posted += Self::accrue_scope(tx, programs, &fresh).await?;
        // Whoever the accruals credited or debited may now be able to cash out.
        super::events::check_holders_posted_after(tx, posted_before).await?;
        errors.sort_by_key(|e| e.line);
        Ok(errors)
    }
}

/// A batch's records sorted by how they are applied, with what they touch.
struct Sorted<'r> {
    /// Rows of the kinds written by `apply_kind`, by kind.
    by_kind: HashMap<&'static str, Vec<Row>>,
    /// Refunds need their usage from the database first.
    refunds: Vec<(usize, &'r RefundRecord)>,
    opt_ins: Vec<(usize, &'r OptInRecord)>,
    /// Accounts and templates whose accruals the records may change.
    accounts: Vec<String>,
    templates: Vec<String>,
}

impl<'r> Sorted<'r> {
    /// Sorts the records, rejecting (into `errors`) those naming a wrong program and those
    /// with an amount storage cannot hold.
    fn of(
        programs: &ProgramSet,
        records: &'r [Numbered],
        now: i64,
        errors: &mut Vec<LineError>,
    ) -> StoreResult<Sorted<'r>> {
        let mut sorted = Sorted {
            by_kind: HashMap::new(),
            refunds: Vec::new(),
            opt_ins: Vec::new(),
            accounts: Vec::new(),
            templates: Vec::new(),
        };
        for n in records {
            if let Err(message) = check_program(programs, &n.record) {
                errors.push(LineError {
                    line: n.line,
                    message,
                });
                continue;
            }
            match &n.record {
                Record::Account(a) => sorted.accounts.push(a.id.to_string()),
                Record::Referral(r) => sorted.accounts.push(r.referred.to_string()),
                Record::Usage(u) => sorted
                    .templates
                    .extend(u.template_id.as_ref().map(|t| t.to_string())),
                Record::Template(t) => sorted.templates.push(t.id.to_string()),
                _ => {}
            }
            let row = match &n.record {
                Record::Refund(r) => {
                    sorted.refunds.push((n.line, r));
                    continue;
                }
                Record::AffiliateOptIn(o) => {
                    sorted.opt_ins.push((n.line, o));
                    continue;
                }
                other => match to_row(n.line, other, now) {
                    Ok(row) => row,
                    // An amount storage cannot hold is that line's problem, not the file's.
                    Err(StoreError::Money(e)) => {
                        errors.push(LineError {
                            line: n.line,
                            message: e.to_string(),
                        });
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            sorted.by_kind.entry(n.record.kind()).or_default().push(row);
        }
        Ok(sorted)
    }
}

/// Puts the accounts and templates of refunded charges in the accrual scope.
async fn scope_refunded(tx: &mut Tx, refunds: &[(usize, &RefundRecord)]) -> StoreResult<()> {
    let refunded: Vec<&str> = refunds.iter().map(|(_, r)| r.usage_id.as_str()).collect();
    for chunk in refunded.chunks(BATCH_ROWS) {
        let mut q = QueryBuilder::<Db>::new(
            "INSERT INTO accrual_scope (kind, id) \
             SELECT 'account', account_id FROM usage WHERE id IN (",
        );
        let mut sep = q.separated(", ");
        for id in chunk {
            sep.push_bind(*id);
        }
        q.push(") UNION SELECT 'template', template_id FROM usage WHERE template_id IS NOT NULL AND id IN (");
        let mut sep = q.separated(", ");
        for id in chunk {
            sep.push_bind(*id);
        }
        q.push(") ON CONFLICT DO NOTHING");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Enrolls each affiliate opt-in; a refused one is that line's error.
async fn apply_opt_ins(
    tx: &mut Tx,
    programs: &ProgramSet,
    opt_ins: Vec<(usize, &OptInRecord)>,
    report: &mut IngestReport,
    errors: &mut Vec<LineError>,
) -> StoreResult<()> {
    for (line, o) in opt_ins {
        match enroll(tx, programs, &o.program, &o.account, o.at).await {
            Ok(e) if e.replayed => report.counts("affiliate_opt_in").unchanged += 1,
            Ok(_) => report.counts("affiliate_opt_in").inserted += 1,
            Err(super::affiliate::OptInError::Store(e)) => return Err(e),
            Err(e) => errors.push(LineError {
                line,
                message: e.to_string(),
            }),
        }
    }
    Ok(())
}

/// A record that names a program must name a configured one of the right kind.
fn check_program(programs: &ProgramSet, record: &Record) -> Result<(), String> {
    let (id, wanted): (&ProgramId, &str) = match record {
        Record::Referral(r) => (&r.program, "referral"),
        Record::Template(t) => (&t.program, "creator"),
        Record::AffiliateOptIn(o) => (&o.program, "affiliate"),
        _ => return Ok(()),
    };
    match programs.get(id) {
        None => Err(format!(
            "unknown program {id}; configured programs: {}",
            programs.ids()
        )),
        Some(p) if p.kind.code() != wanted => Err(format!(
            "{id} is a {} program; a {} record needs a {wanted} program",
            p.kind.code(),
            record.kind()
        )),
        Some(_) => Ok(()),
    }
}

/// Refunds need their usage: its currency, and how much of it is already refunded. One query
/// per chunk fetches both; a refund of unknown usage, or one that would refund more than was
/// spent, is rejected with its line.
async fn refund_rows(
    tx: &mut Tx,
    refunds: &[(usize, &RefundRecord)],
    errors: &mut Vec<LineError>,
) -> StoreResult<Vec<Row>> {
    let mut usage_state: HashMap<String, (i64, i64, String)> = HashMap::new();
    for chunk in refunds.chunks(BATCH_ROWS) {
        let mut q = QueryBuilder::<Db>::new(
            "SELECT u.id, CAST(u.units AS BIGINT), u.currency, \
             CAST(COALESCE((SELECT SUM(r.units) FROM refunds r WHERE r.usage_id = u.id), 0) AS BIGINT) \
             FROM usage u WHERE u.id IN (",
        );
        let mut sep = q.separated(", ");
        for (_, r) in chunk {
            sep.push_bind(r.usage_id.as_str());
        }
        q.push(")");
        let rows: Vec<(String, i64, String, i64)> = q.build_query_as().fetch_all(&mut **tx).await?;
        for (id, units, currency, refunded) in rows {
            usage_state.insert(id, (units, refunded, currency));
        }
    }
    let existing =
        existing_hashes(tx, &REFUNDS, refunds.iter().map(|(_, r)| r.id.to_string())).await?;
    let mut rows = Vec::new();
    let mut seen_in_file = std::collections::HashSet::new();
    for (line, r) in refunds {
        let Some((units, refunded, currency)) = usage_state.get_mut(r.usage_id.as_str()) else {
            errors.push(LineError {
                line: *line,
                message: format!(
                    "refund {} names usage {} which has not been ingested; send the usage first",
                    r.id, r.usage_id
                ),
            });
            continue;
        };
        let currency: Currency = super::parse_stored("usage currency", currency)?;
        let amount = Money::new(r.amount, currency);
        let refund_units = amount.to_units()?;
        let at = r.at.map(to_millis);
        let hash = content_hash(&[
            r.usage_id.as_str(),
            &at.map(|a| a.to_string()).unwrap_or_default(),
            &refund_units.to_string(),
        ]);
        // A replayed refund is already counted in `refunded`; only new ones consume room.
        if !existing.contains_key(r.id.as_str()) && seen_in_file.insert(r.id.as_str()) {
            if i128::from(*refunded) + i128::from(refund_units) > i128::from(*units) {
                errors.push(LineError {
                    line: *line,
                    message: format!(
                        "refund {} of {} would refund more than usage {} charged ({}; already refunded {})",
                        r.id,
                        amount,
                        r.usage_id,
                        Money::from_units(*units, currency),
                        Money::from_units(*refunded, currency),
                    ),
                });
                continue;
            }
            *refunded += refund_units;
        }
        rows.push(Row {
            line: *line,
            key: r.id.to_string(),
            values: vec![
                r.id.as_str().into(),
                r.usage_id.as_str().into(),
                at.map_or(Val::NullInt, Val::Int),
                refund_units.into(),
                hash.clone().into(),
            ],
            hash,
        });
    }
    Ok(rows)
}

async fn existing_hashes(
    tx: &mut Tx,
    spec: &TableSpec,
    keys: impl Iterator<Item = String>,
) -> StoreResult<HashMap<String, String>> {
    let keys: Vec<String> = keys.collect();
    let mut found = HashMap::new();
    // One round trip where the backend takes an array of keys; bounded IN lists otherwise.
    if spec.key_expr == "id"
        && let Some(rows) = super::hashes_by_id(tx, spec.table, &keys).await?
    {
        found.extend(rows);
        return Ok(found);
    }
    for chunk in keys.chunks(BATCH_ROWS) {
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {key} AS k, content_hash FROM {table} WHERE {key} IN (",
            key = spec.key_expr,
            table = spec.table
        ));
        let mut sep = q.separated(", ");
        for k in chunk {
            sep.push_bind(k.as_str());
        }
        q.push(")");
        let rows: Vec<(String, String)> = q.build_query_as().fetch_all(&mut **tx).await?;
        found.extend(rows);
    }
    Ok(found)
}

/// Writes one kind's rows; returns the rows inserted or updated.
async fn apply_kind(
    tx: &mut Tx,
    spec: &TableSpec,
    rows: Vec<Row>,
    report: &mut IngestReport,
    errors: &mut Vec<LineError>,
) -> StoreResult<Vec<Row>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // The same record twice in one file: identical is harmless, different is a conflict.
    let mut first_seen: HashMap<String, (usize, String)> = HashMap::new();
    let mut unique = Vec::with_capacity(rows.len());
    for row in rows {
        match first_seen.get(&row.key) {
            Some((_, hash)) if *hash == row.hash => report.counts(spec.kind).unchanged += 1,
            Some((line, _)) => errors.push(LineError {
                line: row.line,
                message: format!(
                    "{} {} also appears on line {line} with different content",
                    spec.kind, row.key
                ),
            }),
            None => {
                first_seen.insert(row.key.clone(), (row.line, row.hash.clone()));
                unique.push(row);
            }
        }
    }

    let existing = existing_hashes(tx, spec, unique.iter().map(|r| r.key.clone())).await?;
    let mut to_write = Vec::with_capacity(unique.len());
    for row in unique {
        match existing.get(&row.key) {
            None => {
                report.counts(spec.kind).inserted += 1;
                to_write.push(row);
            }
            Some(hash) if *hash == row.hash => report.counts(spec.kind).unchanged += 1,
            Some(_) if spec.mutable => {
                report.counts(spec.kind).updated += 1;
                to_write.push(row);
            }
            Some(_) => errors.push(LineError {
                line: row.line,
                message: format!(
                    "{} {} was already ingested with different content; {}s cannot change, send a new record instead",
                    spec.kind, row.key, spec.kind
                ),
            }),
        }
    }

    if super::COPY_SUPPORTED && to_write.len() >= COPY_FROM {
        copy_kind(tx, spec, &to_write).await?;
        return Ok(to_write);
    }
    for chunk in to_write.chunks(BATCH_ROWS) {
        let mut q = QueryBuilder::<Db>::new(format!(
            "INSERT INTO {} ({}) ",
            spec.table,
            spec.columns.join(", ")
        ));
        q.push_values(chunk, |mut b, row| {
            for v in &row.values {
                match v {
                    Val::Text(s) => b.push_bind(s.clone()),
                    Val::Int(i) => b.push_bind(*i),
                    Val::Null => b.push_bind(None::<String>),
                    Val::NullInt => b.push_bind(None::<i64>),
                };
            }
        });
        q.push(on_conflict(spec));
        q.build().execute(&mut **tx).await?;
    }
    Ok(to_write)
}

/// From how many rows one kind is loaded with COPY (where the backend has it) rather than
/// multi-row inserts: below it the staging table costs more than it saves.
const COPY_FROM: usize = 2_000;

/// Rows in COPY's text format.
fn copy_text(rows: &[Row]) -> String {
    let mut data = String::with_capacity(rows.len() * 128);
    for row in rows {
        for (i, v) in row.values.iter().enumerate() {
            if i > 0 {
                data.push('\t');
            }
            match v {
                Val::Text(s) => super::copy_escape(&mut data, s),
                Val::Int(n) => data.push_str(&n.to_string()),
                Val::Null | Val::NullInt => data.push_str("\\N"),
            }
        }
        data.push('\n');
    }
    data
}

/// What a row whose key is already stored does: a mutable kind updates, an immutable one
/// is left alone (its conflicts were reported before the write).
fn on_conflict(spec: &TableSpec) -> String {
    if spec.mutable {
        let updates: Vec<String> = spec
            .columns
            .iter()
            .filter(|c| !spec.key_cols.split(", ").any(|k| k == **c))
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        format!(
            " ON CONFLICT ({}) DO UPDATE SET {}",
            spec.key_cols,
            updates.join(", ")
        )
    } else {
        format!(" ON CONFLICT ({}) DO NOTHING", spec.key_cols)
    }
}

/// One kind's rows through COPY. Immutable kinds (usage, refunds, referrals, ...) go straight
/// into the table: their keys were looked up under the ingest lock, and only ingest writes
/// them. Mutable ones (accounts, payout methods, which the API also writes) go through a
/// session staging table shaped like the target and one `INSERT ... SELECT` with the same
/// conflict handling as the multi-row path.
async fn copy_kind(tx: &mut Tx, spec: &TableSpec, rows: &[Row]) -> StoreResult<()> {
    let staging = format!("staging_{}", spec.table);
    let columns = spec.columns.join(", ");
    let data = copy_text(rows);
    if !spec.mutable {
        let copy = format!("COPY {} ({columns}) FROM STDIN", spec.table);
        return super::copy_rows(tx, &copy, data).await;
    }
    for sql in [
        format!(
            "CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {} INCLUDING DEFAULTS) \
             ON COMMIT DELETE ROWS",
            spec.table
        ),
        format!("DELETE FROM {staging}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut **tx)
            .await?;
    }
    super::copy_rows(tx, &format!("COPY {staging} ({columns}) FROM STDIN"), data).await?;
    let insert = format!(
        "INSERT INTO {} ({columns}) SELECT {columns} FROM {staging}{}",
        spec.table,
        on_conflict(spec)
    );
    sqlx::query(sqlx::AssertSqlSafe(insert))
        .execute(&mut **tx)
        .await?;
    Ok(())
}
