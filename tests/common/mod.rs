//! Shared test harness: a fresh database (SQLite in a temp dir, or a new PostgreSQL database
//! when `PAYOUTS_TEST_BACKEND=postgres`), the mock Stripe on an ephemeral loopback port, and a
//! worker wired to both.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use payouts::domain::ids::{AccountId, IdempotencyKey, ProgramId, Rail};
use payouts::domain::money::{Currency, Money};
use payouts::domain::payout::{PayoutStatus, RetryPolicy};
use payouts::domain::program::ProgramSet;
use payouts::domain::program::config::PRESETS;
use payouts::domain::settle::SettleTiming;
use payouts::ingest::IngestReport;
use payouts::jobs::{PayoutDeps, WorkerOptions, run_worker};
use payouts::providers::rail::Rails;
use payouts::providers::stripe::{StripeAdapter, StripeConfig};
use payouts::sim::stripe::{Faults, MockConfig, MockStripe};
use payouts::storage::payout_views::{WithdrawError, WithdrawalOutcome, WithdrawalRequest};
use payouts::storage::{AccountBalance, BackendKind, Store};
use secrecy::SecretString;

pub const DEMO: &str = include_str!("../../fixtures/demo.ndjson");

/// The bonus seed tests use (a secret in production; fixed here so draws are reproducible).
pub const TEST_SEED: &str = "integration-test-seed-0001";

fn test_env(name: &str) -> Option<String> {
    (name == "RUNPOD_BONUS_SEED").then(|| TEST_SEED.to_string())
}

/// Both presets, as shipped.
pub fn programs() -> Arc<ProgramSet> {
    Arc::new(ProgramSet::load(&["vast".into(), "runpod".into()], &test_env).expect("presets load"))
}

/// Vast's terms with PartnerStack as a fourth rail, so the rail tests can pay one program's
/// referrers through all four rails (a platform may configure exactly that).
pub fn all_rails_programs() -> Arc<ProgramSet> {
    let vast = PRESETS[0].1.replace(
        r#"rails = ["stripe", "paypal", "wise"]"#,
        r#"rails = ["stripe", "paypal", "wise", "partnerstack"]"#,
    );
    assert_ne!(vast, PRESETS[0].1, "the vast preset's rails line moved");
    let set = ProgramSet::from_toml("vast with partnerstack", &vast, &test_env)
        .expect("vast variant")
        .merge(ProgramSet::from_toml("runpod", PRESETS[1].1, &test_env).expect("runpod"))
        .expect("merge");
    Arc::new(set)
}

pub fn vast() -> ProgramId {
    ProgramId::parse("vast").expect("id")
}

/// The backend the suite runs on: `PAYOUTS_TEST_BACKEND` = `sqlite` (default) or `postgres`.
/// The test script runs the whole suite once per backend.
pub fn backend() -> BackendKind {
    match std::env::var("PAYOUTS_TEST_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => BackendKind::Sqlite,
        Ok("postgres") => BackendKind::Postgres,
        Ok(other) => panic!("PAYOUTS_TEST_BACKEND={other:?}: use sqlite or postgres"),
    }
}

