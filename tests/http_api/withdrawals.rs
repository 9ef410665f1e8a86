//! Withdrawals over HTTP: creation, the Idempotency-Key contract, reading one with its
//! history, and an account's payouts a page at a time.

use std::collections::HashSet;

use payouts::domain::api_key::Scope;
use serde_json::json;

use super::{Api, code, common, usd, withdrawal};

#[tokio::test]
async fn a_withdrawal_is_created_once_and_replayed_for_the_same_key_and_body() {
    let api = Api::start().await;
    let alice = api.key(Scope::Referrer, Some("ref-alice")).await;

    let first = api
        .withdraw("ref-alice", &alice, "w-1", &withdrawal("10.00"))
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.body["status"], "queued");
    assert_eq!(
        first.body["amount"],
        json!({"amount": "10", "currency": "USD"})
    );
    assert_eq!(first.body["destination"], "acct_1Alice");
    assert!(first.headers.get("idempotent-replayed").is_none());

    // "10" and "10.00" are the same request.
    let again = api
        .withdraw("ref-alice", &alice, "w-1", &withdrawal("10"))
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body, "the same response");
    assert_eq!(again.headers["idempotent-replayed"], "true");

    let other = api
        .withdraw("ref-alice", &alice, "w-1", &withdrawal("11.00"))
        .await;
    assert_eq!(
        (other.status, code(&other.body)),
        (422, "idempotency_key_reused")
    );

    let id = first.body["id"].as_str().unwrap();
    let payouts = common_count(&api, id).await;
    assert_eq!(payouts, 1, "one payout for one key");

    // The payout reads with its history and the reason for its state.
    let (status, detail) = api.get(&format!("/v1/payouts/{id}"), Some(&alice)).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["payout"]["id"], id);
    let reason = detail["status_reason"].as_str().unwrap();
    assert!(reason.contains("withdrawal of 10.00 USD"), "{reason}");
    assert_eq!(detail["events"][0]["to"], "queued");
}

async fn common_count(api: &Api, id: &str) -> i64 {
    let account = api.env.store.payout(id).await.unwrap().payout.account;
    api.env
        .store
        .list_payouts(Some(&account))
        .await
        .unwrap()
        .len() as i64
}

#[tokio::test]
async fn concurrent_repeats_of_a_key_make_one_payout_and_all_get_its_answer() {
    let api = Api::start().await;
    let alice = api.key(Scope::Referrer, Some("ref-alice")).await;

    // Eight identical requests at once: the claim, the payout and the answer commit together,
    // so the other seven wait for that commit and replay it. One payout, eight 201s.
    let body = withdrawal("5.00");
    let answers = futures::future::join_all(
        (0..8).map(|_| api.withdraw("ref-alice", &alice, "race-1", &body)),
    )
    .await;
    let mut bodies = HashSet::new();
    let mut fresh = 0;
    for a in &answers {
        assert_eq!(a.status, 201, "{}", a.body);
        bodies.insert(a.body.to_string());
        if a.headers.get("idempotent-replayed").is_none() {
            fresh += 1;
        }
    }
    assert_eq!(bodies.len(), 1, "every 201 is the same payout");
    assert_eq!(fresh, 1, "one answer is the first, seven are replays");
    let account = payouts::domain::ids::AccountId::parse("ref-alice").unwrap();
    let payouts = api.env.store.list_payouts(Some(&account)).await.unwrap();
    assert_eq!(payouts.len(), 1, "{payouts:#?}");
}

#[tokio::test]
async fn concurrent_withdrawals_each_get_their_own_answer() {
    // Sent at once, so that on SQLite they share group commits: a refusal, an unknown
    // account or a reused key among them changes nothing for the others.
    let api = Api::start().await;
    let ops = api.key(Scope::Operator, None).await;
    let sends = [
        ("ref-alice", "mix-1", "1.00"),
        ("ref-alice", "mix-2", "1.00"),
        ("ref-alice", "mix-1", "1.00"),
        ("ref-alice", "mix-3", "5000.00"),
        ("ref-nobody", "mix-4", "1.00"),
        ("ref-alice", "mix-2", "2.00"),
    ];
    let bodies: Vec<_> = sends
        .iter()
        .map(|(_, _, amount)| withdrawal(amount))
        .collect();
    let answers = futures::future::join_all(
        sends
            .iter()
            .zip(&bodies)
            .map(|((account, key, _), body)| api.withdraw(account, &ops, key, body)),
    )
    .await;
    let answer = |i: usize| (answers[i].status, answers[i].body.clone());
    assert_eq!(answer(0).0, 201, "{}", answers[0].body);
    assert_eq!(answer(2), answer(0), "one key, one payout");
    assert_eq!(
        (answer(3).0, code(&answers[3].body)),
        (422, "insufficient_funds")
    );
    assert_eq!(
        (answer(4).0, code(&answers[4].body)),
        (404, "unknown_account")
    );
    // Whichever of the two bodies under mix-2 came first made the payout.
    let mut mix_2 = [answers[1].status, answers[5].status];
    mix_2.sort();
    assert_eq!(
        mix_2,
        [201, 422],
        "{} / {}",
        answers[1].body,
        answers[5].body
    );
    let reused = if answers[1].status == 422 {
        &answers[1]
    } else {
        &answers[5]
    };
    assert_eq!(code(&reused.body), "idempotency_key_reused");

    let account = payouts::domain::ids::AccountId::parse("ref-alice").unwrap();
    let payouts = api.env.store.list_payouts(Some(&account)).await.unwrap();
    assert_eq!(payouts.len(), 2, "mix-1 and mix-2: {payouts:#?}");
}

