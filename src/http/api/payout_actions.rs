//! An operator's actions on one payout over HTTP: `POST /v1/payouts/{payout}/retry`,
//! `/cancel`, `/mark-paid`, `/release-hold`, `/resolve-dispute` and `/resolve-duplicate`, for
//! operator keys only. The safety rules are
//! the domain's (`domain::operator`); a refusal is a 409 that says why and what to do
//! instead, a missing reason a 422. The acting key's name goes on the payout's record.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, id_error};
use crate::domain::api_key::Action as Permission;
use crate::domain::ids::PayoutId;
use crate::domain::ids::Rail;
use crate::domain::money::{UNIT_SCALE, parse_decimal};
use crate::domain::operator::{
    Acted, Action, ActionRequest, DisputeOutcome, DuplicateBooking, PayoutFilter, PendingApproval,
    Refusal,
};
use crate::domain::payout::PayoutStatus;
use crate::storage::StoreError;
use crate::storage::bulk::BulkReport;

/// Why an operator acts: mandatory, kept in the payout's history.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    #[schema(min_length = 1, example = "Stripe outage over; retrying")]
    pub reason: String,
}

/// A payment made outside the rails, and why.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkPaid {
    #[schema(
        min_length = 1,
        example = "Paid by bank wire after the payee's account closed"
    )]
    pub reason: String,
    /// The external payment's reference (a bank transfer id, a cheque number).
    #[schema(min_length = 1, example = "wire-2026-12-02-001")]
    pub reference: String,
}

/// How a disputed payout ended, and why.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveDispute {
    #[schema(
        min_length = 1,
        example = "Chargeback lost; the payee's bank returned the funds"
    )]
    pub reason: String,
    /// `kept`: the payee kept the money (paid); `returned`: it came back (credited to the
    /// payee's balance).
    pub outcome: DisputeVerdict,
    /// With `returned`: only this part came back, a decimal string in the payout's currency
    /// and less than its amount; the payout is paid and the part credited to the payee.
    #[schema(pattern = "^[0-9]+(\\.[0-9]+)?$", max_length = 40, example = "2.50")]
    #[serde(default)]
    pub amount: Option<String>,
}

/// A second payment that landed for one payout, who bears it, and why.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveDuplicate {
    #[schema(
        min_length = 1,
        example = "Payee agreed to have it netted from future earnings"
    )]
    pub reason: String,
    /// The provider's id of the duplicate payment (as `GET /v1/payouts/{payout}` and
    /// reconciliation list it).
    #[schema(min_length = 1, example = "tr_1QxYz")]
    pub object: String,
    /// `owed`: the payee owes it (their balance goes negative; later earnings repay it);
    /// `loss`: the company writes it off.
    pub booking: Bearer,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Bearer {
    Owed,
    Loss,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisputeVerdict {
    Kept,
    Returned,
}

macro_rules! action_route {
    ($handler:ident, $path:literal, $summary:literal, $body:ty, $action:expr) => {
        #[utoipa::path(
            post, path = $path, tag = "payouts",
            summary = $summary,
            params(("payout" = crate::domain::ids::PayoutId, Path, description = "The payout id")),
            request_body = $body,
            responses(
                (status = 200, body = Acted, description = "Done, already done (replayed), or waiting for a second operator (state pending_approval)"),
                (status = 409, body = ErrorBody, description = "Refused by the action's safety rules: the message says why and what to do"),
                (status = "4XX", body = ErrorBody, description = "Bad id or body, no reason, a key that is not an operator's, or unknown payout"),
            ),
            security(("api_key" = []))
        )]
        pub async fn $handler(
            State(state): State<ApiState>,
            caller: Caller,
            ApiPath(id): ApiPath<String>,
            ApiJson(body): ApiJson<$body>,
        ) -> Result<Json<Acted>, ApiError> {
            let decode: fn($body) -> Result<(Action, String), ApiError> = $action;
            let (action, reason) = decode(body)?;
            act(&state, &caller, &id, action, reason).await
        }
    };
}

