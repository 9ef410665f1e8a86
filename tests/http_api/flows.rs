//! The service's flows driven over HTTP: ingest with per-record results, payout methods with
//! the cooling-off hold, affiliate opt-in, payout runs, and a withdrawal racing a run.

use payouts::domain::api_key::Scope;
use serde_json::{Value, json};

use super::{Api, code, withdrawal};

fn account(id: &str) -> Value {
    json!({"type": "account", "id": id, "created_at": "2025-07-01T00:00:00Z",
           "email": format!("{id}@example.com"), "payment_fingerprint": format!("fp-{id}")})
}

#[tokio::test]
async fn ingest_answers_per_record_and_is_idempotent_by_record_id() {
    let api = Api::start().await;
    let feed = api.key(Scope::Ingest, None).await;
    let batch = json!({"records": [
        account("u-zed"),
        {"type": "usage", "id": "zed-1", "account": "u-zed", "at": "2026-03-01T00:00:00Z",
         "category": "instance", "amount": 12.5, "currency": "USD"},
        {"type": "usage", "id": "zed-2", "account": "u-zed", "at": "2026-03-01T00:00:00Z",
         "category": "instance", "amount": "12.50", "currency": "USD"},
        {"type": "refund", "id": "rf-x", "usage_id": "no-such-usage", "amount": "1"},
        {"type": "gift", "id": "g"},
    ]});
    let a = api.post("/v1/ingest", &feed, &batch).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        (a.body["accepted"].as_u64(), a.body["rejected"].as_u64()),
        (Some(2), Some(3)),
        "{}",
        a.body["results"]
    );
    let results = a.body["results"].as_array().unwrap();
    let statuses: Vec<&str> = results
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["accepted", "rejected", "accepted", "rejected", "rejected"]
    );
    assert!(
        results[1]["error"]
            .as_str()
            .unwrap()
            .contains("decimal strings")
    );
    assert!(
        results[3]["error"]
            .as_str()
            .unwrap()
            .contains("no-such-usage"),
        "{}",
        results[3]
    );
    assert!(
        results[4]["error"]
            .as_str()
            .unwrap()
            .contains("unknown variant")
    );
    assert_eq!(a.body["report"]["by_type"]["usage"]["inserted"], 1);

    // The same records again change nothing.
    let again = api.post("/v1/ingest", &feed, &batch).await;
    assert_eq!(again.body["report"]["by_type"]["usage"]["unchanged"], 1);
    assert_eq!(again.body["report"]["by_type"]["account"]["unchanged"], 1);

    // Strict: one bad record and nothing is written.
    let strict = json!({"strict": true, "records": [account("u-yan"), {"type": "link", "a": "u-yan", "b": "u-yan"}]});
    let a = api.post("/v1/ingest", &feed, &strict).await;
    assert_eq!(a.body["rolled_back"], true, "{}", a.body);
    assert_eq!(a.body["results"][0]["status"], "rolled_back");
    assert_eq!(a.body["accepted"], 0);
    let ops = api.key(Scope::Operator, None).await;
    let (status, _) = api.get("/v1/accounts/u-yan/balance", Some(&ops)).await;
    assert_eq!(status, 404, "the strict batch wrote nothing");

    // Too many records, and keys that may not feed.
    let many: Vec<Value> = (0..10_001).map(|i| account(&format!("m{i}"))).collect();
    let a = api
        .post("/v1/ingest", &feed, &json!({"records": many}))
        .await;
    assert_eq!((a.status, code(&a.body)), (413, "too_many_records"));
    let alice = api.key(Scope::Referrer, Some("ref-alice")).await;
    let a = api.post("/v1/ingest", &alice, &batch).await;
    assert_eq!((a.status, code(&a.body)), (403, "forbidden"));
}

