//! PayPal webhook deliveries: the pure half of verification (docs/providers/paypal.md,
//! "Webhooks").
//!
//! PayPal signs with an RSA certificate; we verify by postback (Option A): the adapter sends
//! the transmission headers, our webhook id and the event to
//! `/v1/notifications/verify-webhook-signature`. This module does everything that needs no
//! network: pull the headers out, refuse stale transmissions before any call is made, build
//! the postback body, and turn a verified event into an [`InboundEvent`].

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::classify::{empty_batch_state, item_state};
use super::wire::{VerifyRequest, WebhookEvent};
use crate::domain::tracking::Observation;
use crate::providers::RailFuture;
use crate::providers::webhook::{Checked, Confirmed, InboundEvent, WebhookError, WebhookReceiver};

pub const TRANSMISSION_ID: &str = "PAYPAL-TRANSMISSION-ID";
pub const TRANSMISSION_TIME: &str = "PAYPAL-TRANSMISSION-TIME";
pub const TRANSMISSION_SIG: &str = "PAYPAL-TRANSMISSION-SIG";
pub const CERT_URL: &str = "PAYPAL-CERT-URL";
pub const AUTH_ALGO: &str = "PAYPAL-AUTH-ALGO";

/// How far a transmission time may be from now before the delivery is refused as a replay.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// The transmission headers of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmission {
    pub id: String,
    pub time: String,
    pub sig: String,
    pub cert_url: String,
    pub auth_algo: String,
}

fn header<'h>(
    headers: &'h axum::http::HeaderMap,
    name: &'static str,
) -> Result<&'h str, WebhookError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(WebhookError::MissingHeader(name))
}

/// Extracts the transmission headers and refuses a transmission time outside `tolerance_secs`
/// of `now`, so a replayed old delivery never reaches the postback.
pub fn transmission(
    headers: &axum::http::HeaderMap,
    now: DateTime<Utc>,
    tolerance_secs: i64,
) -> Result<Transmission, WebhookError> {
    let t = Transmission {
        id: header(headers, TRANSMISSION_ID)?.to_string(),
        time: header(headers, TRANSMISSION_TIME)?.to_string(),
        sig: header(headers, TRANSMISSION_SIG)?.to_string(),
        cert_url: header(headers, CERT_URL)?.to_string(),
        auth_algo: header(headers, AUTH_ALGO)?.to_string(),
    };
    let sent = DateTime::parse_from_rfc3339(&t.time)
        .map_err(|e| WebhookError::Malformed(format!("transmission time {:?}: {e}", t.time)))?
        .with_timezone(&Utc);
    let age_secs = (now - sent).num_seconds();
    if age_secs.abs() > tolerance_secs {
        return Err(WebhookError::Stale {
            age_secs,
            tolerance_secs,
        });
    }
    Ok(t)
}

/// Parses the raw body: as JSON (for the postback) and as an event envelope.
pub fn parse_body(raw_body: &[u8]) -> Result<(Value, WebhookEvent), WebhookError> {
    let value: Value = serde_json::from_slice(raw_body)
        .map_err(|e| WebhookError::Malformed(format!("body is not JSON: {e}")))?;
    let event: WebhookEvent = serde_json::from_value(value.clone())
        .map_err(|e| WebhookError::Malformed(format!("not a webhook event: {e}")))?;
    Ok((value, event))
}

/// The postback body asking PayPal whether this delivery is authentic.
pub fn verify_request(t: &Transmission, webhook_id: &str, event: Value) -> VerifyRequest {
    VerifyRequest {
        auth_algo: t.auth_algo.clone(),
        cert_url: t.cert_url.clone(),
        transmission_id: t.id.clone(),
        transmission_sig: t.sig.clone(),
        transmission_time: t.time.clone(),
        webhook_id: webhook_id.to_string(),
        webhook_event: event,
    }
}

/// JSON with object keys sorted at every level: the form the mock signs, so re-serialising
/// the event for the postback cannot change what is compared.
pub fn canonical_json(value: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    if let Some(inner) = map.get(k) {
                        out.insert(k.clone(), sorted(inner));
                    }
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().map(str::to_string)
}

/// Turns a VERIFIED event into what the receiver applies. Item events carry the item (and so
/// its state); batch events carry no item data, so only a denied batch says anything final.
pub fn inbound(event: &WebhookEvent) -> Result<InboundEvent, WebhookError> {
    let r = &event.resource;
    if let Some(kind) = event.event_type.strip_prefix("PAYMENT.PAYOUTS-ITEM.") {
        let provider_ref = text(r, &["payout_batch_id"])
            .ok_or_else(|| WebhookError::Malformed("item event without payout_batch_id".into()))?;
        // Prefer the item's own status; the event name is the fallback.
        let status = text(r, &["transaction_status"]).unwrap_or_else(|| match kind {
            "SUCCEEDED" => "SUCCESS".into(),
            "HELD" => "ONHOLD".into(),
            other => other.to_string(),
        });
        let observation = Observation::new(item_state(&status), status)
            .with_detail(text(r, &["errors", "name"]))
            // Events are ordered among themselves by their own clock; the item's
            // time_processed is another clock and would make later events look stale.
            .at(parse_time(event.create_time.as_deref()));
        return Ok(InboundEvent {
            event_id: event.id.clone(),
            provider_ref: Some(provider_ref),
            our_token: text(r, &["sender_batch_id"]),
            observation: Some(observation),
        });
    }
    if event.event_type.starts_with("PAYMENT.PAYOUTSBATCH.") {
        let provider_ref = text(r, &["batch_header", "payout_batch_id"]);
        let status = text(r, &["batch_header", "batch_status"]);
        let observation = status
            .filter(|s| s == "DENIED" || s == "CANCELED")
            .map(|s| Observation::new(empty_batch_state(&s), s));
        return Ok(InboundEvent {
            event_id: event.id.clone(),
            provider_ref,
            our_token: text(
                r,
                &["batch_header", "sender_batch_header", "sender_batch_id"],
            ),
            observation,
        });
    }
    // Authentic but not about payouts: nothing to apply.
    Ok(InboundEvent {
        event_id: event.id.clone(),
        provider_ref: None,
        our_token: None,
        observation: None,
    })
}

fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// PayPal signs with a certificate we would have to fetch: a delivery is read here and
/// believed only once PayPal's verify-webhook-signature says SUCCESS.
impl WebhookReceiver for super::PaypalAdapter {
    fn check(
        &self,
        headers: &axum::http::HeaderMap,
        body: &[u8],
        _now: DateTime<Utc>,
    ) -> Result<Checked, WebhookError> {
        self.webhook_hint(headers, body).map(Checked::Unconfirmed)
    }

    fn confirm<'a>(
        &'a self,
        headers: &'a axum::http::HeaderMap,
        body: &'a [u8],
        _unconfirmed: InboundEvent,
    ) -> RailFuture<'a, Result<Confirmed, WebhookError>> {
        Box::pin(async move {
            self.verify_webhook(headers, body)
                .await
                .map(Confirmed::Event)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::tracking::RailState;
    use axum::http::{HeaderMap, HeaderValue};

    fn headers(time: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            (TRANSMISSION_ID, "tx-1"),
            (TRANSMISSION_TIME, time),
            (TRANSMISSION_SIG, "c2ln"),
            (
                CERT_URL,
                "https://api.paypal.com/v1/notifications/certs/CERT",
            ),
            (AUTH_ALGO, "SHA256withRSA"),
        ] {
            h.insert(k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn headers_are_extracted_and_staleness_checked() {
        let now = crate::clock::now();
        let t = transmission(&headers(&now.to_rfc3339()), now, 300).unwrap();
        assert_eq!(t.id, "tx-1");
        let old = (now - chrono::Duration::seconds(301)).to_rfc3339();
        assert!(matches!(
            transmission(&headers(&old), now, 300),
            Err(WebhookError::Stale { .. })
        ));
        let mut missing = headers(&now.to_rfc3339());
        missing.remove(TRANSMISSION_SIG);
        assert_eq!(
            transmission(&missing, now, 300),
            Err(WebhookError::MissingHeader(TRANSMISSION_SIG))
        );
        assert!(matches!(
            transmission(&headers("yesterday"), now, 300),
            Err(WebhookError::Malformed(_))
        ));
    }

    #[test]
    fn item_events_carry_their_state() {
        let body = serde_json::json!({
            "id": "WH-1", "event_type": "PAYMENT.PAYOUTS-ITEM.UNCLAIMED",
            "create_time": "2025-01-01T00:00:00Z",
            "resource": {"payout_item_id": "I1", "payout_batch_id": "B1",
                "transaction_status": "UNCLAIMED", "sender_batch_id": "po_1-attempt-1",
                "errors": {"name": "RECEIVER_UNREGISTERED"},
                "payout_item": {"sender_item_id": "po_1"}}
        });
        let (_, event) = parse_body(body.to_string().as_bytes()).unwrap();
        let got = inbound(&event).unwrap();
        assert_eq!(got.provider_ref.as_deref(), Some("B1"));
        assert_eq!(got.our_token.as_deref(), Some("po_1-attempt-1"));
        let obs = got.observation.unwrap();
        assert_eq!(obs.state, RailState::InFlight);
        assert_eq!(obs.detail.as_deref(), Some("RECEIVER_UNREGISTERED"));
    }

    #[test]
    fn batch_events_and_malformed_bodies() {
        let body = serde_json::json!({"id": "WH-2", "event_type": "PAYMENT.PAYOUTSBATCH.DENIED",
            "resource": {"batch_header": {"payout_batch_id": "B2", "batch_status": "DENIED"}}});
        let (_, event) = parse_body(body.to_string().as_bytes()).unwrap();
        let got = inbound(&event).unwrap();
        assert_eq!(got.observation.unwrap().state, RailState::Failed);
        assert!(matches!(
            parse_body(b"not json"),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(parse_body(b"{}"), Err(WebhookError::Malformed(_))));
        let no_ref = serde_json::json!({"id": "WH-3", "event_type": "PAYMENT.PAYOUTS-ITEM.SUCCEEDED", "resource": {}});
        let (_, event) = parse_body(no_ref.to_string().as_bytes()).unwrap();
        assert!(inbound(&event).is_err());
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"d":2,"c":3}}"#).unwrap();
        assert_eq!(canonical_json(&a), r#"{"a":{"c":3,"d":2},"b":1}"#);
    }
}