action_route!(
    retry,
    "/payouts/{payout}/retry",
    "Let the worker try again a payout waiting for an operator (proof first where an attempt may have landed)",
    Reason,
    |b: Reason| Ok((Action::Retry, b.reason))
);
action_route!(
    cancel,
    "/payouts/{payout}/cancel",
    "Void the payout's hold; only when nothing can land",
    Reason,
    |b: Reason| Ok((Action::Cancel, b.reason))
);
action_route!(
    mark_paid,
    "/payouts/{payout}/mark-paid",
    "Record a payment made outside the rails (posts the hold); only when nothing can land",
    MarkPaid,
    |b: MarkPaid| Ok((
        Action::MarkPaid {
            reference: b.reference
        },
        b.reason
    ))
);
action_route!(
    resolve_dispute,
    "/payouts/{payout}/resolve-dispute",
    "Book how a disputed payout ended: kept (paid) or returned (credited to the payee)",
    ResolveDispute,
    |b: ResolveDispute| Ok((
        Action::ResolveDispute {
            outcome: match (b.outcome, b.amount) {
                (DisputeVerdict::Kept, None) => DisputeOutcome::Kept,
                (DisputeVerdict::Kept, Some(_)) => {
                    return Err(ApiError::unprocessable(
                        "bad_part",
                        "an amount goes with outcome returned (the part that came back); kept takes none",
                    ));
                }
                (DisputeVerdict::Returned, None) => DisputeOutcome::Returned,
                (DisputeVerdict::Returned, Some(amount)) => DisputeOutcome::PartReturned {
                    amount: parse_decimal(&amount, UNIT_SCALE)
                        .map_err(|e| ApiError::unprocessable("bad_part", e.to_string()))?,
                },
            }
        },
        b.reason
    ))
);
action_route!(
    resolve_duplicate,
    "/payouts/{payout}/resolve-duplicate",
    "Book a second payment that landed for the payout as owed by the payee or as a loss; its reconciliation exception resolves with it",
    ResolveDuplicate,
    |b: ResolveDuplicate| Ok((
        Action::ResolveDuplicate {
            object: b.object,
            booking: match b.booking {
                Bearer::Owed => DuplicateBooking::Owed,
                Bearer::Loss => DuplicateBooking::Loss,
            }
        },
        b.reason
    ))
);
action_route!(
    release_hold,
    "/payouts/{payout}/release-hold",
    "End a cooling-off hold early: the payout is sent now",
    Reason,
    |b: Reason| Ok((Action::ReleaseHold, b.reason))
);
action_route!(
    review_approve,
    "/payouts/{payout}/review/approve",
    "Approve a payout held for review: its review flags clear and it is sent (a missing tax form still holds it)",
    Reason,
    |b: Reason| Ok((Action::Approve, b.reason))
);
action_route!(
    review_reject,
    "/payouts/{payout}/review/reject",
    "Reject a held payout: its hold is voided; with clawback, the commissions behind it are taken back",
    ReviewReject,
    |b: ReviewReject| Ok((
        Action::Reject {
            clawback: b.clawback
        },
        b.reason
    ))
);

/// A rejection, why, and whether the money behind the payout goes back to the program.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewReject {
    #[schema(min_length = 1, example = "Alt accounts paying into one PayPal")]
    pub reason: String,
    /// Also claw the amount back from the payee's balance (default: it stays theirs).
    #[serde(default)]
    pub clawback: bool,
}

/// The review queue.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Reviews {
    pub held: Vec<crate::storage::HeldPayout>,
}

