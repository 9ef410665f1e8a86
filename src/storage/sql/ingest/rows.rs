//! How each record kind is stored: its table, key and columns, and the row (values and
//! content hash) a record becomes.

use super::super::accrual::FreshCharge;
use crate::domain::fingerprint::content_hash;
use crate::domain::referral::normalize_email;
use crate::domain::tax::TaxProfile;
use crate::ingest::Record;
use crate::ingest::record::{
    AccountRecord, LinkRecord, PayoutMethodRecord, PurchaseRecord, ReferralRecord, TemplateRecord,
    UsageRecord,
};
use crate::storage::{StoreError, StoreResult, to_millis};

/// A bindable column value.
#[derive(Debug, Clone)]
pub(super) enum Val {
    Text(String),
    Int(i64),
    /// NULL in a text column.
    Null,
    /// NULL in an integer column: PostgreSQL will not put a text-typed NULL there.
    NullInt,
}

impl From<String> for Val {
    fn from(s: String) -> Self {
        Val::Text(s)
    }
}
impl From<&str> for Val {
    fn from(s: &str) -> Self {
        Val::Text(s.to_string())
    }
}
impl From<i64> for Val {
    fn from(i: i64) -> Self {
        Val::Int(i)
    }
}
impl From<Option<String>> for Val {
    fn from(s: Option<String>) -> Self {
        s.map_or(Val::Null, Val::Text)
    }
}

/// How one record kind is stored.
pub(super) struct TableSpec {
    pub(super) kind: &'static str,
    pub(super) table: &'static str,
    /// SQL expression of the record's key, matching [`Row::key`].
    pub(super) key_expr: &'static str,
    /// Conflict target (the primary key columns).
    pub(super) key_cols: &'static str,
    pub(super) columns: &'static [&'static str],
    /// Whether a changed record updates the stored one (true) or is a conflict (false).
    pub(super) mutable: bool,
}

pub(super) struct Row {
    pub(super) line: usize,
    pub(super) key: String,
    pub(super) hash: String,
    pub(super) values: Vec<Val>,
}

pub(super) const ACCOUNTS: TableSpec = TableSpec {
    kind: "account",
    table: "accounts",
    key_expr: "id",
    key_cols: "id",
    columns: &[
        "id",
        "created_at",
        "email",
        "email_normalized",
        "payment_fingerprint",
        "country",
        "hosted_machines",
        "content_hash",
    ],
    mutable: true,
};
pub(super) const LINKS: TableSpec = TableSpec {
    kind: "link",
    table: "account_links",
    key_expr: "account_a || '|' || account_b",
    key_cols: "account_a, account_b",
    columns: &["account_a", "account_b", "reason", "content_hash"],
    mutable: false,
};
pub(super) const REFERRALS: TableSpec = TableSpec {
    kind: "referral",
    table: "referrals",
    key_expr: "id",
    key_cols: "id",
    columns: &[
        "id",
        "program",
        "referrer_id",
        "referred_id",
        "referred_at",
        "template_id",
        "content_hash",
    ],
    mutable: false,
};
pub(super) const TAX_PROFILES: TableSpec = TableSpec {
    kind: "tax_profile",
    table: "tax_profiles",
    key_expr: "account_id",
    key_cols: "account_id",
    columns: &[
        "account_id",
        "status",
        "country",
        "tin_last4",
        "received_at",
        "content_hash",
    ],
    // A new form replaces the one on file.
    mutable: true,
};
pub(super) const PAYOUT_METHODS: TableSpec = TableSpec {
    kind: "payout_method",
    table: "payout_methods",
    key_expr: "account_id || '|' || rail",
    key_cols: "account_id, rail",
    columns: &[
        "account_id",
        "rail",
        "destination",
        "auto_payout",
        "content_hash",
        "updated_at",
    ],
    mutable: true,
};
pub(super) const USAGE: TableSpec = TableSpec {
    kind: "usage",
    table: "usage",
    key_expr: "id",
    key_cols: "id",
    columns: &[
        "id",
        "account_id",
        "at",
        "category",
        "units",
        "currency",
        "template_id",
        "runtime_secs",
        "content_hash",
    ],
    mutable: false,
};
pub(super) const PURCHASES: TableSpec = TableSpec {
    kind: "purchase",
    table: "purchases",
    key_expr: "id",
    key_cols: "id",
    columns: &[
        "id",
        "account_id",
        "at",
        "units",
        "currency",
        "content_hash",
    ],
    mutable: false,
};
pub(super) const TEMPLATES: TableSpec = TableSpec {
    kind: "template",
    table: "templates",
    key_expr: "id",
    key_cols: "id",
    columns: &["id", "program", "creator_id", "content_hash"],
    mutable: false,
};
pub(super) const REFUNDS: TableSpec = TableSpec {
    kind: "refund",
    table: "refunds",
    key_expr: "id",
    key_cols: "id",
    columns: &["id", "usage_id", "at", "units", "content_hash"],
    mutable: false,
};

