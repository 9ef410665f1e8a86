//! Bad input of every kind gets a clear 4xx in the one error shape: never a 500, never a
//! panic, never a changed balance.

use payouts::domain::api_key::Scope;
use payouts::http::ApiSettings;
use serde_json::{Value, json};

use super::{Api, answer, code};

fn body(amount: Value, currency: &str) -> Value {
    json!({"program": "vast", "rail": "stripe", "amount": amount, "currency": currency})
}

#[tokio::test]
async fn amounts_must_be_positive_decimal_strings_in_known_currencies() {
    let api = Api::start().await;
    let ops = api.key(Scope::Operator, None).await;
    // 400: the amount breaks the document's grammar; 422: it is a decimal the rules refuse.
    let grammar = "not a plain decimal";
    let cases = [
        (
            body(json!(10.5), "USD"),
            400,
            "invalid_amount",
            "decimal string",
        ),
        (
            body(json!(10), "USD"),
            400,
            "invalid_amount",
            "decimal string",
        ),
        (body(json!("-1.00"), "USD"), 400, "invalid_amount", grammar),
        (
            body(json!("0"), "USD"),
            422,
            "invalid_amount",
            "greater than zero",
        ),
        (
            body(json!("0.00"), "USD"),
            422,
            "invalid_amount",
            "greater than zero",
        ),
        (
            body(json!("1.001"), "USD"),
            422,
            "invalid_amount",
            "decimal places",
        ),
        (body(json!("ten"), "USD"), 400, "invalid_amount", grammar),
        (body(json!("1_000"), "USD"), 400, "invalid_amount", grammar),
        (body(json!(" 1"), "USD"), 400, "invalid_amount", grammar),
        (body(json!("+1"), "USD"), 400, "invalid_amount", grammar),
        (body(json!("1."), "USD"), 400, "invalid_amount", grammar),
        (body(json!(".5"), "USD"), 400, "invalid_amount", grammar),
        (
            body(json!("1.000"), "USD"),
            422,
            "invalid_amount",
            "decimal places",
        ),
        (body(json!("1e2"), "USD"), 400, "invalid_amount", grammar),
        (
            body(json!("99999999999999999999999999"), "USD"),
            422,
            "invalid_amount",
            "",
        ),
        (
            body(json!("1.00"), "DOGE"),
            400,
            "unknown_currency",
            "unknown currency",
        ),
        (
            body(json!("1.00"), "usd"),
            400,
            "unknown_currency",
            "unknown currency",
        ),
        (
            body(json!(null), "USD"),
            400,
            "invalid_amount",
            "decimal string",
        ),
    ];
    for (i, (request, status, expected, words)) in cases.into_iter().enumerate() {
        let a = api
            .withdraw("ref-alice", &ops, &format!("bad-{i}"), &request)
            .await;
        assert_eq!(
            (a.status, code(&a.body)),
            (status, expected),
            "{request} -> {}",
            a.body
        );
        let message = a.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{request}: {message}");
    }
    let (_, balance) = api.get("/v1/accounts/ref-alice/balance", Some(&ops)).await;
    assert_eq!(
        balance["programs"][0]["pending"]["amount"], "0",
        "nothing held"
    );
}

