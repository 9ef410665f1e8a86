//! Who earns what from one piece of spend: the referral, affiliate, bonus and creator rules.
//!
//! Everything here is a pure function of facts, so the storage layer can recompute any
//! stream's expected total at any time and [`super::trueup`] posts only the difference.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::{CreatorTerms, Program, ProgramKind, ProgramSet, Window};
use crate::domain::usage::UsageCategory;

/// The earning streams a ledger transaction belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// A referrer's commission under a referral program.
    Referral,
    /// A referrer's cash under the affiliate upgrade of a referral program.
    Affiliate,
    BonusReferrer,
    BonusReferred,
    /// A template creator's share.
    Creator,
}

impl Stream {
    pub const ALL: [Stream; 5] = [
        Stream::Referral,
        Stream::Affiliate,
        Stream::BonusReferrer,
        Stream::BonusReferred,
        Stream::Creator,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Stream::Referral => "referral",
            Stream::Affiliate => "affiliate",
            Stream::BonusReferrer => "bonus_referrer",
            Stream::BonusReferred => "bonus_referred",
            Stream::Creator => "creator",
        }
    }

    pub fn from_code(code: &str) -> Option<Stream> {
        Stream::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// A qualified referral, as the rules need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferralFacts {
    /// When the referral was made (decides the cohort).
    pub referred_at: DateTime<Utc>,
    /// When the referred account signed up (starts every window).
    pub signup: DateTime<Utc>,
    /// When the referrer opted into the affiliate upgrade, if ever.
    pub opted_in_at: Option<DateTime<Utc>>,
}

/// Where one spend's commission goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share<'a> {
    pub program: &'a Program,
    pub stream: Stream,
    pub rate: Decimal,
}

/// A referral's earning schedule, worked out once from its facts so that deciding each of
/// millions of charges is a few comparisons.
///
/// From the affiliate opt-in on, spend inside the affiliate window earns affiliate cash
/// *instead of* referral credits. Spend before the opt-in, or outside the affiliate window,
/// earns under the referral program's own terms (its window, or its cohort's).
#[derive(Debug, Clone, Copy)]
pub struct ReferralPlan<'a> {
    pub referral: &'a Program,
    pub affiliate: Option<&'a Program>,
    /// The end of the referral window (exclusive), or `None` for a lifetime window.
    referral_end: Option<DateTime<Utc>>,
    signup: DateTime<Utc>,
    /// The opt-in and the end of the affiliate window, when the referrer opted in.
    affiliate_span: Option<(DateTime<Utc>, Option<DateTime<Utc>>)>,
}

fn window_end(window: Window, signup: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match window {
        Window::Lifetime => None,
        Window::Months(m) => signup.checked_add_months(chrono::Months::new(m)),
    }
}

impl<'a> ReferralPlan<'a> {
    /// `None` when `referral` is not a referral program.
    pub fn new(set: &'a ProgramSet, referral: &'a Program, facts: &ReferralFacts) -> Option<Self> {
        let terms = referral.referral()?;
        let affiliate = set.affiliate_of(&referral.id);
        let affiliate_span = match (facts.opted_in_at, affiliate.and_then(|a| a.affiliate())) {
            (Some(opted), Some(a)) => Some((opted, window_end(a.window, facts.signup))),
            _ => None,
        };
        Some(ReferralPlan {
            referral,
            affiliate,
            referral_end: window_end(terms.window_for(facts.referred_at).0, facts.signup),
            signup: facts.signup,
            affiliate_span,
        })
    }

    /// Which stream spend at `at` earns for (before looking at its category's rate).
    pub fn stream_at(&self, at: DateTime<Utc>) -> Option<Stream> {
        if let Some((opted, end)) = self.affiliate_span
            && at >= opted
            && at >= self.signup
            && end.is_none_or(|e| at < e)
        {
            return Some(Stream::Affiliate);
        }
        (at >= self.signup && self.referral_end.is_none_or(|e| at < e)).then_some(Stream::Referral)
    }

    /// The rate of `stream` for a category.
    pub fn rate(&self, stream: Stream, category: UsageCategory) -> Decimal {
        let program = match stream {
            Stream::Affiliate => self.affiliate,
            _ => Some(self.referral),
        };
        match program.map(|p| &p.kind) {
            Some(ProgramKind::Referral(t)) => t.rates.rate(category),
            Some(ProgramKind::Affiliate(t)) => t.rates.rate(category),
            _ => Decimal::ZERO,
        }
    }

