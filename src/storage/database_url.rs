//! The database URL: it may carry a password, so it is held as a secret and only ever shown
//! redacted (`postgres://payouts:***@db:5432/payouts`), in messages, logs and `Debug` alike.

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};

/// What `DATABASE_URL` / `--database-url` hold: `postgres://…`, `sqlite://…` or a file path.
#[derive(Clone)]
pub struct DatabaseUrl(SecretString);

impl DatabaseUrl {
    /// The URL itself, for the driver only: never format it into a message.
    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL as it may be shown: see [`redact`].
    pub fn redacted(&self) -> String {
        redact(self.expose())
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        DatabaseUrl(SecretString::from(url))
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        DatabaseUrl(SecretString::from(url))
    }
}

/// Any text is a URL to try; what is wrong with it is said when opening, redacted.
impl FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;
    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Ok(DatabaseUrl::from(url))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&self.redacted())
            .finish()
    }
}

/// A URL with its password replaced by `***`, the user kept: in the user-info part
/// (`user:pw@`, up to the last `@`, so a password holding `@`, `/` or `?` is covered) and in
/// a `password=` query parameter. Text that is not a `scheme://` URL (a file path) is shown
/// as it is. When in doubt, more is hidden, never less.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let mut shown = format!("{scheme}://");
    let after = match rest.rfind('@') {
        Some(at) => {
            let (info, after) = (&rest[..at], &rest[at + 1..]);
            match info.split_once(':') {
                Some((user, _)) => shown.push_str(&format!("{user}:***@")),
                None => shown.push_str(&format!("{info}@")),
            }
            after
        }
        None => rest,
    };
    match after.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    // A key in percent-encoding might spell `password`: hidden too.
                    Some((key, _)) if key.eq_ignore_ascii_case("password") || key.contains('%') => {
                        format!("{key}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            shown.push_str(&format!("{base}?{}", query.join("&")));
        }
        None => shown.push_str(after),
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_shown_and_the_rest_is() {
        let cases = [
            (
                "postgres://payouts:s3cr3t-pw@127.0.0.1:5432/payouts",
                "postgres://payouts:***@127.0.0.1:5432/payouts",
            ),
            (
                "postgresql://u:s3cr3t@pw/x?y@db/payouts?sslmode=require",
                "postgresql://u:***@db/payouts?sslmode=require",
            ),
            (
                "postgres://db/payouts?user=u&password=s3cr3t&sslmode=require",
                "postgres://db/payouts?user=u&password=***&sslmode=require",
            ),
            (
                "postgres://db/p?pass%77ord=s3cr3t",
                "postgres://db/p?pass%77ord=***",
            ),
            (
                "postgres://postgres@127.0.0.1:5432/x",
                "postgres://postgres@127.0.0.1:5432/x",
            ),
            ("sqlite://payouts.db", "sqlite://payouts.db"),
            ("/var/lib/payouts.db", "/var/lib/payouts.db"),
        ];
        for (url, expected) in cases {
            let url = DatabaseUrl::from(url);
            assert_eq!(url.to_string(), expected);
            assert!(!format!("{url:?}").contains("s3cr3t"), "{url:?}");
            assert!(format!("{url:?}").contains(expected), "{url:?}");
        }
        let url: DatabaseUrl = "postgres://a:b@h/d".parse().unwrap_or_else(|e| match e {});
        assert_eq!(url.expose(), "postgres://a:b@h/d");
    }
}
