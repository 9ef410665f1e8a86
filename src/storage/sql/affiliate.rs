//! Affiliate opt-ins: counted, refused with the count, or recorded for good.

use super::{Conn, Tx};
pub(crate) use crate::storage::affiliate_views::*;
use chrono::{DateTime, Utc};

use super::{Store, StoreError, WriteLock, from_millis, to_millis};
use crate::domain::fingerprint::content_hash;
use crate::domain::ids::{AccountId, ProgramId};
use crate::domain::program::ProgramSet;

/// Referred users of `referrer` in `referral_program` (qualified referrals) whose spend since
/// the referral, up to `as_of` and net of refunds, is positive. A charge's refunds never
/// exceed it, so that is: some charge in the window is not wholly refunded. (No sum over the
/// account's charges, which could overflow.)
pub async fn paying_referrals(
    conn: &mut Conn,
    referral_program: &str,
    referrer: &str,
    as_of: DateTime<Utc>,
) -> Result<u32, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM referrals r \
         WHERE r.referrer_id = $1 AND r.program = $2 AND r.status = 'qualified' \
           AND EXISTS (SELECT 1 FROM usage u \
                WHERE u.account_id = r.referred_id AND u.at >= r.referred_at AND u.at <= $3 \
                  AND u.units > COALESCE( \
                    (SELECT SUM(f.units) FROM refunds f WHERE f.usage_id = u.id), 0))",
    )
    .bind(referrer)
    .bind(referral_program)
    .bind(to_millis(as_of))
    .fetch_one(&mut *conn)
    .await?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Records `account`'s opt-in to `program` at `at`, if allowed, and scopes its referred
/// accounts for accrual. The caller commits (and accrues) in the same transaction.
pub(super) async fn enroll(
    tx: &mut Tx,
    programs: &ProgramSet,
    program: &ProgramId,
    account: &AccountId,
    at: DateTime<Utc>,
) -> Result<Enrollment, OptInError> {
    let p = programs
        .get(program)
        .ok_or_else(|| OptInError::UnknownProgram {
            program: program.to_string(),
            configured: programs.ids(),
        })?;
    let terms = p.affiliate().ok_or(OptInError::NotAffiliate {
        program: program.to_string(),
        kind: p.kind.code(),
    })?;
    let known: Option<i64> =
        sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM accounts WHERE id = $1")
            .bind(account.as_str())
            .fetch_optional(&mut **tx)
            .await?;
    if known.is_none() {
        return Err(OptInError::UnknownAccount(account.clone()));
    }
    let hash = content_hash(&[&to_millis(at).to_string()]);
    let existing: Option<(i64, i64, String)> = sqlx::query_as(
        "SELECT opted_in_at, paying_referrals, content_hash FROM affiliate_enrollments \
         WHERE program = $1 AND account_id = $2",
    )
    .bind(program.as_str())
    .bind(account.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    if let Some((opted_in_at, paying, stored_hash)) = existing {
        if stored_hash != hash {
            return Err(OptInError::AlreadyOptedIn {
                account: account.clone(),
                program: program.clone(),
                opted_in_at: from_millis(opted_in_at).to_rfc3339(),
            });
        }
        return Ok(Enrollment {
            program: program.clone(),
            account: account.clone(),
            opted_in_at: from_millis(opted_in_at),
            paying_referrals: u32::try_from(paying).unwrap_or(0),
            replayed: true,
        });
    }
    let count = paying_referrals(tx, terms.referral_program.as_str(), account.as_str(), at).await?;
    if count < terms.min_paying_referrals {
        return Err(OptInError::TooFewPayingReferrals {
            account: account.clone(),
            program: program.clone(),
            referral_program: terms.referral_program.clone(),
            count,
            required: terms.min_paying_referrals,
            as_of: at.to_rfc3339(),
        });
    }
    sqlx::query(
        "INSERT INTO affiliate_enrollments \
           (program, account_id, opted_in_at, paying_referrals, recorded_at, content_hash) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(program.as_str())
    .bind(account.as_str())
    .bind(to_millis(at))
    .bind(i64::from(count))
    .bind(to_millis(crate::clock::now()))
    .bind(&hash)
    .execute(&mut **tx)
    .await?;
    // Spend from the opt-in on moves from credits to cash: re-accrue every referred account.
    Store::scope_query(
        tx,
        "SELECT 'account', referred_id FROM referrals WHERE referrer_id = $1 AND program = $2",
        &[account.as_str(), terms.referral_program.as_str()],
    )
    .await?;
    Ok(Enrollment {
        program: program.clone(),
        account: account.clone(),
        opted_in_at: at,
        paying_referrals: count,
        replayed: false,
    })
}

impl Store {
    /// Opts `account` into an affiliate program now (or at `at`), and accrues the change.
    pub async fn opt_in(
        &self,
        program: &ProgramId,
        account: &AccountId,
        at: DateTime<Utc>,
    ) -> Result<Enrollment, OptInError> {
        let mut tx = self.begin_write(WriteLock::Accrual).await?;
        let enrollment = enroll(&mut tx, self.programs(), program, account, at).await?;
        Store::accrue_scope(&mut tx, self.programs(), &[]).await?;
        tx.commit().await?;
        Ok(enrollment)
    }
}
