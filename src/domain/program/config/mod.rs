//! The TOML format of programs, and its validation into [`Program`]s.
//!
//! A file holds one or more `[[program]]` tables. Every amount and rate is a decimal
//! *string*: a TOML float cannot carry money exactly. Each error names the file, the program
//! and the field, and says what is expected. The format is documented in `programs/README.md`;
//! the presets in `programs/` are its examples.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde::Deserialize;

use super::bonus::{MIN_SEED_CHARS, Outcome};
use super::{
    AffiliateTerms, BonusDistribution, BonusRole, BonusTerms, CashOut, Cohort, CreatorTerms,
    LateDisqualification, Program, ProgramKind, ProgramSet, Rates, ReferralTerms, RewardKind,
    Window,
};
use crate::domain::ids::{ProgramId, Rail};
use crate::domain::money::{Currency, MAX_INPUT_DECIMALS, Money, UNIT_SCALE};
use crate::domain::usage::UsageCategory;

/// The presets shipped with the binary, by name.
pub const PRESETS: [(&str, &str); 2] = [
    ("vast", include_str!("../../../programs/vast.toml")),
    ("runpod", include_str!("../../../programs/runpod.toml")),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{source_name}: {message}")]
    Syntax {
        source_name: String,
        message: String,
    },
    #[error("{at}.{field}: {message}")]
    Field {
        at: String,
        field: String,
        message: String,
    },
    #[error(
        "unknown program preset {0:?}; presets are vast and runpod, or give a path to a .toml file"
    )]
    UnknownPreset(String),
    #[error("cannot read program file {path}: {message}")]
    Read { path: String, message: String },
}

