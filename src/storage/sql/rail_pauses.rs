//! Pausing and resuming a rail, and a step's wait for a paused one: a paused rail sends
//! nothing new, its payouts wait (never fail) and say why, work on the wire finishes.

use crate::domain::events::HeldFor;

use super::payouts::{Actor, append_event};
use super::steps::fenced_update;
use super::{Store, StoreResult, Tx, WriteLock, enqueue_payout_job};
use super::{from_millis, parse_stored, to_millis};
use crate::domain::ids::{PayoutId, Rail};
use crate::domain::operator::{PAUSE_RECHECK, RailPause, Refusal};
use crate::domain::payout::PayoutStatus;
use crate::storage::payout_views::Lease;

impl Store {
    /// Pauses `rail`; pausing a paused rail changes nothing and returns the live pause.
    /// Returns the pause and whether this call made it.
    pub async fn pause_rail(
        &self,
        rail: Rail,
        reason: &str,
        actor: &str,
    ) -> StoreResult<(RailPause, bool)> {
        if reason.trim().is_empty() {
            return Err(Refusal::NoReason.into());
        }
        let mut tx = self.begin_write(WriteLock::Sweep).await?;
        if let Some(live) = live_pause(&mut tx, rail).await? {
            return Ok((live, false));
        }
        let now = crate::clock::now();
        sqlx::query(
            "INSERT INTO rail_pauses (id, rail, reason, paused_by, paused_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(format!("rp_{}", crate::clock::ulid()))
        .bind(rail.as_str())
        .bind(reason)
        .bind(actor)
        .bind(to_millis(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let pause = RailPause {
            rail,
            reason: reason.to_string(),
            paused_by: actor.to_string(),
            paused_at: from_millis(to_millis(now)),
        };
        Ok((pause, true))
    }

    /// Resumes `rail` and wakes the payouts that waited for it; `None` when it was not
    /// paused.
    pub async fn resume_rail(
        &self,
        rail: Rail,
        reason: &str,
        actor: &str,
    ) -> StoreResult<Option<RailPause>> {
        if reason.trim().is_empty() {
            return Err(Refusal::NoReason.into());
        }
        let mut tx = self.begin_write(WriteLock::Sweep).await?;
        let Some(live) = live_pause(&mut tx, rail).await? else {
            return Ok(None);
        };
        let now = to_millis(crate::clock::now());
        sqlx::query(
            "UPDATE rail_pauses SET resumed_at = $2, resumed_by = $3, resume_reason = $4 \
             WHERE rail = $1 AND resumed_at IS NULL",
        )
        .bind(rail.as_str())
        .bind(now)
        .bind(actor)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        // Payouts that waited for the rail look again now rather than at their next recheck.
        let recheck = i64::try_from(PAUSE_RECHECK.as_millis()).unwrap_or(i64::MAX / 4);
        let waiting: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM payouts WHERE rail = $1 \
               AND status IN ('queued', 'retry_scheduled') AND lease_expires_at IS NULL \
               AND next_action_at > $2 AND next_action_at <= $3",
        )
        .bind(rail.as_str())
        .bind(now)
        .bind(now + recheck)
        .fetch_all(&mut *tx)
        .await?;
        for id in waiting {
            let id: PayoutId = parse_stored("payout id", &id)?;
            sqlx::query("UPDATE payouts SET next_action_at = $2 WHERE id = $1")
                .bind(id.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let key = format!("resume-{}-{now}", rail.as_str());
            enqueue_payout_job(&mut tx, &id, std::time::Duration::ZERO, &key).await?;
        }
        tx.commit().await?;
        Ok(Some(live))
    }

    /// The rails paused now.
    pub async fn rail_pauses(&self) -> StoreResult<Vec<RailPause>> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT rail, reason, paused_by, paused_at FROM rail_pauses \
             WHERE resumed_at IS NULL ORDER BY rail",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(pause_row).collect()
    }

    /// Whether `rail` is paused now.
    pub async fn rail_pause(&self, rail: Rail) -> StoreResult<Option<RailPause>> {
        Ok(self
            .rail_pauses()
            .await?
            .into_iter()
            .find(|p| p.rail == rail))
    }

    /// A step that found its rail paused: the payout waits, with the pause on its record
    /// once, and looks again after [`PAUSE_RECHECK`].
    pub async fn wait_for_rail(
        &self,
        lease: &Lease,
        status: PayoutStatus,
        pause: &RailPause,
    ) -> StoreResult<()> {
        let mut tx = self
            .begin_write(WriteLock::Payout(lease.payout_id.as_str()))
            .await?;
        let now = to_millis(crate::clock::now());
        let recheck = i64::try_from(PAUSE_RECHECK.as_millis()).unwrap_or(i64::MAX / 4);
        fenced_update(
            &mut tx,
            lease,
            "lease_owner = NULL, lease_expires_at = NULL, next_action_at = $3, updated_at = $4",
            now + recheck,
            now,
        )
        .await?;
        let note = pause.note();
        let last: Option<String> = sqlx::query_scalar(
            "SELECT reason FROM payout_events WHERE payout_id = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(lease.payout_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if last.as_deref() != Some(note.as_str()) {
            let actor = Actor {
                worker: Some(&lease.owner),
                source: "worker",
            };
            append_event(
                &mut tx,
                &lease.payout_id,
                Some(status),
                status,
                None,
                actor,
                &note,
            )
            .await?;
            super::events::payout_held(&mut tx, &lease.payout_id, HeldFor::RailPaused, &note)
                .await?;
        }
        let key = format!("fence-{}-rail-paused", lease.fence);
        enqueue_payout_job(&mut tx, &lease.payout_id, PAUSE_RECHECK, &key).await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn live_pause(tx: &mut Tx, rail: Rail) -> StoreResult<Option<RailPause>> {
    let row: Option<(String, String, String, i64)> = sqlx::query_as(
        "SELECT rail, reason, paused_by, paused_at FROM rail_pauses \
         WHERE rail = $1 AND resumed_at IS NULL",
    )
    .bind(rail.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(pause_row).transpose()
}

fn pause_row(
    (rail, reason, paused_by, paused_at): (String, String, String, i64),
) -> StoreResult<RailPause> {
    Ok(RailPause {
        rail: parse_stored("rail", &rail)?,
        reason,
        paused_by,
        paused_at: from_millis(paused_at),
    })
}
