//! Settings from the environment (documented in `.env.example`). Secrets stay in `secrecy`
//! types from here on.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::domain::ids::Rail;
use crate::domain::pacing::Pace;
use crate::domain::payout::RetryPolicy;
use crate::providers::ProviderError;
use crate::providers::partnerstack::{PartnerstackAdapter, PartnerstackConfig};
use crate::providers::paypal::{PaypalAdapter, PaypalConfig};
use crate::providers::rail::Rails;
use crate::providers::stripe::{StripeAdapter, StripeConfig};
use crate::providers::wise::{WiseAdapter, WiseConfig};

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
    pub paypal: Option<PaypalConfig>,
    pub wise: Option<WiseConfig>,
    pub partnerstack: Option<PartnerstackConfig>,
    pub policy: RetryPolicy,
    pub lease_ttl: Duration,
    /// `PAYOUTS_RUN_SCHEDULE`: a cron expression (seconds first, UTC) on which the worker makes
    /// payout runs; unset, it makes none.
    pub run_schedule: Option<cron::Schedule>,
    /// After SIGTERM/SIGINT, how long jobs in hand may take (`PAYOUTS_SHUTDOWN_DEADLINE_SECS`).
    pub shutdown_deadline: Duration,
    /// Each rail's pace in this process (`None`: off), in `Rail::ALL` order.
    pub paces: [Option<Pace>; 4],
}

impl WorkerSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let timeout = secs("PAYOUTS_HTTP_TIMEOUT_SECS", 10)?;
        let policy = retry_policy(timeout)?;
        let run_schedule = run_schedule()?;
        let shutdown_deadline = secs("PAYOUTS_SHUTDOWN_DEADLINE_SECS", 30)?;
        let lease_ttl = lease_ttl(timeout)?;
        let stripe = stripe(timeout)?;
        let paypal = paypal(timeout)?;
        let wise = wise(timeout)?;
        let partnerstack = partnerstack(timeout);
        let paces = paces()?;
        let settings = WorkerSettings {
            stripe,
            paypal,
            wise,
            partnerstack,
            policy,
            lease_ttl,
            run_schedule,
            shutdown_deadline,
            paces,
        };
        if settings.stripe.is_none()
            && settings.paypal.is_none()
            && settings.wise.is_none()
            && settings.partnerstack.is_none()
        {
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
        let pace = |rail: Rail| self.paces[Rail::ALL.iter().position(|r| *r == rail).unwrap_or(0)];
        if let Some(c) = &self.stripe {
            let adapter = StripeAdapter::new(c.clone())?.with_pace(pace(Rail::Stripe));
            rails = rails.with(Arc::new(adapter));
        }
        if let Some(c) = &self.paypal {
            let adapter = PaypalAdapter::new(c.clone())?.with_pace(pace(Rail::Paypal));
            rails = rails.with(Arc::new(adapter));
        }
        if let Some(c) = &self.wise {
            let adapter = WiseAdapter::new(c.clone())?.with_pace(pace(Rail::Wise));
            rails = rails.with(Arc::new(adapter));
        }
        if let Some(c) = &self.partnerstack {
            let adapter = PartnerstackAdapter::new(c.clone())?.with_pace(pace(Rail::Partnerstack));
            rails = rails.with(Arc::new(adapter));
        }
        Ok(rails)
    }
}

impl WorkerSettings {
    /// The webhook receivers' state for these rails and the given verification material.
    pub fn webhook_state(
        &self,
        store: crate::storage::Store,
        hooks: WebhookSettings,
    ) -> Result<crate::http::WebhookState, ProviderError> {
        Ok(crate::http::WebhookState {
            store,
            rails: self.rails()?,
            watch_for: (!self.policy.watch_for.is_zero()).then_some(self.policy.watch_for),
            verify_limit: Arc::new(crate::http::api::limits::RateLimiter::new(
                hooks.verify_per_second,
                hooks.verify_per_second.saturating_mul(2),
            )),
        })
    }
}

