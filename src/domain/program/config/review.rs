//! A program's `[program.review]` table: which new payouts wait for an operator.

use rust_decimal::Decimal;
use serde::Deserialize;

use super::{ConfigError, decimal, fraction};
use crate::domain::review::ReviewRules;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReviewWire {
    shared_destination: Option<bool>,
    linked_referred: Option<bool>,
    above: Option<String>,
    new_destination_above: Option<String>,
    refunded_share: Option<String>,
}

impl ReviewWire {
    pub(super) fn into_rules(self, at: &str) -> Result<ReviewRules, ConfigError> {
        let amount =
            |field: &str, value: &Option<String>| -> Result<Option<Decimal>, ConfigError> {
                let Some(v) = value else { return Ok(None) };
                let d = decimal(at, field, v)?;
                if d <= Decimal::ZERO {
                    return Err(ConfigError::field(
                        at.to_string(),
                        field,
                        format!("{d} must be more than zero (leave it out to turn the rule off)"),
                    ));
                }
                Ok(Some(d))
            };
        let refunded_share = match &self.refunded_share {
            Some(v) => Some(fraction(at, "review.refunded_share", v)?),
            None => None,
        };
        Ok(ReviewRules {
            shared_destination: self.shared_destination.unwrap_or(false),
            linked_referred: self.linked_referred.unwrap_or(false),
            above: amount("review.above", &self.above)?,
            new_destination_above: amount(
                "review.new_destination_above",
                &self.new_destination_above,
            )?,
            refunded_share,
        })
    }
}
