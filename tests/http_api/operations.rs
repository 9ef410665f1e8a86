//! Operations over HTTP: metrics after real payouts, the providers' webhooks under /v1, keys
//! from configuration, the request deadline, and the OpenAPI document against the server.

use std::time::Duration;

use payouts::domain::api_key::{Scope, key_hash, parse_configured_keys};
use payouts::http::ApiSettings;
use serde_json::json;

use super::{Api, answer, code, withdrawal};

#[tokio::test]
async fn metrics_count_payouts_attempts_and_the_queue() {
    let api = Api::start().await;
    let alice = api.key(Scope::Referrer, Some("ref-alice")).await;
    let w = api
        .withdraw("ref-alice", &alice, "m-1", &withdrawal("10.00"))
        .await;
    assert_eq!(w.status, 201);
    api.env.work_until_idle(api.env.deps()).await;
    let id = w.body["id"].as_str().unwrap();
    let (_, detail) = api.get(&format!("/v1/payouts/{id}"), Some(&alice)).await;
    assert_eq!(detail["payout"]["status"], "paid", "{detail}");
    assert!(detail["status_reason"].as_str().unwrap().len() > 5);

    // An unsigned delivery to the webhook receiver is refused and counted.
    let hook = answer(
        api.http
            .post(format!("{}/v1/webhooks/stripe", api.base))
            .header("Content-Type", "application/json")
            .body("{}"),
    )
    .await;
    assert_eq!(hook.status, 401, "{}", hook.body);

    let finance = api.key(Scope::Finance, None).await;
    let res = api
        .http
        .get(format!("{}/v1/metrics", api.base))
        .bearer_auth(&finance)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = res.text().await.unwrap();
    for line in [
        "payouts{rail=\"stripe\",status=\"paid\"} 1",
        "payout_attempts_total{rail=\"stripe\",outcome=\"landed\"} 1",
        "payout_attempt_duration_seconds_count{rail=\"stripe\"} 1",
        "# TYPE payout_queue_jobs gauge",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(
        text.lines().any(|l| l.starts_with(
            "webhook_rejections_total{provider=\"stripe\",reason=\"unauthenticated\"}"
        )),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("payout_queue_jobs{status=")),
        "{text}"
    );

    let (status, body) = api.get("/v1/metrics", Some(&alice)).await;
    assert_eq!((status, code(&body)), (403, "forbidden"));
    assert_eq!(api.get("/v1/metrics", None).await.0, 401);
}

