//! Wise webhook verification: `X-Signature-SHA256` is a base64 RSA signature (SHA256withRSA,
//! PKCS#1 v1.5) over the raw body, checked with Wise's published public key.
//!
//! The signature carries no timestamp; the signed body's `sent_at` bounds replays. Wise
//! retries a delivery for about two weeks (whether `sent_at` changes per retry is
//! UNCONFIRMED), so [`MAX_AGE`] is generous: events are only hints, applied in
//! `occurred_at` order, so a replay inside it does no harm.

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use rsa::RsaPublicKey;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use sha2::Sha256;

use super::classify;
use super::wire::{
    DELIVERY_ID_HEADER, SIGNATURE_HEADER, STATE_CHANGE, StateChange, WebhookEnvelope,
};
use crate::providers::ProviderError;
use crate::providers::webhook::{Checked, InboundEvent, WebhookError, WebhookReceiver};

/// Deliveries whose `sent_at` is older than this are refused as stale.
pub const MAX_AGE: chrono::Duration = chrono::Duration::days(15);

/// A parsed Wise public key.
#[derive(Debug, Clone)]
pub struct WebhookKey(VerifyingKey<Sha256>);

impl WebhookKey {
    /// Accepts `BEGIN PUBLIC KEY` (what Wise publishes) or `BEGIN RSA PUBLIC KEY`.
    pub fn from_pem(pem: &str) -> Result<Self, ProviderError> {
        let pem = pem.trim();
        let key = RsaPublicKey::from_public_key_pem(pem)
            .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
            .map_err(|e| ProviderError::Config(format!("Wise webhook public key: {e}")))?;
        Ok(WebhookKey(VerifyingKey::new(key)))
    }
}

/// Verifies a delivery's signature and reads it, without a freshness check.
pub fn verify(
    headers: &HeaderMap,
    raw_body: &[u8],
    key: &WebhookKey,
) -> Result<InboundEvent, WebhookError> {
    check_signature(headers, raw_body, key)?;
    read_event(headers, raw_body).map(|(event, _)| event)
}

/// [`verify`], and refuses deliveries sent more than `max_age` before `now`.
pub fn verify_at(
    headers: &HeaderMap,
    raw_body: &[u8],
    key: &WebhookKey,
    now: DateTime<Utc>,
    max_age: chrono::Duration,
) -> Result<InboundEvent, WebhookError> {
    check_signature(headers, raw_body, key)?;
    let (event, sent_at) = read_event(headers, raw_body)?;
    let age = now - sent_at;
    // A little clock skew into the future is fine; far future is as suspect as far past.
    if age > max_age || age < -chrono::Duration::minutes(5) {
        return Err(WebhookError::Stale {
            age_secs: age.num_seconds(),
            tolerance_secs: max_age.num_seconds(),
        });
    }
    Ok(event)
}

fn check_signature(
    headers: &HeaderMap,
    raw_body: &[u8],
    key: &WebhookKey,
) -> Result<(), WebhookError> {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(WebhookError::MissingHeader("X-Signature-SHA256"))?;
    let bytes = STANDARD
        .decode(signature.trim())
        .map_err(|_| WebhookError::BadSignature)?;
    let signature =
        Signature::try_from(bytes.as_slice()).map_err(|_| WebhookError::BadSignature)?;
    key.0
        .verify(raw_body, &signature)
        .map_err(|_| WebhookError::BadSignature)
}

fn parse_time(text: &str, field: &str) -> Result<DateTime<Utc>, WebhookError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| WebhookError::Malformed(format!("{field} {text:?}: {e}")))
}

