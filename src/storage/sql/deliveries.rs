//! The outbox's read side and its deliveries: the event log, replays, and the claims and
//! tries of the workers that send.

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::{Store, StoreError, StoreResult, from_millis, parse_code, to_millis};
use crate::domain::events::{EventType, next_try};
use crate::storage::event_views::{
    DeliveryView, DueDelivery, EventView, ReplaySelector, TryResult, TryView,
};

impl Store {
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
            .bind(to_millis(crate::clock::now()))
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
