//! Finance over HTTP: start reconciliations, poll them, read exceptions and the report,
//! resolve with a note; scopes enforced.

use chrono::Utc;
use payouts::domain::api_key::Scope;
use serde_json::{Value, json};

use crate::Api;

/// Starts a reconciliation of today and polls it to the end.
async fn reconcile_today(api: &Api, key: &str) -> Value {
    let today = Utc::now().date_naive().to_string();
    let started = api
        .post(
            "/v1/reconciliations",
            key,
            &json!({"from": today, "to": today}),
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.body);
    let href = started.body["href"].as_str().expect("href").to_string();
    assert_eq!(
        started
            .headers
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some(href.as_str())
    );
    for _ in 0..200 {
        let (status, run) = api.get(&href, Some(key)).await;
        assert_eq!(status, 200, "{run}");
        if run["status"] != "running" {
            assert_eq!(run["status"], "completed", "{run}");
            return run;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the reconciliation did not finish in 10 s");
}

#[tokio::test]
async fn finance_reconciles_finds_an_unknown_transfer_and_resolves_it() {
    let api = Api::start().await;
    let paid = api.env.withdraw_all().await;
    api.env.work_until_idle(api.env.deps()).await;
    let finance = api.key(Scope::Finance, None).await;

    let clean = reconcile_today(&api, &finance).await;
    assert_eq!(clean["exceptions"]["open"], 0, "{clean}");
    let matched: u64 = clean["totals"]
        .as_array()
        .expect("totals")
        .iter()
        .map(|t| t["matched"].as_u64().unwrap_or(0))
        .sum();
    let settled = {
        let mut n = 0;
        for id in &paid {
            if api
                .env
                .store
                .payout(id)
                .await
                .expect("payout")
                .payout
                .provider_ref
                .is_some()
            {
                n += 1;
            }
        }
        n
    };
    assert!(settled > 0, "some payouts were sent");
    assert_eq!(matched, settled);

    // Someone with the Stripe key sends money no payout asked for.
    let response = api
        .http
        .post(format!("{}/v1/transfers", api.env.mock.base_url()))
        .bearer_auth("sk_test_mock")
        .form(&[
            ("amount", "4200"),
            ("currency", "usd"),
            ("destination", "acct_stranger"),
        ])
        .send()
        .await
        .expect("mock");
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );

    let run = reconcile_today(&api, &finance).await;
    assert_eq!(run["exceptions"]["open_critical"], 1, "{run}");
    let id = run["id"].as_str().expect("id");
    let (status, open) = api
        .get(
            &format!("/v1/reconciliations/{id}/exceptions?open=true"),
            Some(&finance),
        )
        .await;
    assert_eq!(status, 200);
    let open = open.as_array().expect("list").clone();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["kind"], "unknown_at_provider");
    assert_eq!(open[0]["severity"], "critical");
    assert_eq!(open[0]["theirs"]["payee"], "acct_stranger");
    assert!(
        open[0]["explanation"]
            .as_str()
            .expect("text")
            .contains("no payout of ours")
    );
    let exception = open[0]["id"].as_str().expect("id").to_string();

    // The report is one HTML page naming the exception.
    let html = api
        .http
        .get(format!("{}/v1/reconciliations/{id}/report.html", api.base))
        .bearer_auth(&finance)
        .send()
        .await
        .expect("report");
    assert_eq!(
        html.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/html; charset=utf-8")
    );
    let page = html.text().await.expect("page");
    assert!(
        page.contains(&exception) && page.contains("<table>"),
        "{page}"
    );

    // Only finance and operators resolve; a note is required.
    let path = format!("/v1/reconciliation-exceptions/{exception}/resolution");
    let referrer = api.key(Scope::Referrer, Some("alice")).await;
    assert_eq!(
        api.post(&path, &referrer, &json!({"note": "x"}))
            .await
            .status,
        403
    );
    assert_eq!(
        api.post(&path, &finance, &json!({"note": "  "}))
            .await
            .status,
        422
    );
    let resolved = api
        .post(
            &path,
            &finance,
            &json!({"note": "our own test transfer; reversed"}),
        )
        .await;
    assert_eq!(resolved.status, 200, "{}", resolved.body);
    assert_eq!(resolved.body["note"], "our own test transfer; reversed");

    let again = reconcile_today(&api, &finance).await;
    assert_eq!(again["exceptions"]["open"], 0, "{again}");
    assert_eq!(again["exceptions"]["resolved"], 1);
    let (_, runs) = api.get("/v1/reconciliations?limit=2", Some(&finance)).await;
    assert_eq!(runs[0]["id"], again["id"]);
    assert_eq!(runs.as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn bad_reconciliation_requests_say_what_is_wrong() {
    let api = Api::start().await;
    let finance = api.key(Scope::Finance, None).await;
    let ingest = api.key(Scope::Ingest, None).await;
    let bad = api
        .post(
            "/v1/reconciliations",
            &finance,
            &json!({"from": "2026-11-02", "to": "2026-11-01"}),
        )
        .await;
    // Two real dates the wrong way round: well-formed, refused by the rules.
    assert_eq!(
        (bad.status, bad.body["error"]["code"].as_str()),
        (422, Some("invalid_period"))
    );
    let unconfigured = api
        .post(
            "/v1/reconciliations",
            &finance,
            &json!({"from": "2026-11-01", "to": "2026-11-01", "rails": ["wise"]}),
        )
        .await;
    assert_eq!(unconfigured.status, 422, "{}", unconfigured.body);
    let forbidden = api
        .post(
            "/v1/reconciliations",
            &ingest,
            &json!({"from": "2026-11-01", "to": "2026-11-01"}),
        )
        .await;
    assert_eq!(forbidden.status, 403);
    let (status, body) = api.get("/v1/reconciliations/rr_nope", Some(&finance)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_reconciliation"))
    );
    let missing = api
        .post(
            "/v1/reconciliation-exceptions/rx_00000000000000000000/resolution",
            &finance,
            &json!({"note": "n"}),
        )
        .await;
    assert_eq!(missing.status, 404);
    let malformed = api
        .post(
            "/v1/reconciliation-exceptions/nope/resolution",
            &finance,
            &json!({"note": "n"}),
        )
        .await;
    assert_eq!(malformed.status, 400);
}

#[tokio::test]
async fn periods_outside_a_sane_range_are_refused_and_start_nothing() {
    let api = Api::start().await;
    let finance = api.key(Scope::Finance, None).await;
    // Not YYYY-MM-DD at all: 400. A real day outside the range: 422, naming the range.
    for (from, to, status, words) in [
        ("+262142-01-01", "+262142-12-31", 400, "not a date"),
        ("+262142-12-31", "+262142-12-31", 400, "not a date"),
        ("1999-12-31", "2000-01-01", 422, "2100-12-31"),
        ("2101-01-01", "2101-01-01", 422, "2100-12-31"),
    ] {
        let a = api
            .post(
                "/v1/reconciliations",
                &finance,
                &json!({"from": from, "to": to}),
            )
            .await;
        assert_eq!(
            (a.status, a.body["error"]["code"].as_str()),
            (status, Some("invalid_period")),
            "{from} to {to}: {}",
            a.body
        );
        let message = a.body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(words), "{message}");
    }
    let (status, runs) = api.get("/v1/reconciliations", Some(&finance)).await;
    assert_eq!((status, runs), (200, json!([])), "no run was started");
}
