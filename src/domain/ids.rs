//! Identifiers, parsed once at the edge so the rest of the code can trust them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} {value:?} is longer than {max} characters")]
    TooLong {
        kind: &'static str,
        value: String,
        max: usize,
    },
    #[error(
        "{kind} {value:?} may only contain letters, digits and . _ - : @ + (no spaces or control characters)"
    )]
    BadCharacter { kind: &'static str, value: String },
    #[error("unknown {kind} {value:?}; expected one of: {expected}")]
    Unknown {
        kind: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// The characters of every id, as the OpenAPI document publishes them (`schema.rs`); a unit
/// test keeps it equal to [`check_token`]. No trimming: `" a"` is not the id `a`.
pub const TOKEN_PATTERN: &str = "^[A-Za-z0-9._:@+-]+$";

fn check_token(kind: &'static str, value: &str, max: usize) -> Result<String, IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.chars().count() > max {
        return Err(IdError::TooLong {
            kind,
            value: value.to_string(),
            max,
        });
    }
    let ok = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@' | '+'));
    if !ok {
        return Err(IdError::BadCharacter {
            kind,
            value: value.to_string(),
        });
    }
    Ok(value.to_string())
}

/// Declares a string newtype that can only be built through `parse`.
macro_rules! token_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The longest id accepted, in characters.
            pub const MAX_LEN: usize = $max;

            pub fn parse(value: &str) -> Result<Self, IdError> {
                check_token($kind, value, $max).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

token_id!(
    /// A platform account (a referrer, a referred user, or both).
    AccountId,
    "account id",
    128
);
token_id!(
    /// The platform's own id of an ingested record (usage, refund, purchase, referral, link).
    RecordId,
    "record id",
    128
);
token_id!(
    /// A template whose referral link attributed a referral.
    TemplateId,
    "template id",
    128
);
token_id!(
    /// A program's id as configured (`vast`, `runpod`, `runpod-affiliate`, ...). Which ids
    /// exist is decided by the loaded configuration ([`crate::domain::program::ProgramSet`]).
    ProgramId,
    "program id",
    64
);
token_id!(
    /// Our payout id (`po_` + ULID); also the Stripe `transfer_group`.
    PayoutId,
    "payout id",
    64
);
token_id!(
    /// A caller-supplied key that makes a withdrawal request safe to repeat. Its characters
    /// never include `/`: keys the system derives always do, so the two cannot collide.
    IdempotencyKey,
    "idempotency key",
    255
);

impl PayoutId {
    /// The payout id of a fresh ULID (time-ordered; the caller takes it from `clock::ulid`).
    pub fn from_ulid(ulid: ulid::Ulid) -> Self {
        PayoutId(format!("po_{ulid}"))
    }
}

impl IdempotencyKey {
    /// A fresh random key, for callers that did not supply one.
    pub fn generate() -> Self {
        IdempotencyKey(format!("auto-{}", uuid::Uuid::new_v4()))
    }
}

/// A payout rail: the provider that moves the money.
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
#[serde(rename_all = "lowercase")]
pub enum Rail {
    Stripe,
    Paypal,
    Wise,
    Partnerstack,
}

impl Rail {
    /// Every rail, in a fixed order.
    pub const ALL: [Rail; 4] = [Rail::Stripe, Rail::Paypal, Rail::Wise, Rail::Partnerstack];

    /// The rail's name as people write it, for reports.
    pub fn display_name(self) -> &'static str {
        match self {
            Rail::Stripe => "Stripe",
            Rail::Paypal => "PayPal",
            Rail::Wise => "Wise",
            Rail::Partnerstack => "PartnerStack",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rail::Stripe => "stripe",
            Rail::Paypal => "paypal",
            Rail::Wise => "wise",
            Rail::Partnerstack => "partnerstack",
        }
    }
}

impl FromStr for Rail {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "stripe" => Ok(Rail::Stripe),
            "paypal" => Ok(Rail::Paypal),
            "wise" => Ok(Rail::Wise),
            "partnerstack" => Ok(Rail::Partnerstack),
            _ => Err(IdError::Unknown {
                kind: "rail",
                value: s.to_string(),
                expected: "stripe, paypal, wise, partnerstack",
            }),
        }
    }
}

impl fmt::Display for Rail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_empty_spaces_and_overlong() {
        assert!(AccountId::parse("acct-1").is_ok());
        assert!(matches!(AccountId::parse(""), Err(IdError::Empty { .. })));
        // No trimming: a padded id is not the id (the API documents the exact grammar).
        for padded in ["  ", " acct-1", "acct-1 "] {
            assert!(matches!(
                AccountId::parse(padded),
                Err(IdError::BadCharacter { .. })
            ));
        }
        assert!(matches!(
            AccountId::parse("a b"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(
            AccountId::parse(&"x".repeat(129)),
            Err(IdError::TooLong { .. })
        ));
    }

    #[test]
    fn rails_and_programs_parse_case_insensitively() {
        assert_eq!("Stripe".parse::<Rail>().unwrap(), Rail::Stripe);
        assert!("venmo".parse::<Rail>().is_err());
    }

    #[test]
    fn generated_payout_ids_are_valid_ids() {
        let id = PayoutId::from_ulid(ulid::Ulid::generate());
        assert!(PayoutId::parse(id.as_str()).is_ok());
        assert!(id.as_str().starts_with("po_"));
    }
}
