//! `POST /v1/payments/payouts`: all-or-nothing validation, `sender_batch_id` dedupe, the
//! debit of the sender balance, and the faults around the commit.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use rust_decimal::Decimal;

use super::AppState;
use super::engine::{Batch, Inner, ItemState, Script, now_text};
use super::reply::{authorized, detail, error, simple};
use crate::domain::money::Currency;
use crate::providers::paypal::wire::{
    self, BatchHeader, CreatePayout, CreateResponse, ErrorBody, ErrorDetail, PayoutItem,
};
use crate::sim::kit;
use crate::sim::kit::{Faults, dropped_connection, json_response, lock, with_retry_after};

struct Valid {
    header_recipient: Option<String>,
    items: Vec<(Currency, i64, Script)>,
}

fn validate(req: &CreatePayout) -> Result<Valid, Vec<ErrorDetail>> {
    let mut details = Vec::new();
    let header = req.sender_batch_header.clone().unwrap_or_default();
    match header.sender_batch_id.as_deref() {
        None | Some("") => details.push(detail(
            "sender_batch_header.sender_batch_id",
            "MISSING_REQUIRED_PARAMETER",
        )),
        Some(id) if id.chars().count() > 256 => details.push(detail(
            "sender_batch_header.sender_batch_id",
            "VALUE_TOO_LONG",
        )),
        Some(_) => {}
    }
    if req.items.is_empty() {
        details.push(detail("items", "MISSING_REQUIRED_PARAMETER"));
    }
    if req.items.len() > 15_000 {
        details.push(detail("items", "Maximum number of items exceeded"));
    }
    let mut items = Vec::new();
    for (i, item) in req.items.iter().enumerate() {
        let f = |name: &str| format!("items[{i}].{name}");
        let kind = item
            .recipient_type
            .clone()
            .or_else(|| header.recipient_type.clone());
        match kind.as_deref() {
            Some("EMAIL" | "PHONE" | "PAYPAL_ID") => {}
            None => details.push(detail(&f("recipient_type"), "MISSING_REQUIRED_PARAMETER")),
            Some(_) => details.push(detail(&f("recipient_type"), "INVALID_PARAMETER_SYNTAX")),
        }
        let receiver = item.receiver.as_deref().unwrap_or("");
        if receiver.is_empty() {
            details.push(detail(&f("receiver"), "MISSING_REQUIRED_PARAMETER"));
        } else if receiver.chars().count() > 127
            || (kind.as_deref() == Some("EMAIL")
                && (!receiver.contains('@')
                    || receiver.starts_with('@')
                    || receiver.ends_with('@')))
        {
            details.push(detail(
                &f("receiver"),
                "Receiver is invalid or does not match with type",
            ));
        }
        if item
            .sender_item_id
            .as_deref()
            .is_some_and(|s| s.chars().count() > 63)
        {
            details.push(detail(&f("sender_item_id"), "VALUE_TOO_LONG"));
        }
        let Some(amount) = &item.amount else {
            details.push(detail(&f("amount"), "MISSING_REQUIRED_PARAMETER"));
            continue;
        };
        let Ok(currency) = amount.currency.parse::<Currency>() else {
            details.push(detail(&f("amount.currency"), "Currency code is invalid"));
            continue;
        };
        let value = amount.value.parse::<Decimal>().ok();
        match (value, amount.to_minor()) {
            (Some(v), Some((_, minor))) if v > Decimal::ZERO => {
                items.push((currency, minor, Script::for_receiver(receiver)))
            }
            (Some(v), _) if v <= Decimal::ZERO => details.push(detail(
                &f("amount.value"),
                "Amount must be greater than zero",
            )),
            _ => details.push(detail(
                &f("amount.value"),
                "Currency does not support decimals or value has too many decimal places",
            )),
        }
    }
    if details.is_empty() {
        Ok(Valid {
            header_recipient: header.recipient_type,
            items,
        })
    } else {
        Err(details)
    }
}

