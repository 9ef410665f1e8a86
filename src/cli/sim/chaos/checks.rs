//! The invariants every run must keep, checked against the providers' own books (each mock's
//! record of the money it really moved) and our ledger.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use payouts::domain::ids::Rail;
use payouts::domain::payout::PayoutStatus;
use payouts::domain::tracking::RailState;
use payouts::sim::sandbox::Sandbox;
use payouts::storage::Store;
use sha2::{Digest, Sha256};

use super::run::Tracked;

/// Every broken invariant, in words. `finished`: the run ended with nothing left to do (a
/// run cut off by its turn limit is itself a violation: a payout that never settles).
pub(super) async fn check(
    store: &Store,
    sandbox: &Sandbox,
    payouts: &[Tracked],
    finished: bool,
) -> Result<Vec<String>> {
    let mut broken = Vec::new();
    // Payouts waiting for an operator: whether their money is out is the operator's question
    // (an expired reward's money may or may not come back), so our ledger may count their
    // amount as paid out or not.
    let mut waiting: BTreeMap<&str, (Rail, i64)> = BTreeMap::new();
    if !finished {
        broken.push("the run did not settle within its turns".to_string());
    }
    for (i, p) in payouts.iter().enumerate() {
        let detail = store.payout(&p.id).await?;
        let status = detail.payout.status;
        // Transfers the provider refused or cancelled moved nothing; delivered ones did.
        let (_, delivered) = sandbox.payments_for(p.rail, &p.id);
        let payments = sandbox
            .moved(p.rail)
            .iter()
            .filter(|m| m.payout_id == p.id && m.state == RailState::Paid)
            .count();
        if payments > 1 {
            broken.push(format!(
                "p{i} ({}) has {payments} delivered payments at {}: paid twice",
                p.id, p.rail
            ));
        }
        let expected = match status {
            PayoutStatus::Paid => Some(p.minor),
            PayoutStatus::Failed | PayoutStatus::Returned => Some(0),
            PayoutStatus::NeedsOperator => {
                if detail.status_reason.as_deref().is_none_or(str::is_empty) {
                    broken.push(format!("p{i} waits for an operator without a reason"));
                }
                waiting.insert(p.id.as_str(), (p.rail, p.minor));
                None
            }
            // Held for review or a tax form (a rule on record): nothing was sent.
            PayoutStatus::Held if detail.flags.iter().any(|f| f.cleared_at.is_none()) => Some(0),
            other => {
                broken.push(format!(
                    "p{i} ended {other}: neither final nor with an operator"
                ));
                None
            }
        };
        if let Some(expected) = expected
            && delivered != expected
        {
            broken.push(format!(
                "p{i} ({}) is {status} but {} delivered {delivered} of {} cents",
                p.id, p.rail, p.minor
            ));
        }
    }
    let ours: BTreeSet<&str> = payouts.iter().map(|p| p.id.as_str()).collect();
    let ledger = store.paid_out_by_rail().await?;
    for rail in Rail::ALL {
        for moved in sandbox.moved(rail) {
            if !ours.contains(moved.payout_id.as_str()) {
                broken.push(format!(
                    "{rail} moved {} cents for {:?}, which no payout of ours asked for",
                    moved.minor, moved.payout_id
                ));
            }
        }
        let at_provider: i64 = sandbox
            .moved(rail)
            .iter()
            .filter(|m| m.state == RailState::Paid && !waiting.contains_key(m.payout_id.as_str()))
            .map(|m| m.minor)
            .sum();
        let in_ledger: i64 = ledger
            .iter()
            .filter(|t| t.rail == rail)
            .map(|t| t.amount.to_minor_units())
            .sum::<Result<i64, _>>()?;
        let open: i64 = waiting
            .values()
            .filter(|(r, _)| *r == rail)
            .map(|w| w.1)
            .sum();
        let gap = in_ledger - at_provider;
        if !(0..=open).contains(&gap) {
            broken.push(format!(
                "{rail}: the provider delivered {at_provider} cents on settled payouts, our \
                 ledger says {in_ledger} (payouts waiting for an operator: {open} cents)"
            ));
        }
    }
    let ledger = store.check_ledger().await?;
    broken.extend(ledger.problems.into_iter().map(|p| format!("ledger: {p}")));
    Ok(broken)
}

/// The trace's fingerprint: equal for equal runs.
pub(super) fn hash(trace: &[String]) -> String {
    let mut digest = Sha256::new();
    for line in trace {
        digest.update(line.as_bytes());
        digest.update(b"\n");
    }
    hex::encode(&digest.finalize()[..16])
}
