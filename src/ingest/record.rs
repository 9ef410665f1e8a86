//! The NDJSON wire format of platform records and its parsing into trusted domain records.
//!
//! Amounts are decimal *strings*: a JSON number is rejected, because a float cannot carry
//! money exactly. Unknown fields are rejected so a typo never silently drops data.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::ids::{AccountId, IdError, ProgramId, Rail, RecordId, TemplateId};
use crate::domain::money::{Currency, MAX_INPUT_DECIMALS, Money, MoneyError};
use crate::domain::tax::{TaxProfile, TaxProfileError};
pub use crate::domain::usage::UsageCategory;

/// One line of an ingest file, as written by a platform.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum WireRecord {
    Account {
        id: String,
        #[serde(deserialize_with = "created_at")]
        created_at: DateTime<Utc>,
        email: String,
        #[serde(default)]
        payment_fingerprint: Option<String>,
        #[serde(default)]
        country: Option<String>,
        #[serde(default)]
        hosted_machines: bool,
    },
    Referral {
        program: String,
        referrer: String,
        referred: String,
        #[serde(deserialize_with = "at")]
        at: DateTime<Utc>,
        #[serde(default)]
        template_id: Option<String>,
    },
    Usage {
        id: String,
        account: String,
        #[serde(deserialize_with = "at")]
        at: DateTime<Utc>,
        category: String,
        amount: String,
        currency: String,
        #[serde(default)]
        template_id: Option<String>,
        #[serde(default)]
        runtime_secs: Option<u64>,
    },
    Refund {
        id: String,
        usage_id: String,
        amount: String,
        #[serde(default, deserialize_with = "optional_at")]
        at: Option<DateTime<Utc>>,
    },
    Purchase {
        id: String,
        account: String,
        #[serde(deserialize_with = "at")]
        at: DateTime<Utc>,
        amount: String,
        currency: String,
    },
    PayoutMethod {
        account: String,
        rail: String,
        destination: String,
        #[serde(default)]
        auto_payout: bool,
    },
    Link {
        a: String,
        b: String,
        #[serde(default)]
        reason: Option<String>,
    },
    Template {
        id: String,
        program: String,
        creator: String,
    },
    AffiliateOptIn {
        program: String,
        account: String,
        #[serde(deserialize_with = "at")]
        at: DateTime<Utc>,
    },
    TaxProfile(TaxProfileWire),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaxProfileWire {
    account: String,
    status: String,
    country: String,
    #[serde(default)]
    tax_id_last4: Option<String>,
    /// Refused when present, and read as nothing so the refusal can never echo it.
    #[serde(default)]
    tax_id: Option<serde::de::IgnoredAny>,
    #[serde(deserialize_with = "received_at")]
    received_at: DateTime<Utc>,
}

