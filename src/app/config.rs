//! Settings from the environment (documented in `.env.example`). Secrets stay in `secrecy`
//! types from here on.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::domain::payout::RetryPolicy;
use crate::providers::ProviderError;
use crate::providers::rail::Rails;
use crate::providers::stripe::{StripeAdapter, StripeConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not set; {hint}")]
    Missing {
        name: &'static str,
        hint: &'static str,
    },
    #[error("{name}={value:?} is not valid: {why}")]
    Invalid {
        name: &'static str,
        value: String,
        why: String,
    },
}

fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn secs(name: &'static str, default: u64) -> Result<Duration, ConfigError> {
    match var(name) {
        None => Ok(Duration::from_secs(default)),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| ConfigError::Invalid {
                name,
                value: v,
                why: e.to_string(),
            }),
    }
}

/// Which rails the worker pays through, how it reaches them, and how it paces retries.
/// A rail is configured when its credentials are set; a payout on an unconfigured rail waits
/// for an operator with that reason.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub stripe: Option<StripeConfig>,
    pub policy: RetryPolicy,
    pub lease_ttl: Duration,
}

impl WorkerSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let timeout = secs("PAYOUTS_HTTP_TIMEOUT_SECS", 10)?;
        let max_attempts = match var("PAYOUTS_MAX_ATTEMPTS") {
            None => 6,
            Some(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ConfigError::Invalid {
                    name: "PAYOUTS_MAX_ATTEMPTS",
                    value: v,
                    why: "must be a whole number of at least 1".into(),
                })?,
        };
        let policy = RetryPolicy {
            max_attempts,
            base_delay: secs("PAYOUTS_RETRY_BASE_SECS", 2)?,
            max_delay: secs("PAYOUTS_RETRY_MAX_SECS", 300)?,
            // Never look up sooner than a request could still be running.
            settle_delay: secs("PAYOUTS_SETTLE_DELAY_SECS", 30)?.max(timeout),
            ..RetryPolicy::default()
        };
        let lease_ttl = secs("PAYOUTS_LEASE_TTL_SECS", 60)?;
        if lease_ttl <= timeout {
            return Err(ConfigError::Invalid {
                name: "PAYOUTS_LEASE_TTL_SECS",
                value: lease_ttl.as_secs().to_string(),
                why: format!(
                    "the lease must outlast the HTTP timeout ({} s), or two workers could send at once",
                    timeout.as_secs()
                ),
            });
        }
        let stripe = var("STRIPE_SECRET_KEY").map(|key| StripeConfig {
            api_base: var("STRIPE_API_BASE").unwrap_or_else(|| "https://api.stripe.com".into()),
            secret_key: SecretString::from(key),
            timeout,
        });
        let settings = WorkerSettings {
            stripe,
            policy,
            lease_ttl,
        };
        if settings.stripe.is_none() {
            return Err(ConfigError::Missing {
                name: "STRIPE_SECRET_KEY",
                hint: "no payout rail is configured; set the credentials of at least one rail \
                       (STRIPE_SECRET_KEY, PAYPAL_CLIENT_ID/PAYPAL_CLIENT_SECRET, WISE_API_TOKEN, \
                       PARTNERSTACK_PUBLIC_KEY/PARTNERSTACK_SECRET_KEY); see .env.example",
            });
        }
        Ok(settings)
    }

    /// The adapters for every configured rail.
    pub fn rails(&self) -> Result<Rails, ProviderError> {
        let mut rails = Rails::default();
        if let Some(c) = &self.stripe {
            rails = rails.with(Arc::new(StripeAdapter::new(c.clone())?));
        }
        Ok(rails)
    }
}

/// Verification material for inbound webhooks (see `http::webhooks`).
#[derive(Clone, Default)]
pub struct WebhookSettings {
    /// `STRIPE_WEBHOOK_SECRETS`: comma-separated `whsec_…` values; several during a rotation.
    pub stripe_secrets: Vec<SecretString>,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("stripe_secrets", &format!("[{} redacted]", self.stripe_secrets.len()))
            .finish()
    }
}

impl WebhookSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let stripe_secrets = var("STRIPE_WEBHOOK_SECRETS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| SecretString::from(s.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(WebhookSettings { stripe_secrets })
    }
}
