//! The access matrix: every route the server documents, called with every scope, against one
//! table (the README's access table). A route missing from the table fails the test, so a new
//! route cannot ship without saying who may call it.

use std::collections::BTreeSet;

use payouts::domain::api_key::Scope;
use serde_json::{Value, json};

use super::{Answer, Api, answer, code};

/// What one caller must get from one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Served: anything but 401, 403 and the 404 that hides another account.
    Allowed,
    /// 403 `forbidden`: the scope never may.
    Forbidden,
    /// 404, as if the account (or its payout) did not exist.
    Hidden,
    /// Not an API-key route (health, provider webhooks): keys neither open nor close it.
    Public,
}

use Expect::{Allowed as A, Forbidden as F, Hidden as H, Public as P};

/// The callers, in the order of each row's expectations: a referrer key for the account the
/// route names, a referrer key for another account, then the other three scopes.
const CALLERS: [&str; 5] = [
    "referrer (own)",
    "referrer (other)",
    "ingest",
    "operator",
    "finance",
];

/// (method, documented path, concrete path, body, [own, other, ingest, operator, finance]).
fn table(payout: &str, run: &str) -> Vec<(&'static str, &'static str, String, Value, [Expect; 5])> {
    let withdrawal =
        json!({"program": "vast", "rail": "stripe", "amount": "1.00", "currency": "USD"});
    let method = |destination: &str| json!({ "destination": destination });
    let record = json!({"records": [{"type": "account", "id": "matrix-new", "created_at": "2026-01-01T00:00:00Z", "email": "m@example.com"}]});
    let day = json!({"from": "2026-11-01", "to": "2026-11-01"});
    let run_body = json!({"period": "2026-11-01", "dry_run": true});
    vec![
        (
            "GET",
            "/v1/health/live",
            "/v1/health/live".into(),
            Value::Null,
            [P; 5],
        ),
        (
            "GET",
            "/v1/health/ready",
            "/v1/health/ready".into(),
            Value::Null,
            [P; 5],
        ),
        (
            "POST",
            "/v1/ingest",
            "/v1/ingest".into(),
            record,
            [F, F, A, A, F],
        ),
        (
            "GET",
            "/v1/accounts/{account}/balance",
            "/v1/accounts/ref-alice/balance".into(),
            Value::Null,
            [A, H, F, A, A],
        ),
        (
            "GET",
            "/v1/accounts/{account}/balance-at",
            "/v1/accounts/ref-alice/balance-at?at=2026-12-01".into(),
            Value::Null,
            [A, H, F, A, A],
        ),
        (
            "GET",
            "/v1/accounts/{account}/statements/{month}",
            "/v1/accounts/ref-alice/statements/2026-11".into(),
            Value::Null,
            [A, H, F, A, A],
        ),
        (
            "GET",
            "/v1/accounts/{account}/payout-methods",
            "/v1/accounts/ref-alice/payout-methods".into(),
            Value::Null,
            [A, H, F, A, A],
        ),
        (
            "PUT",
            "/v1/accounts/{account}/payout-methods/stripe",
            "/v1/accounts/ref-alice/payout-methods/stripe".into(),
            method("acct_1Matrix"),
            [A, H, A, A, F],
        ),
        (
            "PUT",
            "/v1/accounts/{account}/payout-methods/paypal",
            "/v1/accounts/ref-alice/payout-methods/paypal".into(),
            method("alice@example.com"),
            [A, H, A, A, F],
        ),
        (
            "PUT",
            "/v1/accounts/{account}/payout-methods/wise",
            "/v1/accounts/ref-alice/payout-methods/wise".into(),
            method("1234"),
            [A, H, A, A, F],
        ),
        (
            "PUT",
            "/v1/accounts/{account}/payout-methods/partnerstack",
            "/v1/accounts/ref-alice/payout-methods/partnerstack".into(),
            method("pk_alice"),
            [A, H, A, A, F],
        ),
        (
            "GET",
            "/v1/accounts/{account}/payouts",
            "/v1/accounts/ref-alice/payouts".into(),
            Value::Null,
            [A, H, F, A, A],
        ),
        (
            "POST",
            "/v1/accounts/{account}/withdrawals",
            "/v1/accounts/ref-alice/withdrawals".into(),
            withdrawal,
            [A, H, F, A, F],
        ),
        (
            "POST",
            "/v1/accounts/{account}/affiliate-opt-ins",
            "/v1/accounts/ref-alice/affiliate-opt-ins".into(),
            json!({"program": "runpod"}),
            [A, H, A, A, F],
        ),
        (
            "GET",
            "/v1/payouts/{payout}",
            format!("/v1/payouts/{payout}"),
            Value::Null,
            [A, H, F, A, A],
        ),
        // Acting on a payout that needs a human: operators only, whoever's payout it is.
        (
            "POST",
            "/v1/payouts/{payout}/retry",
            format!("/v1/payouts/{payout}/retry"),
            json!({"reason": "matrix"}),
            [F, F, F, A, F],
        ),
        (
            "POST",
            "/v1/payouts/{payout}/cancel",
            format!("/v1/payouts/{payout}/cancel"),
            json!({"reason": "matrix"}),
            [F, F, F, A, F],
        ),
        (
            "POST",
            "/v1/payouts/{payout}/mark-paid",
            format!("/v1/payouts/{payout}/mark-paid"),
            json!({"reason": "matrix", "reference": "wire-1"}),
            [F, F, F, A, F],
        ),
        (
            "POST",
            "/v1/bulk-actions",
            "/v1/bulk-actions".into(),
            json!({"action": "retry", "filter": {"status": "needs_operator"}, "reason": "matrix", "dry_run": true}),
            [F, F, F, A, F],
        ),
        (
            "GET",
            "/v1/approvals",
            "/v1/approvals".into(),
            Value::Null,
            [F, F, F, A, F],
        ),
        (
            "POST",
            "/v1/approvals/{action}/approve",
            "/v1/approvals/oa_00000000000000000000000000/approve".into(),
            json!({}),
            [F, F, F, A, F],
        ),
        (
            "POST",
            "/v1/approvals/{action}/reject",
            "/v1/approvals/oa_00000000000000000000000000/reject".into(),
            json!({"reason": "matrix"}),
            [F, F, F, A, F],
        ),
        (
            "GET",
            "/v1/rails",
            "/v1/rails".into(),
            Value::Null,
            [F, F, F, A, A],
        ),
        (
            "POST",
            "/v1/rails/{rail}/pause",
            "/v1/rails/paypal/pause".into(),
            json!({"reason": "matrix"}),
            [F, F, F, A, F],
        ),
        (
            "POST",
            "/v1/event-endpoints",
            "/v1/event-endpoints".into(),
            json!({"url": "https://platform.example/hooks"}),
            [F, F, F, A, F],
        ),
        (
            "GET",
            "/v1/event-endpoints",
            "/v1/event-endpoints".into(),
            Value::Null,
            [F, F, F, A, F],
        ),
        (
            "DELETE",
            "/v1/event-endpoints/{id}",
            "/v1/event-endpoints/we_missing".into(),
            Value::Null,
            [F, F, F, A, F],
        ),
        (
            "GET",
            "/v1/events",
            "/v1/events".into(),
            Value::Null,
            [F, F, F, A, A],
        ),
        (
            "GET",
            "/v1/events/{id}",
            "/v1/events/evt_missing".into(),
            Value::Null,
            [F, F, F, A, A],
        ),
        (
            "POST",
            "/v1/events/{id}/replay",
            "/v1/events/evt_missing/replay".into(),
            json!({}),
            [F, F, F, A, F],
        ),
        (
            "POST",
            "/v1/event-replays",
            "/v1/event-replays".into(),
            json!({"since": "2026-12-01"}),
            [F, F, F, A, F],
        ),
        (
            "POST",
            "/v1/rails/{rail}/resume",
            "/v1/rails/paypal/resume".into(),
            json!({"reason": "matrix"}),
            [F, F, F, A, F],
        ),
        (
            "POST",
            "/v1/payouts/{payout}/resolve-dispute",
            format!("/v1/payouts/{payout}/resolve-dispute"),
            json!({"reason": "matrix", "outcome": "kept"}),
            [F, F, F, A, F],
        ),
        (
            "POST",
            "/v1/payouts/{payout}/resolve-duplicate",
            format!("/v1/payouts/{payout}/resolve-duplicate"),
            json!({"reason": "matrix", "object": "tr_none", "booking": "owed"}),
            [F, F, F, A, F],
        ),
        (
            "POST",
            "/v1/payouts/{payout}/review/approve",
            format!("/v1/payouts/{payout}/review/approve"),
            json!({"reason": "matrix"}),
            [F, F, F, A, F],
        ),
        (
            "POST",
            "/v1/payouts/{payout}/review/reject",
            format!("/v1/payouts/{payout}/review/reject"),
            json!({"reason": "matrix", "clawback": false}),
            [F, F, F, A, F],
        ),
        (
            "GET",
            "/v1/reviews",
            "/v1/reviews".into(),
            Value::Null,
            [F, F, F, A, F],
        ),
        (
            "POST",
            "/v1/payouts/{payout}/release-hold",
            format!("/v1/payouts/{payout}/release-hold"),
            json!({"reason": "matrix"}),
            [F, F, F, A, F],
        ),
        (
            "POST",
            "/v1/runs",
            "/v1/runs".into(),
            run_body,
            [F, F, F, A, F],
        ),
        (
            "GET",
            "/v1/runs/{period}",
            "/v1/runs/2026-11-01".into(),
            Value::Null,
            [F, F, F, A, A],
        ),
        (
            "GET",
            "/v1/metrics",
            "/v1/metrics".into(),
            Value::Null,
            [F, F, F, A, A],
        ),
        (
            "POST",
            "/v1/reconciliations",
            "/v1/reconciliations".into(),
            day,
            [F, F, F, A, A],
        ),
        (
            "GET",
            "/v1/reconciliations",
            "/v1/reconciliations".into(),
            Value::Null,
            [F, F, F, A, A],
        ),
        (
            "GET",
            "/v1/reconciliations/{id}",
            format!("/v1/reconciliations/{run}"),
            Value::Null,
            [F, F, F, A, A],
        ),
        (
            "GET",
            "/v1/reconciliations/{id}/exceptions",
            format!("/v1/reconciliations/{run}/exceptions"),
            Value::Null,
            [F, F, F, A, A],
        ),
        (
            "GET",
            "/v1/reconciliations/{id}/report.html",
            format!("/v1/reconciliations/{run}/report.html"),
            Value::Null,
            [F, F, F, A, A],
        ),
        (
            "POST",
            "/v1/reconciliation-exceptions/{id}/resolution",
            "/v1/reconciliation-exceptions/rx_00000000000000000000/resolution".into(),
            json!({"note": "checked"}),
            [F, F, F, A, A],
        ),
        (
            "POST",
            "/v1/webhooks/{rail}",
            "/v1/webhooks/stripe".into(),
            json!({}),
            [P; 5],
        ),
        (
            "POST",
            "/v1/webhooks/{rail}",
            "/v1/webhooks/paypal".into(),
            json!({}),
            [P; 5],
        ),
        (
            "POST",
            "/v1/webhooks/{rail}",
            "/v1/webhooks/wise".into(),
            json!({}),
            [P; 5],
        ),
        (
            "POST",
            "/v1/webhooks/{rail}",
            "/v1/webhooks/partnerstack".into(),
            json!({}),
            [P; 5],
        ),
    ]
}

