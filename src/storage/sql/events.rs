//! The outbox: events written in the transaction of the change they report, one pending
//! delivery per subscribed endpoint, and the deliveries' claims, tries and replays.

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sqlx::QueryBuilder;

use super::payouts::fetch_payouts;
use super::{Db, Store, StoreError, StoreResult, Tx, from_millis, parse_code, to_millis};
use crate::domain::events::{self, EndpointUrl, EventType, HeldFor, PayeeAction, next_try};
use crate::domain::ids::PayoutId;
use crate::domain::payout::PayoutStatus;
use crate::storage::event_views::{
    DeliveryView, DueDelivery, EndpointView, EventView, NewEndpoint, ReplaySelector, TryResult,
    TryView,
};
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
            id: format!("evt_{}", ulid::Ulid::generate()),
            kind,
            subject,
            created_at: Utc::now(),
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
    .bind(to_millis(Utc::now()))
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
    .bind(to_millis(Utc::now()))
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

/// Reports each exception of a run that no event has reported yet and no one has resolved:
/// a daily reconciliation finding the same stray transfer again is not news.
pub(crate) async fn report_new_exceptions(tx: &mut Tx, run_id: &str) -> StoreResult<()> {
    let rows: Vec<(
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
    )> = sqlx::query_as(
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
        let id = format!("we_{}", ulid::Ulid::generate());
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
        .bind(to_millis(Utc::now()))
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
        let now = to_millis(Utc::now());
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

    /// Events from `since` (oldest first), each with its deliveries and their tries.
    pub async fn events_since(
        &self,
        since: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<EventView>> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT seq, id, type, subject, created_at, body FROM outgoing_events \
             WHERE created_at >= $1 ORDER BY seq LIMIT $2",
        )
        .bind(to_millis(since))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            events.push(self.event_view(row).await?);
        }
        Ok(events)
    }

    /// One event with its deliveries and their tries.
    pub async fn event(&self, id: &str) -> StoreResult<Option<EventView>> {
        let row: Option<EventRow> = sqlx::query_as(
            "SELECT seq, id, type, subject, created_at, body FROM outgoing_events WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some(self.event_view(row).await?)),
            None => Ok(None),
        }
    }

    async fn event_view(&self, row: EventRow) -> StoreResult<EventView> {
        let (seq, id, kind, subject, created_at, body) = row;
        let deliveries: Vec<DeliveryRow> = sqlx::query_as(
            "SELECT id, endpoint_id, state, tries, next_try_at, finished_at, replayed_by \
             FROM event_deliveries WHERE event_seq = $1 ORDER BY id",
        )
        .bind(seq)
        .fetch_all(&self.pool)
        .await?;
        let tries: Vec<TryRow> = sqlx::query_as(
            "SELECT a.delivery_id, a.try_no, a.at, a.http_status, a.error, a.took_ms \
             FROM event_delivery_attempts a JOIN event_deliveries d ON d.id = a.delivery_id \
             WHERE d.event_seq = $1 ORDER BY a.delivery_id, a.try_no",
        )
        .bind(seq)
        .fetch_all(&self.pool)
        .await?;
        Ok(EventView {
            kind: parse_code("event type", &kind, |c| EventType::parse(c).ok())?,
            body: serde_json::from_str(&body)
                .map_err(|e| StoreError::Corrupt(format!("event {id} body: {e}")))?,
            id,
            subject,
            created_at: from_millis(created_at),
            deliveries: deliveries
                .into_iter()
                .map(|d| delivery_view(d, &tries))
                .collect(),
        })
    }

    /// Sends events again: one (`EVENT_ID`) or all since a time, to every live endpoint
    /// subscribed to each (or only `endpoint`), in order per subject. Returns the deliveries
    /// made. Receivers dedupe by event id, so a replay is always safe.
    pub async fn replay_events(
        &self,
        which: &ReplaySelector,
        endpoint: Option<&str>,
        actor: &str,
    ) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        if let ReplaySelector::One(id) = which {
            let known: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM outgoing_events WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if known.is_none() {
                return Err(StoreError::UnknownEvent(id.clone()));
            }
        }
        if let Some(endpoint) = endpoint {
            let live: Option<String> = sqlx::query_scalar(
                "SELECT id FROM event_endpoints WHERE id = $1 AND removed_at IS NULL",
            )
            .bind(endpoint)
            .fetch_optional(&mut *tx)
            .await?;
            if live.is_none() {
                return Err(StoreError::UnknownEndpoint(endpoint.to_string()));
            }
        }
        let (filter, value) = match which {
            ReplaySelector::One(id) => ("e.id = $1", Bind::Text(id.clone())),
            ReplaySelector::Since(at) => ("e.created_at >= $1", Bind::Int(to_millis(*at))),
        };
        let sql = format!(
            "INSERT INTO event_deliveries \
               (event_seq, endpoint_id, subject, state, tries, next_try_at, created_at, replayed_by) \
             SELECT e.seq, p.id, e.subject, 'pending', 0, $2, $2, $3 \
             FROM outgoing_events e JOIN event_endpoints p ON p.removed_at IS NULL \
               AND (p.types IS NULL OR p.types LIKE '%,' || e.type || ',%') \
               AND ($4 IS NULL OR p.id = $4) \
             WHERE {filter} ORDER BY e.seq"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql));
        let query = match value {
            Bind::Text(t) => query.bind(t),
            Bind::Int(i) => query.bind(i),
        };
        let made = query
            .bind(to_millis(Utc::now()))
            .bind(actor)
            .bind(endpoint)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(made)
    }

    /// Claims up to `limit` deliveries due at `now` for `lease`: only the oldest pending
    /// delivery of each subject per endpoint, so a receiver sees a payout's events in order.
    pub async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: i64,
    ) -> StoreResult<Vec<DueDelivery>> {
        let now_ms = to_millis(now);
        let until = now_ms + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 4);
        let heads: Vec<i64> = sqlx::query_scalar(
            "SELECT d.id FROM event_deliveries d \
             WHERE d.state = 'pending' AND d.next_try_at <= $1 \
               AND (d.leased_until IS NULL OR d.leased_until <= $1) \
               AND NOT EXISTS (SELECT 1 FROM event_deliveries o \
                 WHERE o.endpoint_id = d.endpoint_id AND o.subject = d.subject \
                   AND o.state = 'pending' \
                   AND (o.event_seq < d.event_seq OR (o.event_seq = d.event_seq AND o.id < d.id))) \
             ORDER BY d.event_seq, d.id LIMIT $2",
        )
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::with_capacity(heads.len());
        for id in heads {
            // Another worker may have claimed it since: the lease is taken only if still free.
            let row: Option<DueRow> = sqlx::query_as(
                "UPDATE event_deliveries SET leased_until = $2 \
                 WHERE id = $1 AND state = 'pending' \
                   AND (leased_until IS NULL OR leased_until <= $3) \
                 RETURNING id, event_seq, endpoint_id, tries",
            )
            .bind(id)
            .bind(until)
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await?;
            let Some((id, seq, endpoint, tries)) = row else {
                continue;
            };
            let (event_id, kind, body, created_at): (String, String, String, i64) = sqlx::query_as(
                "SELECT id, type, body, created_at FROM outgoing_events WHERE seq = $1",
            )
            .bind(seq)
            .fetch_one(&self.pool)
            .await?;
            let (url, secret): (String, String) =
                sqlx::query_as("SELECT url, secret FROM event_endpoints WHERE id = $1")
                    .bind(&endpoint)
                    .fetch_one(&self.pool)
                    .await?;
            claimed.push(DueDelivery {
                id,
                kind: parse_code("event type", &kind, |c| EventType::parse(c).ok())?,
                event_id,
                url,
                secret: SecretString::from(secret),
                body,
                tries: u32::try_from(tries).unwrap_or(u32::MAX),
                event_created_at: from_millis(created_at),
            });
        }
        Ok(claimed)
    }

    /// Records a try and what follows: delivered; tried again after the backoff; or, three
    /// days after the event, given up. Returns the delivery's new state.
    pub async fn finish_delivery(
        &self,
        delivery: &DueDelivery,
        result: &TryResult,
        now: DateTime<Utc>,
    ) -> StoreResult<&'static str> {
        let tries = delivery.tries.saturating_add(1);
        let (state, next) = if result.delivered() {
            ("delivered", None)
        } else {
            match next_try(delivery.event_created_at, tries, now) {
                Some(at) => ("pending", Some(at)),
                None => ("gave_up", None),
            }
        };
        let now_ms = to_millis(now);
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE event_deliveries SET tries = $2, state = $3, leased_until = NULL, \
               next_try_at = COALESCE($4, next_try_at), \
               finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE $5 END \
             WHERE id = $1 AND state = 'pending' AND tries = $6",
        )
        .bind(delivery.id)
        .bind(i64::from(tries))
        .bind(state)
        .bind(next.map(to_millis))
        .bind(now_ms)
        .bind(i64::from(delivery.tries))
        .execute(&mut *tx)
        .await?;
        // A try recorded by another worker after our lease ran out (or a removed endpoint)
        // leaves the delivery as it is: this try is not logged twice under one number.
        if updated.rows_affected() == 1 {
            sqlx::query(
                "INSERT INTO event_delivery_attempts \
                   (delivery_id, try_no, at, http_status, error, took_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(delivery.id)
            .bind(i64::from(tries))
            .bind(now_ms)
            .bind(result.http_status.map(i64::from))
            .bind(result.error.as_deref())
            .bind(result.took_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(state)
    }

    /// Deliveries that could be sent at `now` (due, unleased): what a draining worker waits for.
    pub async fn deliveries_due(&self, now: DateTime<Utc>) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM event_deliveries \
             WHERE state = 'pending' AND next_try_at <= $1 \
               AND (leased_until IS NULL OR leased_until <= $1)",
        )
        .bind(to_millis(now))
        .fetch_one(&self.pool)
        .await?)
    }
}

