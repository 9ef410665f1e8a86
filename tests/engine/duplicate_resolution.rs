//! resolve-duplicate (issue 18): when a second payment landed for one payout, an operator
//! books it as the payee's debt (the balance goes negative; later earnings repay it) or as
//! the company's loss, once, on the record; reconciliation shows the duplicate as one
//! exception per payout naming every record, and that exception resolves with the booking.

use chrono::Utc;

use crate::common::*;
use payouts::domain::accounting::gl_account;
use payouts::domain::ids::{PayoutId, Rail};
use payouts::domain::ledger::Book;
use payouts::domain::operator::{Action, ActionRequest, DuplicateBooking, Refusal};
use payouts::domain::payout::PayoutStatus;
use payouts::domain::reconcile::ExceptionKind;
use payouts::sim::stripe::Faults;
use payouts::storage::StoreError;

/// A payout of `ref-mo`'s whole payable amount, paid through its own transfer, plus a second
/// transfer of the same amount in its group: (payout, the duplicate's id).
async fn paid_twice(env: &TestEnv) -> (PayoutId, String) {
    let amount = env.payable("ref-mo").await;
    let payout = env
        .withdraw("ref-mo", amount, "dup-owed")
        .await
        .expect("withdraw")
        .payout;
    let minor = payout.amount.to_minor_units().expect("minor units");
    let stray = env
        .mock
        .inject_transfer(payout.id.as_str(), &payout.destination, minor, "usd");
    env.work_until_idle(env.deps()).await;
    let detail = env.store.payout(payout.id.as_str()).await.expect("payout");
    assert_eq!(
        detail.payout.status,
        PayoutStatus::Paid,
        "{:#?}",
        detail.events
    );
    (payout.id, stray)
}

/// Reconciles today on Stripe; returns the run's duplicate exceptions.
async fn duplicates_found(env: &TestEnv) -> Vec<payouts::domain::reconcile::Exception> {
    env.reconcile_today(vec![Rail::Stripe])
        .await
        .into_iter()
        .filter(|e| e.kind == ExceptionKind::DuplicateAtProvider)
        .collect()
}

fn resolve(object: &str, booking: DuplicateBooking, reason: &str) -> ActionRequest {
    ActionRequest {
        action: Action::ResolveDuplicate {
            object: object.to_string(),
            booking,
        },
        reason: reason.to_string(),
        actor: "ops-ana".to_string(),
    }
}

#[tokio::test]
async fn a_duplicate_booked_as_owed_takes_it_from_the_payees_balance_once() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    let (id, stray) = paid_twice(&env).await;
    let before = env.balance("ref-mo").await.programs[0].clone();

    // One exception for the payout, naming both transfers; open.
    let found = duplicates_found(&env).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].payout_id.as_deref(), Some(id.as_str()));
    assert_eq!(found[0].records.len(), 2, "{found:#?}");
    assert!(found[0].records.contains(&stray), "{found:#?}");
    assert!(found[0].resolution.is_none());

    // The payout's own transfer is not a duplicate of it; an unknown id is refused.
    let detail = env.store.payout(id.as_str()).await.expect("payout");
    let own = detail.payout.provider_ref.clone().expect("provider ref");
    let refused = env
        .store
        .operator_act(&id, &resolve(&own, DuplicateBooking::Owed, "x"))
        .await;
    assert!(
        matches!(
            refused,
            Err(StoreError::Operator(Refusal::UnknownDuplicate { .. }))
        ),
        "{refused:?}"
    );

    let acted = env
        .store
        .operator_act(
            &id,
            &resolve(&stray, DuplicateBooking::Owed, "payee agreed"),
        )
        .await
        .expect("booked");
    assert_eq!(
        (acted.from, acted.to),
        (PayoutStatus::Paid, PayoutStatus::Paid)
    );
    assert!(acted.summary.contains(&stray), "{}", acted.summary);
    let after = env.balance("ref-mo").await.programs[0].clone();
    let amount = detail.payout.amount;
    assert_eq!(
        after.withdrawn,
        before.withdrawn.checked_add(&amount).expect("sum"),
        "the duplicate counts as paid to the payee"
    );
    assert_eq!(
        after.available,
        before.available.checked_sub(&amount).expect("difference")
    );
    assert!(after.available.is_negative(), "{after:#?}");
    assert!(
        !after.eligible,
        "a negative balance is repaid before any payout"
    );
    assert!(
        env.withdraw("ref-mo", usd("1.00"), "after-dup")
            .await
            .is_err()
    );

    // Asked again: the same record, nothing booked twice; the other booking is refused.
    let again = env
        .store
        .operator_act(
            &id,
            &resolve(&stray, DuplicateBooking::Owed, "payee agreed"),
        )
        .await
        .expect("replayed");
    assert!(again.replayed);
    let loss = env
        .store
        .operator_act(
            &id,
            &resolve(&stray, DuplicateBooking::Loss, "changed my mind"),
        )
        .await;
    assert!(
        matches!(
            loss,
            Err(StoreError::Operator(Refusal::DuplicateBooked { .. }))
        ),
        "{loss:?}"
    );
    assert_eq!(
        env.balance("ref-mo").await.programs[0].available,
        after.available
    );

    // The exception resolved with the booking, and stays resolved in the next run.
    let found = duplicates_found(&env).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    let resolution = found[0].resolution.as_ref().expect("resolved");
    assert!(resolution.note.contains(&stray), "{resolution:?}");
    assert_eq!(resolution.by, "ops-ana");
    // Both transfers left through Stripe and the ledger says so.
    let out: i64 = env.mock.transfers().iter().map(|t| t.amount).sum();
    let booked = env.store.paid_out_by_rail().await.expect("paid out");
    let stripe = booked
        .iter()
        .find(|t| t.rail == Rail::Stripe)
        .expect("stripe");
    assert_eq!(stripe.amount.to_minor_units().expect("minor"), out);
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn a_duplicate_written_off_leaves_the_payee_alone_and_books_a_loss() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    let (id, stray) = paid_twice(&env).await;
    let before = env.balance("ref-mo").await.programs[0].clone();
    // Reconciliation finds the duplicate and keeps it as evidence an operator can act on.
    assert_eq!(duplicates_found(&env).await.len(), 1);
    env.store
        .operator_act(&id, &resolve(&stray, DuplicateBooking::Loss, "our bug"))
        .await
        .expect("written off");
    let after = env.balance("ref-mo").await.programs[0].clone();
    assert_eq!(after.available, before.available, "the payee owes nothing");
    assert_eq!(after.withdrawn, before.withdrawn);
    let at = Utc::now() + chrono::Duration::days(1);
    let trial = env.store.trial_balance(at).await.expect("trial balance");
    let loss = trial
        .posted
        .iter()
        .find(|b| matches!(b.book, Book::PayoutLoss { .. }))
        .expect("a loss book");
    let amount = env
        .store
        .payout(id.as_str())
        .await
        .expect("payout")
        .payout
        .amount;
    assert_eq!(
        loss.balance.checked_add(&amount).expect("sum"),
        usd("0"),
        "{loss:?}"
    );
    assert_eq!(gl_account(&loss.book).code, "5900");
    env.assert_ledger_sound().await;
}
