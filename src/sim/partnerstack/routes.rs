//! The mock's router and handlers: reward creation (with its duplicate-key check and the
//! faults around the commit), listing and lookup, and the `/__mock` controls.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::reply::{error, ok, unauthorized};
use super::state::{Mode, Stored, moved, now_ms};
use super::{DuplicateKey, Pending, Shared, flush, records};
use crate::providers::partnerstack::wire::{
    CreateReward, KEY_MAX, KEY_MIN, MAX_LIMIT, Page, Reward,
};
use crate::sim::kit;
use crate::sim::kit::{Dice, Faults, dropped_connection, json_response, lock, with_retry_after};

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v2/rewards", post(create_reward).get(list_rewards))
        .route("/api/v2/rewards/{key}", get(get_reward))
        .route("/__mock/faults", post(control_faults))
        .route("/__mock/rewards", get(control_truth))
        .route("/__mock/advance", post(control_advance))
        .route("/__mock/duplicate_key", post(control_duplicate_key))
        .route("/__mock/statement.csv", get(records::statement_csv))
        .route("/__mock/tamper", post(records::tamper))
        .route("/__mock/rewards/{key}", delete(records::forget))
        .fallback(unknown_route)
        .with_state(shared)
}

/// Field checks of `POST /rewards`, as PartnerStack documents them for transactions.
fn validate(r: &CreateReward) -> Result<(), String> {
    if !(1..=50_000_000_000).contains(&r.amount) {
        return Err("amount must be a positive integer of at most 50000000000".into());
    }
    if r.currency.len() != 3 || !r.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("currency {:?} must be a 3-letter code", r.currency));
    }
    if !(KEY_MIN..=KEY_MAX).contains(&r.key.len()) {
        return Err("key must be between 4 and 255 characters".into());
    }
    if r.metadata.len() > 25
        || r.metadata
            .iter()
            .any(|(k, v)| k.len() > 30 || v.len() > 100)
    {
        return Err(
            "metadata allows 25 attributes, names up to 30 and values up to 100 characters".into(),
        );
    }
    Ok(())
}

async fn create_reward(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (latency, late) = {
        let mut guard = lock(&shared.inner);
        let inner = &mut *guard;
        inner.posts += 1;
        let Some(mode) = inner.mode(&headers) else {
            return unauthorized();
        };
        let create: CreateReward = match serde_json::from_slice(&body) {
            Ok(c) => c,
            Err(e) => return error(400, &format!("invalid request body: {e}")),
        };
        if let Err(m) = validate(&create) {
            return error(400, &m);
        }
        match inner.partners.get(&create.partner_key) {
            None => return error(404, &format!("partner {:?} not found", create.partner_key)),
            Some(true) if mode == Mode::Prod => {
                return error(
                    400,
                    "test partners only take rewards from the Test key pair",
                );
            }
            Some(false) if mode == Mode::Test => {
                return error(400, "the Test key pair may only reward test partners");
            }
            Some(_) => {}
        }
        // Refused before anything executes: nothing is stored.
        if inner
            .dice
            .fault(kit::RATE_LIMITED, inner.faults.rate_limit_rate)
        {
            return with_retry_after(error(429, "Too many requests"), 1);
        }
        if inner.dice.fault(kit::REFUSED_5XX, inner.faults.error_rate) {
            return error(500, "Internal server error");
        }
        let late = inner
            .dice
            .fault(kit::LATE_COMMIT, inner.faults.late_commit_rate);
        let late = late.then(|| Duration::from_millis(inner.faults.late_commit_ms));
        (Duration::from_millis(inner.faults.latency_ms), late)
    };
    // The request runs on its own task: a client that disconnects (or gave up) does not
    // stop it, so a late request still commits.
    let work = tokio::spawn(async move {
        let wait = latency + late.unwrap_or_default();
        if !wait.is_zero() {
            crate::clock::sleep(wait).await;
        }
        let (response, pending) = commit(&shared, &headers, &body);
        flush(&shared.outbox, pending);
        response
    });
    if late.is_some() {
        return dropped_connection();
    }
    work.await
        .unwrap_or_else(|_| error(500, "the mock's request task failed"))
}

