//! A faithful mock of Wise's payout API (docs/providers/wise.md, "Simulator"), for tests and
//! the demo.
//!
//! Speaks the real paths and JSON shapes: Bearer auth (401 OAuth-style body), profiles,
//! recipients, quotes (30-minute expiry on a clock tests can shift), one transfer per quote,
//! `customerTransactionId` dedupe (a repeat returns the SAME transfer, or a 409 if
//! [`RepeatMode::Conflict`]; never a second one), funding from a per-currency balance
//! (`REJECTED` with `balance.payment-option-unavailable` when short), listing with a `status`
//! CSV filter and `limit`/`offset`, and signed `transfers#state-change` webhooks.
//!
//! Seeded recipients (profile [`PROFILE_ID`] by default), whose ids script the outcome:
//! - [`RECIPIENT_USD`] 1001 (USD), [`RECIPIENT_EUR`] 1002 (EUR), [`RECIPIENT_GBP`] 1003 (GBP):
//!   `processing → funds_converted → outgoing_payment_sent`, one step per `process_after_ms`.
//! - [`RECIPIENT_BOUNCE`] 1004 (USD): reaches `outgoing_payment_sent`, then `bounced_back`
//!   after `late_after_ms` and `funds_refunded` after another `late_after_ms` (the money goes
//!   back into the mock balance).
//! - [`RECIPIENT_FAIL`] 1005 (USD): `processing → cancelled` with payout-failure code
//!   `WRONG_ACCOUNT_NUMBER` (money back into the balance).
//!
//! Its own record of the money is [`MockWise::moved`]: one entry per funded transfer. Its
//! records side (date-range listing, balance statement export, silent tamper/forget controls)
//! is in `mock_records.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::money::Currency;
use crate::providers::wise::wire::{Account, Transfer};
use crate::sim::kit::{Dice, MovedMoney, Outbox, Running, lock};
use state::{Inner, Shared, advance, find, moved, progress_due};

pub use crate::sim::kit::Faults;

mod faults;
mod funding;
mod quotes;
mod records;
mod reply;
mod routes;
mod state;
mod transfers;

/// TEST ONLY: the private key the mock signs webhooks with. It is public in this repository,
/// so it proves nothing outside tests.
pub const TEST_WEBHOOK_PRIVATE_KEY_PEM: &str = include_str!("test_webhook_private_key.pem");

/// TEST ONLY: the public half of that pair, for a receiver that listens to this simulator. Never
/// configure it in production; Wise publishes its own (different for sandbox and production).
pub const TEST_WEBHOOK_PUBLIC_KEY_PEM: &str = include_str!("test_webhook_public_key.pem");

pub const PROFILE_ID: u64 = 16_000_001;
pub const RECIPIENT_USD: u64 = 1001;
pub const RECIPIENT_EUR: u64 = 1002;
pub const RECIPIENT_GBP: u64 = 1003;
pub const RECIPIENT_BOUNCE: u64 = 1004;
pub const RECIPIENT_FAIL: u64 = 1005;
/// The payout-failure code the [`RECIPIENT_FAIL`] script ends with.
pub const FAILURE_CODE: &str = "WRONG_ACCOUNT_NUMBER";
/// The funding error code when the balance is short.
pub const INSUFFICIENT: &str = "balance.payment-option-unavailable";

/// What a repeated `customerTransactionId` gets (Wise's behaviour is UNCONFIRMED).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RepeatMode {
    /// 200 with the transfer created first.
    #[default]
    SameTransfer,
    /// 409 with a validation-style error body.
    Conflict,
}

/// What the mock is configured with at start.
#[derive(Clone)]
pub struct MockWiseConfig {
    pub api_token: SecretString,
    pub profile_id: u64,
    pub faults: Faults,
    /// Starting balance per currency (USD, EUR, GBP), in minor units.
    pub balance_minor: i64,
    /// Time between the automatic steps after funding.
    pub process_after_ms: u64,
    /// Time from `outgoing_payment_sent` to `bounced_back`, and on to `funds_refunded`.
    pub late_after_ms: u64,
    pub tick_ms: u64,
    pub repeat_mode: RepeatMode,
    /// Deliver every webhook twice (each with its own X-Delivery-Id).
    pub duplicate_webhooks: bool,
    /// Delay each webhook by a random 0–400 ms, so they arrive out of order.
    pub out_of_order_webhooks: bool,
    /// PEM of the key webhooks are signed with (PKCS#1 or PKCS#8).
    pub webhook_private_key_pem: String,
}

