//! Bonus draws: made once, when a referred account first reaches the spend threshold, and
//! stored with a fingerprint of the seed they came from (never the seed). A stored draw is
//! final: a later seed, rotated on purpose or changed by mistake, only decides draws not yet
//! made, and a seed that differs from the database's is refused unless a rotation is asked for.

use std::collections::{HashMap, HashSet};

use rust_decimal::Decimal;
use secrecy::ExposeSecret;
use sqlx::QueryBuilder;

use super::accrual::{Expected, ReferralAcc};
use super::{BATCH_ROWS, Db, Store, StoreResult, Tx, WriteLock, parse_stored, to_millis};
use crate::domain::ids::AccountId;
use crate::domain::money::Money;
use crate::domain::program::bonus::{SeedCheck, SeedError, check_seed, draw, seed_fingerprint};
use crate::domain::program::earnings::{BonusState, Stream, bonus_state};
use crate::domain::program::trueup::StreamTotals;
use crate::domain::program::{BonusRole, BonusTerms, Program};

/// A referred account's standing against its referral program's bonus.
pub(super) struct BonusCase<'a> {
    pub referral_id: String,
    pub program: &'a Program,
    pub referrer: AccountId,
    pub referred: AccountId,
    /// Spend since the referral that counts toward the threshold, and the same net of refunds.
    pub gross: Decimal,
    pub net: Decimal,
    /// Why the referral earns nothing (or nothing more), when it was disqualified.
    pub disqualified: Option<String>,
}

/// A draw as stored: what it granted and how to check it.
struct StoredDraw {
    amount: Decimal,
    slot: String,
    slots: String,
    digest: String,
    seed_fingerprint: String,
}

/// (program, referred account, role) of a draw.
type DrawKey = (String, String, &'static str);

/// program, referred_id, role, amount, slot, slots, digest, seed_fingerprint.
type DrawRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
);

