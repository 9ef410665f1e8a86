//! Accounting exports on a real ledger: accruals from the demo data, a failed payout (voided
//! hold), paid payouts (posted holds), one paid and then returned, and one still pending. The
//! trial balance and the journal must agree with each other to the unit and balance to the
//! cent, through the store and through the binary's CSV.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::*;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use payouts::domain::accounting::round_balanced;
use payouts::domain::ledger::Book;
use payouts::domain::money::{Currency, Money};
use payouts::domain::payout::PayoutStatus;
use payouts::sim::stripe::Faults;
use payouts::storage::{JournalEntry, TrialBalance};
use rust_decimal::Decimal;

const BIN: &str = env!("CARGO_BIN_EXE_payouts");

/// Alice's Stripe account bounces what it receives: her payout is paid, then returned.
const BOUNCING_ALICE: &str = r#"{"type":"payout_method","account":"ref-alice","rail":"stripe","destination":"acct_bounceAlice"}"#;

/// Instants between the stages of the scenario.
struct Marks {
    after_ingest: DateTime<Utc>,
    nia_held: DateTime<Utc>,
    nia: String,
    alice: String,
    mo: String,
}

/// A short pause so the next ledger write lands in a later millisecond than `now`.
async fn mark() -> DateTime<Utc> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    let now = Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    now
}

async fn busy_ledger() -> (TestEnv, Marks) {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    env.ingest(BOUNCING_ALICE).await;
    env.serve_stripe_webhooks().await;
    let after_ingest = mark().await;

    // Nia's payout fails for good (a wrong API key): its hold is voided.
    let nia = withdraw_all_of(&env, "ref-nia", "nia-1").await;
    let nia_held = mark().await;
    env.work_until_idle(env.deps_with("sk_test_wrong", fast_policy(), "bad-key"))
        .await;
    assert_eq!(status(&env, &nia).await, PayoutStatus::Failed);

    // Alice, Gina and Oli are paid; Alice's money comes back.
    let alice = withdraw_all_of(&env, "ref-alice", "alice-1").await;
    let gina = withdraw_all_of(&env, "ref-gina", "gina-1").await;
    let oli = withdraw_all_of(&env, "ref-oli", "oli-1").await;
    env.work_until_idle(env.deps()).await;
    for id in [&gina, &oli] {
        assert_eq!(status(&env, id).await, PayoutStatus::Paid);
    }
    let returned = eventually(10, || async {
        status(&env, &alice).await == PayoutStatus::Returned
    })
    .await;
    assert!(returned, "alice's payout should come back");

    // Mo's payout is still pending: no worker runs after it.
    let mo = env
        .withdraw("ref-mo", usd("7.50"), "mo-1")
        .await
        .expect("withdraw")
        .payout
        .id
        .to_string();
    env.assert_ledger_sound().await;
    (
        env,
        Marks {
            after_ingest,
            nia_held,
            nia,
            alice,
            mo,
        },
    )
}

async fn withdraw_all_of(env: &TestEnv, account: &str, key: &str) -> String {
    let amount = env.payable(account).await;
    assert!(amount.is_positive(), "{account} has nothing payable");
    env.withdraw(account, amount, key)
        .await
        .expect("withdraw")
        .payout
        .id
        .to_string()
}

async fn status(env: &TestEnv, id: &str) -> PayoutStatus {
    env.store.payout(id).await.expect("payout").payout.status
}

async fn journal(env: &TestEnv, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<JournalEntry> {
    env.store
        .journal(from, until)
        .try_collect()
        .await
        .expect("journal")
}

type Key = (Book, Currency);

fn trial_balance_by_book(tb: &TrialBalance) -> BTreeMap<Key, Decimal> {
    tb.posted
        .iter()
        .map(|b| ((b.book.clone(), b.balance.currency()), b.balance.amount()))
        .collect()
}

/// Adds journal lines to per-book sums, dropping books that come to zero.
fn add_journal(
    mut sums: BTreeMap<Key, Decimal>,
    entries: &[JournalEntry],
) -> BTreeMap<Key, Decimal> {
    for e in entries {
        for l in &e.lines {
            *sums
                .entry((l.book.clone(), l.amount.currency()))
                .or_insert(Decimal::ZERO) += l.amount.amount();
        }
    }
    sums.retain(|_, v| !v.is_zero());
    sums
}

fn per_currency(lines: &[Money]) -> BTreeMap<Currency, Decimal> {
    let mut out = BTreeMap::new();
    for l in lines {
        *out.entry(l.currency()).or_insert(Decimal::ZERO) += l.amount();
    }
    out
}

fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(0).expect("epoch")
}

