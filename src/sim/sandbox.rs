//! A sandbox of all four provider mocks, wired to adapters: what the demo, the
//! `mock-providers` command and the tests run against. Each mock keeps its own books; the
//! sandbox only gathers them so they can be compared with our ledger, rail by rail.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::domain::ids::Rail;
use crate::domain::tracking::RailState;
use crate::http::WebhookState;
use crate::providers::partnerstack::{PartnerstackAdapter, PartnerstackConfig};
use crate::providers::paypal::{PaypalAdapter, PaypalConfig};
use crate::providers::rail::Rails;
use crate::providers::stripe::{StripeAdapter, StripeConfig};
use crate::providers::wise::{WiseAdapter, WiseConfig};
use crate::providers::{ProviderError, partnerstack, stripe};
use crate::sim::kit::{Faults, HeldWebhook, MovedMoney};
use crate::sim::partnerstack::{MockPartnerstack, MockPartnerstackConfig};
use crate::sim::paypal::{MockPaypal, MockPaypalConfig};
use crate::sim::stripe::{MockConfig as MockStripeConfig, MockStripe};
use crate::sim::wise::TEST_WEBHOOK_PUBLIC_KEY_PEM;
use crate::sim::wise::{MockWise, MockWiseConfig};
use crate::storage::Store;

/// The Stripe endpoint secret the sandbox's mock signs with.
pub const STRIPE_WEBHOOK_SECRET: &str = "whsec_mock";
/// The token the sandbox's PartnerStack mock sends in `X-Webhook-Token`.
pub const PARTNERSTACK_WEBHOOK_TOKEN: &str = "pstoken_mock";

/// How to start the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// The same faults for every mock.
    pub faults: Faults,
    /// Loopback ports for stripe, paypal, wise, partnerstack (0 = ephemeral).
    pub ports: [u16; 4],
    /// How long PayPal (the mock, and our adapter's belief) deduplicates a sender_batch_id.
    pub paypal_window: Duration,
    /// HTTP timeout of the adapters.
    pub timeout: Duration,
    /// The secret key the Stripe mock accepts.
    pub stripe_api_key: SecretString,
    /// How long after delivery the scripted late failures (bounces, reversals, expiries)
    /// happen, on every mock.
    pub late_after_ms: u64,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            faults: Faults::default(),
            ports: [0; 4],
            paypal_window: Duration::from_secs(30 * 24 * 3600),
            timeout: Duration::from_secs(5),
            stripe_api_key: SecretString::from("sk_test_mock"),
            late_after_ms: 600,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Sandbox {
    pub stripe: MockStripe,
    pub paypal: MockPaypal,
    pub wise: MockWise,
    pub partnerstack: MockPartnerstack,
    options: SandboxOptions,
}

