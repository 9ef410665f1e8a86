//! Programs as data: what each referral, affiliate, creator and bonus program pays, to whom,
//! for how long, and how it may leave as cash.
//!
//! A platform describes its programs in TOML ([`config`]); the shipped presets `vast` and
//! `runpod` reproduce the programs' published terms (docs/programs.md). The engine only ever
//! reads a [`ProgramSet`]: no program is written into the rules.

pub mod bonus;
pub mod config;
pub mod earnings;
pub mod trueup;

use std::collections::BTreeMap;

use chrono::{DateTime, Months, Utc};
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde::Serialize;

use super::ids::{ProgramId, Rail};
use super::money::{Currency, Money};
use super::usage::UsageCategory;
pub use bonus::{BonusDistribution, BonusRole};
pub use config::ConfigError;

/// What a program's earnings are, as the platform names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RewardKind {
    /// Platform credit (a `cashable_fraction` of it may still leave as cash, as on Vast).
    Credit,
    /// Cash, all of it cashable.
    Cash,
}

/// Commission rate per usage category; a category not listed earns nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Rates(pub BTreeMap<UsageCategory, Decimal>);

impl Rates {
    pub fn rate(&self, category: UsageCategory) -> Decimal {
        self.0.get(&category).copied().unwrap_or(Decimal::ZERO)
    }

    pub fn max(&self) -> Decimal {
        self.0.values().copied().max().unwrap_or(Decimal::ZERO)
    }
}

/// How long a referred account earns for its referrer, counted from the account's signup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Lifetime,
    Months(u32),
}

impl Window {
    /// Whether spend at `at` falls inside the window of an account that signed up at `signup`.
    /// The end is exclusive: signup on Jan 15 with 6 months earns until Jul 15, 00:00 of that
    /// instant, not after.
    pub fn covers(self, signup: DateTime<Utc>, at: DateTime<Utc>) -> bool {
        match self {
            Window::Lifetime => true,
            Window::Months(m) => signup
                .checked_add_months(Months::new(m))
                .is_none_or(|end| at < end),
        }
    }
}

/// Different terms for referrals made before a date (Runpod's beta group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cohort {
    pub name: String,
    /// Referrals made strictly before this instant belong to the cohort.
    pub referred_before: DateTime<Utc>,
    pub window: Window,
}

/// How a program's cashable earnings may leave the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CashOut {
    /// Share of every earning that may leave as cash; the rest stays as platform credit.
    pub cashable_fraction: Decimal,
    pub rails: Vec<Rail>,
    /// The smallest payout; smaller balances wait.
    pub minimum_payout: Money,
    /// Accounts that ever rented or hosted may cash out only while lifetime earnings exceed
    /// their lifetime spend (Vast).
    pub spend_gate: bool,
    /// Days after the spend that earned it before a commission's cashable part may leave;
    /// until then it is maturing (a refund inside the window just removes it). Zero: at once.
    pub hold_days: u32,
}

impl CashOut {
    /// How long a commission is held before it may leave.
    pub fn hold(&self) -> chrono::Duration {
        chrono::Duration::days(i64::from(self.hold_days))
    }
}

/// What happens to a referral's earnings when evidence that it should never have qualified
/// (a link, a shared email or payment method) arrives after it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LateDisqualification {
    /// Everything it earned is clawed back: the outcome is the one the same facts give when
    /// they arrive together.
    #[default]
    ClawBack,
    /// What it earned stays; spend from the moment the evidence arrived earns nothing.
    StopFuture,
}

