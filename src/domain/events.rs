//! Outgoing events: what the platform hears about, when, and how it can trust what it hears.
//!
//! An event is written in the same transaction as the change it reports (an outbox), then
//! delivered to every endpoint that subscribes to its type, in order per subject (a payout,
//! an account), signed in Stripe's scheme and retried with backoff for three days. This
//! module holds the rules: which move makes which event, what a failed payee can do about
//! it, when the next try is due, and the signature.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::status::PayoutStatus;

/// Every kind of event the platform can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
pub enum EventType {
    #[serde(rename = "payout.created")]
    PayoutCreated,
    /// Sent to the provider for the first time (or again after an operator's retry).
    #[serde(rename = "payout.processing")]
    PayoutProcessing,
    #[serde(rename = "payout.paid")]
    PayoutPaid,
    /// Refused for good, with the provider's reason and what the payee can do.
    #[serde(rename = "payout.failed")]
    PayoutFailed,
    /// Delivered, then the money came back to the balance.
    #[serde(rename = "payout.returned")]
    PayoutReturned,
    #[serde(rename = "payout.needs_operator")]
    PayoutNeedsOperator,
    /// Waiting before it is sent: a cooling-off hold, a paused rail, a review.
    #[serde(rename = "payout.held")]
    PayoutHeld,
    /// An account became able to cash out in a program and currency.
    #[serde(rename = "balance.payable")]
    BalancePayable,
    #[serde(rename = "reconciliation.exception")]
    ReconciliationException,
}

impl EventType {
    pub const ALL: [EventType; 9] = [
        EventType::PayoutCreated,
        EventType::PayoutProcessing,
        EventType::PayoutPaid,
        EventType::PayoutFailed,
        EventType::PayoutReturned,
        EventType::PayoutNeedsOperator,
        EventType::PayoutHeld,
        EventType::BalancePayable,
        EventType::ReconciliationException,
    ];

    pub fn code(self) -> &'static str {
        match self {
            EventType::PayoutCreated => "payout.created",
            EventType::PayoutProcessing => "payout.processing",
            EventType::PayoutPaid => "payout.paid",
            EventType::PayoutFailed => "payout.failed",
            EventType::PayoutReturned => "payout.returned",
            EventType::PayoutNeedsOperator => "payout.needs_operator",
            EventType::PayoutHeld => "payout.held",
            EventType::BalancePayable => "balance.payable",
            EventType::ReconciliationException => "reconciliation.exception",
        }
    }

    pub fn parse(code: &str) -> Result<EventType, UnknownEventType> {
        Self::ALL
            .into_iter()
            .find(|t| t.code() == code.trim())
            .ok_or_else(|| UnknownEventType(code.trim().to_string()))
    }

    /// Parses a comma-separated list (`payout.paid,payout.failed`); empty items are ignored,
    /// an unknown one is an error naming it and the known ones.
    pub fn parse_list(list: &str) -> Result<Vec<EventType>, UnknownEventType> {
        let mut types = list
            .split(',')
            .filter(|t| !t.trim().is_empty())
            .map(EventType::parse)
            .collect::<Result<Vec<_>, _>>()?;
        types.sort();
        types.dedup();
        Ok(types)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type {0:?}; the types are: {known}", known = EventType::ALL.map(EventType::code).join(", "))]
pub struct UnknownEventType(pub String);

/// Where an endpoint's events go: an absolute `https` URL (plain `http` only to this
/// machine, for development), with no credentials in it (the signature is the credential,
/// and a password in a URL would be shown wherever endpoints are listed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct EndpointUrl(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadEndpointUrl {
    #[error("the endpoint URL is not an absolute URL: {0}")]
    NotAUrl(String),
    #[error("the endpoint URL must use https (plain http only to localhost)")]
    NotHttps,
    #[error(
        "the endpoint URL must not carry a user name or password: the signature authenticates each event"
    )]
    Credentials,
    #[error("the endpoint URL is longer than {MAX_URL} characters")]
    TooLong,
}

const MAX_URL: usize = 2048;

