//! Reading an account's payout methods with their cooling-off. Methods are written through
//! ingest (one path for the platform's feed and the API), where the database's triggers
//! record when a change starts a cooling-off.

use super::{Store, StoreError, StoreResult, from_millis, parse_stored};
use crate::domain::cooling_off::held_until;
use crate::domain::ids::AccountId;
use crate::storage::methods::PayoutMethodView;

/// rail, destination, auto_payout, updated_at, changed_at
type MethodRow = (String, String, i64, i64, Option<i64>);

impl Store {
    /// An account's payout methods by rail.
    pub async fn payout_methods(&self, account: &AccountId) -> StoreResult<Vec<PayoutMethodView>> {
        let mut conn = self.pool.acquire().await?;
        let known: Option<i64> =
            sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM accounts WHERE id = $1")
                .bind(account.as_str())
                .fetch_optional(&mut *conn)
                .await?;
        if known.is_none() {
            return Err(StoreError::UnknownAccount(account.to_string()));
        }
        let rows: Vec<MethodRow> = sqlx::query_as(
            "SELECT rail, destination, auto_payout, updated_at, changed_at FROM payout_methods \
             WHERE account_id = $1 ORDER BY rail",
        )
        .bind(account.as_str())
        .fetch_all(&mut *conn)
        .await?;
        let now = crate::clock::now();
        rows.into_iter()
            .map(|(rail, destination, auto, updated_at, changed_at)| {
                let changed_at = changed_at.map(from_millis);
                Ok(PayoutMethodView {
                    rail: parse_stored("rail", &rail)?,
                    destination,
                    auto_payout: auto != 0,
                    updated_at: from_millis(updated_at),
                    changed_at,
                    held_until: held_until(changed_at, self.safeguards.method_cooling_off, now),
                })
            })
            .collect()
    }
}
