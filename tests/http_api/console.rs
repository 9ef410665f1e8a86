//! The operator console in a real browser (headless Chromium driven through chromedriver):
//! an operator signs in with a key, finds a stranded payout on the attention list, retries it
//! once the fault is gone and sees it paid; referrer and unknown keys are refused at sign-in;
//! a finance key reads but cannot act (no forms, and a forged POST is refused); a POST
//! without its CSRF token is refused; the cookie is HttpOnly, SameSite=Strict and holds no
//! key. Needs the Debian packages chromium and chromium-driver (scripts/test installs them).

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use payouts::domain::api_key::Scope;
use payouts::domain::ids::PayoutId;
use payouts::domain::payout::{PayoutStatus, RetryPolicy};
use payouts::jobs::PayoutDeps;
use payouts::sim::stripe::Faults;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::Api;
use crate::common::{fast_policy, usd};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: tokio::process::Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Driver {
    async fn start() -> Driver {
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "the console's browser tests need {CHROMEDRIVER} and {CHROMIUM}: install the Debian \
             packages chromium and chromium-driver (apt-get install -y chromium chromium-driver; \
             scripts/test does this)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        // chromedriver says when it listens; read until it does (no guessing with sleeps).
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("started successfully") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(ready, Ok(true), "chromedriver did not start on port {port}");
        // Keep draining its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            }),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("connect to chromedriver")
    }
}

async fn css(c: &Client, selector: &str) -> fantoccini::elements::Element {
    let found = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(selector))
        .await;
    match found {
        Ok(element) => element,
        Err(e) => panic!(
            "no {selector} on {:?}: {e}\n{}",
            c.current_url().await,
            c.source().await.unwrap_or_default()
        ),
    }
}

/// Signs in through the form; the page that answers.
async fn sign_in(c: &Client, api: &Api, key: &str) {
    c.goto(&format!("{}/console", api.base)).await.unwrap();
    css(c, "#key").await.send_keys(key).await.unwrap();
    css(c, "#sign-in").await.click().await.unwrap();
}

fn strand_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 2,
        ..fast_policy()
    }
}

/// A payout whose every send answered 500 until its two attempts ran out, as
/// tests/engine/operator_actions.rs strands one; the fault is lifted afterwards.
async fn stranded(api: &Api) -> PayoutId {
    let env = &api.env;
    env.mock.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let id = env
        .withdraw("ref-mo", usd("7.50"), "console-1")
        .await
        .unwrap()
        .payout
        .id;
    env.work_until_idle(worker(api)).await;
    let status = env.store.payout(id.as_str()).await.unwrap().payout.status;
    assert_eq!(status, PayoutStatus::NeedsOperator);
    env.mock.set_faults(Faults::default());
    id
}

fn worker(api: &Api) -> Arc<PayoutDeps> {
    api.env.deps_with("sk_test_mock", strand_policy(), "w")
}

