//! An operator's actions over HTTP: operator keys only, a reason always, refusals as 409s
//! that say why, asking twice does once, and the key's name on the payout's record.

use std::sync::Arc;

use payouts::domain::api_key::Scope;
use payouts::jobs::PayoutDeps;
use payouts::providers::rail::Rails;
use serde_json::json;

use super::{Api, code};
use crate::common::usd;

#[tokio::test]
async fn only_operators_act_with_a_reason_and_once() {
    let api = Api::start().await;
    let env = &api.env;
    // A payout the worker handed over: its rail is not configured there.
    let id = env
        .withdraw("ref-mo", usd("5.00"), "mo-ops")
        .await
        .unwrap()
        .payout
        .id;
    let no_rails = Arc::new(PayoutDeps {
        rails: Rails::default(),
        ..(*env.deps()).clone()
    });
    env.work_until_idle(no_rails).await;
    let cancel = format!("/v1/payouts/{id}/cancel");
    let why = json!({"reason": "payee closed the account"});

    for key in [
        api.key(Scope::Finance, None).await,
        api.key(Scope::Referrer, Some("ref-mo")).await,
        api.key(Scope::Ingest, None).await,
    ] {
        let refused = api.post(&cancel, &key, &why).await;
        assert_eq!(refused.status, 403, "{}", refused.body);
    }
    let operator = api.key(Scope::Operator, None).await;
    let blank = api.post(&cancel, &operator, &json!({"reason": " "})).await;
    assert_eq!(
        (blank.status, code(&blank.body)),
        (422, "reason_required"),
        "{}",
        blank.body
    );

    // A part returned is a plain decimal string; anything else is a 422 that says so, and
    // kept takes no amount.
    let dispute = format!("/v1/payouts/{id}/resolve-dispute");
    for (outcome, amount) in [
        ("returned", "\u{11}"),
        ("returned", "1_000"),
        ("kept", "1.00"),
    ] {
        let body = json!({"reason": "x", "outcome": outcome, "amount": amount});
        let bad = api.post(&dispute, &operator, &body).await;
        assert_eq!(
            (bad.status, code(&bad.body)),
            (422, "bad_part"),
            "{amount}: {}",
            bad.body
        );
    }

    let first = api.post(&cancel, &operator, &why).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["to"], "failed");
    assert_eq!(first.body["replayed"], false);
    let again = api.post(&cancel, &operator, &why).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["replayed"], true);
    assert_eq!(again.body["action_id"], first.body["action_id"]);

    let retry = api
        .post(
            &format!("/v1/payouts/{id}/retry"),
            &operator,
            &json!({"reason": "try again"}),
        )
        .await;
    assert_eq!(
        (retry.status, code(&retry.body)),
        (409, "not_allowed_in_this_state"),
        "{}",
        retry.body
    );

    let (status, detail) = api.get(&format!("/v1/payouts/{id}"), Some(&operator)).await;
    assert_eq!(status, 200);
    let line = detail["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["source"] == "operator")
        .expect("the operator's line");
    assert_eq!(line["worker"], "test", "the acting key's name");
    assert!(
        line["reason"]
            .as_str()
            .unwrap()
            .contains("payee closed the account")
    );
}

/// A payout held for a missing W-9 (the gate on, with a 1-dollar threshold so the demo's
/// balances pass it): the review queue lists it with its rule and evidence, the payee's
/// balance says why, an approval cannot stand in for the form, and a rejection voids it.
#[tokio::test]
async fn held_payouts_are_listed_explained_and_decided_over_http() {
    let api = Api::start_w9_gated().await;
    let operator = api.key(Scope::Operator, None).await;
    let mo = api.key(Scope::Referrer, Some("ref-mo")).await;
    let made = api
        .withdraw("ref-mo", &mo, "mo-held", &super::withdrawal("5.00"))
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.body["status"], "held", "{}", made.body);
    assert_eq!(made.body["next_step_at"], serde_json::Value::Null);
    let id = made.body["id"].as_str().unwrap().to_string();

    let (status, queue) = api.get("/v1/reviews", Some(&operator)).await;
    assert_eq!(status, 200, "{queue}");
    assert_eq!(queue["held"][0]["payout"]["id"], id.as_str());
    assert_eq!(queue["held"][0]["flags"][0]["rule"], "w9_missing");
    let (status, _) = api.get("/v1/reviews", Some(&mo)).await;
    assert_eq!(status, 403);

    let (status, balance) = api.get("/v1/accounts/ref-mo/balance", Some(&mo)).await;
    assert_eq!(status, 200, "{balance}");
    let why = balance["held_payouts"][0]["reasons"][0].as_str().unwrap();
    assert!(
        why.starts_with("w9_missing: a US payee with no W-9 on file"),
        "{why}"
    );

    let metrics = api
        .http
        .get(format!("{}/v1/metrics", api.base))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("payouts_needing_human{rail=\"stripe\",reason=\"held\"} 1"),
        "{metrics}"
    );

    let approve = format!("/v1/payouts/{id}/review/approve");
    let refused = api
        .post(&approve, &operator, &json!({"reason": "looks fine"}))
        .await;
    assert_eq!(
        (refused.status, code(&refused.body)),
        (409, "not_allowed_in_this_state"),
        "{}",
        refused.body
    );
    let reject = format!("/v1/payouts/{id}/review/reject");
    let done = api
        .post(
            &reject,
            &operator,
            &json!({"reason": "no form after 90 days"}),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(
        (done.body["from"].as_str(), done.body["to"].as_str()),
        (Some("held"), Some("failed"))
    );
    let (_, detail) = api.get(&format!("/v1/payouts/{id}"), Some(&operator)).await;
    assert_eq!(detail["flags"][0]["decision"], "rejected", "{detail}");
    assert_eq!(
        detail["flags"][0]["cleared_by"],
        detail["events"].as_array().unwrap().last().unwrap()["worker"]
    );
}
