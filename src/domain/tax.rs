//! Payees' tax forms and the yearly reporting threshold.
//!
//! Cash paid to a US person above a yearly threshold is reportable (1099-NEC: $600 for
//! payments through 2025, $2,000 from 2026); a foreign payee certifies with a W-8BEN (a
//! person) or W-8BEN-E (an entity). We keep which form is on file and never more of a tax id
//! than its last four digits.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::ids::{AccountId, Rail};
use super::money::{Currency, Money};
use super::review::{Flag, Rule};

/// The form a payee has on file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaxForm {
    None,
    W9,
    W8ben,
    W8bene,
}

impl TaxForm {
    pub fn code(self) -> &'static str {
        match self {
            TaxForm::None => "none",
            TaxForm::W9 => "w9",
            TaxForm::W8ben => "w8ben",
            TaxForm::W8bene => "w8bene",
        }
    }

    pub fn from_code(code: &str) -> Option<TaxForm> {
        [TaxForm::None, TaxForm::W9, TaxForm::W8ben, TaxForm::W8bene]
            .into_iter()
            .find(|f| f.code() == code)
    }
}

/// A payee's tax profile as the platform reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaxProfile {
    pub account: AccountId,
    pub form: TaxForm,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
    /// The last four digits of the tax id, never more.
    pub tin_last4: Option<String>,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaxProfileError {
    #[error("unknown tax form {0:?}; expected none, w9, w8ben or w8bene")]
    Form(String),
    #[error("country {0:?} is not a two-letter country code (ISO 3166-1 alpha-2)")]
    Country(String),
    #[error("tax_id_last4 must be exactly the last 4 digits of the tax id")]
    Last4,
    #[error(
        "a full tax id is never stored: send only tax_id_last4 (its last 4 digits); this line was not stored"
    )]
    FullTaxId,
}

impl TaxProfile {
    pub fn parse(
        account: AccountId,
        form: &str,
        country: &str,
        tin_last4: Option<&str>,
        received_at: DateTime<Utc>,
    ) -> Result<TaxProfile, TaxProfileError> {
        let form =
            TaxForm::from_code(form.trim()).ok_or_else(|| TaxProfileError::Form(form.into()))?;
        let country = country.trim().to_ascii_uppercase();
        if country.len() != 2 || !country.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(TaxProfileError::Country(country));
        }
        let tin_last4 = match tin_last4.map(str::trim) {
            None | Some("") => None,
            Some(d) if d.len() == 4 && d.chars().all(|c| c.is_ascii_digit()) => Some(d.into()),
            Some(_) => return Err(TaxProfileError::Last4),
        };
        Ok(TaxProfile {
            account,
            form,
            country,
            tin_last4,
            received_at,
        })
    }
}

/// The yearly reporting thresholds, in US dollars.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaxThresholds {
    by_year: BTreeMap<i32, Decimal>,
}

impl Default for TaxThresholds {
    /// $600 for 2025 and before, $2,000 from 2026.
    fn default() -> Self {
        TaxThresholds {
            by_year: BTreeMap::from([(2025, Decimal::from(600)), (2026, Decimal::from(2000))]),
        }
    }
}

impl TaxThresholds {
    /// From `2025=600,2026=2000`; a year not listed takes the latest earlier one (or the
    /// earliest listed, before them all).
    pub fn parse(text: &str) -> Result<TaxThresholds, String> {
        let mut by_year = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (year, amount) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not YEAR=AMOUNT"))?;
            let year: i32 = year
                .trim()
                .parse()
                .map_err(|_| format!("{year:?} is not a year"))?;
            let amount: Decimal = amount
                .trim()
                .parse()
                .map_err(|_| format!("{amount:?} is not an amount"))?;
            if amount.is_sign_negative() {
                return Err(format!("the threshold for {year} is negative"));
            }
            by_year.insert(year, amount);
        }
        if by_year.is_empty() {
            return Err("no thresholds given".into());
        }
        Ok(TaxThresholds { by_year })
    }

    /// The threshold that applies to payments made in `year`.
    pub fn for_year(&self, year: i32) -> Decimal {
        self.by_year
            .range(..=year)
            .next_back()
            .or_else(|| self.by_year.iter().next())
            .map(|(_, amount)| *amount)
            .unwrap_or_default()
    }
}

