//! The /v1 API over real HTTP: the server's router on an ephemeral loopback port against a
//! fresh database, keys created as `payouts keys create` does, every answer checked.

mod common;

use std::sync::Arc;

use common::{TestEnv, usd};
use payouts::domain::api_key::Scope;
use payouts::domain::ids::AccountId;
use payouts::http::WebhookState;
use payouts::providers::rail::Rails;
use payouts::providers::stripe::mock::Faults;
use serde_json::Value;

struct Api {
    env: TestEnv,
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn start() -> Api {
        let env = TestEnv::new(Faults::default()).await;
        env.ingest(common::DEMO).await;
        let state = WebhookState {
            store: env.store.clone(),
            rails: Rails::default(),
            stripe_secrets: Arc::new(Vec::new()),
            paypal: None,
            wise: None,
            partnerstack: None,
            partnerstack_token: None,
            watch_for: None,
        };
        let base = common::serve_webhooks(state)
            .await
            .trim_end_matches("/webhooks")
            .to_string();
        Api {
            env,
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn key(&self, scope: Scope, account: Option<&str>) -> String {
        let account = account.map(|a| AccountId::parse(a).unwrap());
        self.env
            .store
            .create_api_key("test", scope, account.as_ref())
            .await
            .unwrap()
            .1
    }

    /// GET `path` with `key`: (status, body).
    async fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

fn code(body: &Value) -> &str {
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