/// The row a record becomes. Refunds and opt-ins need the database first and are applied
/// on their own.
pub(super) fn to_row(line: usize, record: &Record, now: i64) -> StoreResult<Row> {
    Ok(match record {
        Record::Account(a) => account_row(line, a),
        Record::Link(l) => link_row(line, l),
        Record::Referral(r) => referral_row(line, r),
        Record::PayoutMethod(m) => payout_method_row(line, m, now),
        Record::Usage(u) => usage_row(line, u)?,
        Record::Purchase(p) => purchase_row(line, p)?,
        Record::Template(t) => template_row(line, t),
        Record::TaxProfile(t) => tax_profile_row(line, t),
        Record::Refund(_) | Record::AffiliateOptIn(_) => {
            return Err(StoreError::Corrupt(
                "refunds and opt-ins are applied on their own".into(),
            ));
        }
    })
}

fn account_row(line: usize, a: &AccountRecord) -> Row {
    let created = to_millis(a.created_at);
    let hosted = i64::from(a.hosted_machines);
    let hash = content_hash(&[
        &created.to_string(),
        &a.email,
        a.payment_fingerprint.as_deref().unwrap_or(""),
        a.country.as_deref().unwrap_or(""),
        &hosted.to_string(),
    ]);
    Row {
        line,
        key: a.id.to_string(),
        values: vec![
            a.id.as_str().into(),
            created.into(),
            a.email.clone().into(),
            normalize_email(&a.email).into(),
            a.payment_fingerprint.clone().into(),
            a.country.clone().into(),
            hosted.into(),
            hash.clone().into(),
        ],
        hash,
    }
}

fn link_row(line: usize, l: &LinkRecord) -> Row {
    let hash = content_hash(&[l.reason.as_deref().unwrap_or("")]);
    Row {
        line,
        key: format!("{}|{}", l.a, l.b),
        values: vec![
            l.a.as_str().into(),
            l.b.as_str().into(),
            l.reason.clone().into(),
            hash.clone().into(),
        ],
        hash,
    }
}

fn referral_row(line: usize, r: &ReferralRecord) -> Row {
    let at = to_millis(r.at);
    let template = r.template_id.as_ref().map(|t| t.to_string());
    let hash = content_hash(&[
        r.referrer.as_str(),
        &at.to_string(),
        template.as_deref().unwrap_or(""),
    ]);
    Row {
        line,
        key: r.id(),
        values: vec![
            r.id().into(),
            r.program.as_str().into(),
            r.referrer.as_str().into(),
            r.referred.as_str().into(),
            at.into(),
            template.into(),
            hash.clone().into(),
        ],
        hash,
    }
}

