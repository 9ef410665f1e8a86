//! The mock's answers in Wise's shape (validation, system and OAuth error bodies, the
//! transfer 404), its Bearer check, and the `createdDateStart`/`createdDateEnd` range. Shared
//! by the router and the handler files so that none of them imports another.

use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use secrecy::ExposeSecret;
use serde::Serialize;

use super::state::Inner;
use crate::providers::wise::records::CREATED_FORMAT;
use crate::providers::wise::wire::ErrorBody;
use crate::sim::kit::json_response;

pub(super) fn body_of(status: u16, body: &impl Serialize) -> Response {
    json_response(status, serde_json::to_vec(body).unwrap_or_default())
}

pub(super) fn validation(status: u16, code: &str, message: &str, path: Option<&str>) -> Response {
    body_of(status, &ErrorBody::validation(code, message, path))
}

pub(super) fn system(status: u16, error: &str, message: &str, path: &str) -> Response {
    body_of(status, &ErrorBody::system(status, error, message, path))
}

pub(super) fn authorized(inner: &Inner, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match given.and_then(|v| v.strip_prefix("Bearer ")) {
        Some(t) if t == inner.token.expose_secret() => Ok(()),
        Some(_) => Err(Box::new(body_of(
            401,
            &ErrorBody::oauth("invalid_token", "Invalid token"),
        ))),
        None => Err(Box::new(body_of(
            401,
            &ErrorBody::oauth(
                "unauthorized",
                "Full authentication is required to access this resource",
            ),
        ))),
    }
}

pub(super) fn not_found(id: &str) -> Response {
    validation(
        404,
        "transfer.not.found",
        &format!("Transfer {id} not found"),
        None,
    )
}

/// One end of a `createdDateStart`/`createdDateEnd` filter, comparable with `created` text.
#[derive(Debug, Clone)]
enum Bound {
    /// A whole UTC day (`YYYY-MM-DD`), inclusive.
    Day(String),
    /// An instant, as `YYYY-MM-DD HH:MM:SS` text, inclusive.
    At(String),
}

fn bound(text: &str) -> Option<Bound> {
    let text = text.trim();
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some(Bound::Day(day.format("%Y-%m-%d").to_string()));
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| Bound::At(t.with_timezone(&Utc).format(CREATED_FORMAT).to_string()))
}

/// Which transfers a listing's date range keeps. `created` is `YYYY-MM-DD HH:MM:SS`, so text
/// order is time order. Days are inclusive at both ends, like Wise's.
#[derive(Debug, Clone, Default)]
pub(super) struct CreatedRange {
    start: Option<Bound>,
    end: Option<Bound>,
}

impl CreatedRange {
    /// Whole UTC days, both inclusive; `None` leaves that end open.
    pub(super) fn days(start: Option<NaiveDate>, end: Option<NaiveDate>) -> Self {
        let day = |d: NaiveDate| Bound::Day(d.format("%Y-%m-%d").to_string());
        CreatedRange {
            start: start.map(day),
            end: end.map(day),
        }
    }

    /// The range of `createdDateStart`/`createdDateEnd`, or the 400 naming the bad one.
    pub(super) fn parse(start: Option<&str>, end: Option<&str>) -> Result<Self, Box<Response>> {
        let read = |name: &str, value: Option<&str>| match value {
            None => Ok(None),
            Some(v) => bound(v).map(Some).ok_or_else(|| {
                Box::new(validation(
                    400,
                    "NOT_VALID",
                    &format!("{name} must be a date (YYYY-MM-DD) or an ISO 8601 time"),
                    Some(name),
                ))
            }),
        };
        Ok(CreatedRange {
            start: read("createdDateStart", start)?,
            end: read("createdDateEnd", end)?,
        })
    }

    pub(super) fn contains(&self, created: &str) -> bool {
        let day = created.get(..10).unwrap_or(created);
        let after_start = match &self.start {
            None => true,
            Some(Bound::Day(d)) => day >= d.as_str(),
            Some(Bound::At(t)) => created >= t.as_str(),
        };
        let before_end = match &self.end {
            None => true,
            Some(Bound::Day(d)) => day <= d.as_str(),
            Some(Bound::At(t)) => created <= t.as_str(),
        };
        after_start && before_end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_ranges_take_days_and_instants() {
        let days = CreatedRange::parse(Some("2025-03-01"), Some("2025-03-02")).unwrap();
        assert!(days.contains("2025-03-01 00:00:00"));
        assert!(days.contains("2025-03-02 23:59:59"));
        assert!(!days.contains("2025-03-03 00:00:00"));
        assert!(!days.contains("2025-02-28 23:59:59"));
        let at = CreatedRange::parse(Some("2025-03-01T10:00:00Z"), None).unwrap();
        assert!(at.contains("2025-03-01 10:00:00"));
        assert!(!at.contains("2025-03-01 09:59:59"));
        assert!(CreatedRange::parse(Some("March"), None).is_err());
    }
}
