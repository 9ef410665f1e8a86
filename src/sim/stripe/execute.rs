//! Executing a transfer creation: Stripe's idempotency layer and the commit with its
//! faults. Split from the router so each stays readable.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;

use super::params::CreateParams;
use super::reply::{replay, stripe_error};
use super::{Idem, Inner, emit, new_transfer, reverse_transfer};
use crate::providers::stripe::wire::ErrorBody;
use crate::sim::kit;
use crate::sim::kit::lock;

/// Stripe's idempotency layer: the stored answer, 409 while running, 400 for other
/// parameters; or `None` after marking the key in flight for this request.
pub(super) fn idempotency_check(
    inner: &mut Inner,
    key: &str,
    fingerprint: &str,
) -> Option<Response> {
    let ttl = inner.faults.key_ttl_ms;
    if ttl > 0
        && inner
            .idempotency
            .get(key)
            .is_some_and(|(at, _)| crate::clock::elapsed(*at) > Duration::from_millis(ttl))
    {
        kit::injected(kit::KEY_EXPIRED);
        inner.idempotency.remove(key);
    }
    match inner.idempotency.get(key).map(|(_, idem)| idem) {
        Some(Idem::Done {
            fingerprint: f,
            status,
            body,
        }) if f == fingerprint => Some(replay(*status, body.clone(), true)),
        Some(Idem::InFlight { fingerprint: f }) if f == fingerprint => Some(stripe_error(
            StatusCode::CONFLICT,
            "idempotency_error",
            Some("idempotency_key_in_use"),
            "There is currently another in-progress request using this Stripe API key and idempotency key. Please try again later.",
            None,
        )),
        Some(_) => Some(stripe_error(
            StatusCode::BAD_REQUEST,
            "idempotency_error",
            None,
            &format!(
                "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
            ),
            None,
        )),
        None => {
            inner.idempotency.insert(
                key.to_string(),
                (
                    crate::clock::instant(),
                    Idem::InFlight {
                        fingerprint: fingerprint.to_string(),
                    },
                ),
            );
            None
        }
    }
}

fn api_error_body() -> String {
    serde_json::to_string(&ErrorBody::new(
        "api_error",
        None,
        "An unknown error occurred (mock).",
        None,
    ))
    .unwrap_or_default()
}

/// Executes a transfer creation and stores its answer under the key: (status, body, whether
/// the connection drops instead of answering).
pub(super) fn execute(
    shared: &Arc<Mutex<Inner>>,
    params: CreateParams,
    key: Option<String>,
    first_seen: bool,
) -> (u16, String, bool) {
    let mut guard = lock(shared);
    let inner = &mut *guard;
    let faults = inner.faults.clone();
    let (status, body, drop) = if inner.dice.fault(kit::REFUSED_5XX, faults.error_rate) {
        (500, api_error_body(), false)
    } else {
        let default = inner.default_balance;
        let available = *inner
            .balance
            .entry(params.currency.clone())
            .or_insert(default);
        if available < params.amount {
            let body = serde_json::to_string(&ErrorBody::new(
                "invalid_request_error",
                Some("balance_insufficient"),
                "You have insufficient available funds in your Stripe account.",
                None,
            ))
            .unwrap_or_default();
            (400, body, false)
        } else {
            inner
                .balance
                .insert(params.currency.clone(), available - params.amount);
            let mut transfer = new_transfer(
                inner,
                params.amount,
                &params.currency,
                &params.destination,
                params.transfer_group.as_deref(),
                params.metadata.clone(),
            );
            transfer.description = params.description.clone();
            inner.transfers.push(transfer.clone());
            emit(inner, "transfer.created", &transfer);
            if transfer.destination.starts_with("acct_bounce") {
                let later = Arc::clone(shared);
                let id = transfer.id.clone();
                let after = Duration::from_millis(inner.late_after_ms);
                tokio::spawn(async move {
                    crate::clock::sleep(after).await;
                    reverse_transfer(&later, &id);
                });
            }
            let drop = (faults.drop_first_attempt && first_seen)
                || (inner.dice.roll(faults.drop_after_commit_rate));
            if drop {
                kit::injected(kit::DROPPED_AFTER_COMMIT);
            }
            if !drop
                && inner
                    .dice
                    .fault(kit::FAILED_AFTER_COMMIT, faults.error_after_commit_rate)
            {
                // Committed, then failed answering: Stripe stores and replays this 500.
                (500, api_error_body(), false)
            } else {
                (
                    200,
                    serde_json::to_string(&transfer).unwrap_or_default(),
                    drop,
                )
            }
        }
    };
    if let Some(key) = key {
        inner.idempotency.insert(
            key,
            (
                crate::clock::instant(),
                Idem::Done {
                    fingerprint: params.fingerprint,
                    status,
                    body: body.clone(),
                },
            ),
        );
    }
    (status, body, drop)
}