#[tokio::test]
async fn keys_from_configuration_work_beside_the_databases() {
    let line = format!("ops-config:operator={}", key_hash("pk_from_config"));
    let api = Api::start_with(ApiSettings {
        configured_keys: parse_configured_keys(&line).unwrap(),
        rate_per_second: 0,
        ..ApiSettings::default()
    })
    .await;
    let (status, body) = api
        .get("/v1/accounts/ref-alice/balance", Some("pk_from_config"))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = api
        .get("/v1/accounts/ref-alice/balance", Some("pk_from_confi"))
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_request_past_its_deadline_is_abandoned_with_503_and_a_retry_goes_through() {
    let api = Api::start_with(ApiSettings {
        request_timeout: Duration::from_millis(500),
        rate_per_second: 0,
        ..ApiSettings::default()
    })
    .await;
    let alice = api.key(Scope::Referrer, Some("ref-alice")).await;
    // A payout run's lock is held: the withdrawal waits for it past its deadline.
    let abandoned = payouts::on_backend!(&api.env.store, s => {
        let tx = s.begin_write(payouts::storage::WriteLock::Run).await.unwrap();
        let a = api.withdraw("ref-alice", &alice, "slow-1", &withdrawal("3.00")).await;
        tx.rollback().await.unwrap();
        a
    });
    assert_eq!(
        (abandoned.status, code(&abandoned.body)),
        (503, "timeout"),
        "{}",
        abandoned.body
    );
    assert_eq!(abandoned.headers["retry-after"], "1");

    // Nothing was written, and the key was released: the retry does the work, once. The
    // release runs once the abandoned handler's connection is free, which on a loaded machine
    // can take a while: retry as a client would (on 409, and on 503 if the retry itself runs
    // out of time) until it goes through, well inside the 60 s after which a claim goes stale.
    let mut retried = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        let a = api
            .withdraw("ref-alice", &alice, "slow-1", &withdrawal("3.00"))
            .await;
        if a.status != 409 && a.status != 503 {
            retried = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let retried = retried.expect("the abandoned claim was released");
    assert_eq!(retried.status, 201, "{}", retried.body);
    let (_, page) = api
        .get("/v1/accounts/ref-alice/payouts", Some(&alice))
        .await;
    assert_eq!(page["payouts"].as_array().unwrap().len(), 1);
}

/// The OpenAPI document the server serves is the one checked in (`openapi.json`; regenerate
/// with `UPDATE_OPENAPI=1 cargo test --test http_api openapi`), and every operation it
/// documents is served: no documented route is missing from the server.
#[tokio::test]
async fn the_openapi_document_matches_the_server() {
    let api = Api::start().await;
    let (status, served) = api.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    let pretty = serde_json::to_string_pretty(&served).unwrap() + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &pretty).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).expect("openapi.json is checked in");
    assert!(
        checked_in == pretty,
        "openapi.json differs from what the server serves; regenerate it with \
         UPDATE_OPENAPI=1 cargo test --test http_api openapi, and review the diff"
    );

    let ops = api.key(Scope::Operator, None).await;
    let paths = served["paths"].as_object().unwrap();
    assert!(paths.len() >= 14, "{:?}", paths.keys());
    let mut operations = 0;
    for (template, item) in paths {
        assert!(template.starts_with("/v1/"), "{template}");
        let concrete = template
            .split('/')
            .map(|seg| if seg.starts_with('{') { "x" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for method in item.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let a = api
                .send(
                    method.clone(),
                    &concrete,
                    &ops,
                    &[("Idempotency-Key", "doc-check")],
                    &json!({}),
                )
                .await;
            let not_routed = matches!(code(&a.body), "not_found" | "method_not_allowed");
            assert!(
                !not_routed,
                "{method} {template} is documented but not served: {}",
                a.body
            );
            assert!(
                a.status < 500 || a.status == 503,
                "{method} {template}: {} {}",
                a.status,
                a.body
            );
            operations += 1;
        }
        let op = item.as_object().unwrap().values().next().unwrap();
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{template}"
        );
    }
    assert!(operations >= 16, "{operations}");
    let schemas = served["components"]["schemas"].as_object().unwrap();
    for name in [
        "AccountBalance",
        "PayoutView",
        "PayoutDetail",
        "PayoutPage",
        "RunReport",
        "ErrorBody",
        "Money",
        "WithdrawalBody",
    ] {
        assert!(
            schemas.contains_key(name),
            "schema {name} missing: {:?}",
            schemas.keys()
        );
    }
}

#[tokio::test]
async fn metrics_count_payouts_waiting_for_a_human_and_the_oldest_wait() {
    let api = Api::start().await;
    let alice = api.key(Scope::Referrer, Some("ref-alice")).await;
    let w = api
        .withdraw("ref-alice", &alice, "h-1", &withdrawal("5.00"))
        .await;
    assert_eq!(w.status, 201, "{}", w.body);
    // No worker here can send on Stripe: the payout waits for an operator.
    let stranded = std::sync::Arc::new(payouts::jobs::PayoutDeps {
        rails: payouts::providers::rail::Rails::default(),
        ..(*api.env.deps()).clone()
    });
    api.env.work_until_idle(stranded).await;
    let ops = api.key(Scope::Operator, None).await;
    let res = api
        .http
        .get(format!("{}/v1/metrics", api.base))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap();
    let text = res.text().await.unwrap();
    assert!(
        text.lines()
            .any(|l| l == "payouts_needing_human{rail=\"stripe\",reason=\"needs_operator\"} 1"),
        "{text}"
    );
    let age: i64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "payouts_needing_human_oldest_seconds{rail=\"stripe\",reason=\"needs_operator\"} ",
            )
        })
        .expect("the oldest wait")
        .parse()
        .unwrap();
    assert!((0..600).contains(&age), "{age}");
}