/// The PostgreSQL server tests create their databases on (`PAYOUTS_TEST_PG`, default the local
/// server with trust auth).
fn pg_server() -> String {
    std::env::var("PAYOUTS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
}

/// `--postgres SERVER` for the benchmark commands on the PostgreSQL pass, nothing on SQLite.
pub fn pg_bench_args() -> Vec<String> {
    match backend() {
        BackendKind::Sqlite => Vec::new(),
        BackendKind::Postgres => vec!["--postgres".into(), pg_server()],
    }
}

/// A fresh, empty database for one test: a file in a temp dir, or a new PostgreSQL database
/// that is dropped when the value is.
pub struct TestDb {
    /// What `DATABASE_URL` / `Store::open` take.
    pub url: String,
    pub dir: tempfile::TempDir,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn new() -> TestDb {
        Self::named("test").await
    }

    /// `name` is the SQLite file's name; on PostgreSQL it prefixes the database's.
    pub async fn named(name: &str) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend() {
            BackendKind::Sqlite => TestDb {
                url: dir.path().join(format!("{name}.db")).display().to_string(),
                dir,
                pg_name: None,
            },
            BackendKind::Postgres => {
                let db = format!(
                    "payouts_test_{}_{}",
                    name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
                    ulid::Ulid::generate().to_string().to_lowercase()
                );
                let server = pg_server();
                let mut admin = connect_admin(&server).await;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
                    .execute(&mut admin)
                    .await
                    .expect("create test database");
                TestDb {
                    url: format!("{server}/{db}"),
                    dir,
                    pg_name: Some(db),
                }
            }
        }
    }

    /// For synchronous tests (those that drive the binary).
    pub fn blocking(name: &str) -> TestDb {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(Self::named(name))
    }

    pub async fn open(&self, programs: Arc<ProgramSet>) -> Store {
        // Most suites onboard payees in several batches a moment apart, which a cooling-off
        // would hold; the HTTP suite turns it back on to test it.
        Store::open(&self.url.as_str().into(), programs)
            .await
            .expect("open store")
            .with_safeguards(payouts::domain::cooling_off::Safeguards {
                method_cooling_off: Duration::ZERO,
                four_eyes_above: None,
            })
    }
}

async fn connect_admin(server: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    match sqlx::PgConnection::connect(&format!("{server}/postgres")).await {
        Ok(c) => c,
        Err(e) => panic!(
            "PAYOUTS_TEST_BACKEND=postgres needs a PostgreSQL server at {server} (user postgres, \
             trust auth): {e}. Start one (e.g. `sudo service postgresql start` or \
             `pg_ctlcluster 15 main start`), or point PAYOUTS_TEST_PG at another server."
        ),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(db) = self.pg_name.take() else {
            return;
        };
        let server = pg_server();
        // Drop runs inside the test's runtime, so the cleanup gets a runtime of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut admin) =
                    sqlx::PgConnection::connect(&format!("{server}/postgres")).await
                {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                }
            });
        })
        .join();
    }
}

/// `SELECT COUNT(*)`-style queries that tests run against the tables directly.
pub async fn scalar(store: &Store, sql: &'static str) -> i64 {
    payouts::on_backend!(store, s => sqlx::query_scalar(sql).fetch_one(s.pool()).await)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Runs one statement against the tables directly (a state the API cannot produce itself).
pub async fn execute(store: &Store, sql: &str) {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    payouts::on_backend!(store, s => sqlx::query(sql).execute(s.pool()).await.map(|_| ()))
        .unwrap_or_else(|e| panic!("{e}"));
}

pub struct TestEnv {
    pub store: Store,
    pub mock: MockStripe,
    pub db: TestDb,
    /// What the adapter is told about the mock's timing.
    pub settle: SettleTiming,
}

/// Retry timing that keeps tests quick (the queue's run times are whole seconds).
pub fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 8,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(2),
        settle_delay: Duration::from_millis(500),
        poll_base: Duration::from_secs(1),
        poll_max: Duration::from_secs(2),
        ..RetryPolicy::default()
    }
}

impl TestEnv {
    pub async fn new(faults: Faults) -> TestEnv {
        let db = TestDb::new().await;
        let store = db.open(programs()).await;
        let settle = faults.settle_timing(payouts::providers::stripe::SETTLE, true);
        let mock = MockStripe::start(
            "127.0.0.1:0".parse().expect("addr"),
            MockConfig {
                faults,
                ..MockConfig::default()
            },
        )
        .await
        .expect("start mock");
        TestEnv {
            store,
            mock,
            db,
            settle,
        }
    }

    pub async fn ingest(&self, ndjson: &str) -> IngestReport {
        ingest_text(&self.store, ndjson, false).await
    }

    pub fn deps_with(&self, api_key: &str, policy: RetryPolicy, worker: &str) -> Arc<PayoutDeps> {
        Arc::new(PayoutDeps {
            store: self.store.clone(),
            rails: Rails::default().with(Arc::new(
                StripeAdapter::new(StripeConfig {
                    api_base: self.mock.base_url(),
                    secret_key: SecretString::from(api_key.to_string()),
                    timeout: Duration::from_secs(5),
                    list_lag: payouts::providers::stripe::SETTLE.list_lag,
                    webhook_secrets: vec![SecretString::from("whsec_mock")],
                })
                .expect("adapter")
                .with_settle_timing(self.settle),
            )),
            policy,
            lease_ttl: Duration::from_secs(10),
            worker_id: format!("{worker}-{}", ulid::Ulid::generate()),
        })
    }