impl std::fmt::Debug for MockWiseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockWiseConfig")
            .field("api_token", &"[redacted]")
            .field("profile_id", &self.profile_id)
            .field("faults", &self.faults)
            .field("balance_minor", &self.balance_minor)
            .field("process_after_ms", &self.process_after_ms)
            .field("late_after_ms", &self.late_after_ms)
            .field("repeat_mode", &self.repeat_mode)
            .finish_non_exhaustive()
    }
}

impl Default for MockWiseConfig {
    fn default() -> Self {
        MockWiseConfig {
            api_token: SecretString::from("wise_test_token"),
            profile_id: PROFILE_ID,
            faults: Faults::default(),
            balance_minor: 1_000_000_000,
            process_after_ms: 100,
            late_after_ms: 300,
            tick_ms: 50,
            repeat_mode: RepeatMode::SameTransfer,
            duplicate_webhooks: false,
            out_of_order_webhooks: false,
            webhook_private_key_pem: TEST_WEBHOOK_PRIVATE_KEY_PEM.to_string(),
        }
    }
}

/// Answers that do not say what happened, for tests of what the client believes.
#[derive(Debug, Clone, Copy, Default)]
pub struct FundingQuirks {
    /// Funding takes the money and moves the transfer on, but answers `REJECTED`.
    pub reject_after_funding: bool,
    /// Cancelling answers 500 and leaves the transfer as it was.
    pub cancel_fails: bool,
}

/// Handle to a running mock. Dropping it does not stop the server; call [`MockWise::stop`].
#[derive(Clone)]
pub struct MockWise {
    inner: Shared,
    running: Running,
    outbox: Outbox,
}

impl std::fmt::Debug for MockWise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockWise")
            .field("addr", &self.running.addr)
            .finish()
    }
}

fn signer_from_pem(pem: &str) -> std::io::Result<SigningKey<Sha256>> {
    let key = RsaPrivateKey::from_pkcs1_pem(pem.trim())
        .or_else(|_| RsaPrivateKey::from_pkcs8_pem(pem.trim()))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    Ok(SigningKey::new(key))
}

/// TEST ONLY: the `X-Signature-SHA256` value the mock would send for `body`.
pub fn sign_test_body(body: &[u8]) -> std::io::Result<String> {
    let signer = signer_from_pem(TEST_WEBHOOK_PRIVATE_KEY_PEM)?;
    Ok(STANDARD.encode(signer.sign(body).to_bytes()))
}

fn seeded_accounts(profile: u64) -> Vec<Account> {
    let account = |id: u64, currency: &str, country: &str, name: &str, kind: &str| Account {
        id,
        profile,
        account_holder_name: name.into(),
        currency: currency.into(),
        country: country.into(),
        kind: kind.into(),
        active: true,
        owned_by_customer: false,
    };
    vec![
        account(RECIPIENT_USD, "USD", "US", "Ada Referrer", "aba"),
        account(RECIPIENT_EUR, "EUR", "DE", "Bea Referrer", "iban"),
        account(RECIPIENT_GBP, "GBP", "GB", "Cal Referrer", "sort_code"),
        account(RECIPIENT_BOUNCE, "USD", "US", "Dee Bounce", "aba"),
        account(RECIPIENT_FAIL, "USD", "US", "Eve Closed", "aba"),
    ]
}

