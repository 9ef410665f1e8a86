//! The outbox: events written in the transaction of the change they report, one pending
//! delivery per subscribed endpoint, and the deliveries' claims, tries and replays.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sqlx::QueryBuilder;

use super::payouts::fetch_payouts;
use super::{Db, Store, StoreError, StoreResult, Tx, from_millis, to_millis};
use crate::domain::events::{self, EndpointUrl, EventType, HeldFor, PayeeAction};
use crate::domain::ids::PayoutId;
use crate::domain::payout::PayoutStatus;
use crate::storage::event_views::{EndpointView, NewEndpoint};
use crate::storage::payout_views::PayoutView;

/// An event about to be written.
#[derive(Debug, Clone)]
pub(crate) struct NewEvent {
    pub id: String,
    pub kind: EventType,
    pub subject: String,
    pub created_at: DateTime<Utc>,
    pub data: Value,
}

impl NewEvent {
    pub(crate) fn new(kind: EventType, subject: String, data: Value) -> NewEvent {
        NewEvent {
            id: format!("evt_{}", crate::clock::ulid()),
            kind,
            subject,
            created_at: crate::clock::now(),
            data,
        }
    }

    /// The bytes every delivery sends: `id`, `type`, `created` (Unix seconds) and `data`.
    fn body(&self) -> String {
        json!({
            "id": self.id,
            "type": self.kind.code(),
            "created": self.created_at.timestamp(),
            "data": self.data,
        })
        .to_string()
    }
}