/// The event and its `sent_at`.
fn read_event(
    headers: &HeaderMap,
    raw_body: &[u8],
) -> Result<(InboundEvent, DateTime<Utc>), WebhookError> {
    let envelope: WebhookEnvelope =
        serde_json::from_slice(raw_body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let sent_at = parse_time(&envelope.sent_at, "sent_at")?;
    let delivery = headers
        .get(DELIVERY_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if envelope.event_type != STATE_CHANGE {
        // Other events only say "something happened": the receiver reads the state itself.
        let provider_ref = envelope
            .data
            .pointer("/resource/id")
            .and_then(|v| v.as_u64())
            .map(|id| id.to_string());
        let event_id =
            delivery.unwrap_or_else(|| format!("{}:{}", envelope.event_type, envelope.sent_at));
        return Ok((
            InboundEvent {
                event_id,
                provider_ref,
                our_token: None,
                observation: None,
            },
            sent_at,
        ));
    }
    let change: StateChange = serde_json::from_value(envelope.data)
        .map_err(|e| WebhookError::Malformed(format!("state-change data: {e}")))?;
    let occurred_at = parse_time(&change.occurred_at, "occurred_at")?;
    let observation = classify::observe_status(&change.current_state).at(Some(occurred_at));
    Ok((
        InboundEvent {
            // The same change delivered twice (retries, one per subscription) has the same
            // id, whatever X-Delivery-Id says.
            event_id: format!(
                "{}:{}:{}",
                change.resource.id, change.current_state, change.occurred_at
            ),
            provider_ref: Some(change.resource.id.to_string()),
            our_token: None,
            observation: Some(observation),
        },
        sent_at,
    ))
}

// The signatures come from the Wise simulator's key pair.
#[cfg(all(test, feature = "simulators"))]
mod tests {
    use super::*;
    use crate::domain::tracking::RailState;
    use crate::sim::wise::{TEST_WEBHOOK_PUBLIC_KEY_PEM, sign_test_body};

    fn body(state: &str, sent_at: &str) -> Vec<u8> {
        format!(
            r#"{{"data":{{"resource":{{"type":"transfer","id":42,"profile_id":1,"account_id":1001}},"current_state":"{state}","previous_state":"processing","occurred_at":"2026-01-02T03:04:05Z"}},"subscription_id":"00000000-0000-0000-0000-000000000001","event_type":"transfers#state-change","schema_version":"2.0.0","sent_at":"{sent_at}"}}"#
        )
        .into_bytes()
    }

    fn headers(signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE_HEADER, signature.parse().unwrap());
        h.insert(DELIVERY_ID_HEADER, "d1".parse().unwrap());
        h
    }

    #[test]
    fn signed_accepted_forged_tampered_stale_rejected() {
        let key = WebhookKey::from_pem(TEST_WEBHOOK_PUBLIC_KEY_PEM).unwrap();
        let now = parse_time("2026-01-02T03:05:00Z", "now").unwrap();
        let good = body("outgoing_payment_sent", "2026-01-02T03:04:06Z");
        let sig = sign_test_body(&good).unwrap();
        let event = verify_at(&headers(&sig), &good, &key, now, MAX_AGE).unwrap();
        assert_eq!(event.provider_ref.as_deref(), Some("42"));
        let obs = event.observation.unwrap();
        assert_eq!(obs.state, RailState::Paid);
        assert_eq!(
            obs.occurred_at,
            Some(parse_time("2026-01-02T03:04:05Z", "t").unwrap())
        );

        let tampered = body("funds_refunded", "2026-01-02T03:04:06Z");
        assert_eq!(
            verify(&headers(&sig), &tampered, &key),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify(&headers("bm90IGEgc2ln"), &good, &key),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify(&HeaderMap::new(), &good, &key),
            Err(WebhookError::MissingHeader("X-Signature-SHA256"))
        );
        let old = body("outgoing_payment_sent", "2025-11-01T00:00:00Z");
        let old_sig = sign_test_body(&old).unwrap();
        assert!(matches!(
            verify_at(&headers(&old_sig), &old, &key, now, MAX_AGE),
            Err(WebhookError::Stale { .. })
        ));
        let junk = b"not json".to_vec();
        let junk_sig = sign_test_body(&junk).unwrap();
        assert!(matches!(
            verify(&headers(&junk_sig), &junk, &key),
            Err(WebhookError::Malformed(_))
        ));
    }

    #[test]
    fn bad_pem_is_a_config_error() {
        assert!(
            WebhookKey::from_pem("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----")
                .is_err()
        );
    }
}

impl WebhookReceiver for super::WiseAdapter {
    fn check(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Checked, WebhookError> {
        self.verify_webhook(headers, body, now)
            .map(Checked::Verified)
    }
}
