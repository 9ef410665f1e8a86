//! The referral and affiliate streams of the referred accounts in scope: which referrals
//! earn (and until when), one streaming pass folding their charges and refunds into
//! per-stream tallies, and the totals each stream should hold.

use std::collections::HashMap;

use futures::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::Row;

use super::super::bonus::BonusCase;
use sqlx::QueryBuilder;

use super::super::{
    Conn, Db, Store, StoreError, StoreResult, Tx, from_millis, parse_code, parse_stored,
};
use super::{Expected, dec};
use crate::domain::ids::AccountId;
use crate::domain::money::{Currency, Money};
use crate::domain::program::earnings::{ReferralFacts, ReferralPlan, Stream};
use crate::domain::program::trueup::StreamTotals;
use crate::domain::program::{LateDisqualification, Program, ProgramSet};
use crate::domain::referral::Disqualification;
use crate::domain::usage::UsageCategory;

const CATEGORIES: usize = UsageCategory::ALL.len();

/// From this many referred accounts in scope on, accrual scans the whole usage table.
const FULL_SCAN_ACCOUNTS: usize = 20_000;

fn category_index(code: &str) -> Option<usize> {
    UsageCategory::ALL.iter().position(|c| c.code() == code)
}

/// Per-category spend, split by the stream it earned for.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    referral: [i128; CATEGORIES],
    affiliate: [i128; CATEGORIES],
}

impl Tally {
    fn add(&mut self, stream: Stream, category: usize, units: i128) {
        match stream {
            Stream::Affiliate => self.affiliate[category] += units,
            _ => self.referral[category] += units,
        }
    }
}

/// Everything accrual folds for one referral.
pub(crate) struct ReferralAcc<'a> {
    pub(crate) id: String,
    referrer: AccountId,
    pub(crate) referred: AccountId,
    qualified: bool,
    /// When the referral was made (ms); earlier spend earns nothing.
    since_ms: i64,
    /// Spend from this instant (ms) on earns nothing: a late disqualification under a program
    /// that stops future earnings only.
    until_ms: Option<i64>,
    /// Why the referral earns nothing (or nothing more), for the ledger notes.
    disqualified: Option<String>,
    currency: Currency,
    plan: Option<ReferralPlan<'a>>,
    pub(crate) bonus: Option<&'a Program>,
    spend: Tally,
    refunded: Tally,
    /// All of the referred account's spend since the referral, for the bonus threshold.
    gross_units: i128,
    refunded_units: i128,
}

impl<'a> ReferralAcc<'a> {
    /// The earning plan a charge at `at_ms` in `currency` counts under, or `None` when the
    /// charge earns this referral nothing at all.
    pub(super) fn plan_for(&self, at_ms: i64, currency: &str) -> Option<&ReferralPlan<'a>> {
        if !self.qualified || self.currency.code() != currency {
            return None;
        }
        // Spend before the referral does not count: it had no referrer yet.
        if at_ms < self.since_ms || self.until_ms.is_some_and(|u| at_ms >= u) {
            return None;
        }
        self.plan.as_ref()
    }

    pub(super) fn referrer(&self) -> &AccountId {
        &self.referrer
    }
}

/// The program a stream's commission is posted under: the affiliate program for the
/// affiliate stream, else the referral program.
pub(super) fn stream_program<'a>(plan: &ReferralPlan<'a>, stream: Stream) -> Option<&'a Program> {
    match stream {
        Stream::Affiliate => plan.affiliate,
        _ => Some(plan.referral),
    }
}

/// The referrals in scope, and for each referred account the indexes of its referrals (one
/// per program it was referred in).
pub(super) type Scoped<'p> = (Vec<ReferralAcc<'p>>, HashMap<String, Vec<usize>>);

impl Store {
    pub(super) async fn referral_streams<'p>(
        tx: &mut Tx,
        programs: &'p ProgramSet,
        expected: &mut HashMap<(Stream, String), Expected<'p>>,
    ) -> StoreResult<()> {
        let (mut accs, by_referred) =
            scoped_referrals(tx, programs, Referrals::Scoped("account")).await?;
        if accs.is_empty() {
            return Ok(());
        }
        tally_charges(tx, &mut accs, &by_referred).await?;
        let bonuses = referral_expected(&accs, expected, false);
        Self::bonus_streams(tx, bonuses, expected).await
    }
}

