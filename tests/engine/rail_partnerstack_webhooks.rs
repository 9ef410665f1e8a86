//! PartnerStack's webhook path against its mock: a delivery is a hint, verified by our token
//! and confirmed by reading the reward back through the API.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::Utc;
use payouts::domain::tracking::RailState;
use payouts::providers::partnerstack::{PartnerstackAdapter, webhook};
use payouts::providers::webhook::{InboundEvent, WebhookError};
use payouts::sim::partnerstack::MockPartnerstackConfig;
use secrecy::SecretString;

use super::rail_partnerstack::{Attempt, fast, landed_ref, loopback, start, submit};

/// A receiver like the lead's: verify (token), then re-read the reward from the API.
#[derive(Clone)]
struct Receiver {
    token: SecretString,
    adapter: PartnerstackAdapter,
    confirmed: Arc<Mutex<Vec<InboundEvent>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    match webhook::verify(&headers, &body, Some(&r.token), Utc::now()) {
        Ok(hint) => match r.adapter.confirm_event(hint).await {
            Ok(event) => {
                r.confirmed.lock().unwrap().push(event);
                StatusCode::OK
            }
            Err(_) => StatusCode::SERVICE_UNAVAILABLE,
        },
        Err(WebhookError::BadSignature | WebhookError::MissingHeader(_)) => {
            StatusCode::UNAUTHORIZED
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

async fn start_receiver(r: Receiver) -> String {
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/hooks/partnerstack", post(receive))
        .with_state(r);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hooks/partnerstack")
}

#[tokio::test]
async fn webhooks_are_hints_confirmed_through_the_api() {
    let token = SecretString::from("hook-token-1");
    let (mock, adapter) = start(MockPartnerstackConfig {
        webhook_token: Some(token.clone()),
        webhook_event: "reward_updated".into(),
        duplicate_webhooks: true,
        out_of_order_webhooks: true,
        ..fast()
    })
    .await;
    let confirmed = Arc::new(Mutex::new(Vec::new()));
    let url = start_receiver(Receiver {
        token,
        adapter: adapter.clone(),
        confirmed: confirmed.clone(),
    })
    .await;
    mock.outbox().set_target(Some(url.clone()));
    let key = landed_ref(&submit(&adapter, &Attempt::new("po_hook", 1, "pk_alice", 100)).await);

    // Created + available, each delivered twice.
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.outbox().deliveries().len() < 4 {
        assert!(
            Instant::now() < deadline,
            "deliveries: {:?}",
            mock.outbox().deliveries().len()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let deliveries = mock.outbox().deliveries();
    assert!(
        deliveries.iter().all(|d| d.answered == Some(200)),
        "{deliveries:?}"
    );
    {
        let events = confirmed.lock().unwrap();
        assert!(events.len() >= 4);
        // Whatever order they came in, the re-read state is the provider's, never the body's.
        for e in events.iter() {
            assert_eq!(e.provider_ref.as_deref(), Some(key.as_str()));
            assert!(e.observation.is_some());
        }
        assert!(
            events
                .iter()
                .any(|e| e.observation.as_ref().unwrap().state == RailState::Paid)
        );
    }

    // Forged (wrong token), malformed and stale deliveries are refused before any lookup.
    let http = reqwest::Client::new();
    let good = &deliveries[0];
    let forged = http
        .post(&url)
        .header("x-webhook-token", "guess")
        .body(good.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    let missing = http
        .post(&url)
        .body(good.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 401);
    let malformed = http
        .post(&url)
        .header("x-webhook-token", "hook-token-1")
        .body("{\"event\":\"reward_updated\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status().as_u16(), 400);
    let stale_body = serde_json::json!({
        "event": "reward_updated",
        "created_at": Utc::now().timestamp_millis() - 3_600_000,
        "data": {"key": key, "payment_status": "withdrawn"}
    })
    .to_string();
    let stale = http
        .post(&url)
        .header("x-webhook-token", "hook-token-1")
        .body(stale_body)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status().as_u16(), 400);
    // A correctly tokened body that lies about the state changes nothing: the API decides.
    let lying = serde_json::json!({
        "event": "reward_updated",
        "data": {"key": key, "payment_status": "expired"}
    })
    .to_string();
    let before = confirmed.lock().unwrap().len();
    let r = http
        .post(&url)
        .header("x-webhook-token", "hook-token-1")
        .body(lying)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let events = confirmed.lock().unwrap();
    assert_eq!(events.len(), before + 1);
    assert_eq!(
        events[before].observation.as_ref().unwrap().state,
        RailState::Paid
    );
    assert_eq!(mock.moved().len(), 1);
}