enum Bind {
    Text(String),
    Int(i64),
}

/// seq, id, type, subject, created_at, body.
type EventRow = (i64, String, String, String, i64, String);
/// id, endpoint_id, state, tries, next_try_at, finished_at, replayed_by.
type DeliveryRow = (i64, String, String, i64, i64, Option<i64>, Option<String>);
/// delivery_id, try_no, at, http_status, error, took_ms.
type TryRow = (i64, i64, i64, Option<i64>, Option<String>, i64);
/// id, event_seq, endpoint_id, tries.
type DueRow = (i64, i64, String, i64);

fn delivery_view(row: DeliveryRow, tries: &[TryRow]) -> DeliveryView {
    let (id, endpoint_id, state, count, next_try_at, finished_at, replayed_by) = row;
    DeliveryView {
        attempts: tries
            .iter()
            .filter(|t| t.0 == id)
            .map(|(_, no, at, status, error, took)| TryView {
                try_no: u32::try_from(*no).unwrap_or(u32::MAX),
                at: from_millis(*at),
                http_status: status.and_then(|s| u16::try_from(s).ok()),
                error: error.clone(),
                took_ms: *took,
            })
            .collect(),
        next_try_at: (state == "pending").then(|| from_millis(next_try_at)),
        id,
        endpoint_id,
        state,
        tries: u32::try_from(count).unwrap_or(u32::MAX),
        finished_at: finished_at.map(from_millis),
        replayed_by,
    }
}