impl EndpointUrl {
    pub fn parse(text: &str) -> Result<EndpointUrl, BadEndpointUrl> {
        let text = text.trim();
        if text.len() > MAX_URL {
            return Err(BadEndpointUrl::TooLong);
        }
        let url = url::Url::parse(text).map_err(|e| BadEndpointUrl::NotAUrl(e.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(BadEndpointUrl::Credentials);
        }
        let local = matches!(url.host(), Some(url::Host::Domain("localhost")))
            || matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
            || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
        match url.scheme() {
            "https" if url.host().is_some() => Ok(EndpointUrl(url.to_string())),
            "http" if local => Ok(EndpointUrl(url.to_string())),
            "http" | "https" => Err(BadEndpointUrl::NotHttps),
            _ => Err(BadEndpointUrl::NotHttps),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A `--since` time: RFC 3339 (`2026-12-03T09:00:00Z`) or a day (`2026-12-03`, from its
/// midnight UTC).
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, BadSince> {
    let text = text.trim();
    if let Ok(at) = parse_instant(text) {
        return Ok(at);
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| BadSince(text.to_string()))
}

/// An RFC 3339 time only (`2026-12-03T09:00:00Z`): what the API's `date-time` fields take.
pub fn parse_instant(text: &str) -> Result<DateTime<Utc>, BadSince> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| BadSince(text.trim().to_string()))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a time: give RFC 3339 (2026-12-03T09:00:00Z) or a day (2026-12-03)")]
pub struct BadSince(pub String);

/// The event a payout's move reports, if any. Moves inside the engine's own retry loop
/// (a retry scheduled, an uncertain outcome being looked up) are not news for the platform.
pub fn of_move(from: Option<PayoutStatus>, to: PayoutStatus) -> Option<EventType> {
    use PayoutStatus as S;
    match (from, to) {
        (None, _) => Some(EventType::PayoutCreated),
        (Some(from), to) if from == to => None,
        // The first send starts from `queued`; later ones from a retry or a lookup.
        (Some(S::Queued), S::Submitting) => Some(EventType::PayoutProcessing),
        (_, S::Paid) => Some(EventType::PayoutPaid),
        (_, S::Failed) => Some(EventType::PayoutFailed),
        (_, S::Returned) => Some(EventType::PayoutReturned),
        (_, S::NeedsOperator) => Some(EventType::PayoutNeedsOperator),
        _ => None,
    }
}

/// How an account's cash-out standing in one program and currency moved since it was last
/// reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Able to cash out now and not reported yet: `balance.payable`.
    BecamePayable,
    /// Reported before, not payable any more: the next time it is, it is news again.
    NoLongerPayable,
    Unchanged,
}

/// `reported`: a `balance.payable` was sent and still holds; `payable_now`: what could be
/// cashed out now (zero when ineligible, below the minimum or all of it held).
pub fn standing(reported: bool, payable_now: &crate::domain::money::Money) -> Standing {
    match (reported, payable_now.is_positive()) {
        (false, true) => Standing::BecamePayable,
        (true, false) => Standing::NoLongerPayable,
        _ => Standing::Unchanged,
    }
}

/// Why a payout is held before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldFor {
    /// A payout method new or changed on an account that already held money.
    CoolingOff,
    /// An operator paused the rail.
    RailPaused,
    /// A review rule flagged it: an operator approves or rejects it.
    Review,
    /// A tax form is missing: it is released when the form arrives.
    TaxForm,
}

/// What a payee can do about a failed or returned payout, for the platform to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayeeAction {
    /// The destination was refused: add or correct the payout method, then withdraw again.
    UpdatePayoutMethod,
    /// Nothing the payee did: the money is back in the balance; withdraw again or ask support.
    ContactSupport,
}

impl PayeeAction {
    /// Read off the provider's reason: refusals that name the destination (a closed,
    /// unknown, invalid or unverified account, recipient or receiver) are the payee's to fix.
    pub fn of_reason(reason: &str) -> PayeeAction {
        const PAYEE_WORDS: [&str; 12] = [
            "account_closed",
            "closed",
            "invalid_account",
            "no_account",
            "no such destination",
            "destination",
            "recipient",
            "receiver",
            "unverified",
            "not found",
            "invalid account",
            "bank",
        ];
        let reason = reason.to_ascii_lowercase();
        if PAYEE_WORDS.iter().any(|w| reason.contains(w)) {
            PayeeAction::UpdatePayoutMethod
        } else {
            PayeeAction::ContactSupport
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            PayeeAction::UpdatePayoutMethod => {
                "the payout method was refused: add or correct it, then withdraw again"
            }
            PayeeAction::ContactSupport => {
                "the money is back in the balance: withdraw again later or contact support"
            }
        }
    }
}

/// How long a delivery is retried before it is given up: three days, as Stripe does.
pub const RETRY_FOR: Duration = Duration::from_secs(3 * 24 * 3600);

/// The delay before try number `tries_made + 1`: 30 s doubling to a ceiling of 6 hours, so a
/// receiver that is down for a day is tried about a dozen times and not thousands.
pub fn retry_delay(tries_made: u32) -> Duration {
    const FIRST: u64 = 30;
    const CEILING: u64 = 6 * 3600;
    let doublings = tries_made.saturating_sub(1).min(20);
    Duration::from_secs((FIRST << doublings).min(CEILING))
}

/// When a delivery that has failed `tries_made` times is tried next, or `None` once that
/// would fall past the three days from the event's creation: then it is given up.
pub fn next_try(
    created: DateTime<Utc>,
    tries_made: u32,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let at = now + chrono::Duration::from_std(retry_delay(tries_made)).ok()?;
    let deadline = created + chrono::Duration::from_std(RETRY_FOR).ok()?;
    (at <= deadline).then_some(at)
}

/// The `Payouts-Signature` header for `body` sent at `t` (Unix seconds):
/// `t=<t>,v1=<hex HMAC-SHA256 of "<t>." + body keyed by the secret>`, Stripe's scheme.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!(
        "t={t},v1={}",
        hex::encode(keyed(secret, t, body).finalize().into_bytes())
    )
}

