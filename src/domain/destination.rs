//! Where money goes on a rail: the grammar of a destination. Each rail declares its own
//! (`providers::<rail>::facts`); the same grammar is checked here by hand and published as a
//! regular expression in the OpenAPI document, and a property test over every rail
//! (`providers::facts` tests) keeps the two equal, so what the document promises is exactly
//! what is accepted.

/// A rail's destination grammar.
#[derive(Debug)]
pub struct Grammar {
    /// As a regular expression (ECMA-262 and Rust's `regex` agree on it), with `max_len`.
    pub pattern: &'static str,
    /// The longest destination accepted, in characters (all are ASCII).
    pub max_len: usize,
    /// What a payee is asked for, for error messages.
    pub expected: &'static str,
    /// The hand-written check of `pattern`'s shape (length is checked by [`Grammar::accepts`]).
    pub shape: fn(&str) -> bool,
}

impl Grammar {
    /// Whether `text` is a destination, exactly as `pattern` and `max_len` say.
    pub fn accepts(&self, text: &str) -> bool {
        !text.is_empty() && text.len() <= self.max_len && (self.shape)(text)
    }
}

/// Non-empty, and only ASCII letters, digits and `extra`: the building block of every
/// rail's grammar.
pub fn alnum(s: &str, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGITS: Grammar = Grammar {
        pattern: "^[0-9]+$",
        max_len: 3,
        expected: "digits",
        shape: |t| t.bytes().all(|b| b.is_ascii_digit()),
    };

    #[test]
    fn length_and_emptiness_are_checked_before_the_shape() {
        assert!(DIGITS.accepts("123"));
        assert!(!DIGITS.accepts(""));
        assert!(!DIGITS.accepts("1234"));
        assert!(!DIGITS.accepts("12a"));
        assert!(alnum("a_b", b"_") && !alnum("", b"") && !alnum("a b", b""));
    }
}