/// `PAYOUTS_MAX_ATTEMPTS` and the retry, settle and poll delays.
fn retry_policy(timeout: Duration) -> Result<RetryPolicy, ConfigError> {
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
    Ok(RetryPolicy {
        max_attempts,
        base_delay: secs("PAYOUTS_RETRY_BASE_SECS", 2)?,
        max_delay: secs("PAYOUTS_RETRY_MAX_SECS", 300)?,
        // Never look up sooner than a request could still be running.
        settle_delay: secs("PAYOUTS_SETTLE_DELAY_SECS", 30)?.max(timeout),
        poll_base: secs("PAYOUTS_POLL_BASE_SECS", 30)?,
        poll_max: secs("PAYOUTS_POLL_MAX_SECS", 6 * 3600)?,
        watch_for: Duration::from_secs(24 * 3600 * secs("PAYOUTS_WATCH_DAYS", 30)?.as_secs()),
        ..RetryPolicy::default()
    })
}

/// `PAYOUTS_<RAIL>_RATE_PER_SEC` (0 turns pacing off) and `PAYOUTS_<RAIL>_RATE_BURST`, each
/// defaulting to the rail's published-limit figure (`providers::facts`).
fn paces() -> Result<[Option<Pace>; 4], ConfigError> {
    const NAMES: [(&str, &str); 4] = [
        ("PAYOUTS_STRIPE_RATE_PER_SEC", "PAYOUTS_STRIPE_RATE_BURST"),
        ("PAYOUTS_PAYPAL_RATE_PER_SEC", "PAYOUTS_PAYPAL_RATE_BURST"),
        ("PAYOUTS_WISE_RATE_PER_SEC", "PAYOUTS_WISE_RATE_BURST"),
        (
            "PAYOUTS_PARTNERSTACK_RATE_PER_SEC",
            "PAYOUTS_PARTNERSTACK_RATE_BURST",
        ),
    ];
    let mut paces = [None; 4];
    for (i, rail) in Rail::ALL.into_iter().enumerate() {
        let default = crate::providers::facts(rail).pace;
        let (rate, burst) = NAMES[i];
        let per_second = count(rate, default.per_second)?;
        let burst = count(burst, default.burst)?.max(1);
        paces[i] = (per_second > 0).then_some(Pace { per_second, burst });
    }
    Ok(paces)
}

/// `PAYOUTS_RUN_SCHEDULE`, when set.
fn run_schedule() -> Result<Option<cron::Schedule>, ConfigError> {
    Ok(match var("PAYOUTS_RUN_SCHEDULE") {
        None => None,
        Some(v) => Some(v.trim().parse::<cron::Schedule>().map_err(|e| ConfigError::Invalid {
            name: "PAYOUTS_RUN_SCHEDULE",
            value: v.clone(),
            why: format!(
                "is not a cron expression ({e}); write six fields, seconds first, e.g. \"0 0 6 * * *\" for 06:00 UTC daily"
            ),
        })?),
    })
}

/// `PAYOUTS_LEASE_TTL_SECS`, which must outlast the HTTP timeout.
fn lease_ttl(timeout: Duration) -> Result<Duration, ConfigError> {
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
    Ok(lease_ttl)
}

/// Stripe, when `STRIPE_SECRET_KEY` is set.
fn stripe(timeout: Duration) -> Result<Option<StripeConfig>, ConfigError> {
    let stripe_list_lag = secs(
        "STRIPE_LIST_LAG_SECS",
        crate::providers::stripe::SETTLE.list_lag.as_secs(),
    )?;
    Ok(var("STRIPE_SECRET_KEY").map(|key| StripeConfig {
        api_base: var("STRIPE_API_BASE").unwrap_or_else(|| "https://api.stripe.com".into()),
        secret_key: SecretString::from(key),
        timeout,
        list_lag: stripe_list_lag,
        webhook_secrets: list_of_secrets("STRIPE_WEBHOOK_SECRETS"),
    }))
}

/// PayPal, when both `PAYPAL_CLIENT_ID` and `PAYPAL_CLIENT_SECRET` are set.
fn paypal(timeout: Duration) -> Result<Option<PaypalConfig>, ConfigError> {
    Ok(
        match (var("PAYPAL_CLIENT_ID"), var("PAYPAL_CLIENT_SECRET")) {
            (Some(id), Some(secret)) => Some(PaypalConfig {
                timeout,
                dedupe_window: Duration::from_secs(
                    24 * 3600 * secs("PAYPAL_DEDUPE_WINDOW_DAYS", 30)?.as_secs(),
                ),
                ..PaypalConfig::new(
                    var("PAYPAL_API_BASE").unwrap_or_else(|| "https://api-m.paypal.com".into()),
                    id,
                    SecretString::from(secret),
                    var("PAYPAL_WEBHOOK_ID").unwrap_or_default(),
                )
            }),
            _ => None,
        },
    )
}

