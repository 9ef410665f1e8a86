//! Duplicate payments an operator books (resolve-duplicate): what is known of each provider
//! object that named a payout without being its payment, and marking one booked, which
//! resolves the payout's reconciliation exception once none is left.

use super::{StoreResult, Tx, parse_code, parse_stored, to_millis};
use crate::domain::ids::{PayoutId, Rail};
use crate::domain::operator::{DuplicateBooking, DuplicateFact};
use crate::domain::reconcile::{ExceptionId, ExceptionKind, money_left};
use crate::domain::tracking::RailState;

/// Marks the duplicate booked by `action_id`; once every duplicate of the payout that carried
/// money is booked, its reconciliation exception (one per payout) is resolved with it.
pub(super) async fn settle_duplicate(
    tx: &mut Tx,
    id: &PayoutId,
    object: &str,
    booking: DuplicateBooking,
    action_id: &str,
    actor: &str,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE payout_duplicates SET booking = $3, resolved_by_action = $4 \
         WHERE payout_id = $1 AND object_ref = $2 AND booking IS NULL",
    )
    .bind(id.as_str())
    .bind(object)
    .bind(booking.code())
    .bind(action_id)
    .execute(&mut **tx)
    .await?;
    let facts = load_duplicates(tx, id).await?;
    if facts.iter().any(|d| d.money_left && d.booked.is_none()) {
        return Ok(());
    }
    let rail: String = sqlx::query_scalar("SELECT rail FROM payouts WHERE id = $1")
        .bind(id.as_str())
        .fetch_one(&mut **tx)
        .await?;
    let rail: Rail = parse_stored("rail", &rail)?;
    let exception = ExceptionId::derive(
        ExceptionKind::DuplicateAtProvider,
        rail,
        Some(id.as_str()),
        None,
    );
    let note = format!(
        "every duplicate payment of {id} is booked (last: {object} as {}, operator action {action_id})",
        booking.code()
    );
    sqlx::query(
        "INSERT INTO recon_resolutions (exception_id, note, resolved_by, resolved_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (exception_id) DO NOTHING",
    )
    .bind(exception.as_str())
    .bind(note)
    .bind(actor)
    .bind(to_millis(crate::clock::now()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The provider objects that named the payout without being its payment.
pub(super) async fn load_duplicates(tx: &mut Tx, id: &PayoutId) -> StoreResult<Vec<DuplicateFact>> {
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT object_ref, state, booking FROM payout_duplicates WHERE payout_id = $1 \
         ORDER BY first_seen_at, object_ref",
    )
    .bind(id.as_str())
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter()
        .map(|(object, state, booking)| {
            let state = parse_code("duplicate state", &state, RailState::from_code)?;
            let booked = booking
                .as_deref()
                .map(|b| parse_code("duplicate booking", b, DuplicateBooking::from_code))
                .transpose()?;
            Ok(DuplicateFact {
                object,
                money_left: money_left(state),
                booked,
            })
        })
        .collect()
}