/// `GET /v1/reviews`
#[utoipa::path(
    get, path = "/reviews", tag = "payouts",
    summary = "Payouts held for review or a tax form, oldest first, with the rules that hold them and their evidence",
    responses(
        (status = 200, body = Reviews),
        (status = "4XX", body = ErrorBody, description = "A key that is not an operator's"),
    ),
    security(("api_key" = []))
)]
pub async fn reviews(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Reviews>, ApiError> {
    caller.allow(Permission::OperatePayouts, || caller.forbidden())?;
    Ok(Json(Reviews {
        held: state.store.review_queue(500).await?,
    }))
}

async fn act(
    state: &ApiState,
    caller: &Caller,
    id: &str,
    action: Action,
    reason: String,
) -> Result<Json<Acted>, ApiError> {
    caller.allow(Permission::OperatePayouts, || caller.forbidden())?;
    let id = PayoutId::parse(id).map_err(id_error("invalid_path"))?;
    let request = ActionRequest {
        action,
        reason,
        actor: caller.0.name.clone(),
    };
    match state.store.operator_act(&id, &request).await {
        Ok(acted) => Ok(Json(acted)),
        Err(StoreError::Operator(refusal)) => Err(refused(&refusal)),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn refused(refusal: &Refusal) -> ApiError {
    let message = refusal.to_string();
    match refusal {
        Refusal::NoReason => ApiError::unprocessable("reason_required", message),
        Refusal::NoReference => ApiError::unprocessable("reference_required", message),
        Refusal::WrongState { .. } => ApiError::conflict("not_allowed_in_this_state", message),
        Refusal::MayLand { .. } => ApiError::conflict("may_still_land", message),
        Refusal::ProviderHolds { .. } => ApiError::conflict("provider_holds_payment", message),
        Refusal::Leased => ApiError::conflict("being_worked_on", message),
        Refusal::NotHeld => ApiError::conflict("not_held", message),
        Refusal::SameOperator => ApiError::conflict("second_operator_required", message),
        Refusal::NotPending { .. } => ApiError::conflict("not_pending", message),
        Refusal::UnknownAction(_) => ApiError::not_found("unknown_action", message),
        Refusal::NoFilter => ApiError::unprocessable("filter_required", message),
        Refusal::UnknownDuplicate { .. } => ApiError::unprocessable("unknown_duplicate", message),
        Refusal::BadPart { .. } => ApiError::unprocessable("bad_part", message),
        Refusal::DuplicateBooked { .. } => ApiError::conflict("already_booked", message),
        Refusal::DuplicateMovedNothing { .. } => ApiError::conflict("no_money_moved", message),
    }
}

/// Actions waiting for a second operator.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Approvals {
    pub approvals: Vec<PendingApproval>,
}

/// `GET /v1/approvals`
#[utoipa::path(
    get, path = "/approvals", tag = "payouts",
    summary = "Operator actions waiting for a second operator (four eyes), oldest first",
    responses(
        (status = 200, body = Approvals),
        (status = "4XX", body = ErrorBody, description = "A key that is not an operator's"),
    ),
    security(("api_key" = []))
)]
pub async fn approvals(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Approvals>, ApiError> {
    caller.allow(Permission::OperatePayouts, || caller.forbidden())?;
    Ok(Json(Approvals {
        approvals: state.store.pending_approvals().await?,
    }))
}

/// `POST /v1/approvals/{action}/approve`
#[utoipa::path(
    post, path = "/approvals/{action}/approve", tag = "payouts",
    summary = "Approve another operator's action: decided again on the payout as it is now, and done",
    params(("action" = String, Path, description = "The action's id (oa_…)", pattern = "^oa_[0-9A-Z]{26}$")),
    responses(
        (status = 200, body = Acted),
        (status = 409, body = ErrorBody, description = "The asker cannot approve, the action is not pending, or its safety rules now refuse it"),
        (status = "4XX", body = ErrorBody, description = "A key that is not an operator's, or no such action"),
    ),
    security(("api_key" = []))
)]
pub async fn approve(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(action): ApiPath<String>,
) -> Result<Json<Acted>, ApiError> {
    caller.allow(Permission::OperatePayouts, || caller.forbidden())?;
    match state.store.approve_action(&action, &caller.0.name).await {
        Ok(acted) => Ok(Json(acted)),
        Err(StoreError::Operator(refusal)) => Err(refused(&refusal)),
        Err(e) => Err(e.into()),
    }
}

/// `POST /v1/approvals/{action}/reject`
#[utoipa::path(
    post, path = "/approvals/{action}/reject", tag = "payouts",
    summary = "Reject another operator's action: nothing changes on the payout",
    params(("action" = String, Path, description = "The action's id (oa_…)", pattern = "^oa_[0-9A-Z]{26}$")),
    request_body = Reason,
    responses(
        (status = 204, description = "Rejected"),
        (status = 409, body = ErrorBody, description = "The asker cannot reject, or the action is not pending"),
        (status = "4XX", body = ErrorBody, description = "No reason, a key that is not an operator's, or no such action"),
    ),
    security(("api_key" = []))
)]
pub async fn reject(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(action): ApiPath<String>,
    ApiJson(body): ApiJson<Reason>,
) -> Result<axum::http::StatusCode, ApiError> {
    caller.allow(Permission::OperatePayouts, || caller.forbidden())?;
    let rejected = state
        .store
        .reject_action(&action, &caller.0.name, &body.reason)
        .await;
    match rejected {
        Ok(()) => Ok(axum::http::StatusCode::NO_CONTENT),
        Err(StoreError::Operator(refusal)) => Err(refused(&refusal)),
        Err(e) => Err(e.into()),
    }
}

