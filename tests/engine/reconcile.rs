//! Reconciliation through the real Stripe adapter and mock: pay the demo, check everything
//! matches, then make every kind of discrepancy happen at the mock and check each is caught,
//! classified, explained, resolvable, and resolved for good.

use std::collections::BTreeSet;

use crate::common::{DEMO, TestEnv};
use chrono::Utc;
use payouts::domain::ids::Rail;
use payouts::domain::reconcile::{Exception, ExceptionKind, Period, Severity, Tolerances};
use payouts::reconcile::{Quiet, ReconcileRequest, RecordsFrom, reconcile};
use payouts::sim::kit::Faults;
use payouts::storage::{ReconRun, Trigger};
use serde_json::json;

struct Paid {
    env: TestEnv,
    /// (payout id, transfer id), in withdrawal order.
    payouts: Vec<(String, String)>,
    http: reqwest::Client,
}

async fn paid_demo() -> Paid {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    let ids = env.withdraw_all().await;
    assert_eq!(ids.len(), 5, "the demo pays five referrers");
    env.work_until_idle(env.deps()).await;
    let mut payouts = Vec::new();
    for id in ids {
        let detail = env.store.payout(&id).await.expect("payout");
        let transfer = detail
            .payout
            .provider_ref
            .clone()
            .expect("paid payouts have a transfer");
        payouts.push((id, transfer));
    }
    Paid {
        env,
        payouts,
        http: reqwest::Client::new(),
    }
}

fn today() -> Period {
    Period::day(Utc::now().date_naive())
}

impl Paid {
    async fn run_with(&self, from: RecordsFrom, tolerances: Tolerances) -> ReconRun {
        let rails = self.env.deps().rails.clone();
        let request = ReconcileRequest {
            period: today(),
            rails: vec![Rail::Stripe],
            from,
            trigger: Trigger::Cli,
            tolerances,
            run_id: None,
        };
        reconcile(&self.env.store, &rails, &request, &Quiet)
            .await
            .expect("reconcile")
    }

    /// A run over the Stripe statement at `path`, exact tolerances.
    async fn run_statement(&self, path: std::path::PathBuf) -> ReconRun {
        let from = RecordsFrom::Statement {
            rail: Rail::Stripe,
            path,
        };
        self.run_with(from, Tolerances::default()).await
    }

    /// Payout `i`'s transfer made one cent larger at the provider.
    async fn one_cent_more(&self, i: usize) {
        let (payout, transfer) = &self.payouts[i];
        let original = amount_minor(self, payout).await;
        let body = json!({"id": transfer, "amount": original + 1});
        self.mock(reqwest::Method::POST, "/__mock/tamper", Some(body))
            .await;
    }

    async fn run(&self) -> ReconRun {
        self.run_with(RecordsFrom::Api, Tolerances::default()).await
    }

    async fn exceptions(&self, run: &ReconRun) -> Vec<Exception> {
        self.env
            .store
            .recon_exceptions(&run.id, false)
            .await
            .expect("exceptions")
    }

    async fn mock(&self, method: reqwest::Method, path: &str, body: Option<serde_json::Value>) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.env.mock.base_url()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("mock answers");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.text().await.unwrap_or_default()
        );
    }

    /// A transfer made straight at Stripe, as someone with the key could.
    async fn transfer(&self, amount: i64, destination: &str, group: &str, payout_id: Option<&str>) {
        let mut form = vec![
            ("amount", amount.to_string()),
            ("currency", "usd".to_string()),
            ("destination", destination.to_string()),
            ("transfer_group", group.to_string()),
        ];
        if let Some(p) = payout_id {
            form.push(("metadata[payout_id]", p.to_string()));
        }
        let response = self
            .http
            .post(format!("{}/v1/transfers", self.env.mock.base_url()))
            .bearer_auth("sk_test_mock")
            .form(&form)
            .send()
            .await
            .expect("mock answers");
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap_or_default()
        );
    }

    async fn destination(&self, payout: &str) -> String {
        self.env
            .store
            .payout(payout)
            .await
            .expect("payout")
            .payout
            .destination
    }
}

fn kinds(exceptions: &[Exception]) -> BTreeSet<(ExceptionKind, Option<String>)> {
    exceptions
        .iter()
        .map(|e| (e.kind, e.payout_id.clone()))
        .collect()
}

