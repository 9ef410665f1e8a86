//! Every way a provider's record and our payouts can disagree, how bad it is, and what it
//! means in plain words for the person who has to fix it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::ids::Rail;
use crate::domain::money::Money;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Money may have left twice or without us knowing: stop and look today.
    Critical,
    /// The books and the provider disagree; no money is known to be at risk yet.
    High,
}

impl Severity {
    pub fn code(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        [Severity::Critical, Severity::High]
            .into_iter()
            .find(|s| s.code() == code)
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ExceptionKind {
    /// The provider moved money no payout of ours asked for.
    UnknownAtProvider,
    /// Two or more provider records carry money for one payout.
    DuplicateAtProvider,
    /// We believe the payout reached the provider; the provider has no record of it.
    MissingAtProvider,
    AmountMismatch,
    CurrencyMismatch,
    PayeeMismatch,
    StatusMismatch,
}

impl ExceptionKind {
    pub const ALL: [ExceptionKind; 7] = [
        ExceptionKind::UnknownAtProvider,
        ExceptionKind::DuplicateAtProvider,
        ExceptionKind::MissingAtProvider,
        ExceptionKind::AmountMismatch,
        ExceptionKind::CurrencyMismatch,
        ExceptionKind::PayeeMismatch,
        ExceptionKind::StatusMismatch,
    ];

    pub fn code(self) -> &'static str {
        match self {
            ExceptionKind::UnknownAtProvider => "unknown_at_provider",
            ExceptionKind::DuplicateAtProvider => "duplicate_at_provider",
            ExceptionKind::MissingAtProvider => "missing_at_provider",
            ExceptionKind::AmountMismatch => "amount_mismatch",
            ExceptionKind::CurrencyMismatch => "currency_mismatch",
            ExceptionKind::PayeeMismatch => "payee_mismatch",
            ExceptionKind::StatusMismatch => "status_mismatch",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    /// A short title for reports.
    pub fn title(self) -> &'static str {
        match self {
            ExceptionKind::UnknownAtProvider => "Paid at the provider, unknown to us",
            ExceptionKind::DuplicateAtProvider => "Paid more than once at the provider",
            ExceptionKind::MissingAtProvider => "Ours, missing at the provider",
            ExceptionKind::AmountMismatch => "Amount differs",
            ExceptionKind::CurrencyMismatch => "Currency differs",
            ExceptionKind::PayeeMismatch => "Payee differs",
            ExceptionKind::StatusMismatch => "Status differs",
        }
    }

    /// The severity when nothing more specific is known (status mismatches are graded by
    /// `status_severity`).
    pub fn severity(self) -> Severity {
        match self {
            ExceptionKind::UnknownAtProvider | ExceptionKind::DuplicateAtProvider => {
                Severity::Critical
            }
            _ => Severity::High,
        }
    }
}

/// Stable across runs: the same disagreement about the same payout and record always has the
/// same id, which is how a resolution made today still holds next month.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExceptionId(String);

impl ExceptionId {
    pub fn derive(
        kind: ExceptionKind,
        rail: Rail,
        payout: Option<&str>,
        record: Option<&str>,
    ) -> Self {
        let text = format!(
            "{}|{}|{}|{}",
            kind.code(),
            rail.as_str(),
            payout.unwrap_or("-"),
            record.unwrap_or("-")
        );
        let digest = Sha256::digest(text.as_bytes());
        ExceptionId(format!("rx_{}", &hex::encode(digest)[..20]))
    }

    /// What `derive` produces, as the OpenAPI document publishes it.
    pub const PATTERN: &'static str = "^rx_[0-9a-f]{20}$";

    /// Accepts exactly what `derive` produces: `rx_` and 20 lowercase hex digits.
    pub fn parse(value: &str) -> Result<Self, String> {
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        match value.strip_prefix("rx_") {
            Some(hex) if hex.len() == 20 && hex.bytes().all(lower_hex) => {
                Ok(ExceptionId(value.to_string()))
            }
            _ => Err(format!(
                "{value:?} is not an exception id: they look like rx_ followed by 20 hex digits \
                 (see `payouts reconcile --json` or the report)"
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ExceptionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One side's account of a payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Side {
    #[schema(value_type = String, example = "12.50")]
    pub amount: Money,
    pub payee: String,
    /// Our payout status, or the provider's own status word.
    pub status: String,
    pub at: DateTime<Utc>,
}

/// An operator's decision about an exception.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Resolution {
    pub note: String,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// One disagreement found by a reconciliation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Exception {
    #[schema(value_type = String, example = "rx_3f0c2a9d41b7e6c58a12")]
    pub id: ExceptionId,
    pub kind: ExceptionKind,
    pub severity: Severity,
    pub rail: Rail,
    pub payout_id: Option<String>,
    /// The provider's id for its record.
    pub record_id: Option<String>,
    /// Every provider record behind a duplicate (the payout's own payment and the others),
    /// sorted; empty for the other kinds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<String>,
    /// Our payout, as our books have it.
    pub ours: Option<Side>,
    /// The provider's record.
    pub theirs: Option<Side>,
    pub resolution: Option<Resolution>,
}

fn money(m: &Money) -> String {
    format!("{} {}", m.display_amount(), m.currency())
}

fn day(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The records behind a duplicate, in words: `tr_1 and tr_2`, `tr_1, tr_2 and tr_3`.
fn record_list(e: &Exception) -> String {
    let records: Vec<&str> = if e.records.is_empty() {
        e.record_id.as_deref().into_iter().collect()
    } else {
        e.records.iter().map(String::as_str).collect()
    };
    match records.split_last() {
        None => "(no id)".to_string(),
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// What an exception means and what to do about it, for a finance person, not an engineer.
pub fn explain(e: &Exception) -> String {
    let provider = e.rail.display_name();
    let record = e.record_id.as_deref().unwrap_or("(no id)");
    let payout = e.payout_id.as_deref().unwrap_or("(none)");
    match (e.kind, &e.ours, &e.theirs) {
        (ExceptionKind::UnknownAtProvider, _, Some(t)) => format!(
            "{provider} shows {record}: {} sent to {} on {}, but no payout of ours asked for it. \
             Money left the company without a payout behind it. Find out who created it at \
             {provider}; reverse it or book it by hand, then resolve this with a note.",
            money(&t.amount),
            t.payee,
            day(&t.at)
        ),
        (ExceptionKind::DuplicateAtProvider, _, Some(t)) => format!(
            "Payout {payout} was paid more than once at {provider}: {} carry money for it \
             ({record}: {} to {}, {}). The payee received too much. Recover or reverse the \
             extra payment, or book it with `payouts payouts resolve-duplicate` (owed by the \
             payee, or a loss), which resolves this.",
            record_list(e),
            money(&t.amount),
            t.payee,
            t.status
        ),
        (ExceptionKind::DuplicateAtProvider, _, None) => format!(
            "{provider} told us about {}, which name payout {payout} but are not the payment \
             the payout is booked against. The payee may have been paid twice. Check them in \
             {provider}'s dashboard; recover or reverse any extra payment, or book it with \
             `payouts payouts resolve-duplicate` (owed by the payee, or a loss), which \
             resolves this.",
            record_list(e)
        ),
        (ExceptionKind::MissingAtProvider, Some(o), _) => format!(
            "Our books say payout {payout} ({} to {}) reached {provider} on {} and is {}, but \
             {provider} has no record of it in this period. The payee may not have been paid. \
             Check the payout in {provider}'s dashboard before paying anything again.",
            money(&o.amount),
            o.payee,
            day(&o.at),
            o.status
        ),
        (ExceptionKind::AmountMismatch, Some(o), Some(t)) => format!(
            "Payout {payout} was for {} but {provider} record {record} moved {}. The payee got \
             {} than our ledger says.",
            money(&o.amount),
            money(&t.amount),
            if t.amount.amount() > o.amount.amount() {
                "more"
            } else {
                "less"
            }
        ),
        (ExceptionKind::CurrencyMismatch, Some(o), Some(t)) => format!(
            "Payout {payout} was in {} but {provider} record {record} moved {}. The ledger and \
             the provider hold this money in different currencies.",
            o.amount.currency(),
            money(&t.amount)
        ),
        (ExceptionKind::PayeeMismatch, Some(o), Some(t)) => format!(
            "Payout {payout} was meant for {} but {provider} record {record} paid {}. The money \
             may have gone to the wrong person.",
            o.payee, t.payee
        ),
        (ExceptionKind::StatusMismatch, Some(o), Some(t)) => format!(
            "Our books say payout {payout} is {}, but {provider} says {record} is {}. {}",
            o.status,
            t.status,
            if e.severity == Severity::Critical {
                "The provider says money left while our books released it: the payee could be \
                 paid again. Hold further payouts to this payee until it is settled."
            } else {
                "The ledger may be booking money that did not move as recorded."
            }
        ),
        (kind, _, _) => format!(
            "{} for payout {payout} / {provider} record {record}.",
            kind.title()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::Currency;

    fn side(amount: &str, payee: &str, status: &str) -> Side {
        Side {
            amount: Money::new(amount.parse().unwrap(), Currency::Usd),
            payee: payee.into(),
            status: status.into(),
            at: DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn ids_are_stable_and_parse_back() {
        let a = ExceptionId::derive(
            ExceptionKind::AmountMismatch,
            Rail::Wise,
            Some("po_1"),
            Some("9"),
        );
        let b = ExceptionId::derive(
            ExceptionKind::AmountMismatch,
            Rail::Wise,
            Some("po_1"),
            Some("9"),
        );
        let c = ExceptionId::derive(
            ExceptionKind::PayeeMismatch,
            Rail::Wise,
            Some("po_1"),
            Some("9"),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(ExceptionId::parse(a.as_str()), Ok(a.clone()));
        assert!(ExceptionId::parse("rx_nothex").unwrap_err().contains("rx_"));
    }

    #[test]
    fn codes_round_trip() {
        for k in ExceptionKind::ALL {
            assert_eq!(ExceptionKind::from_code(k.code()), Some(k));
        }
        assert_eq!(Severity::from_code("critical"), Some(Severity::Critical));
    }

    #[test]
    fn every_kind_explains_itself_in_plain_words() {
        for kind in ExceptionKind::ALL {
            let e = Exception {
                id: ExceptionId::derive(kind, Rail::Stripe, Some("po_1"), Some("tr_1")),
                kind,
                severity: kind.severity(),
                rail: Rail::Stripe,
                payout_id: Some("po_1".into()),
                record_id: Some("tr_1".into()),
                records: Vec::new(),
                ours: Some(side("12.50", "acct_a", "paid")),
                theirs: Some(side("13.50", "acct_b", "transferred")),
                resolution: None,
            };
            let text = explain(&e);
            assert!(text.contains("Stripe"), "{kind:?}: {text}");
            assert!(!text.contains("{"), "{kind:?}: {text}");
        }
        let unknown = Exception {
            id: ExceptionId::derive(
                ExceptionKind::UnknownAtProvider,
                Rail::Paypal,
                None,
                Some("it_9"),
            ),
            kind: ExceptionKind::UnknownAtProvider,
            severity: Severity::Critical,
            rail: Rail::Paypal,
            payout_id: None,
            record_id: Some("it_9".into()),
            records: Vec::new(),
            ours: None,
            theirs: Some(side("40", "x@example.com", "SUCCESS")),
            resolution: None,
        };
        let text = explain(&unknown);
        assert!(text.contains("no payout of ours"), "{text}");
        assert!(text.contains("40.00 USD"), "{text}");
        // A duplicate a webhook showed, with no record of this run behind it.
        let seen = Exception {
            kind: ExceptionKind::DuplicateAtProvider,
            payout_id: Some("po_1".into()),
            record_id: Some("tr_1".into()),
            theirs: None,
            ..unknown.clone()
        };
        let text = explain(&seen);
        assert!(text.contains("tr_1") && text.contains("po_1"), "{text}");
        assert!(text.contains("paid twice"), "{text}");
        // One exception per payout names every record behind it.
        let both = Exception {
            kind: ExceptionKind::DuplicateAtProvider,
            payout_id: Some("po_1".into()),
            record_id: Some("tr_1".into()),
            records: vec!["tr_1".into(), "tr_2".into(), "tr_3".into()],
            ..unknown
        };
        let text = explain(&both);
        assert!(text.contains("tr_1, tr_2 and tr_3 carry money"), "{text}");
        assert!(text.contains("resolve-duplicate"), "{text}");
    }
}