/// Which payouts a bulk action is about; at least one condition.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkFilter {
    pub rail: Option<Rail>,
    /// A payout status, e.g. `needs_operator`.
    #[schema(value_type = Option<PayoutStatus>)]
    pub status: Option<String>,
    /// Words in the payout's last error (case-insensitive).
    #[schema(min_length = 1)]
    pub error_contains: Option<String>,
    /// Only payouts created at least this many hours ago.
    #[schema(value_type = Option<u32>, maximum = 100_000)]
    #[serde(default, deserialize_with = "whole_number")]
    pub older_than_hours: Option<u32>,
    #[schema(value_type = Option<crate::domain::ids::AccountId>)]
    pub account: Option<String>,
}

/// The oldest age a filter can ask for (about 11 years).
const MAX_AGE_HOURS: u64 = 100_000;

/// A JSON integer, also written as `12.0` (JSON Schema counts that as an integer too); a
/// fraction or a value beyond `u32` is refused. A count of hours, not money.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX))
            .map(|f| f as u64)
    });
    whole
        .filter(|w| *w <= MAX_AGE_HOURS)
        .and_then(|w| u32::try_from(w).ok())
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number of hours")))
}

/// One action over every payout a filter matches.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkAction {
    pub action: BulkVerb,
    pub filter: BulkFilter,
    #[schema(min_length = 1, example = "Stripe outage over")]
    pub reason: String,
    /// For mark-paid: the external payment's reference.
    pub reference: Option<String>,
    /// Show what would change; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BulkVerb {
    Retry,
    Cancel,
    MarkPaid,
    ReleaseHold,
}

/// `POST /v1/bulk-actions`
#[utoipa::path(
    post, path = "/bulk-actions", tag = "payouts",
    summary = "One operator action over every payout a filter matches (at most 1,000, oldest first), each under its own safety rules; dry_run shows what would change",
    request_body = BulkAction,
    responses(
        (status = 200, body = BulkReport, description = "What was done (or would be) and what was refused, per payout"),
        (status = "4XX", body = ErrorBody, description = "No filter, no reason, a bad filter, or a key that is not an operator's"),
    ),
    security(("api_key" = []))
)]
pub async fn bulk(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<BulkAction>,
) -> Result<Json<BulkReport>, ApiError> {
    caller.allow(Permission::OperatePayouts, || caller.forbidden())?;
    let f = body.filter;
    if f.error_contains.as_deref() == Some("") {
        return Err(ApiError::bad_request(
            "invalid_filter",
            "error_contains must not be empty; leave it out to match any error",
        ));
    }
    let status = f
        .status
        .as_deref()
        .map(|s| {
            PayoutStatus::from_code(s).ok_or_else(|| {
                ApiError::bad_request("invalid_filter", format!("{s:?} is not a payout status"))
            })
        })
        .transpose()?;
    let account = f
        .account
        .as_deref()
        .map(super::extract::account_id)
        .transpose()?;
    let filter = PayoutFilter {
        rail: f.rail,
        status,
        reason: f.error_contains,
        older_than: f
            .older_than_hours
            .map(|h| std::time::Duration::from_secs(u64::from(h) * 3600)),
        account,
    };
    let action = match body.action {
        BulkVerb::Retry => Action::Retry,
        BulkVerb::Cancel => Action::Cancel,
        BulkVerb::ReleaseHold => Action::ReleaseHold,
        BulkVerb::MarkPaid => Action::MarkPaid {
            reference: body.reference.unwrap_or_default(),
        },
    };
    let request = ActionRequest {
        action,
        reason: body.reason,
        actor: caller.0.name.clone(),
    };
    match state.store.bulk_act(&filter, &request, body.dry_run).await {
        Ok(report) => Ok(Json(report)),
        Err(StoreError::Operator(refusal)) => Err(refused(&refusal)),
        Err(e) => Err(e.into()),
    }
}