    /// Reconciles today (UTC) on `rails` against the providers' APIs; every exception the
    /// run found, resolved or not.
    pub async fn reconcile_today(
        &self,
        rails: Vec<payouts::domain::ids::Rail>,
    ) -> Vec<payouts::domain::reconcile::Exception> {
        use payouts::domain::reconcile::{Period, Tolerances};
        use payouts::reconcile::{Quiet, ReconcileRequest, RecordsFrom, reconcile};
        let request = ReconcileRequest {
            period: Period::day(chrono::Utc::now().date_naive()),
            rails,
            from: RecordsFrom::Api,
            trigger: payouts::storage::Trigger::Cli,
            tolerances: Tolerances::default(),
            run_id: None,
        };
        let run = reconcile(&self.store, &self.deps().rails, &request, &Quiet)
            .await
            .expect("reconcile");
        self.store
            .recon_exceptions(&run.id, false)
            .await
            .expect("exceptions")
    }

    pub fn deps(&self) -> Arc<PayoutDeps> {
        self.deps_with("sk_test_mock", fast_policy(), "test-worker")
    }

    /// Serves Stripe-only webhook receivers for this environment and points the mock's
    /// deliveries at them; returns their base URL.
    pub async fn serve_stripe_webhooks(&self) -> String {
        let url = serve_webhooks(payouts::http::WebhookState {
            store: self.store.clone(),
            // The mock Stripe's adapter, which holds the endpoint secret "whsec_mock".
            rails: self.deps().rails.clone(),
            watch_for: None,
            verify_limit: payouts::http::webhooks::default_verify_limit(),
        })
        .await;
        self.mock.outbox().set_target(Some(format!("{url}/stripe")));
        url
    }

    /// Pays payout `id` through the worker, then has Stripe reverse its transfer and tell
    /// us by webhook; returns once the payout is returned (or panics after 15 s).
    pub async fn pay_then_reverse(&self, id: &str) {
        self.work_until_idle(self.deps()).await;
        let paid = self.store.payout(id).await.expect("payout").payout;
        assert_eq!(paid.status, PayoutStatus::Paid, "{id} was not paid");
        self.serve_stripe_webhooks().await;
        assert!(self.mock.reverse(&paid.provider_ref.expect("provider ref")));
        let returned = || async {
            self.store.payout(id).await.expect("payout").payout.status == PayoutStatus::Returned
        };
        assert!(eventually(15, returned).await, "{id} was not returned");
    }

    /// Runs a real apalis worker until no payout is active (or 60 s pass).
    pub async fn work_until_idle(&self, deps: Arc<PayoutDeps>) {
        run_until_idle(deps, 4).await;
    }

    pub async fn balance(&self, account: &str) -> AccountBalance {
        self.store
            .balance(&AccountId::parse(account).expect("id"))
            .await
            .expect("balance")
    }

    pub async fn payable(&self, account: &str) -> Money {
        self.balance(account)
            .await
            .program("vast", Currency::Usd)
            .map(|p| p.payable_now)
            .unwrap_or(Money::zero(Currency::Usd))
    }

    pub async fn withdraw(
        &self,
        account: &str,
        amount: Money,
        key: &str,
    ) -> Result<WithdrawalOutcome, WithdrawError> {
        self.store
            .create_withdrawal(&WithdrawalRequest {
                account: AccountId::parse(account).expect("id"),
                program: vast(),
                rail: Rail::Stripe,
                amount,
                idempotency_key: IdempotencyKey::parse(key).expect("key"),
            })
            .await
    }

    /// Withdraws everything payable for every eligible referrer; returns the payout ids.
    pub async fn withdraw_all(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for account in self.store.referrers().await.expect("referrers") {
            let amount = self.payable(account.as_str()).await;
            if amount.is_positive()
                && let Ok(outcome) = self
                    .withdraw(account.as_str(), amount, &format!("all-{account}"))
                    .await
            {
                ids.push(outcome.payout.id.to_string());
            }
        }
        ids
    }