/// Money that left and stayed out: only delivered payments count.
fn delivered(moved: &[MovedMoney]) -> i64 {
    moved
        .iter()
        .filter(|m| m.state == RailState::Paid)
        .map(|m| m.minor)
        .sum()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Sandbox {
    pub async fn start(options: SandboxOptions) -> std::io::Result<Sandbox> {
        let faults = options.faults.clone();
        // The PayPal mock forgets sender_batch_ids after the window our adapter believes in,
        // or sooner if the faults say so; the adapter is then told the shorter one.
        let window_ms = u64::try_from(options.paypal_window.as_millis()).unwrap_or(u64::MAX);
        let mut paypal_faults = faults.clone();
        paypal_faults.key_ttl_ms = match faults.key_ttl_ms {
            0 => window_ms,
            ttl => ttl.min(window_ms),
        };
        let mut options = options;
        options.paypal_window = Duration::from_millis(paypal_faults.key_ttl_ms);
        let stripe = MockStripe::start(
            loopback(options.ports[0]),
            MockStripeConfig {
                api_key: options.stripe_api_key.clone(),
                faults: faults.clone(),
                webhook_secret: SecretString::from(STRIPE_WEBHOOK_SECRET),
                late_after_ms: options.late_after_ms,
                ..MockStripeConfig::default()
            },
        )
        .await?;
        let paypal = MockPaypal::start(
            loopback(options.ports[1]),
            MockPaypalConfig {
                faults: paypal_faults,
                late_after_ms: options.late_after_ms,
                ..MockPaypalConfig::default()
            },
        )
        .await?;
        let wise = MockWise::start(
            loopback(options.ports[2]),
            MockWiseConfig {
                faults: faults.clone(),
                late_after_ms: options.late_after_ms,
                ..MockWiseConfig::default()
            },
        )
        .await?;
        let partnerstack = MockPartnerstack::start(
            loopback(options.ports[3]),
            MockPartnerstackConfig {
                faults,
                webhook_token: Some(SecretString::from(PARTNERSTACK_WEBHOOK_TOKEN)),
                late_after_ms: options.late_after_ms,
                ..MockPartnerstackConfig::default()
            },
        )
        .await?;
        Ok(Sandbox {
            stripe,
            paypal,
            wise,
            partnerstack,
            options,
        })
    }

    pub fn stripe_config(&self) -> StripeConfig {
        StripeConfig {
            api_base: self.stripe.base_url(),
            secret_key: self.options.stripe_api_key.clone(),
            timeout: self.options.timeout,
            list_lag: stripe::SETTLE.list_lag,
            webhook_secrets: vec![SecretString::from(STRIPE_WEBHOOK_SECRET)],
        }
    }

    pub fn paypal_config(&self) -> PaypalConfig {
        let defaults = MockPaypalConfig::default();
        PaypalConfig {
            timeout: self.options.timeout,
            dedupe_window: self.options.paypal_window,
            ..PaypalConfig::new(
                self.paypal.base_url(),
                defaults.client_id,
                defaults.client_secret,
                self.paypal.webhook_id(),
            )
        }
    }

    pub fn wise_config(&self) -> WiseConfig {
        let defaults = MockWiseConfig::default();
        WiseConfig {
            api_base: self.wise.base_url(),
            api_token: defaults.api_token,
            profile_id: defaults.profile_id,
            timeout: self.options.timeout,
            webhook_public_key_pem: TEST_WEBHOOK_PUBLIC_KEY_PEM.to_string(),
        }
    }

    /// The live key pair: the sandbox pays live (non-test) partners.
    pub fn partnerstack_config(&self) -> PartnerstackConfig {
        let defaults = MockPartnerstackConfig::default();
        PartnerstackConfig {
            api_base: self.partnerstack.base_url(),
            public_key: defaults.prod_public_key,
            secret_key: defaults.prod_secret_key,
            timeout: self.options.timeout,
            webhook_token: Some(SecretString::from(PARTNERSTACK_WEBHOOK_TOKEN)),
        }
    }

    /// Adapters for all four rails, pointed at the mocks.
    pub fn rails(&self) -> Result<Rails, ProviderError> {
        self.rails_at(None)
    }

    /// The same adapters, pointed at a loopback port nothing listens on: every request is
    /// refused before it connects, as for a worker cut off from the providers.
    pub fn unreachable_rails(&self) -> Result<Rails, ProviderError> {
        self.rails_at(Some("http://127.0.0.1:1"))
    }

    fn rails_at(&self, base: Option<&str>) -> Result<Rails, ProviderError> {
        let at = |url: String| base.map_or(url, str::to_owned);
        let (mut stripe, mut paypal) = (self.stripe_config(), self.paypal_config());
        let (mut wise, mut partnerstack) = (self.wise_config(), self.partnerstack_config());
        stripe.api_base = at(stripe.api_base);
        paypal.api_base = at(paypal.api_base);
        wise.api_base = at(wise.api_base);
        partnerstack.api_base = at(partnerstack.api_base);
        // The adapters are told the mocks' timing, as they are told PayPal's window.
        let faults = &self.options.faults;
        Ok(Rails::default()
            .with(Arc::new(StripeAdapter::new(stripe)?.with_settle_timing(
                faults.settle_timing(stripe::SETTLE, true),
            )))
            .with(Arc::new(PaypalAdapter::new(paypal)?))
            .with(Arc::new(WiseAdapter::new(wise)?))
            .with(Arc::new(
                PartnerstackAdapter::new(partnerstack)?
                    .with_settle_timing(faults.settle_timing(partnerstack::SETTLE, false)),
            )))
    }

    /// Webhook receivers that accept exactly what these mocks send. Payouts they make paid
    /// are not watched (the worker's policy decides that for the payouts it settles).
    pub fn webhook_state(&self, store: Store) -> Result<WebhookState, ProviderError> {
        Ok(WebhookState {
            store,
            rails: self.rails()?,
            watch_for: None,
            verify_limit: crate::http::webhooks::default_verify_limit(),
        })
    }

    /// Points every mock's webhooks at `base` (which serves `/stripe`, `/paypal`, …).
    pub fn send_webhooks_to(&self, base: Option<&str>) {
        let url = |rail: &str| base.map(|b| format!("{}/{rail}", b.trim_end_matches('/')));
        self.stripe.outbox().set_target(url("stripe"));
        self.paypal.outbox().set_target(url("paypal"));
        self.wise.outbox().set_target(url("wise"));
        self.partnerstack.outbox().set_target(url("partnerstack"));
    }

    /// Every mock keeps its webhooks for [`Sandbox::take_webhooks`] instead of sending them.
    pub fn hold_webhooks(&self) {
        self.stripe.outbox().hold();
        self.paypal.outbox().hold();
        self.wise.outbox().hold();
        self.partnerstack.outbox().hold();
    }

    /// The webhooks the mocks kept since the last call, rail by rail, each rail's oldest
    /// first.
    pub fn take_webhooks(&self) -> Vec<(Rail, HeldWebhook)> {
        let mut all = Vec::new();
        for (rail, held) in [
            (Rail::Stripe, self.stripe.outbox().take_held()),
            (Rail::Paypal, self.paypal.outbox().take_held()),
            (Rail::Wise, self.wise.outbox().take_held()),
            (Rail::Partnerstack, self.partnerstack.outbox().take_held()),
        ] {
            all.extend(held.into_iter().map(|h| (rail, h)));
        }
        all
    }

    pub fn set_faults(&self, faults: Faults) {
        self.stripe.set_faults(faults.clone());
        self.paypal.set_faults(faults.clone());
        self.wise.set_faults(faults.clone());
        self.partnerstack.set_faults(faults);
    }

    /// One mock's own record of the money it moved.
    pub fn moved(&self, rail: Rail) -> Vec<MovedMoney> {
        match rail {
            Rail::Stripe => self.stripe.moved(),
            Rail::Paypal => self.paypal.moved(),
            Rail::Wise => self.wise.moved(),
            Rail::Partnerstack => self.partnerstack.moved(),
        }
    }

    /// One payout at its mock: how many payments it has there, and the minor units that were
    /// delivered and stayed out.
    pub fn payments_for(&self, rail: Rail, payout_id: &str) -> (usize, i64) {
        let mine: Vec<MovedMoney> = self
            .moved(rail)
            .into_iter()
            .filter(|m| m.payout_id == payout_id)
            .collect();
        (mine.len(), delivered(&mine))
    }

    /// Minor units a mock delivered and kept out, over all its payments.
    pub fn delivered_total(&self, rail: Rail) -> i64 {
        delivered(&self.moved(rail))
    }

    pub fn base_url(&self, rail: Rail) -> String {
        match rail {
            Rail::Stripe => self.stripe.base_url(),
            Rail::Paypal => self.paypal.base_url(),
            Rail::Wise => self.wise.base_url(),
            Rail::Partnerstack => self.partnerstack.base_url(),
        }
    }

    pub fn stop(&self) {
        self.stripe.stop();
        self.paypal.stop();
        self.wise.stop();
        self.partnerstack.stop();
    }
}
