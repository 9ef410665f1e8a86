//! The form body of `POST /v1/transfers`, parsed and checked as Stripe does: unknown
//! parameters refused, `amount`, `currency` and `destination` required.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;

use super::reply::stripe_error;
use crate::domain::money::Currency;

/// The parameters a transfer may be created with, besides `metadata[…]`.
const KNOWN: &[&str] = &[
    "amount",
    "currency",
    "destination",
    "transfer_group",
    "description",
    "source_transaction",
    "source_type",
    "expand[]",
];

/// Parsed and validated parameters of POST /v1/transfers.
pub(super) struct CreateParams {
    pub(super) amount: i64,
    pub(super) currency: String,
    pub(super) destination: String,
    pub(super) transfer_group: Option<String>,
    pub(super) description: Option<String>,
    pub(super) metadata: BTreeMap<String, String>,
    /// What a repeat under the same idempotency key must match.
    pub(super) fingerprint: String,
}

pub(super) fn parse_create(body: &Bytes) -> Result<CreateParams, Box<Response>> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|e| {
        bad(
            "parameter_invalid",
            format!("Invalid form body: {e}"),
            "body",
        )
    })?;
    let (fields, metadata) = sort_fields(&pairs)?;
    let amount = amount(&fields)?;
    let currency = currency(&fields)?;
    let destination = destination(&fields)?;
    let mut sorted = pairs.clone();
    sorted.sort();
    Ok(CreateParams {
        amount,
        currency: currency.clone(),
        destination: destination.clone(),
        transfer_group: fields.get("transfer_group").cloned(),
        description: fields.get("description").cloned(),
        metadata,
        fingerprint: format!("POST /v1/transfers {sorted:?}"),
    })
}

/// Stripe's 400 `invalid_request_error` naming the parameter at fault.
fn bad(code: &str, msg: String, param: &str) -> Box<Response> {
    Box::new(stripe_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        Some(code),
        &msg,
        Some(param),
    ))
}

type Fields = BTreeMap<String, String>;

/// Separates `metadata[key]` pairs from the known parameters; any other name is refused.
fn sort_fields(pairs: &[(String, String)]) -> Result<(Fields, Fields), Box<Response>> {
    let mut fields = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (k, v) in pairs {
        if let Some(key) = k
            .strip_prefix("metadata[")
            .and_then(|k| k.strip_suffix(']'))
        {
            metadata.insert(key.to_string(), v.clone());
        } else if KNOWN.contains(&k.as_str()) {
            fields.insert(k.clone(), v.clone());
        } else {
            return Err(bad(
                "parameter_unknown",
                format!("Received unknown parameter: {k}"),
                k,
            ));
        }
    }
    Ok((fields, metadata))
}

/// The required `amount`: a positive integer of minor units.
fn amount(fields: &Fields) -> Result<i64, Box<Response>> {
    let Some(a) = fields.get("amount") else {
        return Err(bad(
            "parameter_missing",
            "Missing required param: amount.".into(),
            "amount",
        ));
    };
    a.parse::<i64>().ok().filter(|a| *a > 0).ok_or_else(|| {
        bad(
            "parameter_invalid_integer",
            format!("Invalid positive integer: {a}"),
            "amount",
        )
    })
}

/// The required `currency`: a supported code, in lower case as Stripe writes it.
fn currency(fields: &Fields) -> Result<&String, Box<Response>> {
    let currency = fields.get("currency").ok_or_else(|| {
        bad(
            "parameter_missing",
            "Missing required param: currency.".into(),
            "currency",
        )
    })?;
    if currency.parse::<Currency>().is_err() || currency.to_ascii_lowercase() != *currency {
        return Err(bad(
            "parameter_invalid",
            format!("Invalid currency: {currency}"),
            "currency",
        ));
    }
    Ok(currency)
}

/// The required `destination`: a connected account (`acct_…`).
fn destination(fields: &Fields) -> Result<&String, Box<Response>> {
    let destination = fields.get("destination").ok_or_else(|| {
        bad(
            "parameter_missing",
            "Missing required param: destination.".into(),
            "destination",
        )
    })?;
    if !destination.starts_with("acct_") {
        return Err(Box::new(stripe_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such destination: '{destination}'"),
            Some("destination"),
        )));
    }
    Ok(destination)
}