#[tokio::test]
async fn everything_paid_matches_and_every_discrepancy_is_caught() {
    let paid = paid_demo().await;
    let clean = paid.run().await;
    assert_eq!(clean.status, "completed");
    assert!(clean.all_matched(), "{:?}", clean.exceptions);
    let stripe = &clean.totals[0];
    assert_eq!(
        (stripe.provider_records, stripe.linked, stripe.matched),
        (5, 5, 5)
    );
    assert_eq!(stripe.payouts_expected, 5);
    assert_eq!(stripe.provider_amount, stripe.payouts_amount);

    let p = &paid.payouts;
    let stranger = paid.destination(&p[0].0).await;
    // Money no payout asked for; a second transfer for payout 0; and four quiet changes.
    paid.transfer(777, &stranger, "not-ours", None).await;
    paid.transfer(1234, &stranger, &p[0].0, Some(&p[0].0)).await;
    paid.mock(
        reqwest::Method::POST,
        "/__mock/tamper",
        Some(json!({"id": p[1].1, "amount": 1})),
    )
    .await;
    paid.mock(
        reqwest::Method::POST,
        "/__mock/tamper",
        Some(json!({"id": p[2].1, "currency": "eur"})),
    )
    .await;
    paid.mock(
        reqwest::Method::POST,
        "/__mock/tamper",
        Some(json!({"id": p[3].1, "destination": "acct_someone_else"})),
    )
    .await;
    paid.mock(
        reqwest::Method::DELETE,
        &format!("/__mock/transfers/{}", p[4].1),
        None,
    )
    .await;

    let run = paid.run().await;
    let found = paid.exceptions(&run).await;
    let expected: BTreeSet<_> = [
        (ExceptionKind::UnknownAtProvider, None),
        (ExceptionKind::DuplicateAtProvider, Some(p[0].0.clone())),
        (ExceptionKind::AmountMismatch, Some(p[1].0.clone())),
        (ExceptionKind::CurrencyMismatch, Some(p[2].0.clone())),
        (ExceptionKind::PayeeMismatch, Some(p[3].0.clone())),
        (ExceptionKind::MissingAtProvider, Some(p[4].0.clone())),
    ]
    .into_iter()
    .collect();
    assert_eq!(kinds(&found), expected, "{found:#?}");
    // One exception for payout 0, naming both of its transfers; the unknown one is critical
    // and explained.
    let duplicates: Vec<_> = found
        .iter()
        .filter(|e| e.kind == ExceptionKind::DuplicateAtProvider)
        .collect();
    assert_eq!(duplicates.len(), 1, "{duplicates:#?}");
    assert_eq!(duplicates[0].records.len(), 2, "{duplicates:#?}");
    assert!(
        duplicates[0].records.contains(&p[0].1),
        "the payout's own transfer is listed: {duplicates:#?}"
    );
    let unknown = found
        .iter()
        .find(|e| e.kind == ExceptionKind::UnknownAtProvider)
        .expect("unknown transfer");
    assert_eq!(unknown.severity, Severity::Critical);
    assert_eq!(
        unknown
            .theirs
            .as_ref()
            .expect("record")
            .amount
            .display_amount(),
        "7.77"
    );
    assert!(payouts::domain::reconcile::explain(unknown).contains("no payout of ours"));
    // The unknown transfer and payout 0's duplicate (one exception for both its records).
    assert_eq!(run.exceptions.open_critical, 2);
    assert_eq!(run.totals[0].matched, 0, "{:?}", run.totals);

    // Resolving the unknown transfer holds in every later run; the rest stay open.
    let resolution = paid
        .env
        .store
        .recon_resolve(
            &unknown.id,
            "test transfer by finance, reversed by hand",
            "alice",
        )
        .await
        .expect("resolve")
        .expect("the exception exists");
    assert_eq!(resolution.by, "alice");
    let again = paid.run().await;
    let later = paid.exceptions(&again).await;
    let same = later
        .iter()
        .find(|e| e.id == unknown.id)
        .expect("found again");
    assert_eq!(
        same.resolution.as_ref().map(|r| r.note.as_str()),
        Some("test transfer by finance, reversed by hand")
    );
    assert_eq!(again.exceptions.open, run.exceptions.open - 1);
    assert_eq!(again.exceptions.open_critical, 1);
    let unknown_id =
        payouts::domain::reconcile::ExceptionId::parse("rx_00000000000000000000").expect("id");
    assert!(
        paid.env
            .store
            .recon_resolve(&unknown_id, "x", "y")
            .await
            .expect("query")
            .is_none()
    );

    // Status: put payout 1's amount back and reverse its transfer behind our back.
    paid.mock(
        reqwest::Method::POST,
        "/__mock/tamper",
        Some(json!({"id": p[1].1, "amount": amount_minor(&paid, &p[1].0).await})),
    )
    .await;
    paid.mock(
        reqwest::Method::POST,
        &format!("/__mock/transfers/{}/reverse", p[1].1),
        None,
    )
    .await;
    let run = paid.run().await;
    let found = paid.exceptions(&run).await;
    let for_p1: Vec<_> = found
        .iter()
        .filter(|e| e.payout_id.as_deref() == Some(&p[1].0))
        .collect();
    assert_eq!(for_p1.len(), 1, "{for_p1:#?}");
    assert_eq!(for_p1[0].kind, ExceptionKind::StatusMismatch);
    assert_eq!(
        for_p1[0].theirs.as_ref().expect("record").status,
        "reversed"
    );
    assert_eq!(for_p1[0].ours.as_ref().expect("payout").status, "paid");
}