    /// The core promise: every payout is paid, exactly one transfer exists for each at the
    /// mock, the mock made no other transfer, and the ledger is sound.
    pub async fn assert_paid_exactly_once(&self, ids: &[String]) {
        for id in ids {
            let detail = self.store.payout(id).await.expect("payout");
            assert_eq!(
                detail.payout.status,
                PayoutStatus::Paid,
                "payout {id} is not paid: {:#?}",
                detail.events
            );
            assert_eq!(
                self.mock.transfers_for_group(id),
                1,
                "payout {id} must have exactly one transfer at the provider"
            );
            let at_mock = self
                .mock
                .transfers()
                .into_iter()
                .find(|t| t.transfer_group.as_deref() == Some(id.as_str()))
                .expect("transfer");
            assert_eq!(Some(at_mock.id), detail.payout.provider_ref);
            assert_eq!(
                at_mock.amount,
                detail.payout.amount.to_minor_units().expect("minor")
            );
        }
        assert_eq!(self.mock.transfers().len(), ids.len(), "no stray transfers");
        self.assert_ledger_sound().await;
    }

    pub async fn assert_ledger_sound(&self) {
        let check = self.store.check_ledger().await.expect("check");
        assert!(check.is_ok(), "ledger problems: {:#?}", check.problems);
    }
}

/// Runs a real apalis worker on `deps` until no payout is active (or 60 s pass).
pub async fn run_until_idle(deps: Arc<PayoutDeps>, concurrency: usize) {
    run_worker(
        deps,
        WorkerOptions {
            concurrency,
            until_idle: true,
            sweep_every: Duration::from_secs(1),
            sweep_grace: Duration::from_secs(2),
            schedule: None,
            ..WorkerOptions::default()
        },
        tokio::time::sleep(Duration::from_secs(60)),
        |_| {},
    )
    .await
    .expect("worker");
}

pub fn usd(amount: &str) -> Money {
    Money::parse(amount, Currency::Usd, 10).expect("amount")
}

/// Serves the webhook receivers on an ephemeral loopback port; returns their base URL.
pub async fn serve_webhooks(state: payouts::http::WebhookState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind webhooks");
    let addr = listener.local_addr().expect("addr");
    let app = payouts::http::router(state);
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("webhook server");
    });
    format!("http://{addr}/webhooks")
}

/// Polls `check` every 50 ms until it is true or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check().await
}

/// Ingests `ndjson` into `store` as `payouts ingest` reads a file (`strict`: all or nothing).
#[allow(dead_code)] // Not every test binary ingests text directly.
pub async fn ingest_text(
    store: &payouts::storage::Store,
    ndjson: &str,
    strict: bool,
) -> IngestReport {
    payouts::app::ingest::ingest(store, std::io::Cursor::new(ndjson.to_owned()), strict)
        .await
        .expect("ingest")
}

/// The rails fixture: a payout method on every rail for the demo's referrers.
pub const RAILS: &str = include_str!("../../fixtures/rails.ndjson");

/// A fresh database with the Vast program on all four rails, the demo's records and the rails
/// fixture in it, beside the sandbox of the four mocks.
pub async fn all_rails_world(name: &str) -> (TestDb, Store, payouts::sim::sandbox::Sandbox) {
    let db = TestDb::named(name).await;
    let store = db.open(all_rails_programs()).await;
    for text in [DEMO, RAILS] {
        ingest_text(&store, text, true).await;
    }
    let sandbox = payouts::sim::sandbox::Sandbox::start(Default::default())
        .await
        .expect("sandbox");
    (db, store, sandbox)
}

/// `account` withdraws `amount` of the Vast program through `rail` (no worker runs).
pub async fn withdraw_on(
    store: &Store,
    account: &str,
    rail: Rail,
    amount: Money,
    key: &str,
) -> payouts::storage::payout_views::PayoutView {
    store
        .create_withdrawal(&WithdrawalRequest {
            account: AccountId::parse(account).expect("id"),
            program: vast(),
            rail,
            amount,
            idempotency_key: IdempotencyKey::parse(key).expect("key"),
        })
        .await
        .expect("withdraw")
        .payout
}

