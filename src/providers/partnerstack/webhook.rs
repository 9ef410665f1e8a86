//! PartnerStack webhook deliveries. PartnerStack publishes no signature scheme (UNCONFIRMED),
//! so a delivery is never trusted: [`verify`] only extracts which reward it is about, with
//! `observation = None`, and the receiver re-reads the reward through the API
//! (`PartnerstackAdapter::confirm_event` or `status`), which is authoritative.
//!
//! Our own protection, not PartnerStack's: an optional shared token we put in the URL we
//! register (a path segment, checked with [`token_matches`]) or that a relay adds as the
//! `X-Webhook-Token` header. Both compare in constant time. Deliveries that carry a
//! `created_at` (epoch ms) far from now are refused as stale: a replayed old hint would be
//! harmless (we re-read the reward) but there is no reason to act on it.

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::wire::{KEY_MAX, KEY_MIN, WEBHOOK_TOKEN};
use crate::providers::ProviderError;
use crate::providers::RailFuture;
use crate::providers::webhook::{Checked, Confirmed, InboundEvent, WebhookError, WebhookReceiver};

/// How far a delivery's `created_at` may be from now.
pub const TOLERANCE_SECS: i64 = 300;

/// Compares a presented token with ours in constant time (over SHA-256 digests, so the
/// lengths leak nothing either).
pub fn token_matches(given: &str, expected: &SecretString) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.expose_secret().as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Checks the optional token header and parses `{event|type, data{key,…}}` into a hint.
/// `token = None` accepts any delivery (it is only a hint anyway).
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    token: Option<&SecretString>,
    now: DateTime<Utc>,
) -> Result<InboundEvent, WebhookError> {
    if let Some(expected) = token {
        let given = headers
            .get(WEBHOOK_TOKEN)
            .ok_or(WebhookError::MissingHeader("X-Webhook-Token"))?
            .to_str()
            .map_err(|_| WebhookError::BadSignature)?;
        if !token_matches(given, expected) {
            return Err(WebhookError::BadSignature);
        }
    }
    parse(body, now)
}

fn parse(body: &[u8], now: DateTime<Utc>) -> Result<InboundEvent, WebhookError> {
    let malformed = |m: &str| WebhookError::Malformed(m.to_string());
    let value: Value = serde_json::from_slice(body).map_err(|e| malformed(&e.to_string()))?;
    let event = value
        .get("event")
        .or_else(|| value.get("type"))
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| malformed("no event name"))?;
    let key = value
        .get("data")
        .and_then(|d| d.get("key"))
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("no data.key"))?;
    let sane = (KEY_MIN..=KEY_MAX).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if !sane {
        return Err(malformed("data.key is not a reward key"));
    }
    if let Some(ms) = value.get("created_at").and_then(Value::as_i64) {
        let age_secs = (now.timestamp_millis() - ms) / 1000;
        if age_secs.abs() > TOLERANCE_SECS {
            return Err(WebhookError::Stale {
                age_secs,
                tolerance_secs: TOLERANCE_SECS,
            });
        }
    }
    // No delivery id is documented: the event's own id if present, else a digest of the body,
    // so an identical re-delivery de-duplicates.
    let event_id = value
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("{event}:{}", hex::encode(Sha256::digest(body))));
    Ok(InboundEvent {
        event_id,
        provider_ref: Some(key.to_string()),
        our_token: Some(key.to_string()),
        observation: None,
    })
}

/// A confirmed event, named by the reward and the state read back rather than by the id
/// the delivery carried: a delivery is only a hint and its id is the caller's to choose, so
/// keying by it would let anyone add a row per made-up id. Two deliveries about the same
/// reward state are then one delivery.
pub fn keyed_by_reading(event: InboundEvent) -> InboundEvent {
    let (Some(key), Some(observation)) = (&event.provider_ref, &event.observation) else {
        return event;
    };
    InboundEvent {
        event_id: format!("reward:{key}:{}", observation.provider_status),
        ..event
    }
}

