//! Every rail's facts: its destination grammar is exactly its published pattern, and its
//! reference is deterministic per attempt.

use proptest::prelude::*;

use super::facts;
use super::partnerstack::reward_key;
use crate::domain::ids::{PayoutId, Rail};

fn accepts(rail: Rail, text: &str) -> bool {
    facts(rail).destination.accepts(text)
}

fn by_pattern(rail: Rail, text: &str) -> bool {
    let grammar = facts(rail).destination;
    regex::Regex::new(grammar.pattern)
        .expect("the published pattern compiles")
        .is_match(text)
        && text.chars().count() <= grammar.max_len
}

#[test]
fn destination_examples_each_way() {
    let mut good = vec![
        (Rail::Paypal, "gina.o+pay@mail.example.com"),
        (Rail::Wise, "1001"),
        (Rail::Wise, "9999999999999999999"),
        (Rail::Partnerstack, "pk_alice-1"),
    ];
    good.extend(Rail::ALL.map(|rail| (rail, facts(rail).example_destination)));
    for (rail, text) in good {
        assert!(accepts(rail, text), "{rail} {text}");
        assert!(by_pattern(rail, text), "{rail} {text}");
    }
    let bad = [
        (Rail::Stripe, "acct_"),
        (Rail::Stripe, " acct_1"),
        (Rail::Stripe, "acct_1 "),
        (Rail::Paypal, "gina@example"),
        (Rail::Paypal, "gina@@example.com"),
        (Rail::Paypal, "@example.com"),
        (Rail::Paypal, "gina@example..com"),
        (Rail::Wise, "0"),
        (Rail::Wise, "0101"),
        (Rail::Wise, "18446744073709551615"),
        (Rail::Wise, "acct_1A2b3C"),
        (Rail::Partnerstack, "pk alice"),
    ];
    for (rail, text) in bad {
        assert!(!accepts(rail, text), "{rail} {text:?}");
        assert!(!by_pattern(rail, text), "{rail} {text:?}");
    }
}

proptest! {
    /// The hand-written check and the published pattern accept exactly the same strings,
    /// drawn from the characters that matter (and a few that must never pass).
    #[test]
    fn the_check_is_the_published_pattern(
        rail in prop::sample::select(Rail::ALL.to_vec()),
        text in "(acct_)?[A-Za-z0-9._%+@ \\-é]{0,24}",
    ) {
        prop_assert_eq!(accepts(rail, &text), by_pattern(rail, &text), "{} {:?}", rail, text);
    }

    #[test]
    fn emails_and_numbers_agree_too(
        rail in prop::sample::select(vec![Rail::Paypal, Rail::Wise]),
        text in "[a-z0-9.]{0,6}@?[a-z0-9.\\-]{0,8}|[0-9]{0,21}",
    ) {
        prop_assert_eq!(accepts(rail, &text), by_pattern(rail, &text), "{} {:?}", rail, text);
    }
}

#[test]
fn every_rail_has_a_deterministic_reference() {
    let payout = PayoutId::parse("po_1").expect("id");
    for rail in Rail::ALL {
        let reference = facts(rail).reference;
        assert_eq!(
            reference(&payout, "po_1-attempt-1"),
            reference(&payout, "po_1-attempt-1")
        );
    }
    let of = |rail: Rail, key: &str| (facts(rail).reference)(&payout, key);
    assert_eq!(of(Rail::Stripe, "k"), "po_1");
    assert_eq!(of(Rail::Paypal, "k-1"), "k-1");
    assert_ne!(of(Rail::Wise, "k-1"), of(Rail::Wise, "k-2"));
}

#[test]
fn reward_keys_are_plain_or_hashed() {
    assert_eq!(reward_key("po_1-attempt-1"), "po_1-attempt-1");
    assert!(reward_key("a b").starts_with("payout-"));
    assert!(reward_key("abc").starts_with("payout-"));
}
