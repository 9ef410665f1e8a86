use super::*;
use crate::domain::transition::{Mover, allowed};

fn facts(status: PayoutStatus, outcomes: &[AttemptOutcome]) -> PayoutFacts {
    PayoutFacts {
        status,
        provider_ref: None,
        attempts: outcomes
            .iter()
            .enumerate()
            .map(|(i, o)| AttemptFact {
                attempt: i as u32 + 1,
                outcome: Some(*o),
            })
            .collect(),
        held_until: None,
        leased: false,
        amount: usd("10.00"),
        disputed: false,
        duplicates: Vec::new(),
        flags: Vec::new(),
    }
}

fn usd(amount: &str) -> crate::domain::money::Money {
    crate::domain::money::Money::parse_payable(amount, crate::domain::money::Currency::Usd).unwrap()
}

fn paid_outside() -> Action {
    Action::MarkPaid {
        reference: "bank-77".into(),
    }
}

use AttemptOutcome::*;
use PayoutStatus::*;

#[test]
fn retry_sends_anew_only_when_nothing_can_have_landed() {
    let exhausted = facts(NeedsOperator, &[Retry, Retry, Permanent, Throttled]);
    let effect = decide(&Action::Retry, &exhausted, "fault lifted").unwrap();
    assert_eq!(effect.to, RetryScheduled);
    assert!(effect.fresh_attempts && effect.run_now);
    assert_eq!(effect.ledger, LedgerEffect::None);

    // An attempt whose outcome is unknown is proven first: never a blind second payment.
    let unprovable = facts(NeedsOperator, &[Retry, Unknown]);
    let effect = decide(&Action::Retry, &unprovable, "try the lookup again").unwrap();
    assert_eq!(effect.to, OutcomeUnknown);
    assert!(effect.summary.contains("attempt 2 may have landed"));

    // An unknown attempt followed by another was proven absent before the next was sent.
    let proven = facts(NeedsOperator, &[Unknown, Unknown, Retry]);
    assert_eq!(
        decide(&Action::Retry, &proven, "fault lifted").unwrap().to,
        RetryScheduled
    );
    assert!(decide(&Action::Cancel, &proven, "payee left").is_ok());
}

#[test]
fn nothing_that_may_land_is_cancelled_or_marked_paid() {
    for outcome in [Unknown, InFlight, Landed] {
        let f = facts(NeedsOperator, &[Retry, outcome]);
        for action in [Action::Cancel, paid_outside()] {
            let refused = decide(&action, &f, "because").unwrap_err();
            assert!(
                matches!(refused, Refusal::MayLand { attempt: 2, .. }),
                "{action} after {outcome:?}: {refused}"
            );
        }
    }
    let mut landed = facts(NeedsOperator, &[Landed]);
    landed.provider_ref = Some("tr_1".into());
    for action in [Action::Retry, Action::Cancel, paid_outside()] {
        assert!(matches!(
            decide(&action, &landed, "because"),
            Err(Refusal::ProviderHolds { .. })
        ));
    }
}

#[test]
fn cancel_voids_and_mark_paid_posts_the_hold() {
    let f = facts(NeedsOperator, &[Retry, Permanent]);
    let cancel = decide(&Action::Cancel, &f, "payee closed the account").unwrap();
    assert_eq!((cancel.to, cancel.ledger), (Failed, LedgerEffect::VoidHold));
    let paid = decide(&paid_outside(), &f, "paid by wire").unwrap();
    assert_eq!((paid.to, paid.ledger), (Paid, LedgerEffect::PostHold));
    assert!(paid.summary.contains("bank-77"));
    // A queued payout nothing was sent for can be cancelled too.
    assert_eq!(
        decide(&Action::Cancel, &facts(Queued, &[]), "duplicate request")
            .unwrap()
            .to,
        Failed
    );
}

