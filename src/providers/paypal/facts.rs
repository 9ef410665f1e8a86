//! What the rest of the system knows about PayPal without calling it.

use crate::domain::destination::{Grammar, alnum};
use crate::providers::RailFacts;

pub static FACTS: RailFacts = RailFacts {
    destination: &Grammar {
        pattern: r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$",
        max_len: 127,
        expected: "the payee's PayPal email address",
        shape: |text| match text.split_once('@') {
            Some((local, domain)) => {
                let mut labels = domain.split('.');
                alnum(local, b"._%+-")
                    && labels.clone().count() >= 2
                    && labels.all(|label| alnum(label, b"-"))
            }
            None => false,
        },
    },
    example_destination: "gina@example.com",
    // Each attempt is its own batch, whose sender_batch_id is the attempt key.
    reference: |_payout, attempt_key| attempt_key.to_string(),
    statement: &super::statement::FORMAT,
    // PayPal publishes no figure and answers RATE_LIMIT_REACHED to traffic it finds
    // abusive: a cautious 20 a second.
    pace: crate::domain::pacing::Pace {
        per_second: 20,
        burst: 10,
    },
};