#[tokio::test]
async fn a_changed_payout_method_holds_new_payouts_for_the_cooling_off() {
    let api = Api::start().await;
    let alice = api.key(Scope::Referrer, Some("ref-alice")).await;
    let ops = api.key(Scope::Operator, None).await;

    let (status, body) = api
        .get("/v1/accounts/ref-alice/payout-methods", Some(&alice))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["methods"][0]["destination"], "acct_1Alice");
    assert_eq!(
        body["methods"][0]["held_until"],
        Value::Null,
        "a first method is not held"
    );

    // Turning automatic payouts on changes no destination: no hold.
    let a = api
        .put(
            "/v1/accounts/ref-alice/payout-methods/stripe",
            &alice,
            &json!({"destination": "acct_1Alice", "auto_payout": true}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        (a.body["auto_payout"].as_bool(), &a.body["held_until"]),
        (Some(true), &Value::Null)
    );

    // A new destination is held for the cooling-off (72 h by default).
    let a = api
        .put(
            "/v1/accounts/ref-alice/payout-methods/stripe",
            &alice,
            &json!({"destination": "acct_1Thief", "auto_payout": true}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let held: chrono::DateTime<chrono::Utc> =
        a.body["held_until"].as_str().unwrap().parse().unwrap();
    let hours = (held - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((71.9..=72.0).contains(&hours), "{hours}");

    // A run skips the payee; a withdrawal is accepted and waits, saying why.
    let run = api
        .post(
            "/v1/runs",
            &ops,
            &json!({"period": "cool-1", "dry_run": true}),
        )
        .await;
    assert_eq!(run.body["skipped"]["method_cooling_off"], 1, "{}", run.body);
    let w = api
        .withdraw("ref-alice", &alice, "cool-w", &withdrawal("5.00"))
        .await;
    assert_eq!(w.status, 201, "{}", w.body);
    assert_eq!(w.body["status"], "queued");
    let next: chrono::DateTime<chrono::Utc> =
        w.body["next_step_at"].as_str().unwrap().parse().unwrap();
    assert!((next - held).num_seconds().abs() <= 1, "{next} vs {held}");
    let id = w.body["id"].as_str().unwrap();
    let (_, detail) = api.get(&format!("/v1/payouts/{id}"), Some(&alice)).await;
    let reason = detail["status_reason"].as_str().unwrap();
    assert!(reason.contains("cooling-off hold until"), "{reason}");
    // The worker leaves it alone until then.
    let claim = api
        .env
        .store
        .claim(
            &payouts::domain::ids::PayoutId::parse(id).unwrap(),
            "w",
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert!(
        matches!(claim, payouts::storage::Claim::NotDue { .. }),
        "{claim:?}"
    );

    // A method added beside an existing one is held too; another account's is not.
    let a = api
        .put(
            "/v1/accounts/ref-alice/payout-methods/paypal",
            &ops,
            &json!({"destination": "alice@example.com"}),
        )
        .await;
    assert!(a.body["held_until"].is_string(), "{}", a.body);
    let (_, dave) = api
        .get("/v1/accounts/ref-dave/payout-methods", Some(&ops))
        .await;
    assert_eq!(dave["methods"][0]["held_until"], Value::Null);
}

#[tokio::test]
async fn affiliate_opt_in_over_http() {
    let api = Api::start().await;
    let feed = api.key(Scope::Ingest, None).await;
    let mut records = vec![account("rp-ref")];
    for i in 0..25 {
        let id = format!("rp-{i:02}");
        records.push(account(&id));
        records.push(
            json!({"type": "referral", "program": "runpod", "referrer": "rp-ref",
                            "referred": id, "at": "2025-07-01T00:00:00Z"}),
        );
        records.push(json!({"type": "usage", "id": format!("{id}-pod"), "account": id,
                            "at": "2025-07-10T00:00:00Z", "category": "pod", "amount": "20", "currency": "USD"}));
    }
    let a = api
        .post("/v1/ingest", &feed, &json!({"records": records}))
        .await;
    assert_eq!(a.body["rejected"], 0, "{}", a.body);

    let me = api.key(Scope::Referrer, Some("rp-ref")).await;
    let path = "/v1/accounts/rp-ref/affiliate-opt-ins";
    let a = api.post(path, &me, &json!({"program": "vast"})).await;
    assert_eq!((a.status, code(&a.body)), (422, "not_affiliate_program"));
    let a = api
        .post(path, &me, &json!({"program": "runpod-affiliate"}))
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["paying_referrals"], 25);
    let a = api
        .post(path, &me, &json!({"program": "runpod-affiliate"}))
        .await;
    assert_eq!((a.status, code(&a.body)), (409, "already_opted_in"));
    let a = api
        .post(
            "/v1/accounts/ref-alice/affiliate-opt-ins",
            &me,
            &json!({"program": "runpod-affiliate"}),
        )
        .await;
    assert_eq!((a.status, code(&a.body)), (404, "unknown_account"));
}

#[tokio::test]
async fn runs_start_once_per_period_and_report_to_operators_and_finance() {
    let api = Api::start().await;
    let ops = api.key(Scope::Operator, None).await;
    let finance = api.key(Scope::Finance, None).await;
    let alice = api.key(Scope::Referrer, Some("ref-alice")).await;
    let a = api
        .put(
            "/v1/accounts/ref-alice/payout-methods/stripe",
            &ops,
            &json!({"destination": "acct_1Alice", "auto_payout": true}),
        )
        .await;
    assert_eq!(a.status, 200);

    let dry = api
        .post(
            "/v1/runs",
            &ops,
            &json!({"period": "2026-11-20", "dry_run": true}),
        )
        .await;
    assert_eq!(
        (dry.status, dry.body["dry_run"].as_bool()),
        (200, Some(true)),
        "{}",
        dry.body
    );
    assert_eq!(dry.body["eligible"], 1);
    assert_eq!(dry.body["created"], 0);
    let (status, body) = api.get("/v1/runs/2026-11-20", Some(&finance)).await;
    assert_eq!((status, code(&body)), (404, "unknown_run"));

    let run = api
        .post("/v1/runs", &ops, &json!({"period": "2026-11-20"}))
        .await;
    assert_eq!(run.status, 201, "{}", run.body);
    assert_eq!(run.body["created"], 1);
    assert_eq!(run.body["totals"][0]["amount"]["amount"], "36.68");
    let again = api
        .post("/v1/runs", &ops, &json!({"period": "2026-11-20"}))
        .await;
    assert_eq!(
        (again.status, again.body["already_ran"].as_bool()),
        (200, Some(true))
    );

    let (status, report) = api.get("/v1/runs/2026-11-20", Some(&finance)).await;
    assert_eq!(status, 200);
    assert_eq!(report["created"], 1);
    let a = api.post("/v1/runs", &finance, &json!({})).await;
    assert_eq!((a.status, code(&a.body)), (403, "forbidden"));
    assert_eq!(api.get("/v1/runs/2026-11-20", Some(&alice)).await.0, 403);
    let a = api
        .post("/v1/runs", &ops, &json!({"period": "bad period"}))
        .await;
    assert_eq!((a.status, code(&a.body)), (400, "invalid_period"));
}

#[tokio::test]
async fn a_withdrawal_racing_a_scheduled_run_cannot_take_the_money_twice() {
    for round in 0..3 {
        let api = Api::start().await;
        let ops = api.key(Scope::Operator, None).await;
        let alice = api.key(Scope::Referrer, Some("ref-alice")).await;
        api.put(
            "/v1/accounts/ref-alice/payout-methods/stripe",
            &ops,
            &json!({"destination": "acct_1Alice", "auto_payout": true}),
        )
        .await;
        let (_, before) = api
            .get("/v1/accounts/ref-alice/balance", Some(&alice))
            .await;
        let payable = before["programs"][0]["payable_now"]["amount"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(payable, "36.68");

        let period = format!("race-{round}");
        let (run_body, withdrawal_body) = (json!({"period": period}), withdrawal(&payable));
        let (run, withdrawal) = tokio::join!(
            api.post("/v1/runs", &ops, &run_body),
            api.withdraw("ref-alice", &alice, "race", &withdrawal_body),
        );
        assert_eq!(run.status, 201, "{}", run.body);
        let by_run = run.body["created"].as_u64().unwrap();
        match withdrawal.status {
            201 => assert_eq!(by_run, 0, "the run paid alice too: {}", run.body),
            422 => {
                // Taken by the run: less than asked, or nothing at all, is left.
                let refused = code(&withdrawal.body);
                assert!(
                    matches!(refused, "insufficient_funds" | "not_eligible"),
                    "{}",
                    withdrawal.body
                );
                assert_eq!(by_run, 1);
            }
            other => panic!("{other}: {}", withdrawal.body),
        }
        let (_, after) = api
            .get("/v1/accounts/ref-alice/balance", Some(&alice))
            .await;
        assert_eq!(
            after["programs"][0]["pending"]["amount"],
            payable.as_str(),
            "held once"
        );
        let (_, page) = api
            .get("/v1/accounts/ref-alice/payouts", Some(&alice))
            .await;
        assert_eq!(page["payouts"].as_array().unwrap().len(), 1, "{page}");
        api.env.assert_ledger_sound().await;
    }
}
