//! The simulators' commands: the demo, the benchmarks, the deterministic simulator of the
//! engine and the standalone provider mocks. They
//! exist only with the `simulators` feature; a production build has none of them.

mod bench;
mod chaos;
mod demo;
mod demo_trust;

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use payouts::domain::ids::Rail;
use payouts::jobs::shutdown_signal;
use payouts::sim::kit::Faults;
use payouts::sim::sandbox::{
    PARTNERSTACK_WEBHOOK_TOKEN, STRIPE_WEBHOOK_SECRET, Sandbox, SandboxOptions,
};
use secrecy::SecretString;

#[derive(Subcommand)]
pub enum SimCommand {
    /// Run the whole flow on a temporary database against the four provider mocks, with
    /// faults on.
    Demo,
    /// Measure throughput (figures, not pass/fail): `bench accrual`, `run`, `execution`,
    /// `http`, `reconcile`.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// Play seeded runs of the whole payout engine under crashes and provider faults on a
    /// simulated clock, and check after each that nothing was paid twice or lost; `--seed S`
    /// replays one run and prints its trace.
    Sim(chaos::SimOptions),
    /// Run the four provider mocks (Stripe, PayPal, Wise, PartnerStack) on consecutive loopback
    /// ports; prints one "mock <rail> listening on <url>" line each, Stripe first.
    MockProviders {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// The secret key the mock accepts.
        #[arg(
            long,
            env = "STRIPE_SECRET_KEY",
            default_value = "sk_test_mock",
            hide_env_values = true
        )]
        api_key: String,
        /// Fault injection as JSON, e.g. '{"drop_first_attempt":true,"error_rate":0.2}'.
        #[arg(long)]
        faults: Option<String>,
        /// Where to send webhooks: the base URL of `payouts serve`'s receivers, e.g.
        /// http://127.0.0.1:8080/webhooks (each rail posts to <url>/<rail>).
        #[arg(long)]
        webhook_url: Option<String>,
    },
}

/// Runs a simulator command; returns the process exit code.
pub async fn run(command: SimCommand) -> Result<i32> {
    match command {
        SimCommand::Demo => demo::run().await,
        SimCommand::Bench { command } => bench::bench(command).await,
        SimCommand::Sim(options) => chaos::sim(options).await,
        SimCommand::MockProviders {
            listen,
            api_key,
            faults,
            webhook_url,
        } => mock_providers(listen, api_key, faults, webhook_url).await,
    }
}

async fn mock_providers(
    listen: SocketAddr,
    api_key: String,
    faults: Option<String>,
    webhook_url: Option<String>,
) -> Result<i32> {
    let faults: Faults = match faults {
        Some(json) => serde_json::from_str(&json).context("parsing --faults")?,
        None => Faults::default(),
    };
    if !listen.ip().is_loopback() {
        bail!("the mocks listen on loopback only; use 127.0.0.1:<port>");
    }
    // Four consecutive ports from the one given, or four ephemeral ones for port 0.
    let base = listen.port();
    let port = |i: u16| if base == 0 { 0 } else { base.saturating_add(i) };
    let sandbox = Sandbox::start(SandboxOptions {
        faults,
        ports: [port(0), port(1), port(2), port(3)],
        stripe_api_key: SecretString::from(api_key),
        ..SandboxOptions::default()
    })
    .await
    .with_context(|| format!("binding four ports from {listen}"))?;
    sandbox.send_webhooks_to(webhook_url.as_deref());
    let mut out = String::new();
    for rail in [Rail::Stripe, Rail::Paypal, Rail::Wise, Rail::Partnerstack] {
        out.push_str(&format!(
            "mock {rail} listening on {}\n",
            sandbox.base_url(rail)
        ));
    }
    out.push_str(&format!(
        "credentials: PAYPAL_CLIENT_ID=mock-client-id PAYPAL_CLIENT_SECRET=mock-client-secret \
         PAYPAL_WEBHOOK_ID={} WISE_API_TOKEN=wise_test_token WISE_PROFILE_ID={} \
         PARTNERSTACK_PUBLIC_KEY=pk_live_mock PARTNERSTACK_SECRET_KEY=sk_live_mock \
         STRIPE_WEBHOOK_SECRETS={STRIPE_WEBHOOK_SECRET} PARTNERSTACK_WEBHOOK_TOKEN={PARTNERSTACK_WEBHOOK_TOKEN}\n",
        sandbox.paypal.webhook_id(),
        payouts::sim::wise::PROFILE_ID,
    ));
    out.push_str(&match &webhook_url {
        Some(url) => format!("webhooks go to {url}/<rail>\n"),
        None => "webhooks are off (pass --webhook-url to send them)\n".to_string(),
    });
    // Whoever started us may stop reading after the addresses; a closed pipe must not stop
    // the mocks.
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        let _ = stdout
            .write_all(out.as_bytes())
            .and_then(|()| stdout.flush());
    }
    shutdown_signal().await;
    sandbox.stop();
    Ok(0)
}