/// Vast's preset with `extra` TOML appended to its program table (a setting the preset
/// leaves off: `hold_days = 30`, a `[program.review]` table).
pub fn vast_with(extra: &str) -> Arc<ProgramSet> {
    let text = format!("{}\n{extra}\n", PRESETS[0].1);
    Arc::new(ProgramSet::from_toml("vast with settings", &text, &test_env).expect("programs"))
}

/// A referrer in `country` who referred one account that spent 100,000.00 USD in 2025
/// (2,250.00 cashable under Vast's terms), with a Stripe and a PayPal payout method.
pub fn tax_earner(id: &str, country: &str) -> String {
    let dest: String = id.chars().filter(char::is_ascii_alphanumeric).collect();
    [
        format!(r#"{{"type":"account","id":"{id}","created_at":"2025-01-01T00:00:00Z","email":"{id}@x.com","country":"{country}"}}"#),
        format!(r#"{{"type":"account","id":"{id}-u","created_at":"2025-02-01T00:00:00Z","email":"{id}-u@x.com"}}"#),
        format!(r#"{{"type":"referral","program":"vast","referrer":"{id}","referred":"{id}-u","at":"2025-02-01T00:00:00Z"}}"#),
        format!(r#"{{"type":"usage","id":"{id}-c","account":"{id}-u","at":"2025-03-01T00:00:00Z","category":"instance","amount":"100000.00","currency":"USD"}}"#),
        format!(r#"{{"type":"payout_method","account":"{id}","rail":"stripe","destination":"acct_1{dest}"}}"#),
        format!(r#"{{"type":"payout_method","account":"{id}","rail":"paypal","destination":"{dest}@pay.example"}}"#),
    ]
    .join("\n")
}

/// `account` withdraws everything it may cash out of the Vast program through `rail`.
pub async fn withdraw_payable(
    store: &Store,
    account: &str,
    rail: Rail,
    key: &str,
) -> payouts::domain::ids::PayoutId {
    let id = AccountId::parse(account).expect("id");
    let amount = store
        .balance(&id)
        .await
        .expect("balance")
        .program("vast", Currency::Usd)
        .map(|p| p.payable_now)
        .expect("a vast balance");
    withdraw_on(store, account, rail, amount, key).await.id
}

/// A worker over the sandbox's four rails, with the default policy.
pub fn sandbox_worker(store: &Store, sandbox: &payouts::sim::sandbox::Sandbox) -> Arc<PayoutDeps> {
    Arc::new(PayoutDeps {
        store: store.clone(),
        rails: sandbox.rails().expect("rails"),
        policy: RetryPolicy::default(),
        lease_ttl: Duration::from_secs(60),
        worker_id: "w".into(),
    })
}

/// Withdraws `amount` of the Vast program for `account` through Stripe, then steps the
/// payout on the simulated clock `world` (30 s between steps) until it is paid.
pub async fn withdraw_and_pay(
    deps: &Arc<PayoutDeps>,
    world: &payouts::clock::Manual,
    account: &str,
    amount: Money,
    key: &str,
) -> payouts::storage::payout_views::PayoutView {
    let payout = withdraw_on(&deps.store, account, Rail::Stripe, amount, key).await;
    step_until_paid(deps, world, &payout.id).await
}

/// Steps payout `id` on the simulated clock `world` (30 s between steps) until it is paid.
pub async fn step_until_paid(
    deps: &Arc<PayoutDeps>,
    world: &payouts::clock::Manual,
    id: &payouts::domain::ids::PayoutId,
) -> payouts::storage::payout_views::PayoutView {
    for _ in 0..20 {
        payouts::jobs::advance_payout(deps, id)
            .await
            .expect("a step");
        let p = deps.store.payout(id.as_str()).await.expect("payout").payout;
        if p.status == PayoutStatus::Paid {
            return p;
        }
        world.advance(Duration::from_secs(30));
    }
    panic!("payout {id} was never paid");
}
