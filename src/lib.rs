//! hookd: a webhook sender in one binary with one file of state.
//!
//! Data flow: the API (`api`, served by `server`) validates and hands events to the store's
//! single writer (`store`), which commits them with their fan-out in one group commit and
//! tells the dispatcher (`dispatch`) what is due; the dispatcher runs attempts through the
//! HTTPS client (`delivery`) and reports each outcome back to the writer.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod dispatch;
pub mod ids;
pub mod init;
pub mod listen;
pub mod payload;
pub mod secret;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;

use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use config::Config;
use delivery::guard::AddressGuard;
use dispatch::queues::Queues;

/// Why hookd could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("master key: {0}")]
    Seal(#[from] secret::SealError),
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Proxy(#[from] delivery::proxy::InvalidProxyUrl),
    #[error("{0}")]
    Api(#[from] api::StartError),
    #[error("a start-up task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl RunError {
    /// Whether fixing the configuration (or the files it names) is the remedy: then
    /// `hookd serve` exits 78 and systemd does not restart it in a loop.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Self::Config(_) | Self::Tls(_) | Self::Seal(_) | Self::Api(api::StartError::Jwt(_))
        )
    }
}

/// Serves the API on `listener` and delivers until `shutdown` is cancelled, then stops
/// accepting, gives in-flight attempts `server.shutdown_grace` to finish and record
/// their outcome, and closes the store after its writer has committed everything queued.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let started = Instant::now();
    let config = Arc::new(config);
    let sealer = Arc::new(secret::Sealer::new(&config.master_key()?)?);
    let admin_token = config.admin_token()?;
    let acceptor = if config.server.plaintext {
        None
    } else {
        let server_tls = tls::server_config(&config.server.tls_cert, &config.server.tls_key)?;
        Some(tokio_rustls::TlsAcceptor::from(server_tls))
    };
    let client = delivery::Client::new(delivery::ClientSettings {
        tls: tls::client_config(config.delivery.extra_ca_file.as_deref())?,
        guard: AddressGuard::new(config.delivery.allow_networks.clone()),
        source_address: config.delivery.source_address,
        proxy: config
            .delivery
            .proxy
            .as_deref()
            .map(delivery::ProxyTarget::parse)
            .transpose()?,
        allow_http: config.delivery.allow_http,
        // Several subscriptions often share one host: keep enough idle connections
        // that none of them pays a TLS handshake per delivery.
        max_idle_per_host: config.delivery.concurrency,
    });

    let queues = Arc::new(Queues::new(config.delivery.per_endpoint_concurrency));
    let (store, writer) = {
        let path = config.storage.path.clone();
        let cache = config.storage.cache_size;
        let settings = store::WriterSettings {
            max_age_ms: config.delivery.max_age.as_millis() as u64,
            disable_after_ms: config.delivery.disable_after.as_millis() as u64,
        };
        let sink = queues.clone();
        let catalog = api::catalog_scopes(&config);
        tokio::task::spawn_blocking(move || {
            store::Store::open(&path, cache, settings, catalog, sink)
        })
        .await??
    };

    let tokens = Arc::new(delivery::oauth2::Tokens::default());
    let dispatcher = dispatch::Dispatcher::new(
        queues,
        store.clone(),
        client,
        tokens,
        sealer.clone(),
        dispatch::Settings {
            policy: dispatch::schedule::Policy {
                schedule: config.delivery.schedule.clone(),
                max_age: config.delivery.max_age,
            },
            timeout: config.delivery.timeout,
            concurrency: config.delivery.concurrency,
        },
    );
    let recovered = dispatcher.recover().await?;
    let state = Arc::new(
        api::AppState::new(store.clone(), sealer, config.clone(), &admin_token)
            .map_err(RunError::Api)?,
    );
    drop(admin_token);

    let attempts = TaskTracker::new();
    let abandon = CancellationToken::new();
    let dispatch_task =
        tokio::spawn(dispatcher.run(attempts.clone(), shutdown.clone(), abandon.clone()));
    let address = listener.local_addr().ok();
    tracing::info!(
        address = ?address,
        tls = acceptor.is_some(),
        due = recovered,
        subscriptions = store.subscriptions().len(),
        startup_ms = started.elapsed().as_millis() as u64,
        "hookd is serving"
    );

    server::serve(
        listener,
        acceptor,
        state,
        shutdown.clone(),
        config.server.shutdown_grace,
    )
    .await;
    let _ = dispatch_task.await;
    attempts.close();
    if tokio::time::timeout(config.server.shutdown_grace, attempts.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace = ?config.server.shutdown_grace,
            "attempts still running at the end of the grace period are abandoned; they run again after restart"
        );
        abandon.cancel();
        attempts.wait().await;
    }
    drop(store);
    // The writer exits once every Store handle is gone and its queue is drained.
    tokio::task::spawn_blocking(move || writer.join()).await?;
    tracing::info!("hookd stopped");
    Ok(())
}