impl TaxProfileWire {
    fn parse(self) -> Result<TaxProfile, RecordError> {
        if self.tax_id.is_some() {
            return Err(TaxProfileError::FullTaxId.into());
        }
        Ok(TaxProfile::parse(
            AccountId::parse(&self.account)?,
            &self.status,
            &self.country,
            self.tax_id_last4.as_deref(),
            self.received_at,
        )?)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub id: AccountId,
    pub created_at: DateTime<Utc>,
    pub email: String,
    pub payment_fingerprint: Option<String>,
    pub country: Option<String>,
    pub hosted_machines: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferralRecord {
    pub program: ProgramId,
    pub referrer: AccountId,
    pub referred: AccountId,
    pub at: DateTime<Utc>,
    pub template_id: Option<TemplateId>,
}

impl ReferralRecord {
    /// A referred account can be referred once per program, so that pair is the record's id.
    pub fn id(&self) -> String {
        format!("{}:{}", self.program, self.referred)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub id: RecordId,
    pub account: AccountId,
    pub at: DateTime<Utc>,
    pub category: UsageCategory,
    pub amount: Money,
    /// The template the charged pod ran from (creator programs).
    pub template_id: Option<TemplateId>,
    /// Seconds of runtime this charge covers (counts toward a template's threshold).
    pub runtime_secs: u64,
}

/// A refund names its usage; its currency is the usage's, resolved at storage time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRecord {
    pub id: RecordId,
    pub usage_id: RecordId,
    /// Validated decimal (positive, at most [`MAX_INPUT_DECIMALS`] places), currency-less
    /// until the usage is known.
    pub amount: rust_decimal::Decimal,
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseRecord {
    pub id: RecordId,
    pub account: AccountId,
    pub at: DateTime<Utc>,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutMethodRecord {
    pub account: AccountId,
    pub rail: Rail,
    pub destination: String,
    /// Whether scheduled payout runs may pay this account through this method.
    pub auto_payout: bool,
}

/// A template and its creator, under a creator program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    pub id: TemplateId,
    pub program: ProgramId,
    pub creator: AccountId,
}

/// A referrer's permanent choice of an affiliate program (cash instead of credits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptInRecord {
    pub program: ProgramId,
    pub account: AccountId,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRecord {
    /// The two accounts, ordered so (a, b) and (b, a) are the same link.
    pub a: AccountId,
    pub b: AccountId,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Account(AccountRecord),
    Referral(ReferralRecord),
    Usage(UsageRecord),
    Refund(RefundRecord),
    Purchase(PurchaseRecord),
    PayoutMethod(PayoutMethodRecord),
    Link(LinkRecord),
    Template(TemplateRecord),
    AffiliateOptIn(OptInRecord),
    TaxProfile(TaxProfile),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not a valid record: {0}")]
    Json(String),
    #[error(transparent)]
    Id(#[from] IdError),
    #[error(transparent)]
    Money(#[from] MoneyError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Tax(#[from] TaxProfileError),
}

impl Record {
    /// Parses one NDJSON line.
    pub fn parse_line(line: &str) -> Result<Record, RecordError> {
        let wire: WireRecord =
            serde_json::from_str(line).map_err(|e| RecordError::Json(json_message(&e)))?;
        wire.into_record()
    }

    /// The record's type tag, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Account(_) => "account",
            Record::Referral(_) => "referral",
            Record::Usage(_) => "usage",
            Record::Refund(_) => "refund",
            Record::Purchase(_) => "purchase",
            Record::PayoutMethod(_) => "payout_method",
            Record::Link(_) => "link",
            Record::Template(_) => "template",
            Record::AffiliateOptIn(_) => "affiliate_opt_in",
            Record::TaxProfile(_) => "tax_profile",
        }
    }
}

/// serde_json's messages are good; this only makes the float case say what to do.
/// Reads an RFC 3339 timestamp; a bad one is refused naming its field and the format, since
/// "invalid characters" alone does not tell a platform engineer what to fix.
fn timestamp<'de, D: serde::Deserializer<'de>>(
    field: &str,
    d: D,
) -> Result<DateTime<Utc>, D::Error> {
    parse_timestamp::<D>(field, &String::deserialize(d)?)
}

fn parse_timestamp<'de, D: serde::Deserializer<'de>>(
    field: &str,
    text: &str,
) -> Result<DateTime<Utc>, D::Error> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            serde::de::Error::custom(format!(
                "{field}: {text:?} is not an RFC 3339 timestamp; write e.g. \"2026-01-02T03:04:05Z\""
            ))
        })
}

fn created_at<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    timestamp("created_at", d)
}

fn at<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    timestamp("at", d)
}

fn received_at<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    timestamp("received_at", d)
}

fn optional_at<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|text| parse_timestamp::<D>("at", &text))
        .transpose()
}

fn json_message(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if msg.contains("invalid type: floating point") || msg.contains("invalid type: integer") {
        format!("{msg} (amounts must be decimal strings, e.g. \"12.34\")")
    } else {
        msg
    }
}

fn input_money(amount: &str, currency: &str) -> Result<Money, RecordError> {
    let currency: Currency = currency.parse()?;
    let money = Money::parse(amount, currency, MAX_INPUT_DECIMALS)?;
    if !money.is_positive() {
        return Err(MoneyError::NotPositive(money.amount()).into());
    }
    // The per-amount cap: a larger amount cannot be stored, so it is this line's problem.
    money.check_cap()?;
    Ok(money)
}

/// Checks that a destination has the shape its rail expects (the rail's own grammar).
pub fn validate_destination(rail: Rail, destination: &str) -> Result<String, RecordError> {
    let grammar = crate::providers::facts(rail).destination;
    if grammar.accepts(destination) {
        Ok(destination.to_string())
    } else {
        Err(RecordError::Invalid(format!(
            "{destination:?} is not a valid {rail} destination; expected {}",
            grammar.expected
        )))
    }
}

