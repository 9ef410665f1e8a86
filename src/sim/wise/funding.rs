//! Funding a transfer from the per-currency balance, which starts its scripted progression.

use std::collections::VecDeque;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use rust_decimal::Decimal;

use super::faults::{after_commit, before_execution};
use super::reply::{authorized, body_of, not_found, validation};
use super::state::{Inner, Shared, find, minor_decimals, set_status};
use super::{FAILURE_CODE, FundingQuirks, INSUFFICIENT, RECIPIENT_BOUNCE, RECIPIENT_FAIL};
use crate::providers::wise::wire::{FundRequest, FundResponse, Transfer, WAITING};
use crate::sim::kit::lock;

pub(super) async fn fund_transfer(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path((profile, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let path = format!("/v3/profiles/{profile}/transfers/{id}/payments");
    {
        let inner = lock(&shared);
        if let Err(r) = authorized(&inner, &headers) {
            return *r;
        }
        if profile != inner.profile_id.to_string() {
            return validation(404, "PROFILE_NOT_FOUND", "Profile not found", None);
        }
    }
    if let Err(r) = balance_payment(&body) {
        return *r;
    }
    if let Err(r) = before_execution(&shared, &path).await {
        return r;
    }
    let mut guard = lock(&shared);
    let inner = &mut *guard;
    let Some(i) = find(inner, &id) else {
        return not_found(&id);
    };
    if inner.transfers[i].transfer.status != WAITING {
        return validation(
            409,
            "transfer.already.funded",
            &format!(
                "Transfer is {}, not awaiting funding",
                inner.transfers[i].transfer.status
            ),
            None,
        );
    }
    let t = &inner.transfers[i].transfer;
    let currency = t.source_currency.clone();
    let minor = source_minor(t);
    let available = inner.balances.get(&currency).copied().unwrap_or(0);
    if available < minor {
        return body_of(200, &insufficient_funds());
    }
    inner.balances.insert(currency, available - minor);
    start_script(inner, i, minor);
    set_status(inner, i, "processing");
    let balance_transaction_id = inner.next_id;
    inner.next_id += 1;
    let answer = funding_answer(inner.funding_quirks, balance_transaction_id);
    let ok = body_of(201, &answer);
    after_commit(inner, true, ok, &path)
}

/// The mock funds from the balance only.
fn balance_payment(body: &[u8]) -> Result<(), Box<Response>> {
    match serde_json::from_slice::<FundRequest>(body) {
        Ok(r) if r.kind == "BALANCE" => Ok(()),
        Ok(r) => Err(Box::new(validation(
            400,
            "NOT_VALID",
            &format!("payment type {} not supported", r.kind),
            Some("type"),
        ))),
        Err(e) => Err(Box::new(validation(400, "NOT_VALID", &e.to_string(), None))),
    }
}

/// The transfer's source amount in minor units of its currency.
fn source_minor(t: &Transfer) -> i64 {
    let mut scaled =
        t.source_value.0 * Decimal::from(10i64.pow(minor_decimals(&t.source_currency)));
    scaled.rescale(0);
    i64::try_from(scaled).unwrap_or(i64::MAX)
}

/// Wise's answer when the balance is short: 200 with a `REJECTED` body, not an HTTP error.
fn insufficient_funds() -> FundResponse {
    FundResponse {
        kind: "BALANCE".into(),
        status: "REJECTED".into(),
        error_code: Some(INSUFFICIENT.into()),
        error_message: Some("Insufficient funds in the balance".into()),
        balance_transaction_id: None,
    }
}

/// Records the funding and schedules the steps the recipient's id scripts (see the module
/// docs of `sim::wise`).
fn start_script(inner: &mut Inner, i: usize, minor: i64) {
    let p = inner.process_after;
    let late = inner.late_after;
    let now = crate::clock::instant();
    let entry = &mut inner.transfers[i];
    entry.funded_minor = Some(minor);
    entry.script = match entry.transfer.target_account {
        RECIPIENT_FAIL => {
            entry.failure_code = Some(FAILURE_CODE.into());
            VecDeque::from([(now + p, "cancelled")])
        }
        RECIPIENT_BOUNCE => VecDeque::from([
            (now + p, "funds_converted"),
            (now + p * 2, "outgoing_payment_sent"),
            (now + p * 2 + late, "bounced_back"),
            (now + p * 2 + late * 2, "funds_refunded"),
        ]),
        _ => VecDeque::from([
            (now + p, "funds_converted"),
            (now + p * 2, "outgoing_payment_sent"),
        ]),
    };
}

/// `COMPLETED`, unless the quirk makes the mock claim a rejection after taking the money.
fn funding_answer(quirks: FundingQuirks, balance_transaction_id: u64) -> FundResponse {
    if quirks.reject_after_funding {
        FundResponse {
            kind: "BALANCE".into(),
            status: "REJECTED".into(),
            error_code: Some("payment.failed".into()),
            error_message: Some("Payment could not be processed".into()),
            balance_transaction_id: None,
        }
    } else {
        FundResponse {
            kind: "BALANCE".into(),
            status: "COMPLETED".into(),
            error_code: None,
            error_message: None,
            balance_transaction_id: Some(balance_transaction_id),
        }
    }
}