pub(super) async fn create(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let request_id = headers
        .get(wire::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let latency = match admit(&s, &headers, request_id.as_deref()) {
        Ok(latency) => latency,
        Err(r) => return *r,
    };
    let req: CreatePayout = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return malformed(&e),
    };
    let valid = match validate(&req) {
        Ok(v) => v,
        Err(details) => {
            let mut b = ErrorBody::new("VALIDATION_ERROR", "Invalid request - see details.");
            b.details = details;
            return error(400, &b);
        }
    };
    if latency > 0 {
        crate::clock::sleep(Duration::from_millis(latency)).await;
    }
    let mut guard = lock(&s.inner);
    let inner = &mut *guard;
    let faults = inner.faults.clone();
    if inner.dice.fault(kit::REFUSED_5XX, faults.error_rate) {
        return internal_error();
    }
    let header = req.sender_batch_header.clone().unwrap_or_default();
    let sender_batch_id = header.sender_batch_id.clone().unwrap_or_default();
    if let Some(r) = duplicate_batch(inner, &sender_batch_id) {
        return r;
    }
    let needed = match debit_balance(inner, &valid.items) {
        Ok(needed) => needed,
        Err(r) => return *r,
    };
    let response = record_batch(inner, &req, valid, &needed);
    let body = serde_json::to_string(&response).unwrap_or_default();
    if inner.request_id_replay
        && let Some(id) = request_id
    {
        inner
            .request_ids
            .insert(id, (201, body.clone(), crate::clock::instant()));
    }
    after_commit(inner, &faults).unwrap_or_else(|| json_response(201, body))
}

/// Counts the request, checks the token, and takes the decisions made before the body is
/// read: a rate-limit refusal or, with replay on, the stored answer to a repeated
/// `PayPal-Request-Id`. Otherwise the latency to wait before executing.
fn admit(
    s: &AppState,
    headers: &HeaderMap,
    request_id: Option<&str>,
) -> Result<u64, Box<Response>> {
    let mut inner = lock(&s.inner);
    inner.payout_requests += 1;
    authorized(&inner, headers)?;
    let rate = inner.faults.rate_limit_rate;
    if inner.dice.fault(kit::RATE_LIMITED, rate) {
        return Err(Box::new(with_retry_after(
            simple(
                429,
                "RATE_LIMIT_REACHED",
                "Too many requests. Blocked due to rate limiting.",
            ),
            1,
        )));
    }
    if inner.request_id_replay
        && let Some(id) = request_id
        && let Some((status, body, at)) = inner.request_ids.get(id).cloned()
        && inner.remembered(at)
    {
        return Err(Box::new(json_response(status, body)));
    }
    Ok(inner.faults.latency_ms)
}

/// PayPal's 400 for a body that is not a payout request at all.
fn malformed(e: &serde_json::Error) -> Response {
    let mut b = ErrorBody::new(
        "INVALID_REQUEST",
        "Request is not well-formed, syntactically incorrect, or violates schema.",
    );
    b.details.push(ErrorDetail {
        field: Some("/".into()),
        issue: Some("MALFORMED_REQUEST_JSON".into()),
        description: Some(e.to_string()),
        ..Default::default()
    });
    error(400, &b)
}

fn internal_error() -> Response {
    simple(
        500,
        "INTERNAL_ERROR",
        "An internal server error has occurred.",
    )
}

/// The 400 for a `sender_batch_id` still remembered, linking to the batch it made.
fn duplicate_batch(inner: &Inner, sender_batch_id: &str) -> Option<Response> {
    let (original, at) = inner.sender_batch_ids.get(sender_batch_id).cloned()?;
    if !inner.remembered(at) {
        kit::injected(kit::KEY_EXPIRED);
        return None;
    }
    let mut b = ErrorBody::new("USER_BUSINESS_ERROR", "User business error.");
    b.details.push(ErrorDetail {
        field: Some("SENDER_BATCH_ID".into()),
        value: Some(sender_batch_id.to_string()),
        location: Some("body".into()),
        issue: Some("Batch with given sender_batch_id already exists".into()),
        description: None,
    });
    b.links
        .push(inner.self_link(&format!("/v1/payments/payouts/{original}")));
    Some(error(400, &b))
}