/// Wise, when `WISE_API_TOKEN` is set; it then needs `WISE_PROFILE_ID`.
fn wise(timeout: Duration) -> Result<Option<WiseConfig>, ConfigError> {
    Ok(match var("WISE_API_TOKEN") {
        Some(token) => {
            let profile = var("WISE_PROFILE_ID").ok_or(ConfigError::Missing {
                name: "WISE_PROFILE_ID",
                hint: "set it to the numeric id of the Wise business profile that pays",
            })?;
            Some(WiseConfig {
                api_base: var("WISE_API_BASE").unwrap_or_else(|| "https://api.wise.com".into()),
                api_token: SecretString::from(token),
                profile_id: profile.trim().parse().map_err(|_| ConfigError::Invalid {
                    name: "WISE_PROFILE_ID",
                    value: profile.clone(),
                    why: "must be a number".into(),
                })?,
                timeout,
                webhook_public_key_pem: wise_public_key()?,
            })
        }
        None => None,
    })
}

/// PartnerStack, when both its keys are set.
fn partnerstack(timeout: Duration) -> Option<PartnerstackConfig> {
    match (
        var("PARTNERSTACK_PUBLIC_KEY"),
        var("PARTNERSTACK_SECRET_KEY"),
    ) {
        (Some(public_key), Some(secret)) => Some(PartnerstackConfig {
            api_base: var("PARTNERSTACK_API_BASE")
                .unwrap_or_else(|| "https://api.partnerstack.com/api/v2".into()),
            public_key,
            secret_key: SecretString::from(secret),
            timeout,
            webhook_token: var("PARTNERSTACK_WEBHOOK_TOKEN").map(SecretString::from),
        }),
        _ => None,
    }
}

/// `WISE_WEBHOOK_PUBLIC_KEY` (PEM text) or `WISE_WEBHOOK_PUBLIC_KEY_FILE` (a path to it).
fn wise_public_key() -> Result<String, ConfigError> {
    if let Some(pem) = var("WISE_WEBHOOK_PUBLIC_KEY") {
        return Ok(pem);
    }
    match var("WISE_WEBHOOK_PUBLIC_KEY_FILE") {
        Some(path) => std::fs::read_to_string(&path).map_err(|e| ConfigError::Invalid {
            name: "WISE_WEBHOOK_PUBLIC_KEY_FILE",
            value: path,
            why: e.to_string(),
        }),
        None => Ok(String::new()),
    }
}

/// Settings of the webhook receiver. Each rail's verification material is in its own
/// config (`STRIPE_WEBHOOK_SECRETS`, `PAYPAL_WEBHOOK_ID`, `WISE_WEBHOOK_PUBLIC_KEY`,
/// `PARTNERSTACK_WEBHOOK_TOKEN`).
#[derive(Debug, Clone, Default)]
pub struct WebhookSettings {
    /// `PAYOUTS_WEBHOOK_VERIFY_PER_SEC`: calls to a provider that deliveries may make us send
    /// to be believed, per rail per second (burst twice that); 0 turns the bound off.
    pub verify_per_second: u32,
}

impl WebhookSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(WebhookSettings {
            verify_per_second: count(
                "PAYOUTS_WEBHOOK_VERIFY_PER_SEC",
                crate::http::webhooks::VERIFY_PER_SECOND,
            )?,
        })
    }
}

/// A comma-separated list of secrets (several during a rotation); empty when unset.
fn list_of_secrets(name: &'static str) -> Vec<SecretString> {
    var(name)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| SecretString::from(s.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn count(name: &'static str, default: u32) -> Result<u32, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(v) => v.trim().parse::<u32>().map_err(|e| ConfigError::Invalid {
            name,
            value: v,
            why: e.to_string(),
        }),
    }
}

/// `PAYOUTS_ROTATE_BONUS_SEED=1`: accept a bonus seed other than the one the database's draws
/// were made with. New draws use it; bonuses already drawn stay as they are.
pub fn rotate_bonus_seed_from_env() -> Result<bool, ConfigError> {
    match var("PAYOUTS_ROTATE_BONUS_SEED") {
        None => Ok(false),
        Some(v) => match v.trim() {
            "1" | "true" => Ok(true),
            "0" | "false" => Ok(false),
            _ => Err(ConfigError::Invalid {
                name: "PAYOUTS_ROTATE_BONUS_SEED",
                value: v,
                why: "set it to 1 to rotate the bonus seed, or leave it unset".into(),
            }),
        },
    }
}