/// One payee's cash in a tax year.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TaxPayee {
    pub account: AccountId,
    /// From the tax profile, else the account record.
    pub country: Option<String>,
    pub form: TaxForm,
    pub tin_last4: Option<String>,
    /// Net cash paid per rail and currency (payouts less returns).
    pub by_rail: Vec<RailCash>,
    /// Net cash paid in US dollars, over every rail: what the threshold is held against.
    pub paid_usd: Money,
    /// A US person paid more than the threshold: a 1099-NEC candidate.
    pub reportable: bool,
    /// A reportable payee without a W-9 on file.
    pub form_missing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RailCash {
    /// The rail that paid it (`None` for a ledger entry of no payout).
    pub rail: Option<String>,
    pub amount: Money,
}

/// The whole report for one tax year.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TaxReport {
    pub year: i32,
    pub threshold: Money,
    pub payees: Vec<TaxPayee>,
    /// Per currency: the report's total and the ledger's paid-out total for the year.
    pub totals: Vec<TaxTotal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TaxTotal {
    pub currency: Currency,
    pub report: Money,
    pub ledger: Money,
    pub balanced: bool,
}

impl TaxReport {
    pub fn balanced(&self) -> bool {
        self.totals.iter().all(|t| t.balanced)
    }
}

/// Whether a payee is a 1099-NEC candidate for a year: a US person paid more than the
/// threshold in cash.
pub fn reportable(country: Option<&str>, paid: Decimal, threshold: Decimal) -> bool {
    country == Some("US") && paid > threshold
}

/// The platform's tax rules for new payouts; off unless configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaxRules {
    /// Hold a US payee's payout that would pass the year's threshold without a W-9.
    pub gate: bool,
    /// Hold a payee outside the US with no W-8BEN or W-8BEN-E on file.
    pub require_w8: bool,
    /// Rails that issue their own tax forms: their payouts are neither held nor counted.
    pub exempt_rails: Vec<Rail>,
    pub thresholds: TaxThresholds,
}

impl TaxRules {
    pub fn is_off(&self) -> bool {
        !self.gate && !self.require_w8
    }
}

/// What the tax rules are judged on, for one payee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaxFacts {
    /// The tax profile's country, else the account's; `None` when neither says.
    pub country: Option<String>,
    pub form: TaxForm,
    /// US dollars paid this calendar year (UTC, by when the payment was confirmed, as the tax
    /// report counts) or on their way now, on rails that are not exempt.
    pub cash_this_year: Decimal,
    pub year: i32,
}

/// The tax flag a payout of `amount` through `rail` raises, if any. A payee with a W-9 on file
/// is a US person wherever it lives (a citizen abroad); one whose country is unknown is
/// judged as a US person: the threshold is the cautious reading.
pub fn tax_flag(rules: &TaxRules, rail: Rail, amount: Money, facts: &TaxFacts) -> Option<Flag> {
    if rules.exempt_rails.contains(&rail) {
        return None;
    }
    let us = facts.form == TaxForm::W9 || facts.country.as_deref().is_none_or(|c| c == "US");
    if us && rules.gate && facts.form != TaxForm::W9 && amount.currency() == Currency::Usd {
        let threshold = rules.thresholds.for_year(facts.year);
        let total = facts.cash_this_year + amount.amount();
        if total > threshold {
            let whose = match &facts.country {
                Some(_) => "a US payee",
                None => "a payee of unknown country (judged as US)",
            };
            return Some(Flag {
                rule: Rule::W9Missing,
                evidence: format!(
                    "{whose} with no W-9 on file: {} USD this year with this payout passes the {} threshold of {} USD; held until a W-9 arrives",
                    total.normalize(),
                    facts.year,
                    threshold.normalize()
                ),
            });
        }
    }
    let w8 = matches!(facts.form, TaxForm::W8ben | TaxForm::W8bene);
    if !us && rules.require_w8 && !w8 {
        let country = facts.country.as_deref().unwrap_or_default();
        return Some(Flag {
            rule: Rule::W8Missing,
            evidence: format!(
                "a payee in {country} with no W-8BEN or W-8BEN-E on file; held until one arrives"
            ),
        });
    }
    None
}

