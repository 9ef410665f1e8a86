//! The HTTP half of `bench ingest`: `POST /v1/ingest` of the same file's records as a platform
//! would send them, one client posting the most records a request may carry, back to back,
//! to the real API served in this process on a fresh database.

use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use payouts::domain::api_key::Scope;
use payouts::http::api::ingest::MAX_RECORDS;
use serde::Serialize;

use super::fixture::BenchDb;
use super::served::{Served, client};
use super::{Progress, group};

/// What the HTTP ingest sustained.
#[derive(Debug, Serialize)]
pub(super) struct HttpIngest {
    /// Records posted (accounts and referrals first, then usage), every one accepted.
    pub records: usize,
    pub requests: usize,
    pub secs: f64,
    pub records_per_sec: f64,
}

/// Posts the first `records` lines of `file` in requests of [`MAX_RECORDS`]; fails unless
/// every record is accepted.
pub(super) async fn http_ingest(
    file: &Path,
    records: usize,
    postgres: Option<&str>,
    progress: &Progress,
) -> Result<HttpIngest> {
    let db = BenchDb::create(None, postgres).await?;
    let store = db.open().await?;
    let (_, key) = store
        .create_api_key("bench-ingest", Scope::Ingest, None)
        .await
        .context("creating the ingest key")?;
    let served = Served::start(&store).await?;
    progress.say(&format!(
        "POST /v1/ingest of {} records, {} a request, on {}",
        group(records as u64),
        group(MAX_RECORDS as u64),
        db.describe()
    ));
    let http = client(1)?;
    let url = format!("{}/v1/ingest", served.base);
    let mut lines = std::io::BufReader::new(std::fs::File::open(file)?).lines();
    let (mut sent, mut requests) = (0, 0);
    let started = Instant::now();
    while sent < records {
        let mut body = String::from(r#"{"records":["#);
        let mut in_body = 0;
        while in_body < MAX_RECORDS.min(records - sent) {
            let Some(line) = lines.next().transpose()? else {
                break;
            };
            if in_body > 0 {
                body.push(',');
            }
            body.push_str(&line);
            in_body += 1;
        }
        if in_body == 0 {
            break;
        }
        body.push_str("]}");
        let answer = http
            .post(&url)
            .bearer_auth(&key)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let status = answer.status();
        let text = answer.text().await?;
        anyhow::ensure!(status.is_success(), "POST /v1/ingest: {status}: {text}");
        let report: serde_json::Value = serde_json::from_str(&text)?;
        anyhow::ensure!(
            report["accepted"].as_u64() == Some(in_body as u64),
            "POST /v1/ingest accepted {} of {in_body} records: {text:.2000}",
            report["accepted"]
        );
        sent += in_body;
        requests += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    served.stop().await?;
    store.close().await;
    db.remove().await?;
    Ok(HttpIngest {
        records: sent,
        requests,
        secs,
        records_per_sec: sent as f64 / secs.max(1e-9),
    })
}
