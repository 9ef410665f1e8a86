//! The NDJSON wire format of platform records and its parsing into trusted domain records.
//!
//! Amounts are decimal *strings*: a JSON number is rejected, because a float cannot carry
//! money exactly. Unknown fields are rejected so a typo never silently drops data.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::domain::destination;
use crate::domain::ids::{AccountId, IdError, ProgramId, Rail, RecordId, TemplateId};
use crate::domain::money::{Currency, MAX_INPUT_DECIMALS, Money, MoneyError};
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

/// Checks that a destination has the shape its rail expects.
pub fn validate_destination(rail: Rail, destination: &str) -> Result<String, RecordError> {
    if destination::is_valid(rail, destination) {
        Ok(destination.to_string())
    } else {
        Err(RecordError::Invalid(format!(
            "{destination:?} is not a valid {rail} destination; expected {}",
            destination::expected(rail)
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
            } => {
                if !email.contains('@') {
                    return Err(RecordError::Invalid(format!(
                        "email {email:?} is not an email address"
                    )));
                }
                Record::Account(AccountRecord {
                    id: AccountId::parse(&id)?,
                    created_at,
                    email: email.trim().to_string(),
                    payment_fingerprint: payment_fingerprint
                        .map(|f| f.trim().to_string())
                        .filter(|f| !f.is_empty()),
                    country: country.map(|c| c.trim().to_ascii_uppercase()),
                    hosted_machines,
                })
            }
            WireRecord::Referral {
                program,
                referrer,
                referred,
                at,
                template_id,
            } => Record::Referral(ReferralRecord {
                program: ProgramId::parse(&program)?,
                referrer: AccountId::parse(&referrer)?,
                referred: AccountId::parse(&referred)?,
                at,
                template_id: template_id.as_deref().map(TemplateId::parse).transpose()?,
            }),
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
                let runtime_secs = runtime_secs.unwrap_or(0);
                if runtime_secs > i64::MAX as u64 {
                    return Err(RecordError::Invalid(format!(
                        "runtime_secs {runtime_secs} is out of range"
                    )));
                }
                Record::Usage(UsageRecord {
                    id: RecordId::parse(&id)?,
                    account: AccountId::parse(&account)?,
                    at,
                    category: category.parse().map_err(
                        |e: crate::domain::usage::UnknownCategory| {
                            RecordError::Invalid(e.to_string())
                        },
                    )?,
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
            } => {
                let rail: Rail = rail.parse()?;
                Record::PayoutMethod(PayoutMethodRecord {
                    account: AccountId::parse(&account)?,
                    rail,
                    destination: validate_destination(rail, &destination)?,
                    auto_payout,
                })
            }
            WireRecord::Link { a, b, reason } => {
                let (a, b) = (AccountId::parse(&a)?, AccountId::parse(&b)?);
                if a == b {
                    return Err(RecordError::Invalid(format!(
                        "a link needs two different accounts, got {a} twice"
                    )));
                }
                let (a, b) = if a <= b { (a, b) } else { (b, a) };
                Record::Link(LinkRecord { a, b, reason })
            }
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
        })
    }
}

/// A stable fingerprint of a record's content: replaying the same record is a no-op, while
/// the same id with other content is a conflict the platform must hear about.
pub fn content_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0x1f]);
    }
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_record_type() {
        let lines = [
            r#"{"type":"account","id":"a1","created_at":"2026-01-01T00:00:00Z","email":"a@x.com","payment_fingerprint":"fp","country":"us","hosted_machines":true}"#,
            r#"{"type":"referral","program":"vast","referrer":"a1","referred":"b1","at":"2026-01-02T00:00:00Z","template_id":"t1"}"#,
            r#"{"type":"usage","id":"u1","account":"b1","at":"2026-01-03T00:00:00Z","category":"instance","amount":"10.50","currency":"USD"}"#,
            r#"{"type":"refund","id":"r1","usage_id":"u1","amount":"1.5"}"#,
            r#"{"type":"purchase","id":"p1","account":"b1","at":"2026-01-03T00:00:00Z","amount":"100","currency":"USD"}"#,
            r#"{"type":"payout_method","account":"a1","rail":"stripe","destination":"acct_123"}"#,
            r#"{"type":"link","a":"b1","b":"a1","reason":"same device"}"#,
        ];
        let kinds: Vec<_> = lines
            .iter()
            .map(|l| Record::parse_line(l).unwrap().kind())
            .collect();
        assert_eq!(
            kinds,
            [
                "account",
                "referral",
                "usage",
                "refund",
                "purchase",
                "payout_method",
                "link"
            ]
        );
        match Record::parse_line(lines[6]).unwrap() {
            Record::Link(l) => assert_eq!((l.a.as_str(), l.b.as_str()), ("a1", "b1")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_float_amounts_with_advice() {
        let err = Record::parse_line(
            r#"{"type":"usage","id":"u1","account":"b1","at":"2026-01-03T00:00:00Z","category":"pod","amount":10.5,"currency":"USD"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("decimal strings"), "{err}");
    }

    #[test]
    fn rejects_bad_values_with_reasons() {
        let cases = [
            (
                r#"{"type":"usage","id":"u1","account":"b1","at":"2026-01-03T00:00:00Z","category":"pod","amount":"-1","currency":"USD"}"#,
                "greater than zero",
            ),
            (
                r#"{"type":"usage","id":"u1","account":"b1","at":"2026-01-03T00:00:00Z","category":"pod","amount":"1","currency":"DOGE"}"#,
                "unknown currency",
            ),
            (
                r#"{"type":"usage","id":"u1","account":"b1","at":"2026-01-03T00:00:00Z","category":"gpu","amount":"1","currency":"USD"}"#,
                "usage category",
            ),
            (
                r#"{"type":"payout_method","account":"a1","rail":"stripe","destination":"bank-123"}"#,
                "not a valid stripe destination",
            ),
            (
                r#"{"type":"account","id":"a 1","created_at":"2026-01-01T00:00:00Z","email":"a@x.com"}"#,
                "may only contain",
            ),
            (
                r#"{"type":"account","id":"a1","created_at":"2026-01-01T00:00:00Z","email":"a@x.com","color":"red"}"#,
                "unknown field",
            ),
            (
                r#"{"type":"usage","id":"u1","account":"b1","at":"2026-01-03T00:00:00Z","category":"pod","amount":"1000000000","currency":"USD"}"#,
                "over the largest single amount",
            ),
            (
                r#"{"type":"refund","id":"r1","usage_id":"u1","amount":"922337204"}"#,
                "over the largest single amount",
            ),
            (r#"{"type":"bonus","id":"x"}"#, "unknown variant"),
            (r#"not json"#, "not a valid record"),
        ];
        for (line, expected) in cases {
            let err = Record::parse_line(line).unwrap_err().to_string();
            assert!(err.contains(expected), "{line} -> {err}");
        }
    }

    #[test]
    fn wise_recipient_ids_must_fit_the_providers_integer() {
        // Wise's recipient (target account) ids are u64 on the wire (providers/wise/wire.rs).
        assert!(validate_destination(Rail::Wise, "9999999999999999999").is_ok());
        assert!(validate_destination(Rail::Wise, "12345678").is_ok());
        for too_big in ["18446744073709551616", &"9".repeat(64)] {
            let Err(err) = validate_destination(Rail::Wise, too_big) else {
                panic!("{too_big} is accepted");
            };
            let err = err.to_string();
            assert!(err.contains("not a valid wise destination"), "{err}");
            let line = format!(
                r#"{{"type":"payout_method","account":"a1","rail":"wise","destination":"{too_big}"}}"#
            );
            assert!(Record::parse_line(&line).is_err(), "{line} is accepted");
        }
    }

    #[test]
    fn content_hash_separates_fields() {
        assert_ne!(content_hash(&["ab", "c"]), content_hash(&["a", "bc"]));
        assert_eq!(content_hash(&["x"]), content_hash(&["x"]));
    }

    #[test]
    fn a_bad_timestamp_names_its_field_and_the_format() {
        let e = Record::parse_line(
            r#"{"type":"account","id":"a1","created_at":"yesterday","email":"a@x.com"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("created_at") && e.contains("RFC 3339") && e.contains("yesterday"),
            "{e}"
        );
        let e = Record::parse_line(
            r#"{"type":"purchase","id":"p1","account":"b1","at":"2026-13-01","amount":"1","currency":"USD"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("at:") && e.contains("RFC 3339"), "{e}");
    }
}