impl ConfigError {
    pub(crate) fn field(at: String, field: &str, message: impl Into<String>) -> Self {
        ConfigError::Field {
            at,
            field: field.to_string(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWire {
    #[serde(default)]
    program: Vec<ProgramWire>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgramWire {
    id: String,
    kind: String,
    name: Option<String>,
    currency: Option<String>,
    reward: String,
    cashable_fraction: Option<String>,
    rails: Option<Vec<String>>,
    minimum_payout: Option<String>,
    spend_gate: Option<bool>,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CohortWire {
    name: String,
    referred_before: DateTime<Utc>,
    window: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DistributionWire {
    kind: String,
    min: Option<String>,
    max: Option<String>,
    step: Option<String>,
    outcomes: Option<Vec<OutcomeWire>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeWire {
    amount: String,
    weight: u32,
}

impl ProgramSet {
    /// Parses and validates one TOML file. `env` resolves environment variables (bonus seeds),
    /// so tests can supply their own.
    pub fn from_toml(
        source_name: &str,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ProgramSet, ConfigError> {
        let wire: FileWire = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            source_name: source_name.to_string(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        if wire.program.is_empty() {
            return Err(ConfigError::Syntax {
                source_name: source_name.to_string(),
                message: "no [[program]] table; a program file describes at least one program"
                    .into(),
            });
        }
        let mut set = ProgramSet::default();
        for (i, p) in wire.program.into_iter().enumerate() {
            let at = format!("{source_name}: program[{i}] ({})", p.id);
            let program = p.into_program(&at, env)?;
            set = set.merge(ProgramSet::from_programs(vec![program]))?;
        }
        set.check_references(source_name)?;
        Ok(set)
    }

    /// Loads a list of presets and file paths (`vast,runpod`, `./my-platform.toml`).
    pub fn load(
        specs: &[String],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ProgramSet, ConfigError> {
        let mut set = ProgramSet::default();
        for spec in specs.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let (name, text) = if let Some((name, text)) = PRESETS.iter().find(|(n, _)| *n == spec)
            {
                (format!("preset {name}"), (*text).to_string())
            } else if spec.ends_with(".toml") || spec.contains('/') {
                let text = std::fs::read_to_string(spec).map_err(|e| ConfigError::Read {
                    path: spec.to_string(),
                    message: e.to_string(),
                })?;
                (spec.to_string(), text)
            } else {
                return Err(ConfigError::UnknownPreset(spec.to_string()));
            };
            set = set.merge(ProgramSet::from_toml(&name, &text, env)?)?;
        }
        set.check_references("programs")?;
        Ok(set)
    }

    fn check_references(&self, source_name: &str) -> Result<(), ConfigError> {
        for p in self.iter() {
            let target = match &p.kind {
                ProgramKind::Affiliate(a) => &a.referral_program,
                ProgramKind::Bonus(b) => &b.referral_program,
                _ => continue,
            };
            let ok = self.get(target).is_some_and(|t| t.referral().is_some());
            if !ok {
                return Err(ConfigError::field(
                    format!("{source_name}: program {}", p.id),
                    "referral_program",
                    format!("{target:?} is not a referral program in this configuration"),
                ));
            }
            if let ProgramKind::Affiliate(a) = &p.kind {
                let twice = self
                    .iter()
                    .filter(|o| {
                        o.affiliate()
                            .is_some_and(|b| b.referral_program == a.referral_program)
                    })
                    .count();
                if twice > 1 {
                    return Err(ConfigError::field(
                        format!("{source_name}: program {}", p.id),
                        "referral_program",
                        format!(
                            "{} already has an affiliate program; one upgrade per referral program",
                            a.referral_program
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Parses a decimal string field.
fn decimal(at: &str, field: &str, value: &str) -> Result<Decimal, ConfigError> {
    Decimal::from_str_exact(value.trim())
        .map(|d| d.normalize())
        .map_err(|_| {
            ConfigError::field(
                at.to_string(),
                field,
                format!("{value:?} is not a decimal number; write it as a string such as \"0.03\""),
            )
        })
}

fn fraction(at: &str, field: &str, value: &str) -> Result<Decimal, ConfigError> {
    let d = decimal(at, field, value)?;
    if d < Decimal::ZERO || d > Decimal::ONE {
        return Err(ConfigError::field(
            at.to_string(),
            field,
            format!("{d} must be between 0 and 1 (0.03 is 3%)"),
        ));
    }
    Ok(d)
}

fn window(at: &str, field: &str, value: &str) -> Result<Window, ConfigError> {
    let v = value.trim().to_ascii_lowercase();
    if v == "lifetime" {
        return Ok(Window::Lifetime);
    }
    let bad = || {
        ConfigError::field(
            at.to_string(),
            field,
            format!("{value:?} is not a window; write \"lifetime\" or \"6 months\""),
        )
    };
    let (n, unit) = v.split_once(' ').ok_or_else(bad)?;
    let n: u32 = n.parse().map_err(|_| bad())?;
    match unit.trim() {
        "month" | "months" if n > 0 && n <= 1200 => Ok(Window::Months(n)),
        _ => Err(bad()),
    }
}

fn duration_secs(at: &str, field: &str, value: &str) -> Result<u64, ConfigError> {
    let bad = || {
        ConfigError::field(
            at.to_string(),
            field,
            format!(
                "{value:?} is not a duration; write e.g. \"1 day\", \"24 hours\" or \"90 minutes\""
            ),
        )
    };
    let v = value.trim().to_ascii_lowercase();
    let (n, unit) = v.split_once(' ').ok_or_else(bad)?;
    let n: u64 = n.parse().map_err(|_| bad())?;
    let per = match unit.trim() {
        "second" | "seconds" => 1,
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3_600,
        "day" | "days" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(per).ok_or_else(bad)
}

impl ProgramWire {
    fn into_program(
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
        let cash_out = CashOut {
            cashable_fraction,
            rails,
            minimum_payout,
            spend_gate: self.spend_gate.unwrap_or(false),
        };

        let kind = self.kind.trim().to_string();
        // Which optional fields each kind reads; any other one present is a mistake.
        let used: &[&str] = match kind.as_str() {
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
        let required = |name: &str| field(name, format!("is required for a {kind} program"));
        let rates = match &self.rates {
            Some(r) => Some(rates(at, r, cashable_fraction)?),
            None => None,
        };
        let program_kind = match kind.as_str() {
            "referral" => {
                let window = window(
                    at,
                    "window",
                    self.window.as_deref().ok_or_else(|| required("window"))?,
                )?;
                let mut cohorts = Vec::new();
                for (i, c) in self.cohort.unwrap_or_default().into_iter().enumerate() {
                    let f = format!("cohort[{i}].window");
                    cohorts.push(Cohort {
                        window: self::window(at, &f, &c.window)?,
                        name: c.name,
                        referred_before: c.referred_before,
                    });
                }
                ProgramKind::Referral(ReferralTerms {
                    rates: rates.ok_or_else(|| required("rates"))?,
                    window,
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
            "affiliate" => ProgramKind::Affiliate(AffiliateTerms {
                referral_program: referral_program(at, self.referral_program.as_deref())?,
                rates: rates.ok_or_else(|| required("rates"))?,
                window: window(
                    at,
                    "window",
                    self.window.as_deref().ok_or_else(|| required("window"))?,
                )?,
                min_paying_referrals: self
                    .min_paying_referrals
                    .ok_or_else(|| required("min_paying_referrals"))?,
            }),
            "creator" => ProgramKind::Creator(CreatorTerms {
                rates: rates.ok_or_else(|| required("rates"))?,
                min_template_runtime_secs: duration_secs(
                    at,
                    "min_template_runtime",
                    self.min_template_runtime
                        .as_deref()
                        .ok_or_else(|| required("min_template_runtime"))?,
                )?,
                count_spend_before_threshold: self
                    .count_spend_before_threshold
                    .ok_or_else(|| required("count_spend_before_threshold"))?,
            }),
            _ => {
                let threshold = decimal(
                    at,
                    "spend_threshold",
                    self.spend_threshold
                        .as_deref()
                        .ok_or_else(|| required("spend_threshold"))?,
                )?;
                if threshold <= Decimal::ZERO {
                    return Err(field("spend_threshold", "must be positive".into()));
                }
                let recipients = self
                    .recipients
                    .ok_or_else(|| required("recipients"))?
                    .iter()
                    .map(|r| match r.trim() {
                        "referrer" => Ok(BonusRole::Referrer),
                        "referred" => Ok(BonusRole::Referred),
                        other => Err(field(
                            "recipients",
                            format!("{other:?} is not a recipient; expected \"referrer\" and/or \"referred\""),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if recipients.is_empty() {
                    return Err(field(
                        "recipients",
                        "must name at least one recipient".into(),
                    ));
                }
                let seed_env = self.seed_env.ok_or_else(|| required("seed_env"))?;
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
                    self.distribution.ok_or_else(|| required("distribution"))?,
                )?;
                if (distribution.max() * cashable_fraction).normalize().scale() > UNIT_SCALE {
                    return Err(field("cashable_fraction", "has too many decimals".into()));
                }
                ProgramKind::Bonus(BonusTerms {
                    referral_program: referral_program(at, self.referral_program.as_deref())?,
                    spend_threshold: threshold,
                    recipients,
                    distribution,
                    seed_env,
                    seed: seed.map(SecretString::from),
                })
            }
        };
        Ok(Program {
            name: self.name.unwrap_or_else(|| id.to_string()),
            id,
            currency,
            reward,
            cash_out,
            kind: program_kind,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "RUNPOD_BONUS_SEED").then(|| "test-seed-0123456789".to_string())
    }

    fn presets() -> ProgramSet {
        ProgramSet::load(&["vast".into(), "runpod".into()], &env).unwrap()
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn the_presets_say_what_the_seeds_say() {
        let set = presets();
        let vast = set.get_str("vast").unwrap();
        let t = vast.referral().unwrap();
        assert_eq!(t.window, Window::Lifetime);
        for c in UsageCategory::ALL {
            assert_eq!(t.rates.rate(c), d("0.03"), "{c}");
        }
        assert_eq!(vast.cash_out.cashable_fraction, d("0.75"));
        assert!(vast.cash_out.spend_gate);
        assert_eq!(
            vast.cash_out.rails,
            vec![Rail::Stripe, Rail::Paypal, Rail::Wise]
        );

        let runpod = set.get_str("runpod").unwrap();
        let t = runpod.referral().unwrap();
        assert_eq!(t.rates.rate(UsageCategory::Serverless), d("0.05"));
        assert_eq!(t.rates.rate(UsageCategory::Pod), d("0.03"));
        assert_eq!(t.rates.rate(UsageCategory::Storage), Decimal::ZERO);
        assert_eq!(t.window, Window::Months(6));
        let beta = "2025-06-25T23:59:59Z".parse().unwrap();
        assert_eq!(t.window_for(beta), (Window::Lifetime, Some("beta")));
        let after = "2025-06-26T00:00:00Z".parse().unwrap();
        assert_eq!(t.window_for(after), (Window::Months(6), None));
        assert!(runpod.cash_out.cashable_fraction.is_zero());

        let aff = set.affiliate_of(&runpod.id).unwrap();
        let a = aff.affiliate().unwrap();
        assert_eq!(a.min_paying_referrals, 25);
        assert_eq!(a.rates.rate(UsageCategory::Pod), d("0.10"));
        assert_eq!(a.window, Window::Months(6));
        assert_eq!(aff.reward, RewardKind::Cash);
        assert_eq!(aff.cash_out.rails, vec![Rail::Partnerstack]);

        let bonus = set.bonus_of(&runpod.id).unwrap().bonus().unwrap();
        assert_eq!(bonus.spend_threshold, d("10"));
        assert_eq!(bonus.distribution.min(), d("5"));
        assert_eq!(bonus.distribution.max(), d("500"));
        assert_eq!(
            bonus.recipients,
            vec![BonusRole::Referrer, BonusRole::Referred]
        );

        let creator = set.get_str("runpod-creator").unwrap().creator().unwrap();
        assert_eq!(creator.rates.rate(UsageCategory::Pod), d("0.01"));
        assert_eq!(creator.min_template_runtime_secs, 86_400);
        assert!(!creator.count_spend_before_threshold);
    }

    #[test]
    fn the_seed_never_shows_in_debug_output() {
        let set = presets();
        let text = format!("{set:?}");
        assert!(!text.contains("test-seed-0123456789"));
        let json = serde_json::to_string(&set).unwrap();
        assert!(!json.contains("test-seed-0123456789"));
    }

    fn err(text: &str) -> String {
        ProgramSet::from_toml("t.toml", text, &env)
            .unwrap_err()
            .to_string()
    }

    const OK: &str = r#"
[[program]]
id = "p"
kind = "referral"
reward = "credit"
cashable_fraction = "0.75"
rails = ["stripe"]
rates = { pod = "0.03" }
window = "lifetime"
"#;

    #[test]
    fn invalid_configuration_names_the_field() {
        assert!(ProgramSet::from_toml("t.toml", OK, &env).is_ok());
        let e = err(&OK.replace("\"0.03\"", "0.03"));
        assert!(e.contains("t.toml") && e.contains("rates"), "{e}");
        let e = err(&OK.replace("\"0.03\"", "\"3\""));
        assert!(
            e.contains("program[0] (p).rates.pod") && e.contains("between 0 and 1"),
            "{e}"
        );
        let e = err(&OK.replace("pod =", "gpu ="));
        assert!(
            e.contains("rates.gpu") && e.contains("unknown usage category"),
            "{e}"
        );
        let e = err(&OK.replace("\"lifetime\"", "\"forever\""));
        assert!(e.contains(".window") && e.contains("6 months"), "{e}");
        let e = err(&OK.replace("rails = [\"stripe\"]", "rails = [\"venmo\"]"));
        assert!(e.contains(".rails") && e.contains("venmo"), "{e}");
        let e = err(&OK.replace("rails = [\"stripe\"]\n", ""));
        assert!(
            e.contains(".rails") && e.contains("must list the rails"),
            "{e}"
        );
        let e = err(&OK.replace("kind = \"referral\"", "kind = \"pyramid\""));
        assert!(e.contains(".kind") && e.contains("pyramid"), "{e}");
        let e = err(&format!("{OK}spend_threshold = \"10\"\n"));
        assert!(
            e.contains(".spend_threshold") && e.contains("not used by a referral"),
            "{e}"
        );
        let e = err(&OK.replace("\"0.03\"", "\"0.00003\""));
        assert!(e.contains("rates.pod") && e.contains("exact"), "{e}");
        let e = err(&format!("{OK}colour = \"red\"\n"));
        assert!(e.contains("colour"), "{e}");
        let e = err(&format!("{OK}{OK}"));
        assert!(e.contains("defined twice"), "{e}");
    }

    #[test]
    fn a_missing_seed_waits_for_a_draw_and_a_short_one_is_rejected_at_start() {
        let set = ProgramSet::load(&["vast".into(), "runpod".into()], &|_| None).unwrap();
        let terms = set.get_str("runpod-bonus").unwrap().bonus().unwrap();
        assert!(terms.seed.is_none());
        assert_eq!(terms.seed_env, "RUNPOD_BONUS_SEED");
        let e = ProgramSet::load(&["runpod".into()], &|_| Some("short".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("too short"), "{e}");
        assert!(matches!(
            ProgramSet::load(&["stripe".into()], &env),
            Err(ConfigError::UnknownPreset(_))
        ));
    }

    #[test]
    fn references_must_name_a_referral_program() {
        let text = r#"
[[program]]
id = "aff"
kind = "affiliate"
reward = "cash"
rails = ["partnerstack"]
referral_program = "nope"
rates = { pod = "0.1" }
window = "6 months"
min_paying_referrals = 25
"#;
        let e = err(text);
        assert!(e.contains("referral_program") && e.contains("nope"), "{e}");
    }
}
