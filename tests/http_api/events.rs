//! Outgoing events over HTTP: an operator registers an endpoint (its secret shown once), a
//! withdrawal's events are listed with their delivery log, and one is replayed; bad input is
//! a 4xx with a code, never a 500.

use payouts::domain::api_key::Scope;
use serde_json::json;

use super::{Api, code, withdrawal};

#[tokio::test]
async fn an_operator_registers_an_endpoint_reads_the_log_and_replays() {
    let api = Api::start().await;
    let ops = api.key(Scope::Operator, None).await;
    let finance = api.key(Scope::Finance, None).await;

    let made = api
        .post(
            "/v1/event-endpoints",
            &ops,
            &json!({"url": "http://127.0.0.1:9/hooks", "types": ["payout.created"]}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let secret = made.body["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_") && secret.len() > 40);
    let endpoint = made.body["id"].as_str().unwrap().to_string();
    let (status, list) = api.get("/v1/event-endpoints", Some(&ops)).await;
    assert_eq!(status, 200);
    assert_eq!(list["endpoints"][0]["id"], endpoint.as_str());
    assert_eq!(list["endpoints"][0]["types"], json!(["payout.created"]));
    assert!(
        !list.to_string().contains(secret),
        "the secret is shown once"
    );

    let alice = api.key(Scope::Referrer, Some("ref-alice")).await;
    let w = api
        .withdraw("ref-alice", &alice, "e-1", &withdrawal("10.00"))
        .await;
    assert_eq!(w.status, 201, "{}", w.body);
    let (status, events) = api.get("/v1/events", Some(&finance)).await;
    assert_eq!(status, 200, "{events}");
    let created = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "payout.created")
        .expect("payout.created listed");
    assert_eq!(created["body"]["data"]["payout"]["id"], w.body["id"]);
    assert_eq!(created["deliveries"][0]["endpoint_id"], endpoint.as_str());
    assert_eq!(created["deliveries"][0]["state"], "pending");

    let id = created["id"].as_str().unwrap();
    let again = api
        .post(&format!("/v1/events/{id}/replay"), &ops, &json!({}))
        .await;
    assert_eq!(
        (again.status, again.body["deliveries"].as_u64()),
        (202, Some(1))
    );
    let (_, shown) = api.get(&format!("/v1/events/{id}"), Some(&ops)).await;
    assert_eq!(shown["deliveries"].as_array().unwrap().len(), 2);
    assert!(shown["deliveries"][1]["replayed_by"].as_str().is_some());

    let removed = api
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/event-endpoints/{endpoint}"),
            &ops,
            &[],
            &json!(null),
        )
        .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    let (_, shown) = api.get(&format!("/v1/events/{id}"), Some(&ops)).await;
    assert!(
        shown["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["state"] == "cancelled")
    );
}

#[tokio::test]
async fn bad_endpoints_types_times_and_ids_are_refused_with_a_code() {
    let api = Api::start().await;
    let ops = api.key(Scope::Operator, None).await;
    for (body, status, expected) in [
        (
            json!({"url": "http://platform.example/hooks"}),
            422,
            "invalid_url",
        ),
        (
            json!({"url": "https://u:p@platform.example/hooks"}),
            422,
            "invalid_url",
        ),
        (
            json!({"url": "https://platform.example/hooks", "types": ["payout.sent"]}),
            422,
            "unknown_event_type",
        ),
    ] {
        let a = api.post("/v1/event-endpoints", &ops, &body).await;
        assert_eq!((a.status, code(&a.body)), (status, expected), "{body}");
        assert!(!a.body.to_string().contains("u:p"), "{}", a.body);
    }
    let a = api
        .post("/v1/event-replays", &ops, &json!({"since": "last week"}))
        .await;
    assert_eq!((a.status, code(&a.body)), (422, "invalid_since"));
    let a = api
        .post("/v1/events/evt_nope/replay", &ops, &json!({}))
        .await;
    assert_eq!((a.status, code(&a.body)), (404, "unknown_event"));
    let (status, body) = api.get("/v1/events?since=never", Some(&ops)).await;
    assert_eq!((status, code(&body)), (400, "invalid_since"));
    let (status, body) = api.get("/v1/events?limit=0", Some(&ops)).await;
    assert_eq!((status, code(&body)), (400, "invalid_limit"));
}