/// Takes the batch's total per currency from the sender balance, all or nothing (422
/// `INSUFFICIENT_FUNDS` if any currency is short). Returns the totals.
fn debit_balance(
    inner: &mut Inner,
    items: &[(Currency, i64, Script)],
) -> Result<BTreeMap<Currency, i64>, Box<Response>> {
    let mut needed: BTreeMap<Currency, i64> = BTreeMap::new();
    for (c, m, _) in items {
        *needed.entry(*c).or_default() += m;
    }
    for (c, m) in &needed {
        if inner.balance_of(*c) < *m {
            let mut b = ErrorBody::new(
                "UNPROCESSABLE_ENTITY",
                "The requested action could not be performed, semantically incorrect, or failed business validation.",
            );
            b.details.push(detail("items", "INSUFFICIENT_FUNDS"));
            return Err(Box::new(error(422, &b)));
        }
    }
    for (c, m) in &needed {
        let now = inner.balance_of(*c);
        inner.balance.insert(*c, now - m);
    }
    Ok(needed)
}

/// Stores the new `PENDING` batch and its items (the processing ticker takes them on from
/// there), remembers its `sender_batch_id`, and returns the 201 body.
fn record_batch(
    inner: &mut Inner,
    req: &CreatePayout,
    valid: Valid,
    needed: &BTreeMap<Currency, i64>,
) -> CreateResponse {
    let header = req.sender_batch_header.clone().unwrap_or_default();
    let sender_batch_id = header.sender_batch_id.clone().unwrap_or_default();
    let batch_id = inner.id("MOCKB");
    let created_at = now_text();
    let items = new_items(inner, req, valid, &batch_id, &sender_batch_id);
    let total = needed.iter().next().map(|(c, m)| wire::Amount {
        value: Decimal::new(*m, c.minor_decimals()).to_string(),
        currency: c.code().to_string(),
    });
    let batch_header = BatchHeader {
        payout_batch_id: batch_id.clone(),
        batch_status: "PENDING".into(),
        time_created: Some(created_at),
        time_completed: None,
        time_closed: None,
        sender_batch_header: header,
        funding_source: Some("BALANCE".into()),
        amount: total,
        fees: None,
    };
    inner.batches.push(Batch {
        header: batch_header.clone(),
        items,
    });
    inner
        .sender_batch_ids
        .insert(sender_batch_id, (batch_id.clone(), crate::clock::instant()));
    CreateResponse {
        batch_header,
        links: vec![inner.self_link(&format!("/v1/payments/payouts/{batch_id}"))],
    }
}

/// One `PENDING` item per request item, echoing it (with the header's recipient type filled
/// in) and carrying the script its receiver chose.
fn new_items(
    inner: &mut Inner,
    req: &CreatePayout,
    valid: Valid,
    batch_id: &str,
    sender_batch_id: &str,
) -> Vec<ItemState> {
    let mut items = Vec::new();
    for (req_item, (currency, minor, script)) in req.items.iter().zip(valid.items) {
        let mut echoed = req_item.clone();
        echoed.recipient_type = echoed
            .recipient_type
            .or_else(|| valid.header_recipient.clone());
        let item_id = inner.id("MOCKI");
        items.push(ItemState {
            item: PayoutItem {
                links: vec![inner.self_link(&format!("/v1/payments/payouts-item/{item_id}"))],
                payout_item_id: item_id,
                transaction_id: None,
                activity_id: None,
                transaction_status: "PENDING".into(),
                payout_item_fee: None,
                payout_batch_id: batch_id.to_string(),
                sender_batch_id: Some(sender_batch_id.to_string()),
                payout_item: echoed,
                time_processed: None,
                errors: None,
            },
            script,
            since: crate::clock::instant(),
            currency,
            minor,
            credited: false,
        });
    }
    items
}

/// Faults after the batch was committed: a dropped connection or a 500, else `None`.
fn after_commit(inner: &mut Inner, faults: &Faults) -> Option<Response> {
    let drop = faults.drop_first_attempt || inner.dice.roll(faults.drop_after_commit_rate);
    if drop {
        kit::injected(kit::DROPPED_AFTER_COMMIT);
        return Some(dropped_connection());
    }
    if inner
        .dice
        .fault(kit::FAILED_AFTER_COMMIT, faults.error_after_commit_rate)
    {
        return Some(internal_error());
    }
    None
}
