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