#[test]
fn every_refusal_says_what_to_do() {
    let f = facts(NeedsOperator, &[Retry]);
    assert_eq!(decide(&Action::Cancel, &f, "  "), Err(Refusal::NoReason));
    let blank = Action::MarkPaid {
        reference: " ".into(),
    };
    assert_eq!(decide(&blank, &f, "why"), Err(Refusal::NoReference));
    let mut leased = f.clone();
    leased.leased = true;
    assert_eq!(decide(&Action::Retry, &leased, "why"), Err(Refusal::Leased));
    for status in [
        Processing,
        Paid,
        Failed,
        Returned,
        Submitting,
        OutcomeUnknown,
    ] {
        for action in [Action::Retry, Action::Cancel, paid_outside()] {
            let refused = decide(&action, &facts(status, &[]), "why").unwrap_err();
            assert!(
                matches!(refused, Refusal::WrongState { .. }),
                "{action} from {status}"
            );
        }
    }
    assert_eq!(
        decide(&Action::ReleaseHold, &facts(Queued, &[]), "why"),
        Err(Refusal::NotHeld)
    );
}

#[test]
fn release_ends_a_hold_without_a_move() {
    let mut held = facts(Queued, &[]);
    held.held_until = Some(Utc::now() + chrono::Duration::hours(3));
    let effect = decide(&Action::ReleaseHold, &held, "payee verified by phone").unwrap();
    assert_eq!(effect.to, Queued);
    assert!(effect.run_now);
}

#[test]
fn a_dispute_is_booked_as_kept_or_returned() {
    let mut disputed = facts(NeedsOperator, &[Landed]);
    disputed.disputed = true;
    let resolve = |outcome| Action::ResolveDispute { outcome };
    let kept = decide(&resolve(DisputeOutcome::Kept), &disputed, "chargeback won").unwrap();
    assert_eq!((kept.to, kept.ledger), (Paid, LedgerEffect::PostHold));
    let back = decide(&resolve(DisputeOutcome::Returned), &disputed, "lost").unwrap();
    assert_eq!((back.to, back.ledger), (Returned, LedgerEffect::Reverse));
    // Handed over for another reason: not a dispute to resolve.
    let exhausted = facts(NeedsOperator, &[Retry]);
    assert!(matches!(
        decide(&resolve(DisputeOutcome::Kept), &exhausted, "x"),
        Err(Refusal::WrongState { .. })
    ));
    for outcome in [DisputeOutcome::Kept, DisputeOutcome::Returned] {
        assert_eq!(DisputeOutcome::from_code(outcome.code()), Some(outcome));
    }
}

/// Every move an action can make is a row of the transition table, for operators only.
#[test]
fn every_action_move_is_in_the_table() {
    let outcomes = [&[][..], &[Retry, Permanent][..], &[Unknown][..]];
    for status in PayoutStatus::ALL {
        for attempts in outcomes {
            let mut f = facts(status, attempts);
            f.held_until = Some(Utc::now());
            f.disputed = true;
            for action in [
                Action::Retry,
                Action::Cancel,
                paid_outside(),
                Action::ReleaseHold,
                Action::ResolveDispute {
                    outcome: DisputeOutcome::Returned,
                },
                Action::ResolveDispute {
                    outcome: DisputeOutcome::Kept,
                },
            ] {
                if let Ok(effect) = decide(&action, &f, "why") {
                    assert!(
                        allowed(status, effect.to, Mover::Operator),
                        "{action}: {status} -> {}",
                        effect.to
                    );
                }
            }
        }
    }
}

#[test]
fn weighty_actions_above_the_amount_need_a_second_operator() {
    use crate::domain::money::{Currency, Money};
    use rust_decimal::Decimal;
    let amount = Money::parse_payable("1500.00", Currency::Usd).unwrap();
    let limit = Some(Decimal::from(1000));
    assert!(needs_approval(&Action::Retry, &amount, limit));
    assert!(needs_approval(&Action::Cancel, &amount, limit));
    assert!(needs_approval(&paid_outside(), &amount, limit));
    assert!(!needs_approval(&Action::ReleaseHold, &amount, limit));
    let kept = Action::ResolveDispute {
        outcome: DisputeOutcome::Kept,
    };
    assert!(needs_approval(&kept, &amount, limit));
    assert!(!needs_approval(&Action::Retry, &amount, None));
    assert!(!needs_approval(
        &Action::Retry,
        &amount,
        Some(Decimal::from(1500))
    ));
    assert_eq!(
        check_second_operator("ops-ana", "ops-ana"),
        Err(Refusal::SameOperator)
    );
    assert!(check_second_operator("ops-ana", "ops-bo").is_ok());
}

