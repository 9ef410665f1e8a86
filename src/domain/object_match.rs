//! Whether a provider reading is about the object a payout's state rests on (no I/O).
//!
//! Webhooks find their payout by anything that names it: the provider's id for its payment,
//! any attempt's key or reference, or the payout id itself (Stripe's `transfer_group` is
//! shared by every transfer made for the payout). Naming the payout is not enough to move it:
//! a reading changes a payout only when it is about the object its state rests on, which is
//! its provider reference once known and, before that, the last attempt (by the key or the
//! reference that attempt alone carries). Any other object that names the payout is evidence
//! that money may have left twice: it is recorded and raised, never applied.

use serde::Serialize;

/// What one attempt is known by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptTokens {
    /// Our idempotency key (PayPal's `sender_batch_id`).
    pub key: String,
    /// The token the rail echoes for it (`domain::reconcile::rail_reference`), if stored.
    pub rail_ref: Option<String>,
    /// The provider's id for what it created, if it answered.
    pub provider_ref: Option<String>,
}

/// What a payout's state rests on.
#[derive(Debug, Clone, Copy)]
pub struct Anchor<'a> {
    pub payout_id: &'a str,
    /// The provider's id for the payment the payout is booked against.
    pub provider_ref: Option<&'a str>,
    /// Every attempt, oldest first.
    pub attempts: &'a [AttemptTokens],
}

/// What a reading says it is about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading<'a> {
    /// The provider's id for the object read (tr_…, batch id, transfer id, reward key).
    pub provider_ref: Option<&'a str>,
    /// Our own token echoed back (transfer_group, sender_batch_id, reward key).
    pub our_token: Option<&'a str>,
}

/// Another object that names the payout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// The provider's id for the other object (or, without one, the token it carried).
    pub object: String,
    /// What the payout rests on instead, for people.
    pub anchor: String,
}

impl Evidence {
    /// The event text for a reading of this object that reported `seen`.
    pub fn reason(&self, seen: &str) -> String {
        format!(
            "CRITICAL: possible duplicate payment: the provider reports {seen} for {}, which \
             names this payout but is not {}; the payout and the ledger are left as they are \
             until an operator checks",
            self.object, self.anchor
        )
    }
}

/// The decision [`match_reading`] makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectMatch {
    /// About the object the payout rests on: apply it (`domain::tracking::track`).
    Applies,
    /// About another object that names the payout: record it, never apply it.
    Duplicate(Evidence),
    /// Names nothing of this payout.
    Unrelated,
}

/// Whether `token` is one only `attempt` carries (the payout id is shared by all attempts).
fn identifies(attempt: &AttemptTokens, token: Option<&str>, payout_id: &str) -> bool {
    token.is_some_and(|t| {
        t != payout_id && (t == attempt.key || attempt.rail_ref.as_deref() == Some(t))
    })
}

fn names_payout(anchor: &Anchor<'_>, reading: &Reading<'_>) -> bool {
    let by_ref = reading.provider_ref.is_some_and(|r| {
        anchor.provider_ref == Some(r)
            || anchor
                .attempts
                .iter()
                .any(|a| a.provider_ref.as_deref() == Some(r))
    });
    let by_token = reading.our_token.is_some_and(|t| {
        t == anchor.payout_id
            || anchor
                .attempts
                .iter()
                .any(|a| a.key == t || a.rail_ref.as_deref() == Some(t))
    });
    by_ref || by_token
}

