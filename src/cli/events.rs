//! `payouts events`: the endpoints the platform hears from us on, the events themselves with
//! their delivery log, and replays.

use anyhow::{Context, Result};
use clap::Subcommand;
use payouts::domain::events::{EndpointUrl, EventType, parse_since};
use payouts::storage::{EndpointView, EventView, ReplaySelector, Store, StoreError};
use secrecy::ExposeSecret;

#[derive(Subcommand)]
pub enum EventsCommand {
    /// Endpoints: where events are POSTed, signed with each endpoint's own secret.
    Endpoints {
        #[command(subcommand)]
        command: EndpointsCommand,
    },
    /// Events from a time on, oldest first, with how their deliveries went.
    List {
        /// RFC 3339 or a day (default: the last 24 hours).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// One event: its body and every delivery's tries.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Send events again (receivers dedupe by event id): one by id, or every event since a
    /// time, to every live endpoint subscribed to it (or only --endpoint).
    Replay {
        /// The event (`evt_...`).
        #[arg(required_unless_present = "since", conflicts_with = "since")]
        event: Option<String>,
        /// RFC 3339 or a day.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        endpoint: Option<String>,
        /// Who asks (default: $PAYOUTS_OPERATOR, else cli:$USER).
        #[arg(long)]
        by: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum EndpointsCommand {
    /// Register an endpoint. Its signing secret is printed once.
    Add {
        /// https URL (plain http only to localhost).
        #[arg(long)]
        url: String,
        /// Comma-separated event types (default: every type).
        #[arg(long)]
        types: Option<String>,
        /// Print one object with `id` and `secret` (and the endpoint).
        #[arg(long)]
        json: bool,
    },
    /// The live endpoints (with --all, removed ones too).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Stop sending to an endpoint; its pending deliveries are cancelled, its log is kept.
    Remove { id: String },
}

pub async fn run(store: &Store, command: EventsCommand) -> Result<i32> {
    match command {
        EventsCommand::Endpoints { command } => endpoints(store, command).await,
        EventsCommand::List { since, limit, json } => {
            let since = match since {
                Some(s) => parse_since(&s)?,
                None => chrono::Utc::now() - chrono::Duration::hours(24),
            };
            let events = store.events_since(since, limit.clamp(1, 10_000)).await?;
            if json {
                super::print_json(&events)?;
            } else {
                for e in &events {
                    outln!("{}", event_line(e));
                }
                if events.is_empty() {
                    outln!("no events since {}", since.to_rfc3339());
                }
            }
            Ok(0)
        }
        EventsCommand::Show { id, json } => match store.event(&id).await? {
            Some(event) if json => {
                super::print_json(&event)?;
                Ok(0)
            }
            Some(event) => {
                outln!("{}", event_line(&event));
                outln!("{}", serde_json::to_string_pretty(&event.body)?);
                for d in &event.deliveries {
                    outln!(
                        "delivery {} to {}: {} after {} tries",
                        d.id,
                        d.endpoint_id,
                        d.state,
                        d.tries
                    );
                    for t in &d.attempts {
                        let answer = match (t.http_status, &t.error) {
                            (Some(status), _) => format!("HTTP {status}"),
                            (None, Some(e)) => e.clone(),
                            (None, None) => "no answer".to_string(),
                        };
                        outln!(
                            "  try {} at {}: {answer} ({} ms)",
                            t.try_no,
                            t.at.to_rfc3339(),
                            t.took_ms
                        );
                    }
                }
                Ok(0)
            }
            None => {
                eprintln!("error: no event {id}");
                Ok(1)
            }
        },
        EventsCommand::Replay {
            event,
            since,
            endpoint,
            by,
        } => {
            let which = match (event, since) {
                (Some(id), _) => ReplaySelector::One(id),
                (None, Some(since)) => ReplaySelector::Since(parse_since(&since)?),
                (None, None) => anyhow::bail!("name an event or give --since"),
            };
            let by = by.unwrap_or_else(super::operate::default_operator);
            match store.replay_events(&which, endpoint.as_deref(), &by).await {
                Ok(made) => {
                    outln!("{made} deliveries queued; the worker sends them in order per subject");
                    Ok(0)
                }
                Err(e @ (StoreError::UnknownEvent(_) | StoreError::UnknownEndpoint(_))) => {
                    eprintln!("error: {e}");
                    Ok(1)
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

async fn endpoints(store: &Store, command: EndpointsCommand) -> Result<i32> {
    match command {
        EndpointsCommand::Add { url, types, json } => {
            let url = EndpointUrl::parse(&url)?;
            let types = EventType::parse_list(types.as_deref().unwrap_or_default())?;
            let by = super::operate::default_operator();
            let made = store
                .add_event_endpoint(&url, &types, &by)
                .await
                .context("registering the endpoint")?;
            let secret = made.secret.expose_secret();
            if json {
                super::print_json(&serde_json::json!({
                    "id": made.endpoint.id,
                    "secret": secret,
                    "endpoint": made.endpoint,
                }))?;
            } else {
                outln!("{}", endpoint_line(&made.endpoint));
                outln!("secret: {secret}");
                outln!(
                    "this is the only time the secret is shown: store it where your receiver reads it"
                );
            }
            Ok(0)
        }
        EndpointsCommand::List { all, json } => {
            let list = store.event_endpoints(all).await?;
            if json {
                super::print_json(&list)?;
            } else if list.is_empty() {
                outln!("no endpoints; add one with `payouts events endpoints add --url URL`");
            } else {
                for e in &list {
                    outln!("{}", endpoint_line(e));
                }
            }
            Ok(0)
        }
        EndpointsCommand::Remove { id } => match store.remove_event_endpoint(&id).await {
            Ok(e) => {
                outln!("removed {}", endpoint_line(&e));
                Ok(0)
            }
            Err(e @ StoreError::UnknownEndpoint(_)) => {
                eprintln!("error: {e}");
                Ok(1)
            }
            Err(e) => Err(e.into()),
        },
    }
}

fn endpoint_line(e: &EndpointView) -> String {
    let types = if e.types.is_empty() {
        "every type".to_string()
    } else {
        e.types
            .iter()
            .map(|t| t.code())
            .collect::<Vec<_>>()
            .join(",")
    };
    let removed = e
        .removed_at
        .map(|at| format!(" (removed {})", at.to_rfc3339()))
        .unwrap_or_default();
    format!("{} {} [{types}] by {}{removed}", e.id, e.url, e.created_by)
}

fn event_line(e: &EventView) -> String {
    let mut states: Vec<&str> = e.deliveries.iter().map(|d| d.state.as_str()).collect();
    states.sort_unstable();
    format!(
        "{} {} {} {} deliveries: {}",
        e.id,
        e.created_at.to_rfc3339(),
        e.kind,
        e.subject,
        if states.is_empty() {
            "none".to_string()
        } else {
            states.join(",")
        }
    )
}