/// Which judged referrals to load.
pub(super) enum Referrals<'a> {
    /// Those of the referred accounts in scope under this kind ("account", or "fresh" for the
    /// accounts whose new charges alone are folded).
    Scoped(&'static str),
    /// Those these accounts made (as referrers).
    By(&'a [String]),
}

/// The judged referrals `which` names, each with its standing and earning plan.
pub(super) async fn scoped_referrals<'p>(
    conn: &mut Conn,
    programs: &'p ProgramSet,
    which: Referrals<'_>,
) -> StoreResult<Scoped<'p>> {
    let enrollments: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT program, account_id, opted_in_at FROM affiliate_enrollments")
            .fetch_all(&mut *conn)
            .await?;
    let opted: HashMap<(&str, &str), i64> = enrollments
        .iter()
        .map(|(p, a, at)| ((p.as_str(), a.as_str()), *at))
        .collect();

    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        String,
        String,
        String,
        String,
        i64,
        i64,
        String,
        Option<String>,
        Option<i64>,
    )> = {
        let mut q = QueryBuilder::<Db>::new(
            "SELECT r.id, r.program, r.referrer_id, r.referred_id, r.referred_at, a.created_at, \
                    r.status, r.disqualification, r.disqualified_late_at ",
        );
        match which {
            Referrals::Scoped(kind) => {
                q.push(
                    "FROM accrual_scope s JOIN referrals r ON r.referred_id = s.id \
                     JOIN accounts a ON a.id = r.referred_id WHERE s.kind = ",
                )
                .push_bind(kind);
            }
            Referrals::By(referrers) => {
                q.push(
                    "FROM referrals r JOIN accounts a ON a.id = r.referred_id \
                     WHERE r.referrer_id IN (",
                );
                let mut list = q.separated(", ");
                for id in referrers {
                    list.push_bind(id.as_str());
                }
                q.push(")");
            }
        }
        q.push(" AND r.status <> 'pending'");
        q.build_query_as().fetch_all(&mut *conn).await?
    };
    let mut accs: Vec<ReferralAcc<'p>> = Vec::with_capacity(rows.len());
    // referred account -> indexes into accs (one per program it was referred in)
    let mut by_referred: HashMap<String, Vec<usize>> = HashMap::with_capacity(rows.len());
    for (id, program_id, referrer, referred, referred_at, signup, status, reason, late_at) in rows {
        let Some(program) = programs
            .get_str(&program_id)
            .filter(|p| p.referral().is_some())
        else {
            // A referral of a program no longer configured earns nothing new; what it
            // earned stays in the ledger.
            continue;
        };
        let affiliate = programs.affiliate_of(&program.id);
        let opted_in_at = affiliate
            .and_then(|a| opted.get(&(a.id.as_str(), referrer.as_str())))
            .map(|ms| from_millis(*ms));
        let facts = ReferralFacts {
            referred_at: from_millis(referred_at),
            signup: from_millis(signup),
            opted_in_at,
        };
        let standing = standing(program, &status, reason.as_deref(), late_at)?;
        by_referred
            .entry(referred.clone())
            .or_default()
            .push(accs.len());
        accs.push(ReferralAcc {
            id,
            referrer: parse_stored("account id", &referrer)?,
            referred: parse_stored("account id", &referred)?,
            qualified: standing.earns,
            since_ms: referred_at,
            until_ms: standing.until_ms,
            disqualified: standing.why,
            currency: program.currency,
            plan: ReferralPlan::new(programs, program, &facts),
            bonus: programs.bonus_of(&program.id),
            spend: Tally::default(),
            refunded: Tally::default(),
            gross_units: 0,
            refunded_units: 0,
        });
    }
    Ok((accs, by_referred))
}

/// Folds the charges and refunds of the accounts in scope into their referrals' tallies.
async fn tally_charges(
    tx: &mut Tx,
    accs: &mut [ReferralAcc<'_>],
    by_referred: &HashMap<String, Vec<usize>>,
) -> StoreResult<()> {
    // Charges and refunds of the accounts in scope. A refund counts against the charge it
    // refunds: same time, same category, so it claws back at the rate the charge earned.
    // A large scope reads the usage table in storage order instead of account by account:
    // one sequential pass beats millions of index probes, and rows of accounts out of
    // scope are skipped by the map lookup.
    let sequential = by_referred.len() >= FULL_SCAN_ACCOUNTS;
    for refunds in [false, true] {
        let sql = match (refunds, sequential) {
            (true, false) => {
                "SELECT u.account_id, u.at, u.category, u.currency, CAST(f.units AS BIGINT) \
                 FROM accrual_scope s JOIN usage u ON u.account_id = s.id \
                 JOIN refunds f ON f.usage_id = u.id WHERE s.kind = 'account'"
            }
            (true, true) => {
                "SELECT u.account_id, u.at, u.category, u.currency, CAST(f.units AS BIGINT) \
                 FROM refunds f JOIN usage u ON u.id = f.usage_id"
            }
            (false, false) => {
                "SELECT u.account_id, u.at, u.category, u.currency, CAST(u.units AS BIGINT) \
                 FROM accrual_scope s JOIN usage u ON u.account_id = s.id WHERE s.kind = 'account'"
            }
            (false, true) => {
                "SELECT account_id, at, category, currency, CAST(units AS BIGINT) FROM usage"
            }
        };
        let mut stream = sqlx::query(sql).fetch(&mut **tx);
        while let Some(row) = stream.try_next().await? {
            let charge = Charge {
                account: row.try_get(0)?,
                at_ms: row.try_get(1)?,
                category: row.try_get(2)?,
                currency: row.try_get(3)?,
                units: i128::from(row.try_get::<i64, _>(4)?),
            };
            fold(accs, by_referred, &charge, refunds)?;
        }
    }
    Ok(())
}

/// One charge (or refund of one) of a referred account.
pub(super) struct Charge<'r> {
    pub account: &'r str,
    pub at_ms: i64,
    pub category: &'r str,
    pub currency: &'r str,
    pub units: i128,
}