/// The MAC over `"<t>." + body`.
fn keyed(secret: &[u8], t: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length: `new_from_slice` cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature was made {0} s away from now, past the tolerance")]
    Stale(i64),
    #[error("no v1 signature matches the body")]
    Mismatch,
}

/// What a receiver does: checks a header against the raw body, within `tolerance` of `now`
/// (which stops a captured delivery from being replayed later), in constant time.
pub fn verify(
    header: &str,
    secret: &[u8],
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => {
                signatures.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?);
            }
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    let skew = now.saturating_sub(t).saturating_abs();
    if u64::try_from(skew).map_or(true, |s| s > tolerance.as_secs()) {
        return Err(SignatureError::Stale(skew));
    }
    let mac = keyed(secret, t, body);
    if signatures
        .iter()
        .any(|s| mac.clone().verify_slice(s).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PayoutStatus as S;

    #[test]
    fn each_move_reports_at_most_one_event() {
        assert_eq!(of_move(None, S::Queued), Some(EventType::PayoutCreated));
        assert_eq!(
            of_move(Some(S::Queued), S::Submitting),
            Some(EventType::PayoutProcessing)
        );
        // A retry's send is not news; the first one was.
        assert_eq!(of_move(Some(S::RetryScheduled), S::Submitting), None);
        assert_eq!(of_move(Some(S::OutcomeUnknown), S::Submitting), None);
        assert_eq!(of_move(Some(S::Submitting), S::RetryScheduled), None);
        assert_eq!(of_move(Some(S::Submitting), S::Processing), None);
        assert_eq!(
            of_move(Some(S::Processing), S::Paid),
            Some(EventType::PayoutPaid)
        );
        assert_eq!(
            of_move(Some(S::Submitting), S::Failed),
            Some(EventType::PayoutFailed)
        );
        assert_eq!(
            of_move(Some(S::Paid), S::Returned),
            Some(EventType::PayoutReturned)
        );
        assert_eq!(
            of_move(Some(S::OutcomeUnknown), S::NeedsOperator),
            Some(EventType::PayoutNeedsOperator)
        );
        assert_eq!(
            of_move(Some(S::NeedsOperator), S::Paid),
            Some(EventType::PayoutPaid)
        );
        assert_eq!(of_move(Some(S::Paid), S::Paid), None);
    }

    #[test]
    fn endpoint_urls_are_https_without_credentials() {
        assert!(EndpointUrl::parse("https://platform.example/hooks/payouts").is_ok());
        assert!(EndpointUrl::parse("http://127.0.0.1:8080/events").is_ok());
        assert!(EndpointUrl::parse("http://localhost/events").is_ok());
        assert_eq!(
            EndpointUrl::parse("http://platform.example/events"),
            Err(BadEndpointUrl::NotHttps)
        );
        assert_eq!(
            EndpointUrl::parse("https://user:pw@platform.example/events"),
            Err(BadEndpointUrl::Credentials)
        );
        assert!(matches!(
            EndpointUrl::parse("/events"),
            Err(BadEndpointUrl::NotAUrl(_))
        ));
        assert_eq!(
            EndpointUrl::parse("ftp://platform.example/"),
            Err(BadEndpointUrl::NotHttps)
        );
        let long = format!("https://platform.example/{}", "a".repeat(3000));
        assert_eq!(EndpointUrl::parse(&long), Err(BadEndpointUrl::TooLong));
    }

    #[test]
    fn a_balance_is_news_when_it_becomes_payable_and_again_only_after_it_stopped() {
        use crate::domain::money::{Currency, Money};
        let usd = |a: &str| Money::parse(a, Currency::Usd, 2).unwrap();
        assert_eq!(standing(false, &usd("25.00")), Standing::BecamePayable);
        assert_eq!(standing(true, &usd("30.00")), Standing::Unchanged);
        assert_eq!(standing(true, &usd("0")), Standing::NoLongerPayable);
        assert_eq!(standing(false, &usd("0")), Standing::Unchanged);
    }

    #[test]
    fn since_takes_a_timestamp_or_a_day() {
        assert_eq!(
            parse_since("2026-12-03T09:30:00+01:00")
                .unwrap()
                .to_rfc3339(),
            "2026-12-03T08:30:00+00:00"
        );
        assert_eq!(
            parse_since("2026-12-03").unwrap().to_rfc3339(),
            "2026-12-03T00:00:00+00:00"
        );
        assert!(parse_since("yesterday").is_err());
    }

    #[test]
    fn type_lists_parse_strictly() {
        assert_eq!(
            EventType::parse_list("payout.paid, payout.failed,,payout.paid").unwrap(),
            vec![EventType::PayoutPaid, EventType::PayoutFailed]
        );
        let err = EventType::parse_list("payout.paid,payout.sent").unwrap_err();
        assert_eq!(err.0, "payout.sent");
        assert!(err.to_string().contains("payout.needs_operator"), "{err}");
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.code()), Ok(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.code());
        }
    }

    #[test]
    fn a_refused_destination_is_the_payees_to_fix() {
        assert_eq!(
            PayeeAction::of_reason("stripe 400 account_closed: request refused"),
            PayeeAction::UpdatePayoutMethod
        );
        assert_eq!(
            PayeeAction::of_reason("paypal RECEIVER_UNREGISTERED"),
            PayeeAction::UpdatePayoutMethod
        );
        assert_eq!(
            PayeeAction::of_reason("provider answered 401: invalid api key"),
            PayeeAction::ContactSupport
        );
    }

    #[test]
    fn retries_back_off_and_stop_after_three_days() {
        assert_eq!(retry_delay(1), Duration::from_secs(30));
        assert_eq!(retry_delay(2), Duration::from_secs(60));
        assert_eq!(retry_delay(30), Duration::from_secs(6 * 3600));
        let created = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(
            next_try(created, 1, created),
            Some(created + chrono::Duration::seconds(30))
        );
        let late = created + chrono::Duration::hours(71);
        assert_eq!(next_try(created, 12, late), None);
        // Tries spread over the three days, a bounded number of them.
        let (mut now, mut tries) = (created, 0);
        while let Some(at) = next_try(created, tries + 1, now) {
            now = at;
            tries += 1;
        }
        assert!((15..=25).contains(&tries), "{tries} tries");
        assert!(now > created + chrono::Duration::hours(60));
    }

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time() {
        let (secret, body, t) = (
            b"whsec_test".as_slice(),
            br#"{"id":"evt_1"}"#.as_slice(),
            1_800_000_000,
        );
        let header = signature(secret, t, body);
        // The README's Python check computes the same MAC.
        assert_eq!(
            header,
            "t=1800000000,v1=45705be2a45ab5acdd1395cc695e9e7073125385ec24194921c401dff44176f8"
        );
        let tolerance = Duration::from_secs(300);
        assert_eq!(verify(&header, secret, body, t + 10, tolerance), Ok(()));
        assert_eq!(
            verify(&header, b"other", body, t, tolerance),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&header, secret, br#"{"id":"evt_2"}"#, t, tolerance),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&header, secret, body, t + 301, tolerance),
            Err(SignatureError::Stale(301))
        );
        assert_eq!(
            verify("v1=00", secret, body, t, tolerance),
            Err(SignatureError::Malformed)
        );
    }
}