#[tokio::test]
async fn the_trial_balance_and_the_journal_agree_and_balance() {
    let (env, marks) = busy_ledger().await;
    let until = Utc::now() + chrono::Duration::days(1);
    let tb = env.store.trial_balance(until).await.expect("trial balance");

    // Debits equal credits per currency, exactly and once rounded to the cent.
    assert!(!tb.posted.is_empty());
    let exact: Vec<Money> = tb.posted.iter().map(|b| b.balance).collect();
    assert!(per_currency(&exact).values().all(Decimal::is_zero));
    let rounded = round_balanced(&exact).expect("round");
    assert!(rounded.iter().all(Money::is_whole_minor));
    assert!(per_currency(&rounded).values().all(Decimal::is_zero));
    let has = |code: &str| tb.posted.iter().any(|b| b.book.code() == code);
    for code in [
        "referrer_cashable",
        "referrer_credit",
        "commission_expense",
        "rail_settlement",
    ] {
        assert!(has(code), "no {code} balance in {:#?}", tb.posted);
    }

    // Mo's hold is the only one pending: a memo, balanced, not in the posted balances.
    assert_eq!(tb.pending_holds, 1);
    let pending: Vec<Money> = tb.pending.iter().map(|b| b.balance).collect();
    assert!(per_currency(&pending).values().all(Decimal::is_zero));
    assert!(tb.pending.iter().any(|b| {
        b.book.holder().map(|h| h.as_str()) == Some("ref-mo") && b.balance == usd("-7.50")
    }));

    // The journal from the beginning adds up to the trial balance, book by book.
    let entries = journal(&env, epoch(), until).await;
    assert_eq!(
        add_journal(BTreeMap::new(), &entries),
        trial_balance_by_book(&tb)
    );
    for e in &entries {
        let amounts: Vec<Money> = e.lines.iter().map(|l| l.amount).collect();
        assert!(amounts.len() >= 2, "{e:#?}");
        assert!(
            per_currency(&amounts).values().all(Decimal::is_zero),
            "{e:#?}"
        );
        let rounded = round_balanced(&amounts).expect("round");
        assert!(
            per_currency(&rounded).values().all(Decimal::is_zero),
            "{e:#?}"
        );
    }
    // In order, and posted kinds only: no voided or pending hold.
    assert!(
        entries
            .windows(2)
            .all(|w| w[0].effective_at <= w[1].effective_at)
    );
    let kinds: std::collections::BTreeSet<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    for kind in ["accrual", "payout", "payout_return"] {
        assert!(kinds.contains(kind), "no {kind} entry in {kinds:?}");
    }
    let mentions = |id: &str| entries.iter().filter(|e| e.memo.contains(id)).count();
    assert_eq!(mentions(&marks.nia), 0, "a voided hold is not in the books");
    assert_eq!(
        mentions(&marks.mo),
        0,
        "a pending hold is not in the books yet"
    );
    assert_eq!(mentions(&marks.alice), 2, "alice's payout and its return");
    // Commissions carry sub-cent amounts, so the rounding above had work to do.
    assert!(
        entries
            .iter()
            .flat_map(|e| &e.lines)
            .any(|l| !l.amount.is_whole_minor())
    );

    // Periods chain: the balance at an instant plus the journal after it is the balance at
    // the end, whatever the instant.
    for at in [marks.after_ingest, marks.nia_held] {
        let earlier = env.store.trial_balance(at).await.expect("trial balance");
        let later = journal(&env, at, until).await;
        assert_eq!(
            add_journal(trial_balance_by_book(&earlier), &later),
            trial_balance_by_book(&tb)
        );
    }

    // Before any payout: commissions only, nothing pending.
    let early = env
        .store
        .trial_balance(marks.after_ingest)
        .await
        .expect("trial balance");
    assert!(!early.posted.is_empty());
    assert!(
        early
            .posted
            .iter()
            .all(|b| b.book.code() != "rail_settlement")
    );
    assert_eq!(early.pending_holds, 0);
    // While Nia's payout was in flight, its hold was pending (it was voided later).
    let in_flight = env
        .store
        .trial_balance(marks.nia_held)
        .await
        .expect("trial balance");
    assert_eq!(in_flight.pending_holds, 1);
    assert!(
        in_flight
            .pending
            .iter()
            .any(|b| b.book.holder().map(|h| h.as_str()) == Some("ref-nia"))
    );
    // Before the ledger began there is nothing.
    let none = env
        .store
        .trial_balance(epoch())
        .await
        .expect("trial balance");
    assert!(none.posted.is_empty() && none.pending.is_empty());
    assert!(journal(&env, epoch(), epoch()).await.is_empty());
}