/// Decides whether `reading` may change the payout described by `anchor`.
pub fn match_reading(anchor: &Anchor<'_>, reading: &Reading<'_>) -> ObjectMatch {
    if !names_payout(anchor, reading) {
        return ObjectMatch::Unrelated;
    }
    let (about_it, rests_on) = match anchor.provider_ref {
        Some(p) => {
            let about = match reading.provider_ref {
                Some(r) => r == p,
                // No id of its own: only a token of the attempt that created `p` ties it.
                None => anchor
                    .attempts
                    .iter()
                    .filter(|a| a.provider_ref.as_deref() == Some(p))
                    .any(|a| identifies(a, reading.our_token, anchor.payout_id)),
            };
            (about, format!("{p}, the payment it rests on"))
        }
        None => match anchor.attempts.last() {
            Some(last) => {
                let about = match (reading.provider_ref, last.provider_ref.as_deref()) {
                    (Some(r), Some(mine)) => r == mine,
                    _ => identifies(last, reading.our_token, anchor.payout_id),
                };
                (about, format!("its last attempt {}", last.key))
            }
            None => (false, "any attempt of it".to_string()),
        },
    };
    if about_it {
        return ObjectMatch::Applies;
    }
    let object = reading
        .provider_ref
        .or(reading.our_token)
        .unwrap_or("an unnamed object")
        .to_string();
    ObjectMatch::Duplicate(Evidence {
        object,
        anchor: rests_on,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn attempt(n: u32, provider_ref: Option<&str>) -> AttemptTokens {
        AttemptTokens {
            key: format!("po_1-attempt-{n}"),
            rail_ref: Some(format!("po_1-attempt-{n}")),
            provider_ref: provider_ref.map(str::to_string),
        }
    }

    fn stripe_attempt(n: u32, provider_ref: Option<&str>) -> AttemptTokens {
        AttemptTokens {
            rail_ref: Some("po_1".into()),
            ..attempt(n, provider_ref)
        }
    }

    fn reading<'a>(provider_ref: Option<&'a str>, our_token: Option<&'a str>) -> Reading<'a> {
        Reading {
            provider_ref,
            our_token,
        }
    }

    fn is_duplicate_of(m: ObjectMatch, object: &str) -> bool {
        matches!(m, ObjectMatch::Duplicate(e) if e.object == object)
    }

    #[test]
    fn another_transfer_in_the_stripe_group_is_a_duplicate() {
        let attempts = [stripe_attempt(1, Some("tr_2"))];
        let anchor = Anchor {
            payout_id: "po_1",
            provider_ref: Some("tr_2"),
            attempts: &attempts,
        };
        assert_eq!(
            match_reading(&anchor, &reading(Some("tr_2"), Some("po_1"))),
            ObjectMatch::Applies
        );
        assert!(is_duplicate_of(
            match_reading(&anchor, &reading(Some("tr_1"), Some("po_1"))),
            "tr_1"
        ));
    }

    #[test]
    fn another_attempts_paypal_batch_is_a_duplicate() {
        let attempts = [attempt(1, None), attempt(2, Some("B2"))];
        let anchor = Anchor {
            payout_id: "po_1",
            provider_ref: Some("B2"),
            attempts: &attempts,
        };
        assert!(is_duplicate_of(
            match_reading(&anchor, &reading(Some("B1"), Some("po_1-attempt-1"))),
            "B1"
        ));
        assert_eq!(
            match_reading(&anchor, &reading(Some("B2"), Some("po_1-attempt-2"))),
            ObjectMatch::Applies
        );
        // A batch event without an id of its own, carrying only a token.
        assert_eq!(
            match_reading(&anchor, &reading(None, Some("po_1-attempt-2"))),
            ObjectMatch::Applies
        );
        assert!(is_duplicate_of(
            match_reading(&anchor, &reading(None, Some("po_1-attempt-1"))),
            "po_1-attempt-1"
        ));
    }

    #[test]
    fn before_a_reference_only_the_last_attempt_applies() {
        let attempts = [attempt(1, Some("41")), attempt(2, None)];
        let anchor = Anchor {
            payout_id: "po_1",
            provider_ref: None,
            attempts: &attempts,
        };
        assert_eq!(
            match_reading(&anchor, &reading(Some("B9"), Some("po_1-attempt-2"))),
            ObjectMatch::Applies
        );
        assert!(is_duplicate_of(
            match_reading(&anchor, &reading(Some("41"), None)),
            "41"
        ));
        // Stripe's group names every transfer of the payout: it ties none to an attempt.
        let stripe = [stripe_attempt(1, None)];
        let anchor = Anchor {
            payout_id: "po_1",
            provider_ref: None,
            attempts: &stripe,
        };
        assert!(is_duplicate_of(
            match_reading(&anchor, &reading(Some("tr_9"), Some("po_1"))),
            "tr_9"
        ));
    }

    #[test]
    fn a_reading_naming_nothing_of_ours_is_unrelated() {
        let attempts = [attempt(1, Some("tr_2"))];
        let anchor = Anchor {
            payout_id: "po_1",
            provider_ref: Some("tr_2"),
            attempts: &attempts,
        };
        assert_eq!(
            match_reading(&anchor, &reading(Some("tr_7"), Some("po_9"))),
            ObjectMatch::Unrelated
        );
        assert_eq!(
            match_reading(&anchor, &Reading::default()),
            ObjectMatch::Unrelated
        );
    }

    proptest! {
        /// Once a payout has a provider reference, no reading about another provider object
        /// applies, whatever token it carries.
        #[test]
        fn only_the_anchor_applies(other in "[a-z0-9_]{1,8}", token in prop_oneof![
            Just(None), Just(Some("po_1")), Just(Some("po_1-attempt-1")),
            Just(Some("po_1-attempt-2")),
        ]) {
            let attempts = [attempt(1, None), attempt(2, Some("anchor"))];
            let anchor = Anchor { payout_id: "po_1", provider_ref: Some("anchor"), attempts: &attempts };
            prop_assume!(other != "anchor");
            prop_assert_ne!(
                match_reading(&anchor, &reading(Some(&other), token)),
                ObjectMatch::Applies
            );
        }
    }
}