#[tokio::test]
async fn bodies_are_strict_json_within_limits() {
    let api = Api::start_with(ApiSettings {
        rate_per_second: 0,
        body_limit: 2048,
        ..ApiSettings::default()
    })
    .await;
    let ops = api.key(Scope::Operator, None).await;
    let url = format!("{}/v1/accounts/ref-alice/withdrawals", api.base);
    let post = |body: String, content_type: &'static str| {
        api.http
            .post(&url)
            .bearer_auth(&ops)
            .header("Idempotency-Key", "strict-1")
            .header("Content-Type", content_type)
            .body(body)
    };
    let cases = [
        (post(r#"{"program":"vast","rail":"stripe","amount":"1.00","currency":"USD","colour":"red"}"#.into(), "application/json"), 400, "invalid_json", "unknown field"),
        (post(r#"{"program":"vast","rail":"stripe","amount":"1.00"}"#.into(), "application/json"), 400, "invalid_json", "missing field"),
        (post(r#"{"program":"vast","#.into(), "application/json"), 400, "invalid_json", ""),
        (post("".into(), "application/json"), 400, "invalid_json", ""),
        (post("[]".into(), "application/json"), 400, "invalid_json", ""),
        (post(r#"{"program":"vast","rail":"stripe","amount":"1.00","currency":"USD"}"#.into(), "text/plain"), 415, "unsupported_media_type", "application/json"),
        (post(format!(r#"{{"program":"{}","rail":"stripe","amount":"1.00","currency":"USD"}}"#, "v".repeat(4096)), "application/json"), 413, "body_too_large", ""),
        (post(r#"{"program":"vast","rail":"carrier-pigeon","amount":"1.00","currency":"USD"}"#.into(), "application/json"), 400, "invalid_rail", ""),
        (post(r#"{"program":"no such program!","rail":"stripe","amount":"1.00","currency":"USD"}"#.into(), "application/json"), 400, "invalid_program", ""),
    ];
    for (i, (request, status, expected, words)) in cases.into_iter().enumerate() {
        let a = answer(request).await;
        assert_eq!(
            (a.status, code(&a.body)),
            (status, expected),
            "case {i}: {}",
            a.body
        );
        assert!(
            a.body["error"]["message"].as_str().unwrap().contains(words),
            "case {i}: {}",
            a.body
        );
    }
    // The ingest endpoint has its own, larger limit.
    let ingest = api.key(Scope::Ingest, None).await;
    let big = json!({"records": [{"type": "link", "a": "u-bob", "b": "u-carol", "reason": "x".repeat(3000)}]});
    let a = api.post("/v1/ingest", &ingest, &big).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn unknown_routes_methods_and_ids_answer_in_the_error_shape() {
    let api = Api::start().await;
    let ops = api.key(Scope::Operator, None).await;
    let (status, body) = api.get("/v1/nowhere", Some(&ops)).await;
    assert_eq!((status, code(&body)), (404, "not_found"));
    let a = answer(
        api.http
            .delete(format!("{}/v1/runs", api.base))
            .bearer_auth(&ops),
    )
    .await;
    assert_eq!((a.status, code(&a.body)), (405, "method_not_allowed"));
    // Only what the document lists is served: withdrawals are created, never listed here
    // (an account's payouts are), and payouts are listed, never posted.
    let (status, body) = api
        .get("/v1/accounts/ref-alice/withdrawals", Some(&ops))
        .await;
    assert_eq!((status, code(&body)), (405, "method_not_allowed"), "{body}");
    let a = api
        .post("/v1/accounts/ref-alice/payouts", &ops, &json!({}))
        .await;
    assert_eq!((a.status, code(&a.body)), (405, "method_not_allowed"));
    let (status, body) = api.get("/v1/accounts/%FF%FE/balance", Some(&ops)).await;
    assert_eq!((status, code(&body)), (400, "invalid_path"), "{body}");
    let (status, body) = api.get("/v1/runs/not%20a%20period", Some(&ops)).await;
    assert_eq!((status, code(&body)), (400, "invalid_period"));
    let a = api
        .put(
            "/v1/accounts/ref-alice/payout-methods/stripe",
            &ops,
            &json!({"destination": "not-an-account"}),
        )
        .await;
    assert_eq!(
        (a.status, code(&a.body)),
        (400, "invalid_destination"),
        "{}",
        a.body
    );
    // A Wise recipient id that Wise's integer type cannot hold is refused when set.
    let a = api
        .put(
            "/v1/accounts/ref-alice/payout-methods/wise",
            &ops,
            &json!({"destination": "18446744073709551616"}),
        )
        .await;
    assert_eq!(
        (a.status, code(&a.body)),
        (400, "invalid_destination"),
        "{}",
        a.body
    );
    let a = api
        .put(
            "/v1/accounts/ref-alice/payout-methods/bank",
            &ops,
            &json!({"destination": "x"}),
        )
        .await;
    // One route per rail: a rail that does not exist is a path that does not either.
    assert_eq!((a.status, code(&a.body)), (404, "not_found"));
    // A header that is not text, a key of garbage bytes.
    let a = answer(
        api.http
            .get(format!("{}/v1/accounts/ref-alice/balance", api.base))
            .header("Authorization", "Basic dXNlcjpwYXNz"),
    )
    .await;
    assert_eq!((a.status, code(&a.body)), (401, "invalid_api_key"));
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429_with_retry_after() {
    let api = Api::start_with(ApiSettings {
        rate_per_second: 1,
        rate_burst: 3,
        ..ApiSettings::default()
    })
    .await;
    let ops = api.key(Scope::Operator, None).await;
    let other = api.key(Scope::Finance, None).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            api.get("/v1/accounts/ref-alice/balance", Some(&ops))
                .await
                .0,
        );
    }
    assert_eq!(&statuses[..3], &[200, 200, 200]);
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    let a = answer(
        api.http
            .get(format!("{}/v1/accounts/ref-alice/balance", api.base))
            .bearer_auth(&ops),
    )
    .await;
    assert_eq!((a.status, code(&a.body)), (429, "rate_limited"));
    assert_eq!(a.headers["retry-after"], "1");
    // Each key has its own allowance.
    assert_eq!(
        api.get("/v1/accounts/ref-alice/balance", Some(&other))
            .await
            .0,
        200
    );
}