impl Store {
    /// Checks every bonus program's seed against the fingerprint the database's draws were
    /// made with. A different seed is refused, naming how to rotate, unless `rotate`: then it
    /// is accepted for new draws, and the draws already made stay as they are. A program
    /// whose seed is not set is skipped: only a draw needs it.
    pub async fn check_bonus_seeds(&self, rotate: bool) -> StoreResult<()> {
        let seeded: Vec<(&Program, &BonusTerms)> = self
            .programs
            .iter()
            .filter_map(|p| p.bonus().filter(|t| t.seed.is_some()).map(|t| (p, t)))
            .collect();
        // Reading is enough unless a seed changed: a read-only command does not wait for the
        // write lock behind a long ingest.
        let mut changed = false;
        for (program, terms) in &seeded {
            let stored: Option<String> =
                sqlx::query_scalar("SELECT fingerprint FROM bonus_seeds WHERE program = $1")
                    .bind(program.id.as_str())
                    .fetch_optional(self.pool())
                    .await?;
            let current = terms
                .seed
                .as_ref()
                .map(|s| seed_fingerprint(s.expose_secret().as_bytes()))
                .unwrap_or_default();
            changed |= stored.is_some_and(|s| s != current);
        }
        if !changed {
            return Ok(());
        }
        let mut tx = self.begin_write(WriteLock::Accrual).await?;
        for (program, terms) in seeded {
            accept_seed(&mut tx, program, terms, rotate, false).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// What each bonus stream of `cases` should hold. A case past the threshold uses its
    /// stored draw, or draws now (needing the seed) and stores the draw.
    pub(super) async fn bonus_streams<'p>(
        tx: &mut Tx,
        cases: Vec<BonusCase<'p>>,
        expected: &mut HashMap<(Stream, String), Expected<'p>>,
    ) -> StoreResult<()> {
        if cases.is_empty() {
            return Ok(());
        }
        let mut stored = stored_draws(tx, "account").await?;
        let mut new_keys: Vec<DrawKey> = Vec::new();
        let mut seeds_checked: HashSet<String> = HashSet::new();
        for case in cases {
            let Some(terms) = case.program.bonus() else {
                continue;
            };
            let state = bonus_state(terms.spend_threshold, case.gross, case.net);
            for role in &terms.recipients {
                let key: DrawKey = (
                    case.program.id.to_string(),
                    case.referred.to_string(),
                    role.code(),
                );
                if state != BonusState::NotReached && !stored.contains_key(&key) {
                    if seeds_checked.insert(key.0.clone()) {
                        accept_seed(tx, case.program, terms, false, true).await?;
                    }
                    let made = new_draw(case.program, terms, &case.referred, *role)?;
                    stored.insert(key.clone(), made);
                    new_keys.push(key.clone());
                }
                let d = stored.get(&key);
                let (stream, beneficiary) = match role {
                    BonusRole::Referrer => (Stream::BonusReferrer, case.referrer.clone()),
                    BonusRole::Referred => (Stream::BonusReferred, case.referred.clone()),
                };
                let amount = d.map_or(Decimal::ZERO, |d| d.amount);
                let totals = match state {
                    BonusState::NotReached => StreamTotals::default(),
                    BonusState::Granted => StreamTotals {
                        earned: amount,
                        clawed: Decimal::ZERO,
                    },
                    BonusState::Revoked => StreamTotals {
                        earned: amount,
                        clawed: amount,
                    },
                };
                let note = note(&case, *role, state, d);
                expected.insert(
                    (stream, case.referral_id.clone()),
                    Expected {
                        program: case.program,
                        beneficiary,
                        totals,
                        note,
                    },
                );
            }
        }
        let new_draws: Vec<(&DrawKey, &StoredDraw)> = new_keys
            .iter()
            .filter_map(|k| stored.get(k).map(|d| (k, d)))
            .collect();
        insert_draws(tx, &new_draws).await
    }
}

impl Store {
    /// The referred accounts (in the "fresh" scope) with a bonus that more spend could still
    /// change: a draw not made yet, or a bonus stream not holding exactly its draw (revoked,
    /// or behind). A granted, drawn and posted bonus stays so while spend only grows.
    pub(super) async fn unsettled_bonuses(
        tx: &mut Tx,
        accs: &[ReferralAcc<'_>],
    ) -> StoreResult<HashSet<String>> {
        let mut unsettled = HashSet::new();
        if accs.iter().all(|a| a.bonus.is_none()) {
            return Ok(unsettled);
        }
        let stored = stored_draws(tx, "fresh").await?;
        let posted = Self::posted_in_scope(tx, "fresh").await?;
        for acc in accs {
            let Some((program, terms)) = acc.bonus.and_then(|p| p.bonus().map(|t| (p, t))) else {
                continue;
            };
            let settled = terms.recipients.iter().all(|role| {
                let key: DrawKey = (
                    program.id.to_string(),
                    acc.referred.to_string(),
                    role.code(),
                );
                let stream = match role {
                    BonusRole::Referrer => Stream::BonusReferrer,
                    BonusRole::Referred => Stream::BonusReferred,
                };
                let held = posted.get(&(stream, acc.id.clone())).map(|p| p.totals);
                stored.get(&key).is_some_and(|d| {
                    held.unwrap_or_default()
                        == StreamTotals {
                            earned: d.amount,
                            clawed: Decimal::ZERO,
                        }
                })
            });
            if !settled {
                unsettled.insert(acc.referred.to_string());
            }
        }
        Ok(unsettled)
    }
}

fn note(
    case: &BonusCase<'_>,
    role: BonusRole,
    state: BonusState,
    d: Option<&StoredDraw>,
) -> String {
    let currency = case.program.currency;
    let standing = match state {
        BonusState::NotReached => "threshold not reached",
        BonusState::Granted => "threshold reached",
        BonusState::Revoked => "refunded below the threshold",
    };
    let drawn = d.map_or_else(
        || "no draw yet".to_string(),
        |d| {
            format!(
                "bonus draw {} ({} of {} slots, HMAC {}, seed fingerprint {})",
                Money::new(d.amount, currency),
                d.slot,
                d.slots,
                d.digest.get(..16).unwrap_or(&d.digest),
                d.seed_fingerprint.get(..16).unwrap_or(&d.seed_fingerprint),
            )
        },
    );
    let mut note = format!(
        "{drawn} for the {}; {} spent {} ({standing})",
        role.code(),
        case.referred,
        Money::new(case.gross, currency),
    );
    if let Some(why) = &case.disqualified {
        note = format!("{why}; {note}");
    }
    note
}

/// Checks `program`'s seed against the database's. `record`: store the fingerprint when none
/// is stored yet (a first draw), so every later draw is made under the same seed.
async fn accept_seed(
    tx: &mut Tx,
    program: &Program,
    terms: &BonusTerms,
    rotate: bool,
    record: bool,
) -> StoreResult<()> {
    let seed = terms.seed.as_ref().ok_or_else(|| missing(program, terms))?;
    let current = seed_fingerprint(seed.expose_secret().as_bytes());
    let stored: Option<String> =
        sqlx::query_scalar("SELECT fingerprint FROM bonus_seeds WHERE program = $1")
            .bind(program.id.as_str())
            .fetch_optional(&mut **tx)
            .await?;
    let write = match check_seed(stored.as_deref(), &current, rotate) {
        SeedCheck::Matches => false,
        SeedCheck::Unrecorded => record,
        SeedCheck::Rotated => {
            tracing::warn!(
                program = %program.id,
                seed_env = %terms.seed_env,
                from = %stored.as_deref().unwrap_or_default().get(..16).unwrap_or_default(),
                to = %current.get(..16).unwrap_or_default(),
                "bonus seed rotated: new draws use the new seed; draws already made stay"
            );
            true
        }
        SeedCheck::Refused => {
            return Err(SeedError::Changed {
                program: program.id.to_string(),
                seed_env: terms.seed_env.clone(),
                stored: stored.unwrap_or_default().chars().take(16).collect(),
                current: current.chars().take(16).collect(),
            }
            .into());
        }
    };
    if write {
        sqlx::query(
            "INSERT INTO bonus_seeds (program, fingerprint, accepted_at) VALUES ($1, $2, $3) \
             ON CONFLICT (program) DO UPDATE SET fingerprint = excluded.fingerprint, \
             accepted_at = excluded.accepted_at",
        )
        .bind(program.id.as_str())
        .bind(&current)
        .bind(to_millis(crate::clock::now()))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn missing(program: &Program, terms: &BonusTerms) -> SeedError {
    SeedError::Missing {
        program: program.id.to_string(),
        seed_env: terms.seed_env.clone(),
    }
}

fn new_draw(
    program: &Program,
    terms: &BonusTerms,
    referred: &AccountId,
    role: BonusRole,
) -> StoreResult<StoredDraw> {
    let seed = terms.seed.as_ref().ok_or_else(|| missing(program, terms))?;
    let d = draw(
        seed.expose_secret().as_bytes(),
        program.id.as_str(),
        referred.as_str(),
        role,
        &terms.distribution,
    );
    Ok(StoredDraw {
        amount: d.amount,
        slot: d.slot.to_string(),
        slots: d.slots.to_string(),
        digest: d.digest,
        seed_fingerprint: seed_fingerprint(seed.expose_secret().as_bytes()),
    })
}

/// The stored draws of the referred accounts in the accrual scope.
/// The draws of the referred accounts in scope under `kind`.
async fn stored_draws(
    tx: &mut Tx,
    kind: &'static str,
) -> StoreResult<HashMap<DrawKey, StoredDraw>> {
    let rows: Vec<DrawRow> = sqlx::query_as(
        "SELECT d.program, d.referred_id, d.role, d.amount, d.slot, d.slots, d.digest, \
                    d.seed_fingerprint \
             FROM accrual_scope s JOIN bonus_draws d ON d.referred_id = s.id \
             WHERE s.kind = $1",
    )
    .bind(kind)
    .fetch_all(&mut **tx)
    .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for (program, referred, role, amount, slot, slots, digest, seed_fingerprint) in rows {
        let role = match role.as_str() {
            "referrer" => BonusRole::Referrer.code(),
            "referred" => BonusRole::Referred.code(),
            other => {
                return Err(super::StoreError::Corrupt(format!(
                    "unknown bonus role {other:?}"
                )));
            }
        };
        out.insert(
            (program, referred, role),
            StoredDraw {
                amount: parse_stored("bonus amount", &amount)?,
                slot,
                slots,
                digest,
                seed_fingerprint,
            },
        );
    }
    Ok(out)
}

async fn insert_draws(tx: &mut Tx, draws: &[(&DrawKey, &StoredDraw)]) -> StoreResult<()> {
    let now = to_millis(crate::clock::now());
    for chunk in draws.chunks(BATCH_ROWS) {
        let mut q = QueryBuilder::<Db>::new(
            "INSERT INTO bonus_draws (program, referred_id, role, amount, slot, slots, digest, \
             seed_fingerprint, drawn_at) ",
        );
        q.push_values(chunk, |mut b, ((program, referred, role), d)| {
            b.push_bind(program.clone())
                .push_bind(referred.clone())
                .push_bind(*role)
                .push_bind(d.amount.to_string())
                .push_bind(d.slot.clone())
                .push_bind(d.slots.clone())
                .push_bind(d.digest.clone())
                .push_bind(d.seed_fingerprint.clone())
                .push_bind(now);
        });
        // A draw is final: an existing one is never replaced.
        q.push(" ON CONFLICT DO NOTHING");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}