/// Folds one charge (or refund) into the tallies of the account's referrals it counts for.
pub(super) fn fold(
    accs: &mut [ReferralAcc<'_>],
    by_referred: &HashMap<String, Vec<usize>>,
    charge: &Charge<'_>,
    refunds: bool,
) -> StoreResult<()> {
    let Some(idxs) = by_referred.get(charge.account) else {
        return Ok(());
    };
    let cat = category_index(charge.category).ok_or_else(|| {
        StoreError::Corrupt(format!("unknown usage category {:?}", charge.category))
    })?;
    let (at_ms, units) = (charge.at_ms, charge.units);
    let at = from_millis(at_ms);
    for &i in idxs {
        let acc = &mut accs[i];
        let Some(stream) = acc
            .plan_for(at_ms, charge.currency)
            .map(|plan| plan.stream_at(at))
        else {
            continue;
        };
        if refunds {
            acc.refunded_units += units;
        } else {
            acc.gross_units += units;
        }
        if let Some(stream) = stream {
            let tally = if refunds {
                &mut acc.refunded
            } else {
                &mut acc.spend
            };
            tally.add(stream, cat, units);
        }
    }
    Ok(())
}

/// Whether a stored referral earns, until when, and why not.
struct Standing {
    earns: bool,
    until_ms: Option<i64>,
    why: Option<String>,
}

fn standing(
    program: &Program,
    status: &str,
    reason: Option<&str>,
    late_at: Option<i64>,
) -> StoreResult<Standing> {
    if status == "qualified" {
        return Ok(Standing {
            earns: true,
            until_ms: None,
            why: None,
        });
    }
    let reason = parse_code(
        "disqualification",
        reason.unwrap_or_default(),
        Disqualification::from_code,
    )?;
    let policy = program
        .referral()
        .map(|t| t.late_disqualification)
        .unwrap_or_default();
    Ok(match late_at {
        Some(at) => {
            let stop_future = policy == LateDisqualification::StopFuture;
            Standing {
                earns: stop_future,
                until_ms: Some(at),
                why: Some(reason.explain_late(from_millis(at), !stop_future)),
            }
        }
        None => Standing {
            earns: false,
            until_ms: None,
            why: Some(format!("referral disqualified: {}", reason.explain())),
        },
    })
}

/// The referral and affiliate streams every referral should hold; returns the referrals'
/// standing against their bonus, which needs stored draws. With `fresh`, the tallies hold
/// only charges new to the ledger, and the totals are what they add.
pub(super) fn referral_expected<'p>(
    accs: &[ReferralAcc<'p>],
    expected: &mut HashMap<(Stream, String), Expected<'p>>,
    fresh: bool,
) -> Vec<BonusCase<'p>> {
    let mut bonuses = Vec::new();
    for acc in accs {
        let Some(plan) = &acc.plan else { continue };
        for stream in [Stream::Referral, Stream::Affiliate] {
            let Some(program) = stream_program(plan, stream) else {
                continue;
            };
            let (spend, refunded) = match stream {
                Stream::Affiliate => (&acc.spend.affiliate, &acc.refunded.affiliate),
                _ => (&acc.spend.referral, &acc.refunded.referral),
            };
            let mut totals = StreamTotals::default();
            let mut earning = Decimal::ZERO;
            for (i, c) in UsageCategory::ALL.iter().enumerate() {
                let rate = plan.rate(stream, *c);
                totals.earned += dec(spend[i]) * rate;
                totals.clawed += dec(refunded[i]) * rate;
                if !rate.is_zero() {
                    earning += dec(spend[i]);
                }
            }
            let mut note = format!(
                "{}{} of {}'s spend earns {} under {}",
                Money::new(earning, program.currency),
                if fresh { " more" } else { "" },
                acc.referred,
                stream.code(),
                program.id
            );
            if let Some(why) = &acc.disqualified {
                note = format!("{why}; {note}");
            }
            expected.insert(
                (stream, acc.id.clone()),
                Expected {
                    program,
                    beneficiary: acc.referrer.clone(),
                    totals,
                    note,
                },
            );
        }
        if let Some(bonus) = acc.bonus {
            bonuses.push(BonusCase {
                referral_id: acc.id.clone(),
                program: bonus,
                referrer: acc.referrer.clone(),
                referred: acc.referred.clone(),
                gross: dec(acc.gross_units),
                net: dec(acc.gross_units - acc.refunded_units),
                disqualified: acc.disqualified.clone(),
            });
        }
    }
    bonuses
}
