use std::time::Duration;

use super::*;
use crate::domain::tracking::RailState;

fn policy() -> RetryPolicy {
    RetryPolicy::default()
}

fn obs(state: RailState, word: &str) -> Observation {
    Observation::new(state, word)
}

#[test]
fn codes_round_trip_and_only_sends_that_reached_the_provider_count() {
    for o in AttemptOutcome::ALL {
        assert_eq!(AttemptOutcome::from_code(o.code()), Some(o));
    }
    let counted: Vec<_> = AttemptOutcome::ALL
        .into_iter()
        .filter(|o| o.uses_an_attempt())
        .map(AttemptOutcome::code)
        .collect();
    assert_eq!(counted, ["landed", "retry", "unknown", "permanent"]);
    assert!(stored_outcome_uses_an_attempt("something we never wrote"));
    assert!(!stored_outcome_uses_an_attempt("throttled"));
}

#[test]
fn a_landed_send_settles_its_attempt_and_keeps_the_reference() {
    let decision = SendDecision::Landed {
        provider_ref: "tr_9".into(),
        observation: obs(RailState::Paid, "paid"),
    };
    let step = after_send(&policy(), 2, 1, &decision, 0.5);
    assert_eq!(step.to, PayoutStatus::Paid);
    assert_eq!(step.source, Source::Submit);
    assert_eq!(step.provider_ref.as_deref(), Some("tr_9"));
    assert_eq!(
        step.settled,
        Some(Settled {
            attempt: 2,
            outcome: AttemptOutcome::Landed,
            detail: None
        })
    );
    assert_eq!(step.watch_for, Some(policy().watch_for));
    assert_eq!(step.last_error, None);
}

#[test]
fn a_refused_send_with_attempts_left_is_retried_and_the_last_one_goes_to_an_operator() {
    let p = RetryPolicy {
        max_attempts: 2,
        ..policy()
    };
    let refused = SendDecision::Retry {
        reason: "500".into(),
        retry_after: None,
    };
    let first = after_send(&p, 1, 0, &refused, 0.5);
    assert_eq!(first.to, PayoutStatus::RetryScheduled);
    assert!(first.next_in.is_some());
    assert_eq!(first.last_error.as_deref(), Some("500"));
    let last = after_send(&p, 2, 1, &refused, 0.5);
    assert_eq!(last.to, PayoutStatus::NeedsOperator);
    assert_eq!(last.next_in, None);
    // A rate limit never uses one up, however many came before.
    let throttled = SendDecision::Throttled {
        reason: "429".into(),
        retry_after: None,
    };
    assert_eq!(
        after_send(&p, 9, 2, &throttled, 0.5).to,
        PayoutStatus::RetryScheduled
    );
}

#[test]
fn a_lookup_that_finds_nothing_allows_a_new_send_and_nothing_else_does() {
    let p = policy();
    assert!(matches!(
        after_lookup(&p, 3, Ok(LookupFinding::Absent), 0, 0.5),
        AfterLookup::SendNew(why) if why.contains("1..=3")
    ));
    let findings = [
        LookupFinding::Refused { reason: "r".into() },
        LookupFinding::Unprovable { reason: "u".into() },
        LookupFinding::Duplicate {
            provider_refs: vec!["tr_1".into(), "tr_2".into()],
        },
        LookupFinding::Pending {
            reason: "p".into(),
            retry_in: Duration::from_secs(1),
        },
    ];
    let to: Vec<_> = findings
        .into_iter()
        .map(|f| match after_lookup(&p, 1, Ok(f), 0, 0.5) {
            AfterLookup::Step(s) => s.to,
            AfterLookup::SendNew(_) => panic!("only absence allows a new send"),
        })
        .collect();
    assert_eq!(
        to,
        [
            PayoutStatus::Failed,
            PayoutStatus::NeedsOperator,
            PayoutStatus::NeedsOperator,
            PayoutStatus::OutcomeUnknown
        ]
    );
}

#[test]
fn a_pending_lookup_waits_at_least_the_settle_delay() {
    let p = policy();
    let AfterLookup::Step(step) = after_lookup(
        &p,
        1,
        Ok(LookupFinding::Pending {
            reason: "list lags".into(),
            retry_in: Duration::from_secs(1),
        }),
        0,
        0.5,
    ) else {
        panic!("pending is a step");
    };
    assert_eq!(step.next_in, Some(p.settle_delay));
    assert_eq!(step.settled, None, "the attempt stays unsettled");
}