/// Writes `events` and a pending delivery for each endpoint subscribed to each, in `tx`.
pub(crate) async fn record_events(tx: &mut Tx, events: &[NewEvent]) -> StoreResult<()> {
    for chunk in events.chunks(super::BATCH_ROWS) {
        let mut insert = QueryBuilder::<Db>::new(
            "INSERT INTO outgoing_events (id, type, subject, created_at, body) ",
        );
        insert.push_values(chunk, |mut b, e| {
            b.push_bind(e.id.clone())
                .push_bind(e.kind.code())
                .push_bind(e.subject.clone())
                .push_bind(to_millis(e.created_at))
                .push_bind(e.body());
        });
        insert.build().execute(&mut **tx).await?;
        let mut fan_out = QueryBuilder::<Db>::new(
            "INSERT INTO event_deliveries \
               (event_seq, endpoint_id, subject, state, tries, next_try_at, created_at) \
             SELECT e.seq, p.id, e.subject, 'pending', 0, e.created_at, e.created_at \
             FROM outgoing_events e JOIN event_endpoints p ON p.removed_at IS NULL \
               AND (p.types IS NULL OR p.types LIKE '%,' || e.type || ',%') \
             WHERE e.id IN (",
        );
        let mut ids = fan_out.separated(", ");
        for e in chunk {
            ids.push_bind(e.id.clone());
        }
        fan_out.push(") ORDER BY e.seq");
        fan_out.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// The event for a payout that moved or is held, with the payout as it now stands. A
/// failure or a return says what the payee can do about it.
pub(crate) fn payout_event(
    kind: EventType,
    payout: &PayoutView,
    reason: &str,
    held: Option<HeldFor>,
) -> NewEvent {
    let mut data = json!({ "payout": payout, "reason": reason });
    if matches!(kind, EventType::PayoutFailed | EventType::PayoutReturned) {
        let action = PayeeAction::of_reason(reason);
        data["failure"] = json!({
            "reason": reason,
            "payee_action": action,
            "message": action.message(),
        });
    }
    if let Some(held) = held {
        data["held"] = json!({ "for": held, "until": payout.next_step_at });
    }
    NewEvent::new(kind, payout.id.to_string(), data)
}

/// Reports a payout's move (if the platform hears of such a move), in `tx`, and asks for
/// its account's cash-out standing to be looked at again.
pub(crate) async fn payout_moved(
    tx: &mut Tx,
    id: &PayoutId,
    from: Option<PayoutStatus>,
    to: PayoutStatus,
    reason: &str,
) -> StoreResult<()> {
    let Some(kind) = events::of_move(from, to) else {
        return Ok(());
    };
    let payouts = fetch_payouts(tx, &[id.as_str()]).await?;
    let payout = payouts
        .first()
        .ok_or_else(|| StoreError::UnknownPayout(id.to_string()))?;
    record_events(tx, &[payout_event(kind, payout, reason, None)]).await?;
    // Money back in the balance may make the account able to cash out again.
    if matches!(to, PayoutStatus::Failed | PayoutStatus::Returned) {
        check_balance_later(tx, payout.account.as_str()).await?;
    }
    Ok(())
}

/// Reports that a payout waits before it is sent, in `tx`.
pub(crate) async fn payout_held(
    tx: &mut Tx,
    id: &PayoutId,
    held: HeldFor,
    reason: &str,
) -> StoreResult<()> {
    let payouts = fetch_payouts(tx, &[id.as_str()]).await?;
    let payout = payouts
        .first()
        .ok_or_else(|| StoreError::UnknownPayout(id.to_string()))?;
    let event = payout_event(EventType::PayoutHeld, payout, reason, Some(held));
    record_events(tx, &[event]).await
}

/// Asks the worker to look at an account's cash-out standing again.
pub(crate) async fn check_balance_later(tx: &mut Tx, account: &str) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO balance_checks (account_id, since) VALUES ($1, $2) \
         ON CONFLICT (account_id) DO UPDATE SET since = excluded.since",
    )
    .bind(account)
    .bind(to_millis(crate::clock::now()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Asks for a look at every holder of a posting after `after` (a posting id read earlier
/// in the same transaction): the accounts an accrual just credited or debited.
pub(crate) async fn check_holders_posted_after(tx: &mut Tx, after: i64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO balance_checks (account_id, since) \
         SELECT DISTINCT holder, $2 FROM ledger_postings WHERE id > $1 AND holder IS NOT NULL \
         ON CONFLICT (account_id) DO UPDATE SET since = excluded.since",
    )
    .bind(after)
    .bind(to_millis(crate::clock::now()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The newest posting id, for [`check_holders_posted_after`].
pub(crate) async fn last_posting(tx: &mut Tx) -> StoreResult<i64> {
    let last: Option<i64> =
        sqlx::query_scalar("SELECT CAST(MAX(id) AS BIGINT) FROM ledger_postings")
            .fetch_one(&mut **tx)
            .await?;
    Ok(last.unwrap_or(0))
}

/// id, kind, severity, rail, payout_id, record_id.
type ExceptionRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);

/// Reports each exception of a run that no event has reported yet and no one has resolved:
/// a daily reconciliation finding the same stray transfer again is not news.
pub(crate) async fn report_new_exceptions(tx: &mut Tx, run_id: &str) -> StoreResult<()> {
    let rows: Vec<ExceptionRow> = sqlx::query_as(
        "SELECT x.id, x.kind, x.severity, x.rail, x.payout_id, x.record_id \
             FROM recon_exceptions x \
             WHERE x.run_id = $1 \
               AND NOT EXISTS (SELECT 1 FROM recon_resolutions r WHERE r.exception_id = x.id) \
               AND NOT EXISTS (SELECT 1 FROM outgoing_events e \
                               WHERE e.subject = x.id AND e.type = $2) \
             ORDER BY x.id",
    )
    .bind(run_id)
    .bind(EventType::ReconciliationException.code())
    .fetch_all(&mut **tx)
    .await?;
    let events: Vec<NewEvent> = rows
        .into_iter()
        .map(|(id, kind, severity, rail, payout, record)| {
            let data = json!({
                "run_id": run_id,
                "exception": {
                    "id": id, "kind": kind, "severity": severity, "rail": rail,
                    "payout_id": payout, "record_id": record,
                },
            });
            NewEvent::new(EventType::ReconciliationException, id, data)
        })
        .collect();
    record_events(tx, &events).await
}

/// endpoint id, url, types, created_by, created_at, removed_at.
type EndpointRow = (String, String, Option<String>, String, i64, Option<i64>);

fn endpoint_view(row: EndpointRow) -> StoreResult<EndpointView> {
    let (id, url, types, created_by, created_at, removed_at) = row;
    let types = match types {
        Some(list) => EventType::parse_list(&list)
            .map_err(|e| StoreError::Corrupt(format!("endpoint {id} types: {e}")))?,
        None => Vec::new(),
    };
    Ok(EndpointView {
        url: EndpointUrl::parse(&url)
            .map_err(|e| StoreError::Corrupt(format!("endpoint {id} url: {e}")))?,
        id,
        types,
        created_by,
        created_at: from_millis(created_at),
        removed_at: removed_at.map(from_millis),
    })
}

const ENDPOINT_COLUMNS: &str = "id, url, types, created_by, created_at, removed_at";

impl Store {
    /// Registers an endpoint for `types` (empty: every type) and makes its signing secret,
    /// which the caller shows once. Events written from now on are delivered to it.
    pub async fn add_event_endpoint(
        &self,
        url: &EndpointUrl,
        types: &[EventType],
        actor: &str,
    ) -> StoreResult<NewEndpoint> {
        let id = format!("we_{}", crate::clock::ulid());
        let secret =
            SecretString::from(format!("whsec_{}", hex::encode(rand::random::<[u8; 32]>())));
        let types = (!types.is_empty()).then(|| {
            let codes: Vec<&str> = types.iter().map(|t| t.code()).collect();
            format!(",{},", codes.join(","))
        });
        sqlx::query(
            "INSERT INTO event_endpoints (id, url, types, secret, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(url.as_str())
        .bind(types)
        .bind(secret.expose_secret())
        .bind(actor)
        .bind(to_millis(crate::clock::now()))
        .execute(&self.pool)
        .await?;
        let endpoint = self
            .event_endpoint(&id)
            .await?
            .ok_or_else(|| StoreError::UnknownEndpoint(id.clone()))?;
        Ok(NewEndpoint { endpoint, secret })
    }

    /// One endpoint, removed or not.
    pub async fn event_endpoint(&self, id: &str) -> StoreResult<Option<EndpointView>> {
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM event_endpoints WHERE id = $1");
        let row: Option<EndpointRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(endpoint_view).transpose()
    }

    /// The endpoints events go to (and, with `removed`, those that no longer get any).
    pub async fn event_endpoints(&self, removed: bool) -> StoreResult<Vec<EndpointView>> {
        let filter = if removed {
            ""
        } else {
            "WHERE removed_at IS NULL"
        };
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM event_endpoints {filter} ORDER BY created_at, id"
        );
        let rows: Vec<EndpointRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(endpoint_view).collect()
    }

    /// Stops sending to an endpoint: its pending deliveries are cancelled, its log kept.
    pub async fn remove_event_endpoint(&self, id: &str) -> StoreResult<EndpointView> {
        let mut tx = self.pool.begin().await?;
        let now = to_millis(crate::clock::now());
        let found = sqlx::query(
            "UPDATE event_endpoints SET removed_at = COALESCE(removed_at, $2) WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if found.rows_affected() == 0 {
            return Err(StoreError::UnknownEndpoint(id.to_string()));
        }
        sqlx::query(
            "UPDATE event_deliveries SET state = 'cancelled', finished_at = $2 \
             WHERE endpoint_id = $1 AND state = 'pending'",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.event_endpoint(id)
            .await?
            .ok_or_else(|| StoreError::UnknownEndpoint(id.to_string()))
    }
}