    /// The end of the referral window, if it has one (for the balance to say so).
    pub fn referral_end(&self) -> Option<DateTime<Utc>> {
        self.referral_end
    }
}

/// The commission one spend of a referred account earns for its referrer, if any.
pub fn referral_share<'a>(
    set: &'a ProgramSet,
    referral: &'a Program,
    facts: &ReferralFacts,
    at: DateTime<Utc>,
    category: UsageCategory,
) -> Option<Share<'a>> {
    let plan = ReferralPlan::new(set, referral, facts)?;
    let stream = plan.stream_at(at)?;
    let rate = plan.rate(stream, category);
    let program = match stream {
        Stream::Affiliate => plan.affiliate?,
        _ => referral,
    };
    (!rate.is_zero()).then_some(Share {
        program,
        stream,
        rate,
    })
}

/// Where a referred account stands against the bonus threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BonusState {
    /// Spend has not reached the threshold yet.
    NotReached,
    /// Spend reached the threshold: the bonus is owed.
    Granted,
    /// Spend reached the threshold, then refunds took it back below: the bonus is clawed
    /// back. Reaching it again grants the same draw again, so net there is only ever one.
    Revoked,
}

/// The bonus state from the referred account's gross spend and its spend net of refunds.
pub fn bonus_state(threshold: Decimal, gross_spend: Decimal, net_spend: Decimal) -> BonusState {
    if gross_spend < threshold {
        BonusState::NotReached
    } else if net_spend < threshold {
        BonusState::Revoked
    } else {
        BonusState::Granted
    }
}

/// One charge for a run from a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRun<'a> {
    pub account: &'a str,
    pub at: DateTime<Utc>,
    pub category: UsageCategory,
    pub amount: Decimal,
    pub refunded: Decimal,
    pub runtime_secs: u64,
}

/// What a template earned its creator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct TemplateEarnings {
    pub runtime_secs: u64,
    /// When the template's total runtime reached the threshold.
    pub qualified_at: Option<DateTime<Utc>>,
    /// Spend that earned, and what it earned (gross) and what refunds took back.
    pub earning_spend: Decimal,
    pub earned: Decimal,
    pub clawed: Decimal,
}