impl MockWise {
    /// Starts the mock on `addr` (port 0 for an ephemeral port) and its progression ticker.
    pub async fn start(addr: SocketAddr, config: MockWiseConfig) -> std::io::Result<MockWise> {
        let outbox = Outbox::default();
        let balances = ["USD", "EUR", "GBP"]
            .iter()
            .map(|c| (c.to_string(), config.balance_minor))
            .collect();
        let inner = Arc::new(Mutex::new(Inner {
            token: config.api_token,
            profile_id: config.profile_id,
            dice: Dice::new(config.faults.seed),
            faults: config.faults,
            accounts: seeded_accounts(config.profile_id),
            quotes: HashMap::new(),
            transfers: Vec::new(),
            balances,
            clock_offset: chrono::Duration::zero(),
            page_cap: None,
            next_id: 50_000_001,
            process_after: Duration::from_millis(config.process_after_ms),
            late_after: Duration::from_millis(config.late_after_ms),
            repeat_mode: config.repeat_mode,
            funding_quirks: FundingQuirks::default(),
            duplicate_webhooks: config.duplicate_webhooks,
            out_of_order_webhooks: config.out_of_order_webhooks,
            signer: signer_from_pem(&config.webhook_private_key_pem)?,
            outbox: outbox.clone(),
        }));
        let running = Running::start(addr, routes::router(inner.clone()), "mock wise").await?;
        let tick = Duration::from_millis(config.tick_ms.max(1));
        let ticking = inner.clone();
        let ticker = tokio::spawn(async move {
            loop {
                crate::clock::sleep(tick).await;
                progress_due(&mut lock(&ticking), crate::clock::instant());
            }
        });
        running.also_stops(ticker);
        Ok(MockWise {
            inner,
            running,
            outbox,
        })
    }

    pub fn base_url(&self) -> String {
        self.running.base_url()
    }

    pub fn stop(&self) {
        self.running.stop();
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn set_faults(&self, faults: Faults) {
        let mut inner = lock(&self.inner);
        inner.dice = Dice::new(faults.seed);
        inner.faults = faults;
    }

    /// Funding and cancelling misbehaving in ways a client must not trust blindly.
    pub fn set_funding_quirks(&self, quirks: FundingQuirks) {
        lock(&self.inner).funding_quirks = quirks;
    }

    pub fn set_repeat_mode(&self, mode: RepeatMode) {
        lock(&self.inner).repeat_mode = mode;
    }

    /// Caps every transfer listing page at `cap` transfers (`None`: as many as `limit` asks).
    pub fn set_page_cap(&self, cap: Option<usize>) {
        lock(&self.inner).page_cap = cap;
    }

    /// Shifts the mock's clock (quote expiry) by `offset` from real time.
    pub fn set_clock_offset(&self, offset: chrono::Duration) {
        lock(&self.inner).clock_offset = offset;
    }

    /// Sets the balance of a currency, in minor units.
    pub fn set_balance(&self, currency: Currency, minor: i64) {
        lock(&self.inner)
            .balances
            .insert(currency.code().to_string(), minor);
    }

    pub fn balance(&self, currency: Currency) -> i64 {
        lock(&self.inner)
            .balances
            .get(currency.code())
            .copied()
            .unwrap_or(0)
    }

    /// How many quotes were created.
    pub fn quotes_created(&self) -> usize {
        lock(&self.inner).quotes.len()
    }

    /// Every transfer the mock holds, funded or not, oldest first.
    pub fn transfers(&self) -> Vec<Transfer> {
        lock(&self.inner)
            .transfers
            .iter()
            .map(|t| t.transfer.clone())
            .collect()
    }

    /// The mock's own record of money moved: one entry per funded transfer.
    pub fn moved(&self) -> Vec<MovedMoney> {
        moved(&lock(&self.inner))
    }

    /// The payout-failure code a transfer's script ended with, if any.
    pub fn failure_code(&self, transfer_id: &str) -> Option<String> {
        let inner = lock(&self.inner);
        find(&inner, transfer_id).and_then(|i| inner.transfers[i].failure_code.clone())
    }

    /// Moves a transfer to `status` now, dropping the rest of its script. False if unknown.
    pub fn advance(&self, transfer_id: &str, status: &str) -> bool {
        let mut inner = lock(&self.inner);
        advance(&mut inner, transfer_id, status)
    }
}