#[tokio::test]
async fn a_withdrawal_that_fails_on_storage_is_undone_alone_and_a_retry_makes_it() {
    let api = Api::start().await;
    let ops = api.key(Scope::Operator, None).await;
    // Storage refuses ref-mo's payout row (a failure of ours, not a refusal by the rules).
    let (install, remove): (&[&str], &str) = match common::backend() {
        payouts::storage::BackendKind::Sqlite => (
            &[
                "CREATE TRIGGER refuse_mo BEFORE INSERT ON payouts WHEN NEW.account_id = 'ref-mo' \
               BEGIN SELECT RAISE(ABORT, 'injected'); END",
            ],
            "DROP TRIGGER refuse_mo",
        ),
        payouts::storage::BackendKind::Postgres => (
            &[
                "CREATE FUNCTION refuse_mo() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN IF NEW.account_id = 'ref-mo' THEN RAISE EXCEPTION 'injected'; END IF; \
                 RETURN NEW; END $$",
                "CREATE TRIGGER refuse_mo BEFORE INSERT ON payouts \
                 FOR EACH ROW EXECUTE FUNCTION refuse_mo()",
            ],
            "DROP TRIGGER refuse_mo ON payouts",
        ),
    };
    for statement in install {
        common::execute(&api.env.store, statement).await;
    }
    let body = withdrawal("1.00");
    let (mo, alice) = futures::join!(
        api.withdraw("ref-mo", &ops, "fail-1", &body),
        api.withdraw("ref-alice", &ops, "ok-1", &body)
    );
    assert_eq!(
        (mo.status, code(&mo.body)),
        (500, "internal"),
        "{}",
        mo.body
    );
    assert_eq!(alice.status, 201, "{}", alice.body);
    let mo_id = payouts::domain::ids::AccountId::parse("ref-mo").unwrap();
    let store = &api.env.store;
    assert!(store.list_payouts(Some(&mo_id)).await.unwrap().is_empty());

    // Nothing of the failed one was kept, its key included: the retry does the work.
    common::execute(store, remove).await;
    let retry = api.withdraw("ref-mo", &ops, "fail-1", &body).await;
    assert_eq!(retry.status, 201, "{}", retry.body);
    assert!(retry.headers.get("idempotent-replayed").is_none());
    assert_eq!(store.list_payouts(Some(&mo_id)).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_claim_left_by_an_earlier_release_gets_409_until_stale() {
    let api = Api::start().await;
    let alice = api.key(Scope::Referrer, Some("ref-alice")).await;
    let request = payouts::storage::WithdrawalRequest {
        account: payouts::domain::ids::AccountId::parse("ref-alice").unwrap(),
        program: common::vast(),
        rail: payouts::domain::ids::Rail::Stripe,
        amount: usd("5.00"),
        idempotency_key: payouts::domain::ids::IdempotencyKey::parse("busy-1").unwrap(),
    };
    let hash = payouts::http::api::withdrawals::request_hash(&request);
    // Earlier releases committed a claim before the work and its answer after it.
    let claim = |key: &str, started_at: i64| {
        format!(
            "INSERT INTO api_idempotency (scope, idempotency_key, request_hash, started_at) \
             VALUES ('withdrawal:ref-alice', '{key}', '{hash}', {started_at})"
        )
    };
    let now = chrono::Utc::now().timestamp_millis();
    common::execute(&api.env.store, &claim("busy-1", now)).await;
    let busy = api
        .withdraw("ref-alice", &alice, "busy-1", &withdrawal("5.00"))
        .await;
    assert_eq!(
        (busy.status, code(&busy.body)),
        (409, "idempotency_key_in_use")
    );
    assert_eq!(busy.headers["retry-after"], "1");
    let other = api
        .withdraw("ref-alice", &alice, "busy-1", &withdrawal("6.00"))
        .await;
    assert_eq!(
        (other.status, code(&other.body)),
        (422, "idempotency_key_reused")
    );

    // A claim older than the stale limit (60 s here) belongs to a request that died: taken
    // over, and the withdrawal made once.
    common::execute(&api.env.store, &claim("dead-1", now - 61_000)).await;
    let taken = api
        .withdraw("ref-alice", &alice, "dead-1", &withdrawal("5.00"))
        .await;
    assert_eq!(taken.status, 201, "{}", taken.body);
    let again = api
        .withdraw("ref-alice", &alice, "dead-1", &withdrawal("5.00"))
        .await;
    assert_eq!(again.body, taken.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
}

#[tokio::test]
async fn refusals_are_stored_and_replayed_too_and_say_why() {
    let api = Api::start().await;
    let ops = api.key(Scope::Operator, None).await;
    let too_much = api
        .withdraw("ref-alice", &ops, "big-1", &withdrawal("5000.00"))
        .await;
    assert_eq!(
        (too_much.status, code(&too_much.body)),
        (422, "insufficient_funds")
    );
    let again = api
        .withdraw("ref-alice", &ops, "big-1", &withdrawal("5000.00"))
        .await;
    assert_eq!(again.body, too_much.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");

    let paypal = json!({"program": "vast", "rail": "paypal", "amount": "1.00", "currency": "USD"});
    let a = api.withdraw("ref-alice", &ops, "pp-1", &paypal).await;
    assert_eq!(
        (a.status, code(&a.body)),
        (422, "no_payout_method"),
        "{}",
        a.body
    );
    let a = api
        .withdraw("ref-nobody", &ops, "n-1", &withdrawal("1.00"))
        .await;
    assert_eq!((a.status, code(&a.body)), (404, "unknown_account"));
    let a = api
        .withdraw(
            "ref-alice",
            &ops,
            "eur-1",
            &json!({"program": "vast", "rail": "stripe", "amount": "1.00", "currency": "EUR"}),
        )
        .await;
    assert_eq!((a.status, code(&a.body)), (422, "no_balance"));

    // No key header: nothing happens without one.
    let a = api
        .send(
            reqwest::Method::POST,
            "/v1/accounts/ref-alice/withdrawals",
            &ops,
            &[],
            &withdrawal("1.00"),
        )
        .await;
    assert_eq!((a.status, code(&a.body)), (400, "missing_idempotency_key"));
    let a = api
        .withdraw("ref-alice", &ops, "bad key!", &withdrawal("1.00"))
        .await;
    assert_eq!((a.status, code(&a.body)), (400, "invalid_idempotency_key"));
}

#[tokio::test]
async fn keys_withdraw_only_for_their_own_account() {
    let api = Api::start().await;
    let alice = api.key(Scope::Referrer, Some("ref-alice")).await;
    let a = api
        .withdraw("ref-dave", &alice, "x-1", &withdrawal("1.00"))
        .await;
    assert_eq!((a.status, code(&a.body)), (404, "unknown_account"));
    let finance = api.key(Scope::Finance, None).await;
    let a = api
        .withdraw("ref-dave", &finance, "x-2", &withdrawal("1.00"))
        .await;
    assert_eq!((a.status, code(&a.body)), (403, "forbidden"));
    let (_, balance) = api
        .get("/v1/accounts/ref-dave/balance", Some(&finance))
        .await;
    assert_eq!(
        balance["programs"][0]["pending"]["amount"], "0",
        "nothing held"
    );
}

#[tokio::test]
async fn an_accounts_payouts_come_newest_first_a_page_at_a_time() {
    let api = Api::start().await;
    let alice = api.key(Scope::Referrer, Some("ref-alice")).await;
    let mut created = Vec::new();
    for i in 0..5 {
        let a = api
            .withdraw("ref-alice", &alice, &format!("p-{i}"), &withdrawal("1.00"))
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
        created.push(a.body["id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut path = "/v1/accounts/ref-alice/payouts?limit=2".to_string();
    let mut pages = 0;
    loop {
        let (status, page) = api.get(&path, Some(&alice)).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for p in page["payouts"].as_array().unwrap() {
            seen.push(p["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!("/v1/accounts/ref-alice/payouts?limit=2&cursor={cursor}")
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    created.reverse();
    assert_eq!(seen, created, "newest first, each once");

    let (status, body) = api
        .get("/v1/accounts/ref-alice/payouts?limit=0", Some(&alice))
        .await;
    assert_eq!((status, code(&body)), (400, "invalid_limit"));
    let (status, body) = api
        .get("/v1/accounts/ref-alice/payouts?cursor=forged", Some(&alice))
        .await;
    assert_eq!((status, code(&body)), (422, "invalid_cursor"));
    let (status, body) = api
        .get("/v1/accounts/ref-alice/payouts?page=2", Some(&alice))
        .await;
    assert_eq!((status, code(&body)), (400, "invalid_query"));
    let (status, body) = api.get("/v1/accounts/ref-dave/payouts", Some(&alice)).await;
    assert_eq!((status, code(&body)), (404, "unknown_account"));
}