#[test]
fn a_duplicate_is_booked_once_only_while_its_money_is_out() {
    let duplicate = |object: &str, money_left: bool, booked| DuplicateFact {
        object: object.into(),
        money_left,
        booked,
    };
    let mut paid = facts(Paid, &[Landed]);
    paid.provider_ref = Some("tr_2".into());
    paid.duplicates = vec![
        duplicate("tr_1", true, None),
        duplicate("tr_3", false, None),
        duplicate("tr_4", true, Some(DuplicateBooking::Loss)),
    ];
    let owed = |object: &str| Action::ResolveDuplicate {
        object: object.into(),
        booking: DuplicateBooking::Owed,
    };
    let effect = decide(&owed("tr_1"), &paid, "payee agreed to repay").unwrap();
    assert_eq!(
        effect.to, Paid,
        "the payout's own payment is not in question"
    );
    assert_eq!(effect.ledger, LedgerEffect::None);
    assert_eq!(
        effect.book,
        Some(Booking::Duplicate {
            object: "tr_1".into(),
            booking: DuplicateBooking::Owed
        })
    );
    assert!(
        effect.summary.contains("owed by the payee"),
        "{}",
        effect.summary
    );
    assert!(matches!(
        decide(&owed("tr_2"), &paid, "x"),
        Err(Refusal::UnknownDuplicate { .. })
    ));
    assert!(matches!(
        decide(&owed("tr_3"), &paid, "x"),
        Err(Refusal::DuplicateMovedNothing { .. })
    ));
    assert!(matches!(
        decide(&owed("tr_4"), &paid, "x"),
        Err(Refusal::DuplicateBooked {
            booking: "loss",
            ..
        })
    ));
    assert!(matches!(
        decide(&owed("tr_1"), &paid, " "),
        Err(Refusal::NoReason)
    ));
    assert!(needs_approval(
        &owed("tr_1"),
        &usd("1500.00"),
        Some(rust_decimal::Decimal::from(1000))
    ));
    assert_eq!(
        DuplicateBooking::from_code("loss"),
        Some(DuplicateBooking::Loss)
    );
    assert_eq!(DuplicateBooking::from_code("gift"), None);
}

#[test]
fn a_dispute_returned_in_part_keeps_the_payout_paid_and_credits_the_part() {
    let mut disputed = facts(NeedsOperator, &[Landed]);
    disputed.disputed = true;
    let part = |amount: &str| Action::ResolveDispute {
        outcome: DisputeOutcome::PartReturned {
            amount: amount.parse().unwrap(),
        },
    };
    let effect = decide(&part("2.50"), &disputed, "half of it came back").unwrap();
    assert_eq!(effect.to, Paid);
    assert_eq!(effect.ledger, LedgerEffect::PostHold);
    assert_eq!(effect.book, Some(Booking::PartReturned(usd("2.50"))));
    for bad in ["0", "10.00", "12", "0.001", "-1"] {
        assert!(
            matches!(
                decide(&part(bad), &disputed, "x"),
                Err(Refusal::BadPart { .. })
            ),
            "{bad}"
        );
    }
    let amount = Some("1.00".parse().unwrap());
    assert_eq!(DisputeOutcome::with_amount("kept", amount), None);
    assert!(matches!(
        DisputeOutcome::with_amount("returned", amount),
        Some(DisputeOutcome::PartReturned { .. })
    ));
    assert_eq!(
        DisputeOutcome::with_amount("returned", None),
        Some(DisputeOutcome::Returned)
    );
}