async fn amount_minor(paid: &Paid, payout: &str) -> i64 {
    paid.env
        .store
        .payout(payout)
        .await
        .expect("payout")
        .payout
        .amount
        .to_minor_units()
        .expect("whole cents")
}

/// The statement `csv` without the columns named in `drop` (the demo's cells hold no commas).
fn without_columns(csv: &str, drop: &[&str]) -> String {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let keep: Vec<usize> = (0..header.len())
        .filter(|i| !drop.contains(&header[*i]))
        .collect();
    let mut out = String::new();
    for line in std::iter::once(header.join(",").as_str()).chain(lines) {
        let cells: Vec<&str> = line.split(',').collect();
        out.push_str(&keep.iter().map(|i| cells[*i]).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

/// Today's statement from the mock, written to a file in `dir`.
async fn statement_file(paid: &Paid, dir: &std::path::Path) -> (String, std::path::PathBuf) {
    let day = Utc::now().date_naive();
    let csv = paid
        .http
        .get(format!(
            "{}/__mock/statement.csv?from={day}&to={day}",
            paid.env.mock.base_url()
        ))
        .send()
        .await
        .expect("statement")
        .text()
        .await
        .expect("body");
    let path = dir.join("stripe-transfers.csv");
    std::fs::write(&path, &csv).expect("write statement");
    (csv, path)
}

/// Our attempt token links a record only to an attempt sent on the record's rail: a Stripe
/// transfer whose group names an attempt sent on PayPal is unknown, not that payout's.
#[tokio::test]
async fn an_attempt_token_links_a_record_only_on_the_rail_it_was_sent_on() {
    let paid = paid_demo().await;
    let p = &paid.payouts;
    let dir = tempfile::tempdir().expect("tempdir");
    let (csv, path) = statement_file(&paid, dir.path()).await;
    std::fs::write(&path, without_columns(&csv, &["payout_id (metadata)"])).expect("write");
    let moved = &p[0].0;
    for sql in [
        format!("UPDATE payouts SET rail = 'paypal' WHERE id = '{moved}'"),
        format!("UPDATE payout_attempts SET rail = 'paypal' WHERE payout_id = '{moved}'"),
    ] {
        crate::common::execute(&paid.env.store, &sql).await;
    }
    let run = paid.run_statement(path).await;
    let found = paid.exceptions(&run).await;
    assert_eq!(
        kinds(&found),
        [(ExceptionKind::UnknownAtProvider, None)]
            .into_iter()
            .collect(),
        "{found:#?}"
    );
    assert_eq!(found[0].record_id.as_deref(), Some(p[0].1.as_str()));
    assert_eq!((run.totals[0].linked, run.totals[0].matched), (4, 4));
}

/// A record naming our payout id is judged against that payout even where no attempt of it
/// is on file (most hints are answered from the attempts; the rest from the payouts):
/// payout 0's transfer, one cent off, is its amount mismatch, not an unknown transfer and a
/// missing payout.
#[tokio::test]
async fn a_record_naming_a_payout_with_no_attempt_on_file_is_judged_against_it() {
    let paid = paid_demo().await;
    let p = &paid.payouts;
    paid.one_cent_more(0).await;
    let sql = format!("DELETE FROM payout_attempts WHERE payout_id = '{}'", p[0].0);
    crate::common::execute(&paid.env.store, &sql).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, path) = statement_file(&paid, dir.path()).await;
    let run = paid.run_statement(path).await;
    let found = paid.exceptions(&run).await;
    assert_eq!(
        kinds(&found),
        [(ExceptionKind::AmountMismatch, Some(p[0].0.clone()))]
            .into_iter()
            .collect(),
        "{found:#?}"
    );
}

#[tokio::test]
async fn a_statement_file_reconciles_like_the_api_and_amounts_match_within_tolerance() {
    let paid = paid_demo().await;
    let p = &paid.payouts;
    paid.one_cent_more(1).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let (csv, path) = statement_file(&paid, dir.path()).await;
    let from_file = || RecordsFrom::Statement {
        rail: Rail::Stripe,
        path: path.clone(),
    };

    let exact = paid.run_with(from_file(), Tolerances::default()).await;
    assert_eq!(exact.source, "statement:stripe-transfers.csv");
    assert_eq!(exact.totals[0].provider_records, 5);
    let found = paid.exceptions(&exact).await;
    assert_eq!(
        kinds(&found),
        [(ExceptionKind::AmountMismatch, Some(p[1].0.clone()))]
            .into_iter()
            .collect()
    );

    let lenient = Tolerances {
        amount_minor: 1,
        ..Tolerances::default()
    };
    let within = paid.run_with(from_file(), lenient).await;
    assert!(within.all_matched(), "{:?}", paid.exceptions(&within).await);
    assert_eq!(within.totals[0].matched, 5);

    // A statement without our references still matches, by payee, amount and date.
    let stripped = without_columns(&csv, &["Transfer Group", "payout_id (metadata)"]);
    std::fs::write(&path, stripped).expect("write statement");
    let by_amount = paid.run_with(from_file(), lenient).await;
    assert!(
        by_amount.all_matched(),
        "{:?}",
        paid.exceptions(&by_amount).await
    );
    assert_eq!(by_amount.totals[0].linked, 5);

    // A file in the wrong format says which columns it needs.
    std::fs::write(&path, "date,amount\n2026-11-01,3\n").expect("write");
    let rails = paid.env.deps().rails.clone();
    let request = ReconcileRequest {
        period: today(),
        rails: vec![Rail::Stripe],
        from: from_file(),
        trigger: Trigger::Cli,
        tolerances: Tolerances::default(),
        run_id: None,
    };
    let err = reconcile(&paid.env.store, &rails, &request, &Quiet)
        .await
        .expect_err("not a Stripe export");
    assert!(err.to_string().contains("column"), "{err}");
    let failed = paid.env.store.recon_runs(1).await.expect("runs");
    assert_eq!(failed[0].status, "failed");
}

/// A payout with several transfers is judged on the one that carries its money, even when a
/// later one does not: payout 0's own transfer stands, and a second one sent for it by hand
/// was reversed, so nothing disagrees (a duplicate would need two carrying money).
#[tokio::test]
async fn a_payout_is_judged_on_its_transfer_that_carries_the_money() {
    let paid = paid_demo().await;
    let p = &paid.payouts;
    let destination = paid.destination(&p[0].0).await;
    let amount = amount_minor(&paid, &p[0].0).await;
    paid.transfer(amount, &destination, &p[0].0, Some(&p[0].0))
        .await;
    let second = paid
        .env
        .mock
        .transfers()
        .into_iter()
        .rfind(|t| t.id != p[0].1 && t.metadata.get("payout_id") == Some(&p[0].0))
        .expect("the second transfer");
    paid.mock(
        reqwest::Method::POST,
        &format!("/__mock/transfers/{}/reverse", second.id),
        None,
    )
    .await;
    let run = paid.run().await;
    let found = paid.exceptions(&run).await;
    assert!(found.is_empty(), "{found:#?}");
}
