//! `GET /v1/metrics`: Prometheus text exposition. Counts come from the database at scrape
//! time (so every server reports the whole fleet's payouts, attempts and queue), plus this
//! process's webhook rejections.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use crate::domain::api_key::Action;
use crate::http::telemetry;
use crate::storage::MetricsSnapshot;
use crate::storage::metrics_views::LATENCY_BUCKETS;

/// `GET /v1/metrics`
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    summary = "Prometheus metrics: payouts by rail and state, attempts, retries, attempt latency, queue depth, webhooks",
    responses(
        (status = 200, content_type = "text/plain", body = String),
        (status = "4XX", body = ErrorBody, description = "Bad key or scope"),
    ),
    security(("api_key" = []))
)]
pub async fn metrics(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.allow(Action::ReadOperations, || caller.forbidden())?;
    let snapshot = state.store.metrics_snapshot().await?;
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        render(&snapshot, &telemetry::webhook_rejections()),
    ))
}

/// Label values are our own codes; escaping keeps a stray quote from breaking the format.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub fn render(s: &MetricsSnapshot, rejections: &[(crate::domain::ids::Rail, &str, u64)]) -> String {
    let mut out = String::new();
    payout_metrics(&mut out, s);
    latency_histogram(&mut out, s);
    queue_and_webhook_metrics(&mut out, s, rejections);
    out
}

/// Payouts by state, sends by outcome, and retries.
fn payout_metrics(out: &mut String, s: &MetricsSnapshot) {
    header(
        out,
        "payouts",
        "gauge",
        "Payouts by rail and current state.",
    );
    for (rail, status, n) in &s.payouts {
        let _ = writeln!(
            out,
            "payouts{{rail=\"{}\",status=\"{}\"}} {n}",
            label(rail),
            label(status)
        );
    }
    header(
        out,
        "payout_attempts_total",
        "counter",
        "Sends to a provider by rail and outcome class.",
    );
    for (rail, outcome, n) in &s.attempts {
        let _ = writeln!(
            out,
            "payout_attempts_total{{rail=\"{}\",outcome=\"{}\"}} {n}",
            label(rail),
            label(outcome)
        );
    }
    header(
        out,
        "payout_retries_total",
        "counter",
        "Sends after a payout's first, by rail.",
    );
    for (rail, n) in &s.retries {
        let _ = writeln!(out, "payout_retries_total{{rail=\"{}\"}} {n}", label(rail));
    }
}

