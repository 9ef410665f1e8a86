//! Quotes: fixed-rate, by source amount only, expiring on the mock's (shiftable) clock.

use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::SecondsFormat;
use rust_decimal::{Decimal, RoundingStrategy};
use uuid::Uuid;

use super::reply::{authorized, body_of, validation};
use super::state::{Inner, MockQuote, Shared, minor_decimals, mock_now};
use crate::providers::wise::wire::{ErrorBody, Num, Quote, QuoteRequest};
use crate::sim::kit::lock;

const QUOTE_TTL_MINUTES: i64 = 30;

/// Rates the mock quotes (source, target, rate); a pair not listed is not a supported route.
const RATES: &[(&str, &str, &str)] = &[
    ("USD", "EUR", "0.9210"),
    ("USD", "GBP", "0.7900"),
    ("EUR", "USD", "1.0850"),
    ("EUR", "GBP", "0.8570"),
    ("GBP", "USD", "1.2650"),
    ("GBP", "EUR", "1.1660"),
];

fn rate(source: &str, target: &str) -> Option<Decimal> {
    if source == target {
        return Some(Decimal::ONE);
    }
    RATES
        .iter()
        .find(|(s, t, _)| *s == source && *t == target)
        .and_then(|(_, _, r)| Decimal::from_str(r).ok())
}

pub(super) async fn create_quote(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(profile): Path<String>,
    body: Bytes,
) -> Response {
    let mut guard = lock(&shared);
    let inner = &mut *guard;
    if let Err(r) = authorized(inner, &headers) {
        return *r;
    }
    if profile != inner.profile_id.to_string() {
        return validation(404, "PROFILE_NOT_FOUND", "Profile not found", None);
    }
    let req: QuoteRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return validation(400, "NOT_VALID", &e.to_string(), None),
    };
    let source_amount = match quoted_source_amount(&req) {
        Ok(amount) => amount,
        Err(r) => return *r,
    };
    let Some(rate) = rate(&req.source_currency, &req.target_currency) else {
        return route_not_supported(&req);
    };
    if let Err(r) = check_target_account(inner, &req) {
        return *r;
    }
    let quote = store_quote(inner, &req, source_amount, rate);
    body_of(200, &quote)
}

/// The positive `sourceAmount` the quote is for: the mock does not quote by target amount.
fn quoted_source_amount(req: &QuoteRequest) -> Result<Decimal, Box<Response>> {
    let Some(Num(source_amount)) = (match (req.source_amount, req.target_amount) {
        (Some(s), None) => Some(s),
        (None, Some(_)) => None,
        _ => {
            return Err(Box::new(validation(
                400,
                "NOT_VALID",
                "Exactly one of sourceAmount or targetAmount is required",
                Some("sourceAmount"),
            )));
        }
    }) else {
        return Err(Box::new(validation(
            400,
            "NOT_VALID",
            "The mock only quotes by sourceAmount",
            Some("targetAmount"),
        )));
    };
    if source_amount <= Decimal::ZERO {
        return Err(Box::new(validation(
            400,
            "NOT_VALID",
            "sourceAmount must be positive",
            Some("sourceAmount"),
        )));
    }
    Ok(source_amount)
}

/// Wise's 422 for a currency pair it does not serve, naming the pair in `arguments`.
fn route_not_supported(req: &QuoteRequest) -> Response {
    let mut body = ErrorBody::validation(
        "error.route.not.supported",
        "This route is not supported",
        Some("sourceCurrency"),
    );
    if let Some(items) = body.errors.as_mut() {
        for item in items {
            item.arguments = vec![serde_json::json!(format!(
                "{}-{}",
                req.source_currency, req.target_currency
            ))];
        }
    }
    body_of(422, &body)
}

/// A quote naming a recipient must be in that recipient's currency.
fn check_target_account(inner: &Inner, req: &QuoteRequest) -> Result<(), Box<Response>> {
    let Some(target) = req.target_account else {
        return Ok(());
    };
    match inner.accounts.iter().find(|a| a.id == target) {
        Some(a) if a.currency == req.target_currency => Ok(()),
        Some(_) => Err(Box::new(validation(
            422,
            "NOT_VALID",
            "targetCurrency does not match the recipient's currency",
            Some("targetAccount"),
        ))),
        None => Err(Box::new(validation(
            404,
            "RECIPIENT_NOT_FOUND",
            "Recipient not found",
            Some("targetAccount"),
        ))),
    }
}

/// Prices the quote (target amount rounded down to the target currency's minor unit), stamps
/// its expiry on the mock's clock, and keeps it for the transfer that will use it.
fn store_quote(
    inner: &mut Inner,
    req: &QuoteRequest,
    source_amount: Decimal,
    rate: Decimal,
) -> Quote {
    let target_amount = (source_amount * rate).round_dp_with_strategy(
        minor_decimals(&req.target_currency),
        RoundingStrategy::ToZero,
    );
    let now = mock_now(inner);
    let expires = now + chrono::Duration::minutes(QUOTE_TTL_MINUTES);
    let quote = Quote {
        id: Uuid::new_v4().to_string(),
        source_currency: req.source_currency.clone(),
        target_currency: req.target_currency.clone(),
        source_amount: Num(source_amount),
        target_amount: Num(target_amount),
        rate: Num(rate),
        rate_type: "FIXED".into(),
        created_time: now.to_rfc3339_opts(SecondsFormat::Secs, true),
        expiration_time: expires.to_rfc3339_opts(SecondsFormat::Secs, true),
        pay_out: req
            .pay_out
            .clone()
            .unwrap_or_else(|| "BANK_TRANSFER".into()),
        profile: inner.profile_id,
        status: "PENDING".into(),
    };
    inner.quotes.insert(
        quote.id.clone(),
        MockQuote {
            quote: quote.clone(),
            expires,
            target_account: req.target_account,
            used_by: None,
        },
    );
    quote
}

pub(super) async fn get_quote(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path((_, id)): Path<(String, String)>,
) -> Response {
    let inner = lock(&shared);
    if let Err(r) = authorized(&inner, &headers) {
        return *r;
    }
    match inner.quotes.get(&id) {
        Some(q) => body_of(200, &q.quote),
        None => validation(404, "QUOTE_NOT_FOUND", "Quote not found", None),
    }
}

pub(super) async fn transfer_requirements(
    State(shared): State<Shared>,
    headers: HeaderMap,
) -> Response {
    let inner = lock(&shared);
    if let Err(r) = authorized(&inner, &headers) {
        return *r;
    }
    // No extra fields are ever required by the mock.
    body_of(200, &Vec::<serde_json::Value>::new())
}