/// Duplicate check and commit under one lock: never two rewards for a remembered key.
fn commit(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> (Response, Vec<Pending>) {
    {
        let mut guard = lock(&shared.inner);
        let inner = &mut *guard;
        let Some(mode) = inner.mode(headers) else {
            return (unauthorized(), Vec::new());
        };
        let Ok(create) = serde_json::from_slice::<CreateReward>(body) else {
            return (error(400, "invalid request body"), Vec::new());
        };
        inner.forget_expired_keys();
        let id = (mode, create.key.clone());
        if inner.remembered.contains_key(&id) {
            let existing = inner
                .rewards
                .iter()
                .find(|s| s.mode == mode && s.reward.key == create.key)
                .map(|s| s.reward.clone());
            let response = match (inner.duplicate_key, existing) {
                (DuplicateKey::ReturnExisting, Some(r)) => ok(r),
                _ => error(
                    409,
                    &format!(
                        "duplicate key: a reward with key {:?} already exists",
                        create.key
                    ),
                ),
            };
            return (response, Vec::new());
        }
        let first_seen = inner.seen.insert(id.clone());
        inner.remembered.insert(id, crate::clock::instant());
        let now = now_ms();
        let reward = Reward {
            key: create.key,
            partner_key: create.partner_key,
            amount: create.amount,
            currency: create.currency,
            description: create.description,
            status: "approved".into(),
            payment_status: "pending".into(),
            created_at: now,
            updated_at: Some(now),
            metadata: create.metadata,
            test: mode == Mode::Test,
        };
        inner.rewards.push(Stored {
            mode,
            reward: reward.clone(),
            changed: crate::clock::instant(),
            written: crate::clock::instant(),
        });
        let pending = inner.event(&reward);
        let faults = inner.faults.clone();
        let response = if (faults.drop_first_attempt && first_seen)
            || inner.dice.roll(faults.drop_after_commit_rate)
        {
            kit::injected(kit::DROPPED_AFTER_COMMIT);
            dropped_connection()
        } else if inner
            .dice
            .fault(kit::FAILED_AFTER_COMMIT, faults.error_after_commit_rate)
        {
            error(500, "Internal server error")
        } else {
            ok(reward)
        };
        (response, pending)
    }
}

#[derive(Debug, Deserialize)]
struct ListParams {
    partner_key: Option<String>,
    payment_status: Option<String>,
    limit: Option<String>,
    starting_after: Option<String>,
    ending_before: Option<String>,
    min_created: Option<i64>,
    max_created: Option<i64>,
}

async fn list_rewards(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<ListParams>,
) -> Response {
    let inner = lock(&shared.inner);
    let Some(mode) = inner.mode(&headers) else {
        return unauthorized();
    };
    let limit = match q.limit.as_deref().map(str::parse::<usize>) {
        None => 10,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => return error(400, "limit must be between 1 and 250"),
    };
    if q.starting_after.is_some() && q.ending_before.is_some() {
        return error(
            400,
            "starting_after and ending_before are mutually exclusive",
        );
    }
    // Newest first.
    let matching: Vec<&Reward> = inner
        .rewards
        .iter()
        .rev()
        .filter(|s| s.mode == mode && inner.faults.listed(s.written))
        .map(|s| &s.reward)
        .filter(|r| q.partner_key.as_ref().is_none_or(|p| r.partner_key == *p))
        .filter(|r| {
            q.payment_status
                .as_ref()
                .is_none_or(|p| r.payment_status == *p)
        })
        .filter(|r| q.min_created.is_none_or(|m| r.created_at >= m))
        .filter(|r| q.max_created.is_none_or(|m| r.created_at <= m))
        .collect();
    let window: Vec<&Reward> = if let Some(after) = &q.starting_after {
        match matching.iter().position(|r| r.key == *after) {
            Some(i) => matching[i + 1..].to_vec(),
            None => {
                return error(
                    400,
                    &format!("starting_after {after:?} is not in this list"),
                );
            }
        }
    } else if let Some(before) = &q.ending_before {
        match matching.iter().position(|r| r.key == *before) {
            Some(i) => {
                let start = i.saturating_sub(limit);
                matching[start..i].to_vec()
            }
            None => {
                return error(
                    400,
                    &format!("ending_before {before:?} is not in this list"),
                );
            }
        }
    } else {
        matching
    };
    let has_more = window.len() > limit;
    let items: Vec<Reward> = window.into_iter().take(limit).cloned().collect();
    ok(Page { has_more, items })
}

async fn get_reward(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let mut inner = lock(&shared.inner);
    inner.reads += 1;
    let Some(mode) = inner.mode(&headers) else {
        return unauthorized();
    };
    match inner
        .rewards
        .iter()
        .find(|s| s.mode == mode && s.reward.key == key)
    {
        Some(s) => ok(s.reward.clone()),
        None => error(404, &format!("reward {key:?} not found")),
    }
}

async fn control_faults(State(shared): State<Arc<Shared>>, Json(faults): Json<Faults>) -> Response {
    let mut inner = lock(&shared.inner);
    inner.dice = Dice::new(faults.seed);
    inner.faults = faults;
    json_response(204, "")
}

async fn control_truth(State(shared): State<Arc<Shared>>) -> Response {
    Json(moved(&lock(&shared.inner))).into_response_json()
}

#[derive(Debug, Deserialize)]
struct Advance {
    key: String,
    payment_status: String,
}

async fn control_advance(State(shared): State<Arc<Shared>>, Json(a): Json<Advance>) -> Response {
    let pending = {
        let mut inner = lock(&shared.inner);
        let hits: Vec<usize> = (0..inner.rewards.len())
            .filter(|i| inner.rewards[*i].reward.key == a.key)
            .collect();
        hits.into_iter()
            .flat_map(|i| inner.change(i, &a.payment_status))
            .collect::<Vec<_>>()
    };
    if pending.is_empty() {
        return error(404, &format!("reward {:?} not found", a.key));
    }
    flush(&shared.outbox, pending);
    json_response(204, "")
}

#[derive(Debug, Deserialize)]
struct DuplicateMode {
    mode: DuplicateKey,
}

async fn control_duplicate_key(
    State(shared): State<Arc<Shared>>,
    Json(m): Json<DuplicateMode>,
) -> Response {
    lock(&shared.inner).duplicate_key = m.mode;
    json_response(204, "")
}

async fn unknown_route(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error(404, &format!("no route for {method} {}", uri.path()))
}

/// `Json` into a response without pulling `IntoResponse` into every handler above.
trait IntoJson {
    fn into_response_json(self) -> Response;
}

impl<T: Serialize> IntoJson for Json<T> {
    fn into_response_json(self) -> Response {
        json_response(200, serde_json::to_string(&self.0).unwrap_or_default())
    }
}