/// `PAYOUTS_METHOD_COOLING_OFF_HOURS` (default 72; 0 turns the hold off).
/// `PAYOUTS_FOUR_EYES_ABOVE` (an amount in the payout's currency; unset: never): operator
/// actions that move money or give up on it, on payouts above it, need a second operator.
pub fn safeguards_from_env() -> Result<crate::domain::cooling_off::Safeguards, ConfigError> {
    let hours = count("PAYOUTS_METHOD_COOLING_OFF_HOURS", 72)?;
    let four_eyes_above = match var("PAYOUTS_FOUR_EYES_ABOVE") {
        None => None,
        Some(v) => Some(
            crate::domain::money::parse_decimal(v.trim(), 10)
                .ok()
                .filter(|d| !d.is_sign_negative())
                .ok_or_else(|| ConfigError::Invalid {
                    name: "PAYOUTS_FOUR_EYES_ABOVE",
                    value: v.clone(),
                    why: "must be a plain decimal amount such as 1000 or 250.00".into(),
                })?,
        ),
    };
    Ok(crate::domain::cooling_off::Safeguards {
        method_cooling_off: Duration::from_secs(u64::from(hours) * 3600),
        four_eyes_above,
    })
}

fn switch(name: &'static str) -> Result<bool, ConfigError> {
    match var(name) {
        None => Ok(false),
        Some(v) => match v.trim() {
            "1" | "true" => Ok(true),
            "0" | "false" => Ok(false),
            _ => Err(ConfigError::Invalid {
                name,
                value: v,
                why: "set it to 1 (on) or 0 (off), or leave it unset (off)".into(),
            }),
        },
    }
}

