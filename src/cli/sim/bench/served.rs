//! The API served in this process on a loopback port, and the client the benchmarks drive it
//! with.

use std::time::Duration;

use anyhow::{Context, Result};
use payouts::http::{ApiSettings, WebhookState};
use payouts::providers::rail::Rails;
use payouts::storage::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The API served in this process on a loopback port, until [`Served::stop`].
pub(super) struct Served {
    /// `http://127.0.0.1:PORT`.
    pub(super) base: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Served {
    pub(super) async fn start(store: &Store) -> Result<Served> {
        let webhooks = WebhookState {
            store: store.clone(),
            rails: Rails::default(),
            watch_for: None,
            verify_limit: payouts::http::webhooks::default_verify_limit(),
        };
        // Rate limiting off: the bench measures the server, not the per-key limiter.
        let settings = ApiSettings {
            rate_per_second: 0,
            ..ApiSettings::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding 127.0.0.1:0")?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let app = payouts::http::app(webhooks, settings);
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Served { base, stop, task })
    }

    pub(super) async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        self.task
            .await
            .context("the server task")?
            .context("serving")
    }
}

/// One HTTP client for every task, its pool large enough to keep a connection per task, and
/// never through a proxy (the environment's would put another hop in every loopback request).
pub(super) fn client(connections: usize) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")
}
