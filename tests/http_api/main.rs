//! The /v1 API over real HTTP: the server's router on an ephemeral loopback port against a
//! fresh database, keys created as `payouts keys create` does, every answer checked.

#[path = "../common/mod.rs"]
mod common;

mod abuse;
mod console;
mod events;
mod flows;
mod operations;
mod operator;
mod reconciliation;
mod scopes;
mod withdrawals;

use common::{TestEnv, usd};
use payouts::domain::api_key::Scope;
use payouts::domain::ids::AccountId;
use payouts::http::{ApiSettings, WebhookState};
use payouts::sim::stripe::Faults;
use serde_json::Value;

pub struct Api {
    pub env: TestEnv,
    pub base: String,
    pub http: reqwest::Client,
}

/// (status, headers, body) of one answer.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Api {
    /// The server on a fresh database holding the demo fixture, with default settings.
    pub async fn start() -> Api {
        Api::start_with(ApiSettings {
            // Tests fire requests in bursts; the limiter has its own test.
            rate_per_second: 0,
            ..ApiSettings::default()
        })
        .await
    }

    pub async fn start_with(settings: ApiSettings) -> Api {
        Self::start_taxed(settings, Default::default()).await
    }

    /// The tax gate on with a 1-dollar threshold, so any withdrawal of a US payee of the demo
    /// (none has a W-9) is held for its W-9.
    pub async fn start_w9_gated() -> Api {
        let tax = payouts::domain::tax::TaxRules {
            gate: true,
            thresholds: payouts::domain::tax::TaxThresholds::parse("2020=1").unwrap(),
            ..Default::default()
        };
        let settings = ApiSettings {
            rate_per_second: 0,
            ..ApiSettings::default()
        };
        Self::start_taxed(settings, tax).await
    }

    /// As [`Api::start_with`], with the platform's tax rules.
    pub async fn start_taxed(settings: ApiSettings, tax: payouts::domain::tax::TaxRules) -> Api {
        let mut env = TestEnv::new(Faults::default()).await;
        // The production default (72 h), which the harness turns off for other suites.
        env.store = env
            .store
            .clone()
            .with_safeguards(Default::default())
            .with_tax_rules(tax);
        env.ingest(common::DEMO).await;
        let state = WebhookState {
            store: env.store.clone(),
            // The mock Stripe's adapter: reconciliations started over HTTP read it.
            rails: env.deps().rails.clone(),
            watch_for: None,
            verify_limit: payouts::http::webhooks::default_verify_limit(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = payouts::http::app(state, settings);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Api {
            env,
            base,
            http: reqwest::Client::new(),
        }
    }

    pub async fn key(&self, scope: Scope, account: Option<&str>) -> String {
        let account = account.map(|a| AccountId::parse(a).unwrap());
        self.env
            .store
            .create_api_key("test", scope, account.as_ref())
            .await
            .unwrap()
            .1
    }

    /// GET `path` with `key`: (status, body).
    pub async fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let a = answer(req).await;
        (a.status, a.body)
    }

    /// A JSON request with `key` and extra headers.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Answer {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(body);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        answer(req).await
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> Answer {
        self.send(reqwest::Method::POST, path, key, &[], body).await
    }

    pub async fn put(&self, path: &str, key: &str, body: &Value) -> Answer {
        self.send(reqwest::Method::PUT, path, key, &[], body).await
    }

    /// POST a withdrawal for `account` with an Idempotency-Key.
    pub async fn withdraw(&self, account: &str, key: &str, idem: &str, body: &Value) -> Answer {
        self.send(
            reqwest::Method::POST,
            &format!("/v1/accounts/{account}/withdrawals"),
            key,
            &[("Idempotency-Key", idem)],
            body,
        )
        .await
    }
}

pub async fn answer(req: reqwest::RequestBuilder) -> Answer {
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        headers,
        body,
    }
}

pub fn withdrawal(amount: &str) -> Value {
    serde_json::json!({"program": "vast", "rail": "stripe", "amount": amount, "currency": "USD"})
}

pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn health_needs_no_key_and_readiness_checks_the_database() {
    let api = Api::start().await;
    assert_eq!(api.get("/v1/health/live", None).await.0, 200);
    let (status, body) = api.get("/v1/health/ready", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
}

#[tokio::test]
async fn no_key_or_an_unknown_key_is_refused_with_401() {
    let api = Api::start().await;
    let (status, body) = api.get("/v1/accounts/ref-alice/balance", None).await;
    assert_eq!((status, code(&body)), (401, "missing_api_key"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Bearer")
    );
    let (status, body) = api
        .get("/v1/accounts/ref-alice/balance", Some("pk_not_a_key"))
        .await;
    assert_eq!((status, code(&body)), (401, "invalid_api_key"));
}

#[tokio::test]
async fn a_revoked_key_is_refused() {
    let api = Api::start().await;
    let (id, key) = api
        .env
        .store
        .create_api_key("ops", Scope::Operator, None)
        .await
        .unwrap();
    assert_eq!(
        api.get("/v1/accounts/ref-alice/balance", Some(&key))
            .await
            .0,
        200
    );
    assert!(api.env.store.revoke_api_key(&id).await.unwrap());
    assert!(
        !api.env.store.revoke_api_key(&id).await.unwrap(),
        "revoked once"
    );
    let (status, body) = api.get("/v1/accounts/ref-alice/balance", Some(&key)).await;
    assert_eq!((status, code(&body)), (401, "invalid_api_key"));
}

#[tokio::test]
async fn scopes_decide_whose_balance_a_key_reads() {
    let api = Api::start().await;
    let operator = api.key(Scope::Operator, None).await;
    let (status, body) = api
        .get("/v1/accounts/ref-alice/balance", Some(&operator))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["account"], "ref-alice");
    assert_eq!(body["programs"][0]["program"], "vast");

    // A referrer key reads its own account; another account looks like no account at all.
    let alice = api.key(Scope::Referrer, Some("ref-alice")).await;
    assert_eq!(
        api.get("/v1/accounts/ref-alice/balance", Some(&alice))
            .await
            .0,
        200
    );
    let (status, body) = api.get("/v1/accounts/ref-dave/balance", Some(&alice)).await;
    assert_eq!((status, code(&body)), (404, "unknown_account"));

    // The ingest feed reads no balances.
    let ingest = api.key(Scope::Ingest, None).await;
    let (status, body) = api
        .get("/v1/accounts/ref-alice/balance", Some(&ingest))
        .await;
    assert_eq!((status, code(&body)), (403, "forbidden"));

    // Bad and unknown ids are 4xx with their reason, never a 500.
    let (status, body) = api
        .get("/v1/accounts/not%20an%20id/balance", Some(&operator))
        .await;
    assert_eq!((status, code(&body)), (400, "invalid_account_id"));
    let (status, body) = api
        .get("/v1/accounts/ref-nobody/balance", Some(&operator))
        .await;
    assert_eq!((status, code(&body)), (404, "unknown_account"));
}

#[tokio::test]
async fn a_payout_is_visible_to_its_referrer_and_operators_only() {
    let api = Api::start().await;
    let created = api
        .env
        .withdraw("ref-alice", usd("10"), "http-1")
        .await
        .unwrap();
    let path = format!("/v1/payouts/{}", created.payout.id);

    let alice = api.key(Scope::Referrer, Some("ref-alice")).await;
    let (status, body) = api.get(&path, Some(&alice)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["payout"]["status"], "queued");
    assert_eq!(body["payout"]["amount"]["amount"], "10");
    assert!(!body["events"].as_array().unwrap().is_empty());

    let dave = api.key(Scope::Referrer, Some("ref-dave")).await;
    let (status, body) = api.get(&path, Some(&dave)).await;
    assert_eq!((status, code(&body)), (404, "unknown_payout"));

    let finance = api.key(Scope::Finance, None).await;
    assert_eq!(api.get(&path, Some(&finance)).await.0, 200);
    let (status, body) = api.get("/v1/payouts/po_missing", Some(&finance)).await;
    assert_eq!((status, code(&body)), (404, "unknown_payout"));
}

#[tokio::test]
async fn statements_and_past_balances_are_served_to_whoever_may_read_the_account() {
    let api = Api::start().await;
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let statement = format!("/v1/accounts/ref-alice/statements/{month}");
    let alice = api.key(Scope::Referrer, Some("ref-alice")).await;
    let (status, body) = api.get(&statement, Some(&alice)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["month"], month.as_str());
    // The month closes at what is owed now.
    let vast = &body["programs"][0];
    assert_eq!(vast["program"], "vast");
    let (_, balance) = api
        .get("/v1/accounts/ref-alice/balance", Some(&alice))
        .await;
    assert_eq!(
        vast["closing"], balance["programs"][0]["cashable"],
        "{body}"
    );

    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y-%m-%d");
    let (status, past) = api
        .get(
            &format!("/v1/accounts/ref-alice/balance-at?at={tomorrow}"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{past}");
    assert_eq!(past["programs"][0]["cashable"], vast["closing"]);

    let finance = api.key(Scope::Finance, None).await;
    assert_eq!(api.get(&statement, Some(&finance)).await.0, 200);
    let dave = api.key(Scope::Referrer, Some("ref-dave")).await;
    // Another referrer learns nothing, not even that the account exists.
    let (status, body) = api.get(&statement, Some(&dave)).await;
    assert_eq!((status, code(&body)), (404, "unknown_account"));
    let (status, body) = api
        .get("/v1/accounts/ref-alice/statements/2026-13", Some(&alice))
        .await;
    assert_eq!((status, code(&body)), (422, "invalid_month"));
    let (status, body) = api
        .get("/v1/accounts/ref-alice/balance-at?at=soon", Some(&alice))
        .await;
    assert_eq!((status, code(&body)), (422, "invalid_instant"));
}
