//! The adapter's HTTP plumbing: one client, Bearer auth, and every failure kept precise
//! enough to classify (connect vs. no answer vs. an error body).

use crate::providers::pacing::SendPaced;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::WiseConfig;
use super::classify;
use super::wire::ErrorBody;
use crate::domain::payout::SendDecision;
use crate::providers::{Class, ProviderError, error_chain, http_client, retry_after};

#[derive(Debug, Clone)]
pub(super) struct Api {
    http: reqwest::Client,
    pub(super) pacer: std::sync::Arc<crate::providers::pacing::Pacer>,
    base: String,
    token: SecretString,
}

/// Why a call did not produce the answer we wanted.
#[derive(Debug, Clone)]
pub(super) enum Failure {
    /// The request never left: nothing can have executed.
    Connect(String),
    /// Sent, but no (complete) answer came back: it may have executed.
    NoResponse(String),
    /// Wise answered with an error status.
    Status {
        status: u16,
        code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// A 2xx we could not read.
    Decode(String),
}

impl Failure {
    /// Where the request may have created something: the class from the error table.
    pub(super) fn decision(self) -> SendDecision {
        match self {
            Failure::Connect(reason) => SendDecision::Retry {
                reason: format!("could not connect: {reason}"),
                retry_after: None,
            },
            Failure::NoResponse(reason) => SendDecision::Unknown {
                reason: format!("no response: {reason}"),
            },
            Failure::Decode(reason) => SendDecision::Unknown {
                reason: format!("unreadable answer: {reason}"),
            },
            Failure::Status {
                status,
                code,
                message,
                retry_after,
            } => {
                let (class, why) = classify::classify(status, code.as_deref());
                let reason = format!(
                    "HTTP {status}{}: {message} ({why})",
                    code.map(|c| format!(" {c}")).unwrap_or_default()
                );
                class.decision(reason, retry_after)
            }
        }
    }

    /// For reads and listings: an error that only means "try the read again later".
    pub(super) fn provider_error(self) -> ProviderError {
        match self {
            Failure::Connect(m) | Failure::NoResponse(m) => ProviderError::Transport(m),
            Failure::Decode(m) => ProviderError::Decode(m),
            Failure::Status {
                status,
                code,
                message,
                ..
            } => ProviderError::Status {
                status,
                message: match code {
                    Some(c) => format!("{c}: {message}"),
                    None => message,
                },
            },
        }
    }

    pub(super) fn class(&self) -> Class {
        match self {
            Failure::Connect(_) => Class::Retry,
            Failure::NoResponse(_) | Failure::Decode(_) => Class::Unknown,
            Failure::Status { status, code, .. } => classify::classify(*status, code.as_deref()).0,
        }
    }
}

impl Api {
    pub(super) fn new(config: &WiseConfig) -> Result<Self, ProviderError> {
        let http = http_client(&config.api_base, "WISE_API_BASE", config.timeout)?;
        Ok(Api {
            pacer: std::sync::Arc::default(),
            http,
            base: config.api_base.trim_end_matches('/').to_string(),
            token: config.api_token.clone(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(super) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        self.send(self.http.get(self.url(path))).await
    }

    pub(super) async fn get_query<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, Failure> {
        self.send(self.http.get(self.url(path)).query(query)).await
    }

    pub(super) async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, Failure> {
        // serde_json bytes, so exact decimal numbers survive (see wire::Num).
        let bytes = serde_json::to_vec(body).map_err(|e| Failure::Connect(e.to_string()))?;
        self.send(
            self.http
                .post(self.url(path))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes),
        )
        .await
    }

    pub(super) async fn put<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        self.send(self.http.put(self.url(path))).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, Failure> {
        let sent = request
            .bearer_auth(self.token.expose_secret())
            .send_paced(&self.pacer)
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Err(Failure::Connect(error_chain(&e))),
            Err(e) => return Err(Failure::NoResponse(error_chain(&e))),
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| {
            Failure::NoResponse(format!(
                "answer cut off (HTTP {status}): {}",
                error_chain(&e)
            ))
        })?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&body)
                .map_err(|e| Failure::Decode(format!("HTTP {status}: {e}")));
        }
        let error = serde_json::from_slice::<ErrorBody>(&body).ok();
        let message = error
            .as_ref()
            .map(ErrorBody::describe)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        Err(Failure::Status {
            status,
            code: error.as_ref().and_then(|b| b.code().map(str::to_string)),
            message,
            retry_after: retry_after(&headers),
        })
    }
}
