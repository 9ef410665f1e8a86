//! One `[[program]]` table: its fields as written, and their validation into a [`Program`]:
//! what every program has (reward, cash-out), then the terms of its kind.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde::Deserialize;

use super::review::ReviewWire;
use super::{ConfigError, decimal, duration_secs, fraction, window};
use crate::domain::ids::{ProgramId, Rail};
use crate::domain::money::{Currency, MAX_INPUT_DECIMALS, Money, UNIT_SCALE};
use crate::domain::program::bonus::{MIN_SEED_CHARS, Outcome};
use crate::domain::program::{
    AffiliateTerms, BonusDistribution, BonusRole, BonusTerms, CashOut, Cohort, CreatorTerms,
    LateDisqualification, Program, ProgramKind, Rates, ReferralTerms, RewardKind,
};
use crate::domain::review::ReviewRules;
use crate::domain::usage::UsageCategory;

/// The longest holding period a program may set: a year.
const MAX_HOLD_DAYS: u32 = 366;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProgramWire {
    pub(super) id: String,
    kind: String,
    name: Option<String>,
    currency: Option<String>,
    reward: String,
    cashable_fraction: Option<String>,
    rails: Option<Vec<String>>,
    minimum_payout: Option<String>,
    spend_gate: Option<bool>,
    hold_days: Option<u32>,
    rates: Option<BTreeMap<String, String>>,
    window: Option<String>,
    cohort: Option<Vec<CohortWire>>,
    late_disqualification: Option<String>,
    referral_program: Option<String>,
    min_paying_referrals: Option<u32>,
    min_template_runtime: Option<String>,
    count_spend_before_threshold: Option<bool>,
    spend_threshold: Option<String>,
    recipients: Option<Vec<String>>,
    seed_env: Option<String>,
    distribution: Option<DistributionWire>,
    review: Option<ReviewWire>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CohortWire {
    name: String,
    referred_before: DateTime<Utc>,
    window: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DistributionWire {
    kind: String,
    min: Option<String>,
    max: Option<String>,
    step: Option<String>,
    outcomes: Option<Vec<OutcomeWire>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeWire {
    amount: String,
    weight: u32,
}

impl ProgramWire {
    pub(super) fn into_program(
        self,
        at: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Program, ConfigError> {
        let field = |f: &str, m: String| ConfigError::field(at.to_string(), f, m);
        let id = ProgramId::parse(&self.id).map_err(|e| field("id", e.to_string()))?;
        let currency: Currency = self
            .currency
            .as_deref()
            .unwrap_or("USD")
            .parse()
            .map_err(|e: crate::domain::money::MoneyError| field("currency", e.to_string()))?;
        let reward = match self.reward.trim() {
            "credit" => RewardKind::Credit,
            "cash" => RewardKind::Cash,
            other => {
                return Err(field(
                    "reward",
                    format!("{other:?} is not a reward kind; expected \"credit\" or \"cash\""),
                ));
            }
        };
        let cash_out = self.cash_out(at, reward, currency)?;
        let review = match self.review.clone() {
            Some(r) => r.into_rules(at)?,
            None => ReviewRules::default(),
        };
        let kind = self.kind.trim().to_string();
        self.check_fields_used(at, &kind)?;
        let cashable_fraction = cash_out.cashable_fraction;
        let rates = match &self.rates {
            Some(r) => Some(rates(at, r, cashable_fraction)?),
            None => None,
        };
        let program_kind = match kind.as_str() {
            "referral" => ProgramKind::Referral(self.referral_terms(at, rates)?),
            "affiliate" => ProgramKind::Affiliate(self.affiliate_terms(at, rates)?),
            "creator" => ProgramKind::Creator(self.creator_terms(at, rates)?),
            _ => ProgramKind::Bonus(self.bonus_terms(at, env, cashable_fraction)?),
        };
        Ok(Program {
            name: self.name.unwrap_or_else(|| id.to_string()),
            id,
            currency,
            reward,
            cash_out,
            review,
            kind: program_kind,
        })
    }

    /// What may leave as cash, through which rails, from which amount: consistent with the
    /// reward kind (a cash reward is all cashable; a cashable one needs a rail).
    fn cash_out(
        &self,
        at: &str,
        reward: RewardKind,
        currency: Currency,
    ) -> Result<CashOut, ConfigError> {
        let field = |f: &str, m: String| ConfigError::field(at.to_string(), f, m);
        let cashable_fraction = match (&self.cashable_fraction, reward) {
            (Some(f), _) => fraction(at, "cashable_fraction", f)?,
            (None, RewardKind::Cash) => Decimal::ONE,
            (None, RewardKind::Credit) => {
                return Err(field(
                    "cashable_fraction",
                    "is required for credit rewards: the share that may leave as cash (\"0\" for none)".into(),
                ));
            }
        };
        if reward == RewardKind::Cash && cashable_fraction != Decimal::ONE {
            return Err(field(
                "cashable_fraction",
                format!("a cash reward is all cashable, so it must be 1 (got {cashable_fraction})"),
            ));
        }
        let rails = self
            .rails
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|r| r.parse::<Rail>().map_err(|e| field("rails", e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        if cashable_fraction > Decimal::ZERO && rails.is_empty() {
            return Err(field(
                "rails",
                "a program whose earnings are (partly) cashable must list the rails that pay them"
                    .into(),
            ));
        }
        if cashable_fraction.is_zero() && !rails.is_empty() {
            return Err(field(
                "rails",
                "nothing in this program is cashable (cashable_fraction = 0), so no rail can pay it".into(),
            ));
        }
        let minimum_payout = match &self.minimum_payout {
            Some(m) => {
                let m = Money::parse(m, currency, currency.minor_decimals())
                    .map_err(|e| field("minimum_payout", e.to_string()))?;
                if !m.is_positive() {
                    return Err(field("minimum_payout", "must be positive".into()));
                }
                m
            }
            None => Money::from_minor_units(1, currency),
        };
        let hold_days = self.hold_days.unwrap_or(0);
        if hold_days > MAX_HOLD_DAYS {
            return Err(field(
                "hold_days",
                format!("{hold_days} days is more than the longest hold, {MAX_HOLD_DAYS} days"),
            ));
        }
        if hold_days > 0 && cashable_fraction.is_zero() {
            return Err(field(
                "hold_days",
                "nothing in this program is cashable (cashable_fraction = 0), so there is nothing to hold".into(),
            ));
        }
        if hold_days > 0 && !matches!(self.kind.trim(), "referral" | "affiliate") {
            return Err(field(
                "hold_days",
                "holds apply to commissions on referred spend (referral and affiliate programs); creator and bonus programs cannot hold yet".into(),
            ));
        }
        Ok(CashOut {
            cashable_fraction,
            rails,
            minimum_payout,
            spend_gate: self.spend_gate.unwrap_or(false),
            hold_days,
        })
    }

    /// Refuses an unknown kind, and any optional field the kind does not read: it would be
    /// silently ignored otherwise.
    fn check_fields_used(&self, at: &str, kind: &str) -> Result<(), ConfigError> {
        let field = |f: &str, m: String| ConfigError::field(at.to_string(), f, m);
        // Which optional fields each kind reads; any other one present is a mistake.
        let used: &[&str] = match kind {
            "referral" => &["rates", "window", "cohort", "late_disqualification"],
            "affiliate" => &[
                "rates",
                "window",
                "referral_program",
                "min_paying_referrals",
            ],
            "creator" => &[
                "rates",
                "min_template_runtime",
                "count_spend_before_threshold",
            ],
            "bonus" => &[
                "referral_program",
                "spend_threshold",
                "recipients",
                "seed_env",
                "distribution",
            ],
            other => {
                return Err(field(
                    "kind",
                    format!(
                        "{other:?} is not a program kind; expected referral, affiliate, creator or bonus"
                    ),
                ));
            }
        };
        let present = [
            ("rates", self.rates.is_some()),
            ("window", self.window.is_some()),
            ("cohort", self.cohort.is_some()),
            (
                "late_disqualification",
                self.late_disqualification.is_some(),
            ),
            ("referral_program", self.referral_program.is_some()),
            ("min_paying_referrals", self.min_paying_referrals.is_some()),
            ("min_template_runtime", self.min_template_runtime.is_some()),
            (
                "count_spend_before_threshold",
                self.count_spend_before_threshold.is_some(),
            ),
            ("spend_threshold", self.spend_threshold.is_some()),
            ("recipients", self.recipients.is_some()),
            ("seed_env", self.seed_env.is_some()),
            ("distribution", self.distribution.is_some()),
        ];
        for (name, is_set) in present {
            if is_set && !used.contains(&name) {
                return Err(field(
                    name,
                    format!("is not used by a {kind} program; remove it"),
                ));
            }
        }
        Ok(())
    }

    fn referral_terms(&self, at: &str, rates: Option<Rates>) -> Result<ReferralTerms, ConfigError> {
        let field = |f: &str, m: String| ConfigError::field(at.to_string(), f, m);
        let missing = |name: &str| required(at, "referral", name);
        let referral_window = window(
            at,
            "window",
            self.window.as_deref().ok_or_else(|| missing("window"))?,
        )?;
        let mut cohorts = Vec::new();
        for (i, c) in self
            .cohort
            .clone()
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let f = format!("cohort[{i}].window");
            cohorts.push(Cohort {
                window: window(at, &f, &c.window)?,
                name: c.name,
                referred_before: c.referred_before,
            });
        }
        Ok(ReferralTerms {
            rates: rates.ok_or_else(|| missing("rates"))?,
            window: referral_window,
            cohorts,
            late_disqualification: match self.late_disqualification.as_deref() {
                None | Some("claw_back") => LateDisqualification::ClawBack,
                Some("stop_future") => LateDisqualification::StopFuture,
                Some(other) => {
                    return Err(field(
                        "late_disqualification",
                        format!(
                            "{other:?} is not a choice; expected \"claw_back\" or \"stop_future\""
                        ),
                    ));
                }
            },
        })
    }

    fn affiliate_terms(
        &self,
        at: &str,
        rates: Option<Rates>,
    ) -> Result<AffiliateTerms, ConfigError> {
        let missing = |name: &str| required(at, "affiliate", name);
        Ok(AffiliateTerms {
            referral_program: referral_program(at, self.referral_program.as_deref())?,
            rates: rates.ok_or_else(|| missing("rates"))?,
            window: window(
                at,
                "window",
                self.window.as_deref().ok_or_else(|| missing("window"))?,
            )?,
            min_paying_referrals: self
                .min_paying_referrals
                .ok_or_else(|| missing("min_paying_referrals"))?,
        })
    }

    fn creator_terms(&self, at: &str, rates: Option<Rates>) -> Result<CreatorTerms, ConfigError> {
        let missing = |name: &str| required(at, "creator", name);
        Ok(CreatorTerms {
            rates: rates.ok_or_else(|| missing("rates"))?,
            min_template_runtime_secs: duration_secs(
                at,
                "min_template_runtime",
                self.min_template_runtime
                    .as_deref()
                    .ok_or_else(|| missing("min_template_runtime"))?,
            )?,
            count_spend_before_threshold: self
                .count_spend_before_threshold
                .ok_or_else(|| missing("count_spend_before_threshold"))?,
        })
    }

    /// A bonus program: the seed is checked here only when set (a missing one fails a draw).
    fn bonus_terms(
        &self,
        at: &str,
        env: &dyn Fn(&str) -> Option<String>,
        cashable_fraction: Decimal,
    ) -> Result<BonusTerms, ConfigError> {
        let field = |f: &str, m: String| ConfigError::field(at.to_string(), f, m);
        let missing = |name: &str| required(at, "bonus", name);
        let threshold = decimal(
            at,
            "spend_threshold",
            self.spend_threshold
                .as_deref()
                .ok_or_else(|| missing("spend_threshold"))?,
        )?;
        if threshold <= Decimal::ZERO {
            return Err(field("spend_threshold", "must be positive".into()));
        }
        let recipients = self
            .recipients
            .as_ref()
            .ok_or_else(|| missing("recipients"))?
            .iter()
            .map(|r| match r.trim() {
                "referrer" => Ok(BonusRole::Referrer),
                "referred" => Ok(BonusRole::Referred),
                other => Err(field(
                    "recipients",
                    format!(
                        "{other:?} is not a recipient; expected \"referrer\" and/or \"referred\""
                    ),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if recipients.is_empty() {
            return Err(field(
                "recipients",
                "must name at least one recipient".into(),
            ));
        }
        let seed_env = self.seed_env.clone().ok_or_else(|| missing("seed_env"))?;
        // A missing seed fails only a draw (storage says so with the same words); one
        // that is set but guessable is a mistake in every command.
        let seed = env(&seed_env).filter(|s| !s.is_empty());
        if let Some(s) = &seed
            && s.chars().count() < MIN_SEED_CHARS
        {
            return Err(field(
                "seed_env",
                format!(
                    "environment variable {seed_env} must hold the bonus seed, a secret of at least {MIN_SEED_CHARS} characters (it is too short)"
                ),
            ));
        }
        let distribution = distribution(
            at,
            self.distribution
                .clone()
                .ok_or_else(|| missing("distribution"))?,
        )?;
        if (distribution.max() * cashable_fraction).normalize().scale() > UNIT_SCALE {
            return Err(field("cashable_fraction", "has too many decimals".into()));
        }
        Ok(BonusTerms {
            referral_program: referral_program(at, self.referral_program.as_deref())?,
            spend_threshold: threshold,
            recipients,
            distribution,
            seed_env,
            seed: seed.map(SecretString::from),
        })
    }
}

/// The error for a field the kind needs but the table leaves out.
fn required(at: &str, kind: &str, name: &str) -> ConfigError {
    ConfigError::field(
        at.to_string(),
        name,
        format!("is required for a {kind} program"),
    )
}

fn referral_program(at: &str, value: Option<&str>) -> Result<ProgramId, ConfigError> {
    let v = value.ok_or_else(|| {
        ConfigError::field(
            at.to_string(),
            "referral_program",
            "is required: the id of the referral program this builds on",
        )
    })?;
    ProgramId::parse(v)
        .map_err(|e| ConfigError::field(at.to_string(), "referral_program", e.to_string()))
}

/// Rates must multiply out exactly at the ledger's scale: spend has up to
/// [`MAX_INPUT_DECIMALS`] decimals, so a rate and the cashable fraction together may use the
/// remaining `UNIT_SCALE - MAX_INPUT_DECIMALS` (4) decimals.
fn rates(
    at: &str,
    wire: &BTreeMap<String, String>,
    cashable: Decimal,
) -> Result<Rates, ConfigError> {
    let room = UNIT_SCALE - MAX_INPUT_DECIMALS;
    let mut out = BTreeMap::new();
    for (category, value) in wire {
        let f = format!("rates.{category}");
        let cat: UsageCategory =
            category
                .parse()
                .map_err(|e: crate::domain::usage::UnknownCategory| {
                    ConfigError::field(at.to_string(), &f, e.to_string())
                })?;
        let rate = fraction(at, &f, value)?;
        if rate.scale() + cashable.scale() > room {
            return Err(ConfigError::field(
                at.to_string(),
                &f,
                format!(
                    "{rate} with a cashable fraction of {cashable} has more than {room} decimals together, \
                     so commissions on spend with {MAX_INPUT_DECIMALS} decimals would not be exact"
                ),
            ));
        }
        out.insert(cat, rate);
    }
    if out.values().all(|r| r.is_zero()) {
        return Err(ConfigError::field(
            at.to_string(),
            "rates",
            "must give at least one category a positive rate",
        ));
    }
    Ok(Rates(out))
}

fn distribution(at: &str, wire: DistributionWire) -> Result<BonusDistribution, ConfigError> {
    let f = |name: &str| format!("distribution.{name}");
    let need = |name: &str, v: Option<String>| {
        v.ok_or_else(|| ConfigError::field(at.to_string(), &f(name), "is required"))
    };
    let dist = match wire.kind.trim() {
        "uniform" => BonusDistribution::Uniform {
            min: decimal(at, &f("min"), &need("min", wire.min)?)?,
            max: decimal(at, &f("max"), &need("max", wire.max)?)?,
            step: decimal(at, &f("step"), &wire.step.unwrap_or_else(|| "1".into()))?,
        },
        "table" => {
            let mut outcomes = Vec::new();
            for (i, o) in wire
                .outcomes
                .ok_or_else(|| ConfigError::field(at.to_string(), &f("outcomes"), "is required"))?
                .into_iter()
                .enumerate()
            {
                outcomes.push(Outcome {
                    amount: decimal(at, &f(&format!("outcomes[{i}].amount")), &o.amount)?,
                    weight: o.weight,
                });
            }
            BonusDistribution::Table { outcomes }
        }
        other => {
            return Err(ConfigError::field(
                at.to_string(),
                &f("kind"),
                format!("{other:?} is not a distribution; expected \"uniform\" or \"table\""),
            ));
        }
    };
    dist.validate()
        .map_err(|m| ConfigError::field(at.to_string(), "distribution", m))?;
    Ok(dist)
}