impl WireRecord {
    fn into_record(self) -> Result<Record, RecordError> {
        Ok(match self {
            WireRecord::Account {
                id,
                created_at,
                email,
                payment_fingerprint,
                country,
                hosted_machines,
            } => Record::Account(account(
                &id,
                created_at,
                &email,
                payment_fingerprint,
                country,
                hosted_machines,
            )?),
            WireRecord::Referral {
                program,
                referrer,
                referred,
                at,
                template_id,
            } => Record::Referral(referral(&program, &referrer, &referred, at, template_id)?),
            WireRecord::Usage {
                id,
                account,
                at,
                category,
                amount,
                currency,
                template_id,
                runtime_secs,
            } => {
                let runtime_secs = runtime(runtime_secs)?;
                Record::Usage(UsageRecord {
                    id: RecordId::parse(&id)?,
                    account: AccountId::parse(&account)?,
                    at,
                    category: usage_category(&category)?,
                    amount: input_money(&amount, &currency)?,
                    template_id: template_id.as_deref().map(TemplateId::parse).transpose()?,
                    runtime_secs,
                })
            }
            WireRecord::Refund {
                id,
                usage_id,
                amount,
                at,
            } => Record::Refund(RefundRecord {
                id: RecordId::parse(&id)?,
                usage_id: RecordId::parse(&usage_id)?,
                // Validated against USD's rules here; the real currency comes from the usage.
                amount: input_money(&amount, "USD")?.amount(),
                at,
            }),
            WireRecord::Purchase {
                id,
                account,
                at,
                amount,
                currency,
            } => Record::Purchase(PurchaseRecord {
                id: RecordId::parse(&id)?,
                account: AccountId::parse(&account)?,
                at,
                amount: input_money(&amount, &currency)?,
            }),
            WireRecord::PayoutMethod {
                account,
                rail,
                destination,
                auto_payout,
            } => Record::PayoutMethod(payout_method(&account, &rail, &destination, auto_payout)?),
            WireRecord::Link { a, b, reason } => Record::Link(link(&a, &b, reason)?),
            WireRecord::Template {
                id,
                program,
                creator,
            } => Record::Template(TemplateRecord {
                id: TemplateId::parse(&id)?,
                program: ProgramId::parse(&program)?,
                creator: AccountId::parse(&creator)?,
            }),
            WireRecord::AffiliateOptIn {
                program,
                account,
                at,
            } => Record::AffiliateOptIn(OptInRecord {
                program: ProgramId::parse(&program)?,
                account: AccountId::parse(&account)?,
                at,
            }),
            WireRecord::TaxProfile(t) => Record::TaxProfile(t.parse()?),
        })
    }
}

/// An account, normalised: email and fingerprint trimmed (a blank fingerprint is none),
/// country code upper-cased. An email without an `@` is refused before anything else.
fn account(
    id: &str,
    created_at: DateTime<Utc>,
    email: &str,
    payment_fingerprint: Option<String>,
    country: Option<String>,
    hosted_machines: bool,
) -> Result<AccountRecord, RecordError> {
    if !email.contains('@') {
        return Err(RecordError::Invalid(format!(
            "email {email:?} is not an email address"
        )));
    }
    Ok(AccountRecord {
        id: AccountId::parse(id)?,
        created_at,
        email: email.trim().to_string(),
        payment_fingerprint: payment_fingerprint
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty()),
        country: country.map(|c| c.trim().to_ascii_uppercase()),
        hosted_machines,
    })
}

fn usage_category(code: &str) -> Result<UsageCategory, RecordError> {
    code.parse()
        .map_err(|e: crate::domain::usage::UnknownCategory| RecordError::Invalid(e.to_string()))
}

/// Seconds of runtime (0 when not given); stored as a signed integer, so bounded by it.
fn runtime(runtime_secs: Option<u64>) -> Result<u64, RecordError> {
    let runtime_secs = runtime_secs.unwrap_or(0);
    if runtime_secs > i64::MAX as u64 {
        return Err(RecordError::Invalid(format!(
            "runtime_secs {runtime_secs} is out of range"
        )));
    }
    Ok(runtime_secs)
}

fn referral(
    program: &str,
    referrer: &str,
    referred: &str,
    at: DateTime<Utc>,
    template_id: Option<String>,
) -> Result<ReferralRecord, RecordError> {
    Ok(ReferralRecord {
        program: ProgramId::parse(program)?,
        referrer: AccountId::parse(referrer)?,
        referred: AccountId::parse(referred)?,
        at,
        template_id: template_id.as_deref().map(TemplateId::parse).transpose()?,
    })
}

fn payout_method(
    account: &str,
    rail: &str,
    destination: &str,
    auto_payout: bool,
) -> Result<PayoutMethodRecord, RecordError> {
    let rail: Rail = rail.parse()?;
    Ok(PayoutMethodRecord {
        account: AccountId::parse(account)?,
        rail,
        destination: validate_destination(rail, destination)?,
        auto_payout,
    })
}

/// A link between two different accounts, stored in a fixed order so that a-b and b-a are
/// the same link.
fn link(a: &str, b: &str, reason: Option<String>) -> Result<LinkRecord, RecordError> {
    let (a, b) = (AccountId::parse(a)?, AccountId::parse(b)?);
    if a == b {
        return Err(RecordError::Invalid(format!(
            "a link needs two different accounts, got {a} twice"
        )));
    }
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    Ok(LinkRecord { a, b, reason })
}

pub use crate::domain::fingerprint::content_hash;

#[cfg(test)]
mod tests;
