//! What the rest of the system knows about Stripe without calling it.

use crate::domain::destination::{Grammar, alnum};
use crate::providers::RailFacts;

pub static FACTS: RailFacts = RailFacts {
    destination: &Grammar {
        pattern: "^acct_[A-Za-z0-9]+$",
        max_len: 64,
        expected: "a connected account id such as acct_1A2b3C",
        shape: |text| {
            text.strip_prefix("acct_")
                .is_some_and(|rest| alnum(rest, b""))
        },
    },
    example_destination: "acct_1A2b3C",
    // Every attempt's transfer carries the payout id as its transfer_group.
    reference: |payout, _attempt_key| payout.to_string(),
    statement: &super::statement::FORMAT,
    // Stripe's live limit is about 100 requests a second per account (25 in test mode):
    // 80 leaves room for the dashboard and other tools on the same account.
    pace: crate::domain::pacing::Pace {
        per_second: 80,
        burst: 20,
    },
};
