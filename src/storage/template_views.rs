//! The per-template report, shared by both storage backends.

use crate::domain::money::Money;
use serde::Serialize;

/// One template's figures. Amounts are in the program's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct TemplateReport {
    pub template: String,
    /// Referrals that arrived through this template's link.
    pub referrals: u64,
    pub qualified_referrals: u64,
    /// Spend of those referred accounts since their referral.
    pub referred_spend: Option<Money>,
    /// Commission their spend earned their referrers (referral and affiliate streams).
    pub referral_commission: Option<Money>,
    /// The creator program and creator, when the template is registered under one.
    pub creator_program: Option<String>,
    pub creator: Option<String>,
    pub runs: u64,
    pub runtime_secs: u64,
    /// What the template earned its creator so far.
    pub creator_earned: Option<Money>,
}
