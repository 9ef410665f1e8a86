//! Fresh charges: usage a write has just stored, for referred accounts nothing else in that
//! write touched, folded into their referrals' streams on their own.
//!
//! A referral stream earns rate × spend per charge, exactly (no rounding before money
//! moves), and the ledger holds every stream's earnings as of the last commit, because
//! accrual commits with the facts it accrues. So what new charges add is their own
//! earnings: posting that is the true-up the full pass would post, without re-reading the
//! account's history. That keeps an ingest's cost per chunk flat however much history there
//! is, so chunks can be small and memory flat. Anything that can change what past spend
//! earned (a referral judged, an account corrected, an opt-in, a refund, a bonus not yet
//! settled) puts the account through the full pass instead. A change of program terms
//! reaches past spend only through `payouts accrue` (`Store::reaccrue_all`), as before.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::referrals::{Charge, Referrals, fold, referral_expected, scoped_referrals};
use super::{Expected, Store, StoreResult, Tx};
use crate::domain::program::ProgramSet;
use crate::domain::program::earnings::Stream;

/// A charge this write stored (its usage row was new).
#[derive(Debug, Clone)]
pub(crate) struct FreshCharge {
    pub account: String,
    pub at_ms: i64,
    pub category: String,
    pub currency: String,
    pub units: i64,
}

impl Store {
    /// What the fresh charges of accounts outside the full pass add to their referral and
    /// affiliate streams: (stream, referral) -> the amount to accrue (never a clawback).
    /// Accounts whose bonus could still change are moved into the full pass's scope.
    pub(super) async fn fresh_streams<'p>(
        tx: &mut Tx,
        programs: &'p ProgramSet,
        fresh: &[FreshCharge],
    ) -> StoreResult<HashMap<(Stream, String), Expected<'p>>> {
        let mut expected = HashMap::new();
        if fresh.is_empty() {
            return Ok(expected);
        }
        let full: HashSet<String> =
            sqlx::query_scalar("SELECT id FROM accrual_scope WHERE kind = 'account'")
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .collect();
        let accounts: BTreeSet<&str> = fresh
            .iter()
            .map(|c| c.account.as_str())
            .filter(|a| !full.contains(*a))
            .collect();
        Self::scope(tx, "fresh", accounts.iter().map(|a| a.to_string())).await?;
        let (mut accs, by_referred) =
            scoped_referrals(tx, programs, Referrals::Scoped("fresh")).await?;
        if accs.is_empty() {
            return Ok(expected);
        }
        let unsettled = Self::unsettled_bonuses(tx, &accs).await?;
        Self::move_to_full_pass(tx, &unsettled).await?;
        for c in fresh {
            if full.contains(&c.account) || unsettled.contains(&c.account) {
                continue;
            }
            let charge = Charge {
                account: &c.account,
                at_ms: c.at_ms,
                category: &c.category,
                currency: &c.currency,
                units: i128::from(c.units),
            };
            fold(&mut accs, &by_referred, &charge, false)?;
        }
        // Bonus cases are not needed: every bonus here is settled (granted, drawn, posted).
        let _settled = referral_expected(&accs, &mut expected, true);
        expected.retain(|_, e| !e.totals.earned.is_zero());
        Ok(expected)
    }

    async fn move_to_full_pass(tx: &mut Tx, accounts: &HashSet<String>) -> StoreResult<()> {
        if accounts.is_empty() {
            return Ok(());
        }
        Self::scope(tx, "account", accounts.iter().cloned()).await
    }
}