fn tax_profile_row(line: usize, t: &TaxProfile) -> Row {
    let received = to_millis(t.received_at);
    let last4 = t.tin_last4.clone().unwrap_or_default();
    let hash = content_hash(&[t.form.code(), &t.country, &last4, &received.to_string()]);
    Row {
        line,
        key: t.account.to_string(),
        values: vec![
            t.account.as_str().into(),
            t.form.code().into(),
            t.country.clone().into(),
            t.tin_last4.clone().into(),
            received.into(),
            hash.clone().into(),
        ],
        hash,
    }
}

fn payout_method_row(line: usize, m: &PayoutMethodRecord, now: i64) -> Row {
    // The flag joins the hash only when set, so records from before it existed replay.
    let hash = if m.auto_payout {
        content_hash(&[&m.destination, "auto"])
    } else {
        content_hash(&[&m.destination])
    };
    Row {
        line,
        key: format!("{}|{}", m.account, m.rail),
        values: vec![
            m.account.as_str().into(),
            m.rail.as_str().into(),
            m.destination.clone().into(),
            i64::from(m.auto_payout).into(),
            hash.clone().into(),
            now.into(),
        ],
        hash,
    }
}

fn usage_row(line: usize, u: &UsageRecord) -> StoreResult<Row> {
    let at = to_millis(u.at);
    let units = u.amount.to_units()?;
    let template = u.template_id.as_ref().map(|t| t.to_string());
    let runtime = i64::try_from(u.runtime_secs).unwrap_or(i64::MAX);
    let mut parts = vec![
        u.account.to_string(),
        at.to_string(),
        u.category.code().to_string(),
        units.to_string(),
        u.amount.currency().code().to_string(),
    ];
    // Only present fields join the hash, so records from before they existed replay.
    if template.is_some() || runtime != 0 {
        parts.push(template.clone().unwrap_or_default());
        parts.push(runtime.to_string());
    }
    let hash = content_hash(&parts.iter().map(String::as_str).collect::<Vec<_>>());
    Ok(Row {
        line,
        key: u.id.to_string(),
        values: vec![
            u.id.as_str().into(),
            u.account.as_str().into(),
            at.into(),
            u.category.code().into(),
            units.into(),
            u.amount.currency().code().into(),
            template.into(),
            runtime.into(),
            hash.clone().into(),
        ],
        hash,
    })
}

/// The charge a stored usage row is, for accrual (columns in `USAGE` order).
pub(super) fn fresh_charge(row: &Row) -> StoreResult<FreshCharge> {
    let text = |i: usize| match row.values.get(i) {
        Some(Val::Text(s)) => Ok(s.clone()),
        _ => Err(StoreError::Corrupt(format!(
            "usage row column {i} is not text"
        ))),
    };
    let int = |i: usize| match row.values.get(i) {
        Some(Val::Int(n)) => Ok(*n),
        _ => Err(StoreError::Corrupt(format!(
            "usage row column {i} is not a number"
        ))),
    };
    Ok(FreshCharge {
        account: text(1)?,
        at_ms: int(2)?,
        category: text(3)?,
        units: int(4)?,
        currency: text(5)?,
    })
}

fn purchase_row(line: usize, p: &PurchaseRecord) -> StoreResult<Row> {
    let at = to_millis(p.at);
    let units = p.amount.to_units()?;
    let hash = content_hash(&[
        p.account.as_str(),
        &at.to_string(),
        &units.to_string(),
        p.amount.currency().code(),
    ]);
    Ok(Row {
        line,
        key: p.id.to_string(),
        values: vec![
            p.id.as_str().into(),
            p.account.as_str().into(),
            at.into(),
            units.into(),
            p.amount.currency().code().into(),
            hash.clone().into(),
        ],
        hash,
    })
}

fn template_row(line: usize, t: &TemplateRecord) -> Row {
    let hash = content_hash(&[t.program.as_str(), t.creator.as_str()]);
    Row {
        line,
        key: t.id.to_string(),
        values: vec![
            t.id.as_str().into(),
            t.program.as_str().into(),
            t.creator.as_str().into(),
            hash.clone().into(),
        ],
        hash,
    }
}