#[test]
fn failing_lookups_back_off_and_end_with_an_operator() {
    let p = policy();
    let AfterLookup::Step(again) = after_lookup(&p, 1, Err("timeout".into()), 0, 0.5) else {
        panic!("a failed lookup is a step");
    };
    assert_eq!(again.to, PayoutStatus::OutcomeUnknown);
    assert_eq!(again.tally, Tally::ReadFailed);
    assert!(again.next_in.is_some());
    let AfterLookup::Step(last) =
        after_lookup(&p, 1, Err("timeout".into()), p.max_lookup_failures - 1, 0.5)
    else {
        panic!("a failed lookup is a step");
    };
    assert_eq!(last.to, PayoutStatus::NeedsOperator);
    assert_eq!(last.next_in, None);
}

fn polled(status: PayoutStatus) -> Polled<'static> {
    Polled {
        status,
        polls: 2,
        lookup_failures: 0,
        watch_left: Some(Duration::from_secs(24 * 3600)),
        provider_status: Some("pending"),
    }
}

#[test]
fn a_poll_moves_with_the_provider_and_counts_quiet_polls() {
    let p = policy();
    let paid = after_poll(
        &p,
        polled(PayoutStatus::Processing),
        Ok(obs(RailState::Paid, "paid")),
    );
    assert_eq!(paid.to, PayoutStatus::Paid);
    assert_eq!(paid.next_in, p.watch_delay(0));
    let quiet = after_poll(
        &p,
        polled(PayoutStatus::Processing),
        Ok(obs(RailState::InFlight, "pending")),
    );
    assert_eq!(quiet.to, PayoutStatus::Processing);
    assert_eq!(quiet.tally, Tally::QuietPoll);
    assert_eq!(quiet.next_in, Some(p.poll_delay(3)));
    let reworded = after_poll(
        &p,
        polled(PayoutStatus::Processing),
        Ok(obs(RailState::InFlight, "in_transit")),
    );
    assert_eq!(reworded.tally, Tally::Reset, "a new wording is an event");
}

#[test]
fn a_poll_ignores_the_providers_clock() {
    let reading = obs(RailState::Paid, "paid").at(Some(chrono::Utc::now()));
    let step = after_poll(&policy(), polled(PayoutStatus::Processing), Ok(reading));
    assert_eq!(step.observation.and_then(|o| o.occurred_at), None);
}

#[test]
fn a_failing_watch_never_unpays_and_a_failing_poll_ends_with_an_operator() {
    let p = policy();
    let exhausted = |status| Polled {
        lookup_failures: p.max_lookup_failures - 1,
        ..polled(status)
    };
    let watch = after_poll(&p, exhausted(PayoutStatus::Paid), Err("down".into()));
    assert_eq!((watch.to, watch.next_in), (PayoutStatus::Paid, None));
    let held = after_poll(&p, exhausted(PayoutStatus::Processing), Err("down".into()));
    assert_eq!(held.to, PayoutStatus::NeedsOperator);
    let again = after_poll(&p, polled(PayoutStatus::Processing), Err("down".into()));
    assert_eq!(again.to, PayoutStatus::Processing);
    assert_eq!(again.next_in, Some(p.poll_delay(2)));
}

#[test]
fn escalations_say_what_an_operator_must_do() {
    assert_eq!(rail_not_configured(PayoutStatus::Paid, Rail::Wise), None);
    let step = rail_not_configured(PayoutStatus::Queued, Rail::Wise).unwrap();
    assert_eq!(step.to, PayoutStatus::NeedsOperator);
    assert!(step.reason.contains("wise rail is not configured"));
    let p = RetryPolicy {
        max_attempts: 2,
        ..policy()
    };
    assert_eq!(attempts_exhausted(&p, 1, None, None), None);
    let done = attempts_exhausted(&p, 2, Some("none landed"), Some("500".into())).unwrap();
    assert_eq!(
        done.reason,
        "none landed; all 2 attempts are used; waiting for an operator"
    );
    assert_eq!(done.last_error.as_deref(), Some("500"));
    assert_eq!(no_provider_ref().to, PayoutStatus::NeedsOperator);
}