impl LateDisqualification {
    pub fn code(self) -> &'static str {
        match self {
            LateDisqualification::ClawBack => "claw_back",
            LateDisqualification::StopFuture => "stop_future",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReferralTerms {
    pub rates: Rates,
    pub window: Window,
    pub cohorts: Vec<Cohort>,
    pub late_disqualification: LateDisqualification,
}

impl ReferralTerms {
    /// The window that applies to a referral made at `referred_at`, and its cohort's name.
    pub fn window_for(&self, referred_at: DateTime<Utc>) -> (Window, Option<&str>) {
        self.cohorts
            .iter()
            .find(|c| referred_at < c.referred_before)
            .map_or((self.window, None), |c| (c.window, Some(c.name.as_str())))
    }
}

/// A one-way upgrade of a referral program: cash instead of credits, from the opt-in on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AffiliateTerms {
    pub referral_program: ProgramId,
    pub rates: Rates,
    /// Within this window (from the referred account's signup) spend earns affiliate cash;
    /// outside it the referral program's own terms apply (Runpod's beta referrals go back to
    /// credits indefinitely; the others' referral window has ended too).
    pub window: Window,
    pub min_paying_referrals: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatorTerms {
    pub rates: Rates,
    /// Total runtime across all users a template needs before it earns.
    pub min_template_runtime_secs: u64,
    /// Whether spend before the template reached `min_template_runtime_secs` earns once it
    /// does. The Runpod preset says no: the threshold is a gate, not a look-back.
    pub count_spend_before_threshold: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BonusTerms {
    pub referral_program: ProgramId,
    /// The referred account's spend (not deposits) that triggers the bonus.
    pub spend_threshold: Decimal,
    pub recipients: Vec<BonusRole>,
    pub distribution: BonusDistribution,
    /// The environment variable the seed was read from (the seed itself is never shown).
    pub seed_env: String,
    /// `None` when the variable is not set: only a bonus draw needs it, and fails without it.
    #[serde(skip)]
    pub seed: Option<SecretString>,
}

impl PartialEq for BonusTerms {
    /// Seeds are compared by where they come from, never by value.
    fn eq(&self, other: &Self) -> bool {
        self.referral_program == other.referral_program
            && self.spend_threshold == other.spend_threshold
            && self.recipients == other.recipients
            && self.distribution == other.distribution
            && self.seed_env == other.seed_env
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProgramKind {
    Referral(ReferralTerms),
    Affiliate(AffiliateTerms),
    Creator(CreatorTerms),
    Bonus(BonusTerms),
}

impl ProgramKind {
    pub fn code(&self) -> &'static str {
        match self {
            ProgramKind::Referral(_) => "referral",
            ProgramKind::Affiliate(_) => "affiliate",
            ProgramKind::Creator(_) => "creator",
            ProgramKind::Bonus(_) => "bonus",
        }
    }
}

/// One program, fully validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Program {
    pub id: ProgramId,
    pub name: String,
    pub currency: Currency,
    pub reward: RewardKind,
    pub cash_out: CashOut,
    /// Which new payouts wait for an operator (`domain::review`); all off by default.
    pub review: crate::domain::review::ReviewRules,
    pub kind: ProgramKind,
}

impl Program {
    pub fn referral(&self) -> Option<&ReferralTerms> {
        match &self.kind {
            ProgramKind::Referral(t) => Some(t),
            _ => None,
        }
    }
    pub fn affiliate(&self) -> Option<&AffiliateTerms> {
        match &self.kind {
            ProgramKind::Affiliate(t) => Some(t),
            _ => None,
        }
    }
    pub fn creator(&self) -> Option<&CreatorTerms> {
        match &self.kind {
            ProgramKind::Creator(t) => Some(t),
            _ => None,
        }
    }
    pub fn bonus(&self) -> Option<&BonusTerms> {
        match &self.kind {
            ProgramKind::Bonus(t) => Some(t),
            _ => None,
        }
    }

    /// The cashable part of an earning; the remainder is credit, so the two add up exactly.
    pub fn split(&self, amount: Decimal) -> (Decimal, Decimal) {
        let cashable = amount * self.cash_out.cashable_fraction;
        (cashable, amount - cashable)
    }
}

/// Every configured program, by id. Cross-references (an affiliate's or bonus's referral
/// program) are checked when the set is built, so lookups here cannot dangle.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProgramSet {
    programs: Vec<Program>,
}

impl ProgramSet {
    pub fn get(&self, id: &ProgramId) -> Option<&Program> {
        self.programs.iter().find(|p| &p.id == id)
    }

    pub fn get_str(&self, id: &str) -> Option<&Program> {
        self.programs.iter().find(|p| p.id.as_str() == id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Program> {
        self.programs.iter()
    }

    pub fn ids(&self) -> String {
        self.programs
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The affiliate upgrade of a referral program, if it has one.
    pub fn affiliate_of(&self, referral_program: &ProgramId) -> Option<&Program> {
        self.programs.iter().find(|p| {
            p.affiliate()
                .is_some_and(|a| &a.referral_program == referral_program)
        })
    }

    /// The new-user bonus attached to a referral program, if it has one.
    pub fn bonus_of(&self, referral_program: &ProgramId) -> Option<&Program> {
        self.programs.iter().find(|p| {
            p.bonus()
                .is_some_and(|b| &b.referral_program == referral_program)
        })
    }

    /// Merges sets loaded from several files; ids must stay unique.
    pub fn merge(mut self, other: ProgramSet) -> Result<ProgramSet, ConfigError> {
        for p in other.programs {
            if self.get(&p.id).is_some() {
                return Err(ConfigError::field(
                    format!("program {}", p.id),
                    "id",
                    "is defined twice; program ids must be unique across all files",
                ));
            }
            self.programs.push(p);
        }
        Ok(self)
    }

    pub(crate) fn from_programs(programs: Vec<Program>) -> Self {
        ProgramSet { programs }
    }
}

/// A shipped preset's program by id, for unit tests (the bonus seed is a test value).
#[cfg(test)]
pub(crate) fn preset_program(id: &str) -> Program {
    let set = ProgramSet::load(&["vast".into(), "runpod".into()], &|_| {
        Some("seed-for-unit-tests".into())
    })
    .unwrap();
    set.get_str(id).unwrap().clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    #[test]
    fn six_months_are_calendar_months_with_an_exclusive_end() {
        let w = Window::Months(6);
        let signup = t(2025, 7, 1);
        assert!(w.covers(signup, t(2025, 8, 15)), "month 2 earns");
        assert!(w.covers(signup, t(2025, 12, 31)));
        assert!(!w.covers(signup, t(2026, 1, 1)), "the end is exclusive");
        assert!(!w.covers(signup, t(2026, 2, 15)), "month 8 earns nothing");
        assert!(Window::Lifetime.covers(signup, t(2040, 1, 1)));
        // Month ends clamp: Aug 31 + 6 months is Feb 28.
        assert!(w.covers(t(2025, 8, 31), t(2026, 2, 27)));
        assert!(!w.covers(t(2025, 8, 31), t(2026, 2, 28)));
    }
}