/// Send latency per rail, as a Prometheus histogram over `LATENCY_BUCKETS`.
fn latency_histogram(out: &mut String, s: &MetricsSnapshot) {
    let name = "payout_attempt_duration_seconds";
    header(
        out,
        name,
        "histogram",
        "Time from a send's start to its recorded outcome, by rail.",
    );
    for l in &s.latency {
        let rail = label(&l.rail);
        for (le, n) in LATENCY_BUCKETS.iter().zip(&l.buckets) {
            let _ = writeln!(out, "{name}_bucket{{rail=\"{rail}\",le=\"{le}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{rail=\"{rail}\",le=\"+Inf\"}} {}",
            l.count
        );
        let _ = writeln!(out, "{name}_sum{{rail=\"{rail}\"}} {}", l.sum_seconds);
        let _ = writeln!(out, "{name}_count{{rail=\"{rail}\"}} {}", l.count);
    }
}

/// Queue depth, and webhook deliveries recorded and refused.
fn queue_and_webhook_metrics(
    out: &mut String,
    s: &MetricsSnapshot,
    rejections: &[(crate::domain::ids::Rail, &str, u64)],
) {
    header(
        out,
        "payout_queue_jobs",
        "gauge",
        "Jobs in the payout queue by status (Pending is the depth).",
    );
    for (status, n) in &s.queue {
        let _ = writeln!(out, "payout_queue_jobs{{status=\"{}\"}} {n}", label(status));
    }
    header(
        out,
        "webhook_deliveries_total",
        "counter",
        "Webhook deliveries recorded, by provider and outcome.",
    );
    for (provider, outcome, n) in &s.webhook_deliveries {
        // Outcomes of applied events are JSON; keep the label to its kind.
        let outcome = if outcome.starts_with('{') {
            "applied"
        } else {
            outcome.as_str()
        };
        let _ = writeln!(
            out,
            "webhook_deliveries_total{{provider=\"{}\",outcome=\"{}\"}} {n}",
            label(provider),
            label(outcome)
        );
    }
    header(
        out,
        "webhook_rejections_total",
        "counter",
        "Webhook deliveries refused by this process, by provider and reason.",
    );
    for (rail, why, n) in rejections {
        let _ = writeln!(
            out,
            "webhook_rejections_total{{provider=\"{rail}\",reason=\"{why}\"}} {n}"
        );
    }
    human_and_event_metrics(out, s);
}

/// What waits for a person, and how long the oldest has; outgoing event deliveries.
fn human_and_event_metrics(out: &mut String, s: &MetricsSnapshot) {
    header(
        out,
        "payouts_needing_human",
        "gauge",
        "Payouts waiting for an operator (needs_operator), a review or a tax form (held), or a second operator (awaiting_approval).",
    );
    for (rail, why, n, _) in &s.needs_human {
        let _ = writeln!(
            out,
            "payouts_needing_human{{rail=\"{}\",reason=\"{}\"}} {n}",
            label(rail),
            label(why)
        );
    }
    header(
        out,
        "payouts_needing_human_oldest_seconds",
        "gauge",
        "How long the oldest payout waiting for a person has waited.",
    );
    for (rail, why, _, age) in &s.needs_human {
        let _ = writeln!(
            out,
            "payouts_needing_human_oldest_seconds{{rail=\"{}\",reason=\"{}\"}} {age}",
            label(rail),
            label(why)
        );
    }
    header(
        out,
        "event_deliveries",
        "gauge",
        "Outgoing event deliveries by state (pending, delivered, gave_up, cancelled).",
    );
    for (state, n) in &s.event_deliveries {
        let _ = writeln!(out, "event_deliveries{{state=\"{}\"}} {n}", label(state));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::metrics_views::AttemptLatency;

    #[test]
    fn renders_the_exposition_format() {
        let snapshot = MetricsSnapshot {
            payouts: vec![("stripe".into(), "paid".into(), 3)],
            attempts: vec![("stripe".into(), "landed".into(), 3)],
            retries: vec![("stripe".into(), 1)],
            latency: vec![AttemptLatency {
                rail: "stripe".into(),
                buckets: vec![1, 2, 3, 3, 3, 3, 3, 3, 3],
                count: 3,
                sum_seconds: 0.42,
            }],
            queue: vec![("Pending".into(), 2)],
            webhook_deliveries: vec![("stripe".into(), "{\"applied\":1}".into(), 4)],
            needs_human: vec![("stripe".into(), "needs_operator".into(), 2, 3600)],
            event_deliveries: vec![("pending".into(), 5)],
        };
        let text = render(
            &snapshot,
            &[(crate::domain::ids::Rail::Wise, "unauthenticated", 2)],
        );
        for line in [
            "payouts{rail=\"stripe\",status=\"paid\"} 3",
            "payout_retries_total{rail=\"stripe\"} 1",
            "payout_attempt_duration_seconds_bucket{rail=\"stripe\",le=\"0.05\"} 1",
            "payout_attempt_duration_seconds_bucket{rail=\"stripe\",le=\"+Inf\"} 3",
            "payout_attempt_duration_seconds_sum{rail=\"stripe\"} 0.42",
            "payout_queue_jobs{status=\"Pending\"} 2",
            "webhook_deliveries_total{provider=\"stripe\",outcome=\"applied\"} 4",
            "webhook_rejections_total{provider=\"wise\",reason=\"unauthenticated\"} 2",
            "# TYPE payout_attempt_duration_seconds histogram",
            "payouts_needing_human{rail=\"stripe\",reason=\"needs_operator\"} 2",
            "payouts_needing_human_oldest_seconds{rail=\"stripe\",reason=\"needs_operator\"} 3600",
            "event_deliveries{state=\"pending\"} 5",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
