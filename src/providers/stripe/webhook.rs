//! Stripe webhook authentication: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, where each
//! `v1` is HMAC-SHA256 of `"<t>.<raw body>"` under an endpoint secret (`whsec_…`).
//!
//! Several `v1` values appear while a secret is being rolled, and we may hold several secrets
//! ourselves during our own rotation: any match of any pair accepts. Deliveries whose `t` is
//! more than the tolerance (300 s, Stripe's SDK default) from our clock are refused, so a
//! captured delivery cannot be replayed later.

use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;

use super::wire::Transfer;
use super::{StripeAdapter, observe};
use crate::providers::webhook::{Checked, InboundEvent, WebhookError, WebhookReceiver};

pub const SIGNATURE_HEADER: &str = "stripe-signature";
pub const TOLERANCE_SECS: i64 = 300;

impl WebhookReceiver for StripeAdapter {
    fn check(
        &self,
        headers: &axum::http::HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Checked, WebhookError> {
        let header = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
        verify(header, body, &self.config.webhook_secrets, now).map(Checked::Verified)
    }
}

/// Signs `body` at time `t` the way Stripe does (for the mock, and for tests).
pub fn sign(secret: &SecretString, t: i64, body: &[u8]) -> String {
    let mac = keyed(secret, t, body)
        .map(|m| m.finalize().into_bytes().to_vec())
        .unwrap_or_default();
    format!("t={t},v1={}", hex::encode(mac))
}

/// The MAC over `"<t>.<body>"`. HMAC takes keys of any length, so this is always `Some`.
fn keyed(secret: &SecretString, t: i64, body: &[u8]) -> Option<Hmac<Sha256>> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()).ok()?;
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    Some(m)
}

/// Checks the signature header against every secret, then parses the event.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[SecretString],
    now: DateTime<Utc>,
) -> Result<InboundEvent, WebhookError> {
    let header = header.ok_or(WebhookError::MissingHeader(SIGNATURE_HEADER))?;
    let mut t: Option<i64> = None;
    let mut candidates: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => {
                t = Some(v.parse().map_err(|_| {
                    WebhookError::Malformed(format!("timestamp {v:?} is not a number"))
                })?)
            }
            Some(("v1", v)) => {
                if let Ok(bytes) = hex::decode(v) {
                    candidates.push(bytes);
                }
            }
            _ => {}
        }
    }
    let t = t.ok_or_else(|| WebhookError::Malformed("signature header has no t=".into()))?;
    if candidates.is_empty() {
        return Err(WebhookError::Malformed(
            "signature header has no v1 signature".into(),
        ));
    }
    let age = now.timestamp() - t;
    if age.abs() > TOLERANCE_SECS {
        return Err(WebhookError::Stale {
            age_secs: age,
            tolerance_secs: TOLERANCE_SECS,
        });
    }
    // verify_slice compares in constant time.
    let matched = secrets.iter().any(|secret| {
        candidates
            .iter()
            .any(|c| keyed(secret, t, body).is_some_and(|m| m.verify_slice(c).is_ok()))
    });
    if !matched {
        return Err(WebhookError::BadSignature);
    }
    parse(body)
}

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: serde_json::Value,
}

/// Reads a transfer event. Other event types are accepted (Stripe sends what the endpoint
/// subscribed to) but carry no observation.
fn parse(body: &[u8]) -> Result<InboundEvent, WebhookError> {
    let event: Event =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let occurred = Utc.timestamp_opt(event.created, 0).single();
    if event.kind.starts_with("transfer.") {
        let transfer: Transfer = serde_json::from_value(event.data.object)
            .map_err(|e| WebhookError::Malformed(format!("transfer object: {e}")))?;
        return Ok(InboundEvent {
            event_id: event.id,
            our_token: transfer.transfer_group.clone(),
            observation: Some(observe(&transfer).at(occurred)),
            provider_ref: Some(transfer.id),
        });
    }
    Ok(InboundEvent {
        event_id: event.id,
        provider_ref: None,
        our_token: None,
        observation: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Vec<u8> {
        serde_json::json!({
            "id": "evt_1", "object": "event", "type": "transfer.reversed", "created": 1_700_000_000,
            "data": {"object": {
                "id": "tr_1", "object": "transfer", "amount": 500, "amount_reversed": 500,
                "created": 1_700_000_000, "currency": "usd", "destination": "acct_1",
                "reversed": true, "transfer_group": "po_1"
            }}
        })
        .to_string()
        .into_bytes()
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_string())
    }

    #[test]
    fn a_good_signature_is_accepted_and_parsed() {
        let now = crate::clock::now();
        let header = sign(&secret("whsec_a"), now.timestamp(), &body());
        let event = verify(Some(&header), &body(), &[secret("whsec_a")], now).unwrap();
        assert_eq!(event.provider_ref.as_deref(), Some("tr_1"));
        assert_eq!(event.our_token.as_deref(), Some("po_1"));
        assert_eq!(
            event.observation.unwrap().state,
            crate::domain::tracking::RailState::Returned
        );
    }

    #[test]
    fn rotation_accepts_any_matching_pair() {
        let now = crate::clock::now();
        let t = now.timestamp();
        let old = sign(&secret("whsec_old"), t, &body());
        let new = sign(&secret("whsec_new"), t, &body());
        let both = format!("{new},{}", old.split_once(',').unwrap().1);
        assert!(verify(Some(&both), &body(), &[secret("whsec_old")], now).is_ok());
        assert!(
            verify(
                Some(&old),
                &body(),
                &[secret("whsec_x"), secret("whsec_old")],
                now
            )
            .is_ok()
        );
    }

    #[test]
    fn forged_stale_and_malformed_are_refused() {
        let now = crate::clock::now();
        let t = now.timestamp();
        let forged = sign(&secret("whsec_wrong"), t, &body());
        assert_eq!(
            verify(Some(&forged), &body(), &[secret("whsec_a")], now),
            Err(WebhookError::BadSignature)
        );
        let mut tampered = body();
        tampered[10] ^= 1;
        let good = sign(&secret("whsec_a"), t, &body());
        assert_eq!(
            verify(Some(&good), &tampered, &[secret("whsec_a")], now),
            Err(WebhookError::BadSignature)
        );
        let stale = sign(&secret("whsec_a"), t - 301, &body());
        assert!(matches!(
            verify(Some(&stale), &body(), &[secret("whsec_a")], now),
            Err(WebhookError::Stale { .. })
        ));
        assert!(matches!(
            verify(None, &body(), &[secret("whsec_a")], now),
            Err(WebhookError::MissingHeader(_))
        ));
        assert!(matches!(
            verify(Some("v1=zz"), &body(), &[secret("whsec_a")], now),
            Err(WebhookError::Malformed(_))
        ));
    }
}