fn run(db: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("DATABASE_URL", db)
        .env("RUNPOD_BONUS_SEED", TEST_SEED)
        .env_remove("PAYOUTS_PROGRAMS")
        .output()
        .expect("run payouts")
}

async fn run_async(db: &str, args: &[&str]) -> Output {
    let db = db.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&db, &args)
    })
    .await
    .expect("join")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read_csv(text: &str) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    let rows = reader
        .records()
        .map(|r| {
            let r = r.expect("record");
            header
                .iter()
                .cloned()
                .zip(r.iter().map(str::to_string))
                .collect()
        })
        .collect();
    (header, rows)
}

/// A CSV amount: a plain decimal with exactly the currency's minor decimals.
fn amount(row: &BTreeMap<String, String>, column: &str) -> Decimal {
    let text = &row[column];
    let currency: Currency = row["currency"].parse().expect("currency");
    let decimals = text.split('.').nth(1).map_or(0, str::len);
    assert_eq!(
        decimals as u32,
        currency.minor_decimals(),
        "{column} {text:?}"
    );
    let value: Decimal = text.parse().expect("decimal");
    assert!(value >= Decimal::ZERO, "{column} {text:?}");
    value
}

#[tokio::test]
async fn the_binary_writes_csv_that_loads_and_balances() {
    let (env, marks) = busy_ledger().await;
    let db = env.db.url.clone();
    let today = Utc::now().date_naive().to_string();
    let dir = &env.db.dir;

    // Trial balance CSV: posted rows balance per currency and match the TOTAL rows, which
    // come last; Mo's pending hold is a memo row.
    let tb_path = dir.path().join("tb.csv");
    let tb_file = tb_path.to_str().expect("path");
    let out = run_async(
        &db,
        &["ledger", "trial-balance", "--at", &today, "--csv", tb_file],
    )
    .await;
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("balanced"));
    let (header, rows) = read_csv(&std::fs::read_to_string(&tb_path).expect("read"));
    assert_eq!(
        header,
        [
            "account_code",
            "account_name",
            "holder",
            "program",
            "rail",
            "currency",
            "debit",
            "credit",
            "status"
        ]
    );
    let mut sums: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
    let mut totals: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
    let mut seen_total = false;
    for row in &rows {
        let (debit, credit) = (amount(row, "debit"), amount(row, "credit"));
        if row["account_code"] == "TOTAL" {
            seen_total = true;
            totals.insert(row["currency"].clone(), (debit, credit));
            continue;
        }
        assert!(!seen_total, "TOTAL rows come last: {row:?}");
        if row["status"] == "posted" {
            let s = sums.entry(row["currency"].clone()).or_default();
            s.0 += debit;
            s.1 += credit;
        } else {
            assert_eq!(row["status"], "pending");
            assert!(
                row["holder"].is_empty() || row["holder"] == "ref-mo",
                "{row:?}"
            );
        }
        assert!(!row["account_name"].is_empty());
    }
    assert!(!sums.is_empty());
    assert_eq!(sums, totals);
    for (currency, (debit, credit)) in &totals {
        assert_eq!(debit, credit, "{currency} does not balance");
    }
    assert!(rows.iter().any(|r| r["status"] == "pending"));
    let tb = env
        .store
        .trial_balance(payouts::domain::accounting::end_of_day(
            Utc::now().date_naive(),
        ))
        .await
        .expect("trial balance");
    let posted_rows = rows
        .iter()
        .filter(|r| r["status"] == "posted" && r["account_code"] != "TOTAL")
        .count();
    assert_eq!(posted_rows, tb.posted.len());

    // The same as a table and as JSON.
    let table = ok(&run_async(&db, &["ledger", "trial-balance", "--at", &today]).await);
    assert!(table.contains("debits = credits"), "{table}");
    assert!(
        table.contains("Referrer payable (cashable) / ref-dave / vast"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&run_async(
        &db,
        &["ledger", "trial-balance", "--at", &today, "--json"],
    )
    .await))
    .expect("json");
    assert_eq!(json["balanced"], true);
    assert_eq!(json["pending"]["holds"], 1);

    // Journal CSV from the first day to today: every entry balances per currency, and the
    // lines add up to the trial balance's totals.
    let j_path = dir.path().join("journal.csv");
    let j_file = j_path.to_str().expect("path");
    let out = run_async(
        &db,
        &[
            "ledger",
            "journal",
            "--from",
            "2000-01-01",
            "--to",
            &today,
            "--csv",
            j_file,
        ],
    )
    .await;
    assert!(ok(&out).is_empty(), "the CSV went to the file");
    let summary = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(summary.contains("balanced"), "{summary}");
    assert!(
        summary.contains("1 payout hold(s) were pending"),
        "{summary}"
    );
    let text = std::fs::read_to_string(&j_path).expect("read");
    let (header, lines) = read_csv(&text);
    assert_eq!(
        header,
        [
            "entry_id",
            "date",
            "kind",
            "status",
            "account_code",
            "account_name",
            "holder",
            "program",
            "rail",
            "currency",
            "debit",
            "credit",
            "memo"
        ]
    );
    let mut per_entry: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    let mut journal_totals: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
    for line in &lines {
        let (debit, credit) = (amount(line, "debit"), amount(line, "credit"));
        assert!(debit.is_zero() || credit.is_zero(), "{line:?}");
        assert_eq!(line["status"], "posted");
        assert_eq!(line["date"].len(), 10);
        *per_entry
            .entry((line["entry_id"].clone(), line["currency"].clone()))
            .or_default() += credit - debit;
        let t = journal_totals.entry(line["currency"].clone()).or_default();
        t.0 += debit;
        t.1 += credit;
        assert!(!line["memo"].contains(&marks.mo) && !line["memo"].contains(&marks.nia));
    }
    assert!(!per_entry.is_empty());
    for ((entry, currency), net) in &per_entry {
        assert!(net.is_zero(), "entry {entry} is off by {net} {currency}");
    }
    let entry_count = per_entry
        .keys()
        .map(|(e, _)| e)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert!(
        summary.contains(&format!("{entry_count} entries, {} lines", lines.len())),
        "{summary}"
    );
    for (currency, (debit, credit)) in &journal_totals {
        assert_eq!(debit, credit, "{currency}");
    }

    // To standard output without --csv, the same bytes.
    let stdout = ok(&run_async(
        &db,
        &["ledger", "journal", "--from", "2000-01-01", "--to", &today],
    )
    .await);
    assert_eq!(stdout, text);

    // Bad dates say what is expected.
    for args in [
        &["ledger", "trial-balance", "--at", "30/11/2026"][..],
        &[
            "ledger",
            "journal",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-31",
        ][..],
    ] {
        let out = run_async(&db, args).await;
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("YYYY-MM-DD"), "{err}");
    }
    let out = run_async(
        &db,
        &[
            "ledger",
            "journal",
            "--from",
            "2026-12-01",
            "--to",
            "2026-11-30",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is after"));
}