/// The tax rules for new payouts, all off unless set: `PAYOUTS_TAX_GATE=1` holds a US payee's
/// payout that would pass the year's threshold without a W-9; `PAYOUTS_TAX_REQUIRE_W8=1` holds
/// a payee outside the US without a W-8BEN(-E); `PAYOUTS_TAX_EXEMPT_RAILS` (e.g.
/// `partnerstack`) lists rails that issue their own forms; `PAYOUTS_TAX_THRESHOLDS` (e.g.
/// `2025=600,2026=2000`, the default) sets the yearly thresholds in US dollars.
pub fn tax_rules_from_env() -> Result<crate::domain::tax::TaxRules, ConfigError> {
    use crate::domain::tax::{TaxRules, TaxThresholds};
    let thresholds = match var("PAYOUTS_TAX_THRESHOLDS") {
        None => TaxThresholds::default(),
        Some(v) => TaxThresholds::parse(&v).map_err(|why| ConfigError::Invalid {
            name: "PAYOUTS_TAX_THRESHOLDS",
            value: v.clone(),
            why,
        })?,
    };
    let exempt_rails = match var("PAYOUTS_TAX_EXEMPT_RAILS") {
        None => Vec::new(),
        Some(v) => v
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|r| {
                r.parse()
                    .map_err(|e: crate::domain::ids::IdError| ConfigError::Invalid {
                        name: "PAYOUTS_TAX_EXEMPT_RAILS",
                        value: v.clone(),
                        why: e.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(TaxRules {
        gate: switch("PAYOUTS_TAX_GATE")?,
        require_w8: switch("PAYOUTS_TAX_REQUIRE_W8")?,
        exempt_rails,
        thresholds,
    })
}

/// Reconciliation settings (`PAYOUTS_RECON_*`).
#[derive(Debug, Clone)]
pub struct ReconSettings {
    pub tolerances: crate::domain::reconcile::Tolerances,
    /// When the worker reconciles the previous UTC day; `None` when turned off.
    pub daily: Option<cron::Schedule>,
}

/// The default daily reconciliation: 02:30 UTC, once the previous day's webhooks are in.
pub const DEFAULT_RECONCILE_SCHEDULE: &str = "0 30 2 * * *";

/// `PAYOUTS_RECON_AMOUNT_TOLERANCE_MINOR` (default 0), `PAYOUTS_RECON_DATE_TOLERANCE_HOURS`
/// (default 72) and `PAYOUTS_RECONCILE_SCHEDULE` (cron, default 02:30 UTC daily; `off`).
pub fn recon_settings_from_env() -> Result<ReconSettings, ConfigError> {
    let amount = count("PAYOUTS_RECON_AMOUNT_TOLERANCE_MINOR", 0)?;
    let hours = count("PAYOUTS_RECON_DATE_TOLERANCE_HOURS", 72)?;
    let daily = schedule_or_off("PAYOUTS_RECONCILE_SCHEDULE", DEFAULT_RECONCILE_SCHEDULE)?;
    Ok(ReconSettings {
        tolerances: crate::domain::reconcile::Tolerances {
            amount_minor: i64::from(amount),
            date: chrono::Duration::hours(i64::from(hours)),
        },
        daily,
    })
}

/// `PAYOUTS_INGEST_CHUNK_LINES` (default 100,000): lines an ingest reads, applies and
/// commits at a time. Larger chunks make fewer accrual passes and use more memory.
pub fn ingest_chunk_lines() -> Result<usize, ConfigError> {
    let lines = count(
        "PAYOUTS_INGEST_CHUNK_LINES",
        u32::try_from(crate::app::ingest::CHUNK_LINES).unwrap_or(u32::MAX),
    )?;
    Ok(usize::try_from(lines).unwrap_or(usize::MAX).max(1))
}

/// A cron schedule from `name` (six fields, seconds first), `default` when unset; `off`
/// turns it off.
fn schedule_or_off(
    name: &'static str,
    default: &str,
) -> Result<Option<cron::Schedule>, ConfigError> {
    let schedule = var(name).unwrap_or_else(|| default.to_string());
    if schedule.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let parsed = schedule.trim().parse::<cron::Schedule>().map_err(|e| ConfigError::Invalid {
        name,
        value: schedule.clone(),
        why: format!(
            "is not a cron expression ({e}); write six fields, seconds first, e.g. \"0 30 2 * * *\", or off"
        ),
    })?;
    Ok(Some(parsed))
}

/// The default prune: 03:45 UTC daily, after the daily reconciliation.
pub const DEFAULT_PRUNE_SCHEDULE: &str = "0 45 3 * * *";

/// How long what is pruned is kept (`PAYOUTS_RETAIN_*_DAYS`, each at least its floor) and
/// when the worker prunes (`PAYOUTS_PRUNE_SCHEDULE`, cron, default 03:45 UTC; `off`).
pub fn retention_from_env()
-> Result<(crate::domain::retention::Retention, Option<cron::Schedule>), ConfigError> {
    use crate::domain::retention::{Kind, Retention};
    let mut days = Vec::with_capacity(Kind::ALL.len());
    for kind in Kind::ALL {
        days.push((kind, count(kind.setting(), kind.default_days())?));
    }
    let retention = Retention::new(|kind| {
        days.iter()
            .find(|(k, _)| *k == kind)
            .map_or(kind.default_days(), |(_, d)| *d)
    })
    .map_err(|e| ConfigError::Invalid {
        name: e.setting,
        value: e.days.to_string(),
        why: e.to_string(),
    })?;
    let schedule = schedule_or_off("PAYOUTS_PRUNE_SCHEDULE", DEFAULT_PRUNE_SCHEDULE)?;
    Ok((retention, schedule))
}

/// The HTTP API's keys and limits (`PAYOUTS_API_*`).
pub fn api_settings_from_env() -> Result<crate::http::ApiSettings, ConfigError> {
    let defaults = crate::http::ApiSettings::default();
    let configured_keys = match var("PAYOUTS_API_KEYS") {
        None => Vec::new(),
        Some(v) => {
            crate::domain::api_key::parse_configured_keys(&v).map_err(|e| ConfigError::Invalid {
                name: "PAYOUTS_API_KEYS",
                value: "(not shown)".into(),
                why: e.to_string(),
            })?
        }
    };
    let rate_per_second = count("PAYOUTS_API_RATE_PER_SEC", defaults.rate_per_second)?;
    Ok(crate::http::ApiSettings {
        recon_tolerances: recon_settings_from_env()?.tolerances,
        configured_keys,
        rate_per_second,
        rate_burst: count("PAYOUTS_API_RATE_BURST", rate_per_second.saturating_mul(2))?,
        request_timeout: secs(
            "PAYOUTS_API_TIMEOUT_SECS",
            defaults.request_timeout.as_secs(),
        )?,
        ..defaults
    })
}