/// The creator's share of a template's runs, given in time order. A run earns when the
/// template already had the threshold's runtime *before* it (or, with
/// `count_spend_before_threshold`, once the template reaches it at all). The creator's own
/// runs count toward runtime but never earn.
pub fn template_earnings(
    terms: &CreatorTerms,
    creator: &str,
    runs: &[TemplateRun<'_>],
) -> TemplateEarnings {
    let total: u64 = runs
        .iter()
        .map(|r| r.runtime_secs)
        .fold(0, u64::saturating_add);
    let reached = total >= terms.min_template_runtime_secs;
    let mut out = TemplateEarnings {
        runtime_secs: total,
        ..TemplateEarnings::default()
    };
    let mut before: u64 = 0;
    for run in runs {
        let qualified_before = before >= terms.min_template_runtime_secs;
        before = before.saturating_add(run.runtime_secs);
        if out.qualified_at.is_none() && before >= terms.min_template_runtime_secs {
            out.qualified_at = Some(run.at);
        }
        let counts = if terms.count_spend_before_threshold {
            reached
        } else {
            qualified_before
        };
        if !counts || run.account == creator {
            continue;
        }
        let rate = terms.rates.rate(run.category);
        if rate.is_zero() {
            continue;
        }
        out.earning_spend += run.amount;
        out.earned += run.amount * rate;
        out.clawed += run.refunded * rate;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::program::config::PRESETS;
    use chrono::TimeZone;

    fn set() -> ProgramSet {
        ProgramSet::from_toml("runpod", PRESETS[1].1, &|_| {
            Some("seed-for-unit-tests".into())
        })
        .unwrap()
    }

    fn t(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn share(
        set: &ProgramSet,
        f: &ReferralFacts,
        at: DateTime<Utc>,
        c: UsageCategory,
    ) -> Option<(Stream, Decimal)> {
        let referral = set.get_str("runpod").unwrap();
        referral_share(set, referral, f, at, c).map(|s| (s.stream, s.rate))
    }

    fn standard() -> ReferralFacts {
        ReferralFacts {
            referred_at: Utc.with_ymd_and_hms(2025, 7, 1, 0, 0, 0).unwrap(),
            signup: Utc.with_ymd_and_hms(2025, 7, 1, 0, 0, 0).unwrap(),
            opted_in_at: None,
        }
    }

    #[test]
    fn runpod_referral_pays_credits_for_six_months_unless_beta() {
        let s = set();
        assert_eq!(
            share(&s, &standard(), t(2025, 8, 15), UsageCategory::Pod),
            Some((Stream::Referral, d("0.03")))
        );
        assert_eq!(
            share(&s, &standard(), t(2025, 8, 15), UsageCategory::Serverless),
            Some((Stream::Referral, d("0.05")))
        );
        assert_eq!(
            share(&s, &standard(), t(2025, 8, 15), UsageCategory::Storage),
            None
        );
        assert_eq!(
            share(&s, &standard(), t(2026, 2, 15), UsageCategory::Pod),
            None,
            "month 8"
        );
        let beta = ReferralFacts {
            referred_at: t(2025, 6, 20),
            signup: t(2025, 6, 20),
            opted_in_at: None,
        };
        assert_eq!(
            share(&s, &beta, t(2027, 2, 15), UsageCategory::Pod),
            Some((Stream::Referral, d("0.03")))
        );
    }

    #[test]
    fn affiliates_earn_cash_in_the_window_and_fall_back_to_referral_terms_after() {
        let s = set();
        let opted = ReferralFacts {
            opted_in_at: Some(t(2025, 8, 1)),
            ..standard()
        };
        assert_eq!(
            share(&s, &opted, t(2025, 7, 20), UsageCategory::Pod),
            Some((Stream::Referral, d("0.03"))),
            "before the opt-in"
        );
        assert_eq!(
            share(&s, &opted, t(2025, 8, 20), UsageCategory::Pod),
            Some((Stream::Affiliate, d("0.10")))
        );
        assert_eq!(
            share(&s, &opted, t(2026, 2, 20), UsageCategory::Pod),
            None,
            "standard: nothing after 6 months"
        );
        let beta = ReferralFacts {
            referred_at: t(2025, 6, 1),
            signup: t(2025, 6, 1),
            opted_in_at: Some(t(2025, 7, 1)),
        };
        assert_eq!(
            share(&s, &beta, t(2025, 8, 1), UsageCategory::Serverless),
            Some((Stream::Affiliate, d("0.10")))
        );
        assert_eq!(
            share(&s, &beta, t(2026, 3, 1), UsageCategory::Serverless),
            Some((Stream::Referral, d("0.05"))),
            "beta: back to credits"
        );
    }

    #[test]
    fn the_bonus_needs_ten_dollars_of_spend_and_is_revoked_by_refunds_below_it() {
        assert_eq!(
            bonus_state(d("10"), d("9.99"), d("9.99")),
            BonusState::NotReached
        );
        assert_eq!(bonus_state(d("10"), d("10"), d("10")), BonusState::Granted);
        assert_eq!(bonus_state(d("10"), d("12"), d("8")), BonusState::Revoked);
    }

    fn run<'a>(account: &'a str, hour: u32, runtime_secs: u64, amount: &str) -> TemplateRun<'a> {
        TemplateRun {
            account,
            at: Utc.with_ymd_and_hms(2025, 9, 1, 0, 0, 0).unwrap()
                + chrono::Duration::hours(hour.into()),
            category: UsageCategory::Pod,
            amount: d(amount),
            refunded: Decimal::ZERO,
            runtime_secs,
        }
    }

    #[test]
    fn a_template_earns_only_after_a_day_of_runtime() {
        let s = set();
        let terms = s.get_str("runpod-creator").unwrap().creator().unwrap();
        let short = [run("u1", 0, 23 * 3600, "100")];
        let e = template_earnings(terms, "creator", &short);
        assert_eq!(e.earned, Decimal::ZERO);
        assert_eq!(e.qualified_at, None);

        let runs = [
            run("u1", 0, 23 * 3600, "100"),
            run("u2", 30, 3600, "50"),
            run("u3", 40, 600, "200"),
            run("creator", 41, 600, "80"),
        ];
        let e = template_earnings(terms, "creator", &runs);
        assert_eq!(e.qualified_at, Some(runs[1].at));
        assert_eq!(
            e.earned,
            d("2"),
            "only the run after the day is complete: 1% of 200"
        );

        let mut generous = terms.clone();
        generous.count_spend_before_threshold = true;
        let e = template_earnings(&generous, "creator", &runs);
        assert_eq!(
            e.earned,
            d("3.5"),
            "1% of 100 + 50 + 200, never the creator's own 80"
        );
    }
}