/// Every (method, path) the served OpenAPI document lists.
async fn documented(api: &Api) -> BTreeSet<(String, String)> {
    let doc = answer(api.http.get(format!("{}/openapi.json", api.base))).await;
    let mut ops = BTreeSet::new();
    for (path, item) in doc.body["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            ops.insert((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

fn judge(expect: Expect, got: &Answer) -> bool {
    let hidden =
        got.status == 404 && matches!(code(&got.body), "unknown_account" | "unknown_payout");
    match expect {
        Expect::Allowed => !matches!(got.status, 401 | 403) && !hidden && got.status < 500,
        Expect::Forbidden => got.status == 403 && code(&got.body) == "forbidden",
        Expect::Hidden => hidden,
        // A receiver may be unconfigured here (503) or refuse the unsigned body (4xx); what
        // matters is that no key decided it.
        Expect::Public => got.status != 403 && code(&got.body) != "forbidden",
    }
}

#[tokio::test]
async fn every_route_answers_every_scope_as_the_access_table_says() {
    let api = Api::start().await;
    let payout = api
        .env
        .withdraw("ref-alice", super::usd("5"), "matrix-payout")
        .await
        .expect("a payout of alice's")
        .payout
        .id;
    let operator = api.key(Scope::Operator, None).await;
    let started = api
        .post(
            "/v1/reconciliations",
            &operator,
            &json!({"from": "2026-11-01", "to": "2026-11-01"}),
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.body);
    let run = started.body["id"].as_str().expect("run id").to_string();
    let keys = [
        api.key(Scope::Referrer, Some("ref-alice")).await,
        api.key(Scope::Referrer, Some("ref-dave")).await,
        api.key(Scope::Ingest, None).await,
        operator.clone(),
        api.key(Scope::Finance, None).await,
    ];

    let rows = table(payout.as_str(), &run);
    let listed: BTreeSet<(String, String)> = rows
        .iter()
        .map(|(m, p, ..)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        listed,
        documented(&api).await,
        "the table and the served routes differ"
    );

    let mut wrong = Vec::new();
    for (row, (method, _, concrete, body, expects)) in rows.iter().enumerate() {
        for (i, (key, expect)) in keys.iter().zip(expects).enumerate() {
            let method: reqwest::Method = method.parse().expect("method");
            let idem = format!("matrix-{row}-{i}");
            let got = if body.is_null() {
                answer(
                    api.http
                        .request(method.clone(), format!("{}{concrete}", api.base))
                        .bearer_auth(key),
                )
                .await
            } else {
                api.send(
                    method.clone(),
                    concrete,
                    key,
                    &[("Idempotency-Key", &idem)],
                    body,
                )
                .await
            };
            if !judge(*expect, &got) {
                wrong.push(format!(
                    "{method} {concrete} as {}: expected {expect:?}, got {} {}",
                    CALLERS[i], got.status, got.body
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn a_first_payout_method_on_an_account_holding_money_cools_off() {
    let api = Api::start().await;
    let feed = api.key(Scope::Ingest, None).await;
    let ops = api.key(Scope::Operator, None).await;
    // ref-lena has earned (her referral spent) but has never had a payout method.
    let (_, balance) = api.get("/v1/accounts/ref-lena/balance", Some(&ops)).await;
    assert_ne!(
        balance["programs"][0]["cashable"]["amount"], "0",
        "the fixture gives lena money: {balance}"
    );
    let (_, methods) = api
        .get("/v1/accounts/ref-lena/payout-methods", Some(&ops))
        .await;
    assert_eq!(methods["methods"], json!([]), "{methods}");

    // A leaked feed key names where her money goes: it waits out the cooling-off.
    let set = api
        .put(
            "/v1/accounts/ref-lena/payout-methods/stripe",
            &feed,
            &json!({"destination": "acct_1Thief"}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert!(set.body["held_until"].is_string(), "{}", set.body);

    // An account with no money yet gets its first method at once.
    let record = json!({"records": [{"type": "account", "id": "ref-new", "created_at": "2026-01-01T00:00:00Z", "email": "new@example.com"}]});
    let fed = api.post("/v1/ingest", &feed, &record).await;
    assert_eq!(fed.body["results"][0]["status"], "accepted", "{}", fed.body);
    let set = api
        .put(
            "/v1/accounts/ref-new/payout-methods/stripe",
            &feed,
            &json!({"destination": "acct_1New"}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["held_until"], Value::Null, "{}", set.body);
}