/// What a held payout's open tax flag comes to, judged again on the facts on file now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recheck {
    /// The same form is still owed.
    Owed,
    /// The flag no longer applies (`note` says why); `instead` is the form owed now, if any
    /// (a payee held for a W-9 who turns out to live abroad owes a W-8BEN instead).
    Cleared { note: String, instead: Option<Flag> },
}

/// Judges again a payout held by the tax flag `open`: whatever form arrived, or whatever the
/// country turned out to be, the payout waits only for the form it owes now.
pub fn recheck(
    rules: &TaxRules,
    rail: Rail,
    amount: Money,
    facts: &TaxFacts,
    open: Rule,
) -> Recheck {
    let owed = tax_flag(rules, rail, amount, facts);
    if owed.as_ref().is_some_and(|f| f.rule == open) {
        return Recheck::Owed;
    }
    let note = match facts.form {
        TaxForm::W9 => "a W-9 on file".to_string(),
        TaxForm::W8ben | TaxForm::W8bene => "a W-8BEN or W-8BEN-E on file".to_string(),
        TaxForm::None => match &facts.country {
            Some(country) => format!("no longer owed: the payee is in {country}"),
            None => "no longer owed under the tax rules in force".to_string(),
        },
    };
    Recheck::Cleared {
        note,
        instead: owed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-02-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_profile_keeps_at_most_four_digits() {
        let who = AccountId::parse("ref-a").unwrap();
        let p = TaxProfile::parse(who.clone(), "w9", "us", Some("1234"), at()).unwrap();
        assert_eq!(
            (p.form, p.country.as_str(), p.tin_last4.as_deref()),
            (TaxForm::W9, "US", Some("1234"))
        );
        for bad in ["123", "12345", "12a4", "123-45-6789"] {
            assert_eq!(
                TaxProfile::parse(who.clone(), "w9", "US", Some(bad), at()),
                Err(TaxProfileError::Last4),
                "{bad}"
            );
        }
        assert!(TaxProfile::parse(who.clone(), "w2", "US", None, at()).is_err());
        assert!(TaxProfile::parse(who, "w8ben", "Germany", None, at()).is_err());
    }

    #[test]
    fn thresholds_by_year() {
        let t = TaxThresholds::default();
        assert_eq!(t.for_year(2024), Decimal::from(600));
        assert_eq!(t.for_year(2025), Decimal::from(600));
        assert_eq!(t.for_year(2026), Decimal::from(2000));
        assert_eq!(t.for_year(2030), Decimal::from(2000));
        let custom = TaxThresholds::parse("2025=600, 2027=2100").unwrap();
        assert_eq!(custom.for_year(2026), Decimal::from(600));
        assert_eq!(custom.for_year(2027), Decimal::from(2100));
        assert!(TaxThresholds::parse("2026").is_err());
        assert!(TaxThresholds::parse("").is_err());
        assert!(reportable(
            Some("US"),
            Decimal::from(2001),
            t.for_year(2026)
        ));
        assert!(!reportable(
            Some("US"),
            Decimal::from(2000),
            t.for_year(2026)
        ));
        assert!(!reportable(
            Some("DE"),
            Decimal::from(9000),
            t.for_year(2026)
        ));
    }

    fn facts(country: Option<&str>, form: TaxForm, paid: &str) -> TaxFacts {
        TaxFacts {
            country: country.map(str::to_string),
            form,
            cash_this_year: paid.parse().unwrap(),
            year: 2026,
        }
    }

    fn usd(s: &str) -> Money {
        Money::new(s.parse().unwrap(), Currency::Usd)
    }

    #[test]
    fn a_us_payee_without_a_w9_is_held_only_past_the_threshold() {
        let rules = TaxRules {
            gate: true,
            ..TaxRules::default()
        };
        let us = |paid| facts(Some("US"), TaxForm::None, paid);
        // 1,500 paid + 500 = 2,000: not more than the 2026 threshold.
        assert_eq!(tax_flag(&rules, Rail::Wise, usd("500"), &us("1500")), None);
        let flag = tax_flag(&rules, Rail::Wise, usd("500.01"), &us("1500")).unwrap();
        assert_eq!(flag.rule, Rule::W9Missing);
        assert_eq!(
            flag.evidence,
            "a US payee with no W-9 on file: 2000.01 USD this year with this payout passes the 2026 threshold of 2000 USD; held until a W-9 arrives"
        );
        let with_w9 = facts(Some("US"), TaxForm::W9, "1500");
        assert_eq!(tax_flag(&rules, Rail::Wise, usd("9000"), &with_w9), None);
        // Unknown country is judged as US; an exempt rail is never held.
        assert!(
            tax_flag(
                &rules,
                Rail::Wise,
                usd("2001"),
                &facts(None, TaxForm::None, "0")
            )
            .is_some()
        );
        let exempt = TaxRules {
            exempt_rails: vec![Rail::Paypal],
            ..rules.clone()
        };
        assert_eq!(tax_flag(&exempt, Rail::Paypal, usd("2001"), &us("0")), None);
        assert!(tax_flag(&TaxRules::default(), Rail::Wise, usd("9000"), &us("0")).is_none());
    }

    #[test]
    fn a_payee_abroad_needs_a_w8_only_when_the_setting_is_on() {
        let de = facts(Some("DE"), TaxForm::None, "0");
        let gate = TaxRules {
            gate: true,
            ..TaxRules::default()
        };
        assert_eq!(tax_flag(&gate, Rail::Wise, usd("5000"), &de), None);
        let w8 = TaxRules {
            require_w8: true,
            ..gate
        };
        let flag = tax_flag(&w8, Rail::Wise, usd("1"), &de).unwrap();
        assert_eq!(flag.rule, Rule::W8Missing);
        assert_eq!(
            flag.evidence,
            "a payee in DE with no W-8BEN or W-8BEN-E on file; held until one arrives"
        );
        let filed = facts(Some("DE"), TaxForm::W8bene, "0");
        assert_eq!(tax_flag(&w8, Rail::Wise, usd("1"), &filed), None);
    }

    #[test]
    fn a_held_payout_waits_only_for_the_form_it_owes_now() {
        let rules = TaxRules {
            gate: true,
            require_w8: true,
            ..TaxRules::default()
        };
        let amount = usd("2500");
        let judge = |country, form| {
            let f = facts(country, form, "0");
            recheck(&rules, Rail::Wise, amount, &f, Rule::W9Missing)
        };
        // Unknown country, held for a W-9: still owed until something arrives.
        assert_eq!(judge(None, TaxForm::None), Recheck::Owed);
        // It files a W-8BEN from Germany: the W-9 is not owed, and the W-8BEN is met.
        assert_eq!(
            judge(Some("DE"), TaxForm::W8ben),
            Recheck::Cleared {
                note: "a W-8BEN or W-8BEN-E on file".into(),
                instead: None
            }
        );
        // A US citizen abroad files a W-9: a US person, nothing more owed.
        assert_eq!(
            judge(Some("DE"), TaxForm::W9),
            Recheck::Cleared {
                note: "a W-9 on file".into(),
                instead: None
            }
        );
        // The account turns out to be in Germany, with no form: a W-8BEN is owed instead.
        match judge(Some("DE"), TaxForm::None) {
            Recheck::Cleared { note, instead } => {
                assert_eq!(note, "no longer owed: the payee is in DE");
                assert_eq!(instead.map(|f| f.rule), Some(Rule::W8Missing));
            }
            other => panic!("{other:?}"),
        }
    }
}
