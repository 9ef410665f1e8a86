//! Outgoing events as callers see them: endpoints, events with their delivery log, and the
//! deliveries a worker sends.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;

use crate::domain::events::{EndpointUrl, EventType};

/// A registered endpoint. Its secret is shown once, when it is made, and never again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    pub id: String,
    pub url: EndpointUrl,
    /// The types it receives; empty: every type.
    pub types: Vec<EventType>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub removed_at: Option<DateTime<Utc>>,
}

/// A new endpoint and the secret its deliveries are signed with.
#[derive(Debug)]
pub struct NewEndpoint {
    pub endpoint: EndpointView,
    pub secret: SecretString,
}

/// One event and how its deliveries went.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// What it is about: a payout, an account, or a reconciliation exception. Deliveries
    /// to one endpoint keep the order of the events of one subject.
    pub subject: String,
    pub created_at: DateTime<Utc>,
    /// The JSON body every delivery sends.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    pub deliveries: Vec<DeliveryView>,
}

/// One delivery of an event to an endpoint (a replay is another delivery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    pub endpoint_id: String,
    /// pending, delivered, gave_up (three days of failures) or cancelled (endpoint removed).
    pub state: String,
    pub tries: u32,
    pub next_try_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Who asked for this delivery again, when it is a replay.
    pub replayed_by: Option<String>,
    pub attempts: Vec<TryView>,
}

/// One try of a delivery: what the endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TryView {
    pub try_no: u32,
    pub at: DateTime<Utc>,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub took_ms: i64,
}

/// A delivery claimed by a worker: everything it needs to send and sign.
#[derive(Debug)]
pub struct DueDelivery {
    pub id: i64,
    pub event_id: String,
    pub kind: EventType,
    pub url: String,
    pub secret: SecretString,
    pub body: String,
    pub tries: u32,
    pub event_created_at: DateTime<Utc>,
}

/// How a try ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryResult {
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub took_ms: i64,
}

impl TryResult {
    pub fn delivered(&self) -> bool {
        self.http_status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Which events a replay sends again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaySelector {
    One(String),
    Since(DateTime<Utc>),
}

/// Deliveries a worker's pass made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryPass {
    pub delivered: u32,
    pub failed: u32,
    pub gave_up: u32,
}