#[tokio::test]
async fn console_an_operator_retries_a_stranded_payout_to_paid() {
    let api = Api::start().await;
    let id = stranded(&api).await;
    let operator = api.key(Scope::Operator, None).await;
    let driver = Driver::start().await;
    let c = driver.browser().await;

    sign_in(&c, &api, &operator).await;
    css(&c, "#sign-out").await;
    css(&c, "a[href='/console/attention']")
        .await
        .click()
        .await
        .unwrap();
    let link = css(&c, &format!("a.payout[href='/console/payouts/{id}']")).await;
    assert_eq!(link.text().await.unwrap(), id.to_string());
    let group = css(&c, "section.attention h2").await.text().await.unwrap();
    assert!(group.contains("Needs an operator (1)"), "{group}");
    link.click().await.unwrap();
    assert_eq!(
        css(&c, "#status").await.text().await.unwrap(),
        "needs_operator"
    );

    let retry = css(&c, "form[data-action='retry']").await;
    let reason = retry
        .find(Locator::Css("input[name='reason']"))
        .await
        .unwrap();
    reason.send_keys("Stripe outage over").await.unwrap();
    retry
        .find(Locator::Css("button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let flash = css(&c, "#flash").await.text().await.unwrap();
    assert!(flash.starts_with("retry done"), "{flash}");

    api.env.work_until_idle(worker(&api)).await;
    c.refresh().await.unwrap();
    assert_eq!(css(&c, "#status").await.text().await.unwrap(), "paid");
    let history = css(&c, "#events").await.text().await.unwrap();
    assert!(history.contains("Stripe outage over"), "{history}");

    // The home page charts the payment and counts it.
    c.goto(&format!("{}/console", api.base)).await.unwrap();
    let bar = css(&c, "figure#paid-USD rect.bar title").await;
    let title = bar.prop("textContent").await.unwrap().unwrap_or_default();
    assert!(title.contains("stripe: 7.50 USD"), "{title}");
    c.close().await.unwrap();
}

/// A plain HTTP client that shows redirects rather than following them.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in over plain HTTP: (status, Set-Cookie).
async fn http_sign_in(api: &Api, key: &str) -> (u16, String) {
    let res = http()
        .post(format!("{}/console/login", api.base))
        .form(&[("key", key)])
        .send()
        .await
        .unwrap();
    let cookie = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (res.status().as_u16(), cookie)
}

/// GET `path` with the session cookie: (status, body).
async fn http_get(api: &Api, cookie: &str, path: &str) -> (u16, String) {
    let res = http()
        .get(format!("{}{path}", api.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn http_post(api: &Api, cookie: &str, path: &str, form: &[(&str, &str)]) -> u16 {
    http()
        .post(format!("{}{path}", api.base))
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The session's CSRF token, from any signed-in page.
fn csrf_of(page: &str) -> String {
    let re = regex::Regex::new(r#"name="csrf" value="([0-9a-f]+)""#).unwrap();
    re.captures(page).expect("a CSRF field")[1].to_string()
}

#[tokio::test]
async fn console_refuses_wrong_keys_finance_actions_and_forms_without_csrf() {
    let api = Api::start().await;
    let id = stranded(&api).await;
    let payout = format!("/console/payouts/{id}");
    let driver = Driver::start().await;
    let c = driver.browser().await;

    // Referrer and unknown keys never get a session.
    let referrer = api.key(Scope::Referrer, Some("ref-mo")).await;
    sign_in(&c, &api, &referrer).await;
    let error = css(&c, "#sign-in-error").await.text().await.unwrap();
    assert!(error.contains("scope referrer"), "{error}");
    sign_in(&c, &api, "pk_not_a_key").await;
    let error = css(&c, "#sign-in-error").await.text().await.unwrap();
    assert!(error.contains("not known"), "{error}");
    assert_eq!(http_sign_in(&api, &referrer).await.0, 403);
    assert_eq!(http_sign_in(&api, "pk_not_a_key").await.0, 401);
    let ingest = api.key(Scope::Ingest, None).await;
    assert_eq!(http_sign_in(&api, &ingest).await.0, 403);

    // Finance reads the payout but is offered no action.
    let finance = api.key(Scope::Finance, None).await;
    sign_in(&c, &api, &finance).await;
    css(&c, "#sign-out").await;
    c.goto(&format!("{}{payout}", api.base)).await.unwrap();
    assert_eq!(
        css(&c, "#status").await.text().await.unwrap(),
        "needs_operator"
    );
    assert!(
        c.find_all(Locator::Css("#actions"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        c.find_all(Locator::Css("form.act"))
            .await
            .unwrap()
            .is_empty()
    );
    c.close().await.unwrap();

    // The cookie: HttpOnly, SameSite=Strict, scoped to the console, and not the key.
    let (status, set_cookie) = http_sign_in(&api, &finance).await;
    assert_eq!(status, 303);
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set_cookie.contains(flag), "{set_cookie}");
    }
    assert!(!set_cookie.contains(&finance), "the key is in the cookie");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let (status, page) = http_get(&api, &cookie, &payout).await;
    assert_eq!(status, 200);
    assert!(!page.contains(&finance), "the key is on the page");
    let csrf = csrf_of(&page);

    // A forged retry with finance's own valid token is refused by scope; without a token,
    // refused before anything else.
    let retry = format!("{payout}/retry");
    let why = ("reason", "forged");
    assert_eq!(
        http_post(&api, &cookie, &retry, &[("csrf", &csrf), why]).await,
        403
    );
    assert_eq!(http_post(&api, &cookie, &retry, &[why]).await, 403);
    let (_, operator_cookie) = http_sign_in(&api, &api.key(Scope::Operator, None).await).await;
    let operator_cookie = operator_cookie.split(';').next().unwrap().to_string();
    assert_eq!(http_post(&api, &operator_cookie, &retry, &[why]).await, 403);
    assert_eq!(
        http_post(&api, &operator_cookie, &retry, &[("csrf", &csrf), why]).await,
        403,
        "another session's token"
    );
    let status = api
        .env
        .store
        .payout(id.as_str())
        .await
        .unwrap()
        .payout
        .status;
    assert_eq!(status, PayoutStatus::NeedsOperator, "nothing was done");

    // Revoking a key refuses it at sign-in and ends its open sessions.
    let (key_id, revoked) = api
        .env
        .store
        .create_api_key("gone", Scope::Operator, None)
        .await
        .unwrap();
    let (_, gone_cookie) = http_sign_in(&api, &revoked).await;
    let gone_cookie = gone_cookie.split(';').next().unwrap().to_string();
    assert_eq!(http_get(&api, &gone_cookie, "/console").await.0, 200);
    assert!(api.env.store.revoke_api_key(&key_id).await.unwrap());
    assert_eq!(http_sign_in(&api, &revoked).await.0, 401);
    assert_eq!(http_get(&api, &gone_cookie, "/console").await.0, 303);

    // No session: to the sign-in form; bad and unknown ids: HTML errors, not 500s.
    let (status, _) = http_get(&api, "", &payout).await;
    assert_eq!(status, 303);
    let (status, page) = http_get(&api, &cookie, "/console/payouts/not%20an%20id").await;
    assert_eq!(status, 400);
    assert!(page.contains("<html"), "{page}");
    let (status, _) = http_get(
        &api,
        &cookie,
        "/console/payouts/po_01JD0000000000000000000000",
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = http_get(&api, &cookie, "/console/payees/ref-nobody").await;
    assert_eq!(status, 404);
    for page in [
        "/console",
        "/console/attention",
        "/console/approvals",
        "/console/rails",
        "/console/reconciliation",
        "/console/payees/ref-mo",
    ] {
        assert_eq!(http_get(&api, &cookie, page).await.0, 200, "{page}");
    }
}

/// Signs an operator in over plain HTTP: the cookie to send back.
async fn operator_cookie(api: &Api) -> String {
    let key = api.key(Scope::Operator, None).await;
    let (status, set_cookie) = http_sign_in(api, &key).await;
    assert_eq!(status, 303);
    set_cookie.split(';').next().unwrap().to_string()
}

/// Posts an action form from `page` (with the session's token) and reads the page it
/// redirects to: (status of the POST, the page shown after it).
async fn act(
    api: &Api,
    cookie: &str,
    page: &str,
    action: &str,
    form: &[(&str, &str)],
) -> (u16, String) {
    let (_, shown) = http_get(api, cookie, page).await;
    let csrf = csrf_of(&shown);
    let mut fields = vec![("csrf", csrf.as_str())];
    fields.extend_from_slice(form);
    let status = http_post(api, cookie, &format!("{page}/{action}"), &fields).await;
    (status, http_get(api, cookie, page).await.1)
}

/// Every payout action the console offers goes through the domain's rules: refused while a
/// send may land, done (once) where safe; a duplicate payment is booked from its row; a rail
/// is paused and resumed.
#[tokio::test]
async fn console_forms_act_under_the_domains_rules() {
    let api = Api::start().await;
    let id = stranded(&api).await;
    let page = format!("/console/payouts/{id}");
    let cookie = operator_cookie(&api).await;
    let why = ("reason", "console test");

    // The last attempt answered 500: it may have landed, so cancel and mark-paid refuse.
    let (status, shown) = act(&api, &cookie, &page, "cancel", &[why]).await;
    assert_eq!(status, 303);
    assert!(
        shown.contains("cancel refused") && shown.contains("may still land"),
        "{shown}"
    );
    let reference = ("reference", "wire-1");
    let (_, shown) = act(&api, &cookie, &page, "mark-paid", &[why, reference]).await;
    assert!(shown.contains("mark-paid refused"), "{shown}");
    // A dispute needs a disputed payout; a part with kept is a bad form.
    let (_, shown) = act(
        &api,
        &cookie,
        &page,
        "resolve-dispute",
        &[why, ("outcome", "kept")],
    )
    .await;
    assert!(shown.contains("resolve-dispute refused"), "{shown}");
    let part = [why, ("outcome", "kept"), ("amount", "1.00")];
    assert_eq!(
        act(&api, &cookie, &page, "resolve-dispute", &part).await.0,
        400
    );
    // Retry proves first, then pays.
    let (_, shown) = act(&api, &cookie, &page, "retry", &[why]).await;
    assert!(shown.contains("retry done"), "{shown}");
    api.env.work_until_idle(worker(&api)).await;
    let paid = api.env.store.payout(id.as_str()).await.unwrap().payout;
    assert_eq!(paid.status, PayoutStatus::Paid);

    // A second transfer for the paid payout: listed on its page, booked from there once.
    let minor = paid.amount.to_minor_units().unwrap();
    let stray = api
        .env
        .mock
        .inject_transfer(id.as_str(), &paid.destination, minor, "usd");
    api.env
        .reconcile_today(vec![payouts::domain::ids::Rail::Stripe])
        .await;
    let (_, shown) = http_get(&api, &cookie, &page).await;
    assert!(
        shown.contains("Possible duplicate payments") && shown.contains(&stray),
        "{shown}"
    );
    let booking = [why, ("object", stray.as_str()), ("booking", "loss")];
    let (_, shown) = act(&api, &cookie, &page, "resolve-duplicate", &booking).await;
    assert!(shown.contains("resolve-duplicate done"), "{shown}");
    let (_, shown) = act(&api, &cookie, &page, "resolve-duplicate", &booking).await;
    assert!(
        shown.contains("already"),
        "asked twice, booked once: {shown}"
    );

    // A queued payout is cancelled where nothing can land.
    let queued = api
        .env
        .withdraw("ref-alice", usd("1.00"), "console-queued")
        .await
        .unwrap()
        .payout
        .id;
    let queued_page = format!("/console/payouts/{queued}");
    let (_, shown) = act(&api, &cookie, &queued_page, "cancel", &[why]).await;
    assert!(shown.contains("cancel done"), "{shown}");
    let status = api
        .env
        .store
        .payout(queued.as_str())
        .await
        .unwrap()
        .payout
        .status;
    assert_eq!(status, PayoutStatus::Failed);

    // A rail paused and resumed from its page.
    let rails = "/console/rails";
    let (_, shown) = http_get(&api, &cookie, rails).await;
    // The stranded payout's failed attempts show as the rail's recent error classes.
    assert!(
        shown.contains("retry: ") || shown.contains("unknown: "),
        "{shown}"
    );
    let csrf = csrf_of(&shown);
    let pause = [("csrf", csrf.as_str()), ("reason", "incident 7")];
    assert_eq!(
        http_post(&api, &cookie, "/console/rails/stripe/pause", &pause).await,
        303
    );
    assert!(
        http_get(&api, &cookie, rails)
            .await
            .1
            .contains("incident 7")
    );
    let resume = [("csrf", csrf.as_str()), ("reason", "fixed")];
    assert_eq!(
        http_post(&api, &cookie, "/console/rails/stripe/resume", &resume).await,
        303
    );
    assert!(
        !http_get(&api, &cookie, rails)
            .await
            .1
            .contains("incident 7")
    );
    api.env.assert_ledger_sound().await;
}

/// A payout held for a missing W-9 (the gate on, a 1-dollar threshold): the home page lists
/// it, its page shows the rule and the evidence, approving is refused (the form releases it)
/// and rejecting with a clawback is done, on the record.
#[tokio::test]
async fn console_shows_held_payouts_and_decides_them() {
    let api = Api::start_w9_gated().await;
    let held = api.env.withdraw("ref-mo", usd("5.00"), "mo-held").await;
    let id = held.unwrap().payout.id;
    let cookie = operator_cookie(&api).await;
    let (_, home) = http_get(&api, &cookie, "/console/attention").await;
    assert!(
        home.contains("Held for review or a tax form") && home.contains(id.as_str()),
        "{home}"
    );
    let page = format!("/console/payouts/{id}");
    let (_, shown) = http_get(&api, &cookie, &page).await;
    assert!(
        shown.contains("Held for") && shown.contains("w9_missing"),
        "{shown}"
    );
    let why = ("reason", "console review");
    let (_, shown) = act(&api, &cookie, &page, "review-approve", &[why]).await;
    assert!(shown.contains("review-approve refused"), "{shown}");
    let clawback = ("clawback", "1");
    let (_, shown) = act(&api, &cookie, &page, "review-reject", &[why, clawback]).await;
    assert!(shown.contains("review-reject done"), "{shown}");
    let detail = api.env.store.payout(id.as_str()).await.unwrap();
    assert_eq!(detail.payout.status, PayoutStatus::Failed);
    assert_eq!(detail.flags[0].decision.as_deref(), Some("rejected"));
}