/// PartnerStack signs nothing: a delivery is checked against our token (when one is set),
/// then only the reward it names is used, read back from PartnerStack's API.
impl WebhookReceiver for super::PartnerstackAdapter {
    fn check(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Checked, WebhookError> {
        verify(headers, body, self.config.webhook_token.as_ref(), now).map(Checked::Unconfirmed)
    }

    fn confirm<'a>(
        &'a self,
        _headers: &'a HeaderMap,
        _body: &'a [u8],
        unconfirmed: InboundEvent,
    ) -> RailFuture<'a, Result<Confirmed, WebhookError>> {
        Box::pin(async move {
            match self.confirm_event(unconfirmed).await {
                // Recorded under what was read, not under the caller's event id: repeated
                // deliveries about one reward state make one row, whatever ids they carry.
                Ok(event) => Ok(Confirmed::Event(keyed_by_reading(event))),
                Err(ProviderError::Status { status: 404, .. }) => Ok(Confirmed::Unknown(
                    "PartnerStack has no such reward; nothing applied".into(),
                )),
                Err(e) => Err(WebhookError::Unverifiable(e.to_string())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn body(now: DateTime<Utc>) -> Vec<u8> {
        serde_json::json!({
            "id": "evt_1",
            "event": "reward.updated",
            "created_at": now.timestamp_millis(),
            "data": {"key": "po_1-attempt-1", "payment_status": "available"}
        })
        .to_string()
        .into_bytes()
    }

    fn with_token(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(WEBHOOK_TOKEN, HeaderValue::from_str(t).unwrap());
        h
    }

    #[test]
    fn accepted_with_the_right_token_and_content_is_not_trusted() {
        let now = crate::clock::now();
        let secret = SecretString::from("tok");
        let e = verify(&with_token("tok"), &body(now), Some(&secret), now).unwrap();
        assert_eq!(e.provider_ref.as_deref(), Some("po_1-attempt-1"));
        assert_eq!(e.event_id, "evt_1");
        assert_eq!(e.observation, None);
    }

    #[test]
    fn wrong_or_missing_token_is_refused() {
        let now = crate::clock::now();
        let secret = SecretString::from("tok");
        assert_eq!(
            verify(&with_token("nope"), &body(now), Some(&secret), now),
            Err(WebhookError::BadSignature)
        );
        assert!(matches!(
            verify(&HeaderMap::new(), &body(now), Some(&secret), now),
            Err(WebhookError::MissingHeader(_))
        ));
        assert!(verify(&HeaderMap::new(), &body(now), None, now).is_ok());
    }

    #[test]
    fn malformed_and_stale_are_refused() {
        let now = crate::clock::now();
        for bad in [
            &b"not json"[..],
            br#"{"data":{"key":"po_1-attempt-1"}}"#,
            br#"{"event":"reward.updated","data":{}}"#,
            br#"{"type":"reward.updated","data":{"key":"../../x y"}}"#,
        ] {
            assert!(
                matches!(
                    verify(&HeaderMap::new(), bad, None, now),
                    Err(WebhookError::Malformed(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let old = body(now - chrono::Duration::seconds(TOLERANCE_SECS + 10));
        assert!(matches!(
            verify(&HeaderMap::new(), &old, None, now),
            Err(WebhookError::Stale { .. })
        ));
    }

    #[test]
    fn event_id_falls_back_to_a_body_digest() {
        let now = crate::clock::now();
        let b = br#"{"type":"reward_updated","data":{"key":"abcd"}}"#;
        let a = verify(&HeaderMap::new(), b, None, now).unwrap();
        let c = verify(&HeaderMap::new(), b, None, now).unwrap();
        assert_eq!(a.event_id, c.event_id);
        assert!(a.event_id.starts_with("reward_updated:"));
    }
}
