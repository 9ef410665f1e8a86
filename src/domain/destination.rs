//! Where money goes on each rail: the grammar of a destination. The same grammar is checked
//! here by hand and published as a regular expression in the OpenAPI document; a property
//! test keeps the two equal, so what the document promises is exactly what is accepted.

use super::ids::Rail;

/// The grammar of a destination on `rail`, as a regular expression (ECMA-262 and Rust's
/// `regex` agree on it), with [`max_len`].
pub fn pattern(rail: Rail) -> &'static str {
    match rail {
        Rail::Stripe => "^acct_[A-Za-z0-9]+$",
        Rail::Paypal => r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$",
        // Wise types recipient ids as u64: at most 19 digits always fit.
        Rail::Wise => "^[1-9][0-9]{0,18}$",
        Rail::Partnerstack => "^[A-Za-z0-9_-]+$",
    }
}

/// The longest destination accepted on `rail`, in characters (all are ASCII).
pub fn max_len(rail: Rail) -> usize {
    match rail {
        Rail::Stripe => 64,
        Rail::Paypal => 127,
        Rail::Wise => 19,
        Rail::Partnerstack => 128,
    }
}

/// What a payee is asked for on `rail`, for error messages.
pub fn expected(rail: Rail) -> &'static str {
    match rail {
        Rail::Stripe => "a connected account id such as acct_1A2b3C",
        Rail::Paypal => "the payee's PayPal email address",
        Rail::Wise => "a numeric Wise recipient account id (1 to 19 digits, no leading zero)",
        Rail::Partnerstack => "a PartnerStack partner key",
    }
}

/// Whether `text` is a destination on `rail`, exactly as [`pattern`] and [`max_len`] say.
pub fn is_valid(rail: Rail, text: &str) -> bool {
    if text.is_empty() || text.len() > max_len(rail) {
        return false;
    }
    let alnum = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    match rail {
        Rail::Stripe => text
            .strip_prefix("acct_")
            .is_some_and(|rest| alnum(rest, b"")),
        Rail::Paypal => match text.split_once('@') {
            Some((local, domain)) => {
                let mut labels = domain.split('.');
                alnum(local, b"._%+-")
                    && labels.clone().count() >= 2
                    && labels.all(|label| alnum(label, b"-"))
            }
            None => false,
        },
        Rail::Wise => text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0'),
        Rail::Partnerstack => alnum(text, b"_-"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RAILS: [Rail; 4] = [Rail::Stripe, Rail::Paypal, Rail::Wise, Rail::Partnerstack];

    fn published(rail: Rail) -> regex::Regex {
        regex::Regex::new(pattern(rail)).expect("the published pattern compiles")
    }

    fn by_pattern(rail: Rail, text: &str) -> bool {
        published(rail).is_match(text) && text.chars().count() <= max_len(rail)
    }

    #[test]
    fn examples_each_way() {
        let good = [
            (Rail::Stripe, "acct_1A2b3C"),
            (Rail::Paypal, "gina.o+pay@mail.example.com"),
            (Rail::Wise, "1001"),
            (Rail::Wise, "9999999999999999999"),
            (Rail::Partnerstack, "pk_alice-1"),
        ];
        for (rail, text) in good {
            assert!(is_valid(rail, text), "{rail} {text}");
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
            assert!(!is_valid(rail, text), "{rail} {text:?}");
            assert!(!by_pattern(rail, text), "{rail} {text:?}");
        }
    }

    proptest! {
        /// The hand-written check and the published pattern accept exactly the same strings,
        /// drawn from the characters that matter (and a few that must never pass).
        #[test]
        fn the_check_is_the_published_pattern(
            rail in prop::sample::select(RAILS.to_vec()),
            text in "(acct_)?[A-Za-z0-9._%+@ \\-é]{0,24}",
        ) {
            prop_assert_eq!(is_valid(rail, &text), by_pattern(rail, &text), "{} {:?}", rail, text);
        }

        #[test]
        fn emails_and_numbers_agree_too(
            rail in prop::sample::select(vec![Rail::Paypal, Rail::Wise]),
            text in "[a-z0-9.]{0,6}@?[a-z0-9.\\-]{0,8}|[0-9]{0,21}",
        ) {
            prop_assert_eq!(is_valid(rail, &text), by_pattern(rail, &text), "{} {:?}", rail, text);
        }
    }
}
