//! hookd: a webhook sender in one binary with one file of state.
//!
//! Data flow: the API (`api`, served by `server`) validates and hands events to the store's
//! single writer (`store`), which commits them with their fan-out in one group commit and
//! tells the dispatcher (`dispatch`) what is due; the dispatcher runs attempts through the
//! HTTPS client (`delivery`) and reports each outcome back to the writer. Beside that
//! path: the monitoring listener (`server::monitor`, fed by `metrics` and `health`), the
//! retention task (`retention`) and SIGHUP reloads (`reload`).
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod config;
pub mod console;
pub mod delivery;
pub mod dispatch;
pub mod health;
pub mod ids;
pub mod init;
pub mod listen;
pub mod metrics;
pub mod notify;
pub mod payload;
pub mod reload;
pub mod retention;
pub mod secret;
pub mod server;
pub mod store;
pub mod sweeper;
pub mod telemetry;
pub mod tls;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
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
    #[error("server.metrics_listen = {addr}: cannot listen: {source}")]
    MetricsBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What the embedding program (the CLI, a test) controls beyond the config, the API
/// listener and the shutdown token. The default suits an embedder that needs none.
#[derive(Default)]
pub struct RunOptions {
    /// A listener already bound for `/metrics`; without one, `server.metrics_listen` is
    /// bound (its address is in the "hookd is serving" log line as `metrics=`).
    pub metrics_listener: Option<TcpListener>,
    /// Where reload requests (SIGHUP) arrive; see `reload::channel`.
    pub reload: Option<reload::Requests>,
    /// The installed logger, so a reload can change `log.level`.
    pub log: Option<telemetry::LogControl>,
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
    run_with(config, listener, shutdown, RunOptions::default()).await
}

/// `run`, with the metrics listener, reload requests and log control of `options`.
pub async fn run_with(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    options: RunOptions,
) -> Result<(), RunError> {
    let started = Instant::now();
    let config = Arc::new(config);
    let sealer = Arc::new(secret::Sealer::new(&config.master_key()?)?);
    let admin_token = config.admin_token()?;
    let certificate = if config.server.plaintext {
        None
    } else {
        let resolver = tls::CertResolver::load(&config.server.tls_cert, &config.server.tls_key)?;
        Some(Arc::new(resolver))
    };
    let acceptor = certificate
        .clone()
        .map(tls::server_config_with)
        .transpose()?
        .map(tokio_rustls::TlsAcceptor::from);

    // The monitoring listener comes up first and goes down last, so /readyz tells the
    // truth through recovery and through the shutdown drain.
    let metrics = Arc::new(metrics::Metrics::new());
    let health = health::Health::new(shutdown.clone());
    let metrics_listener = match options.metrics_listener {
        Some(listener) => listener,
        None => {
            let addr = config.server.metrics_listen;
            TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::MetricsBind { addr, source })?
        }
    };
    let metrics_address = metrics_listener.local_addr().ok();
    let sources = Arc::new(OnceLock::new());
    let monitor_stop = CancellationToken::new();
    let monitor = tokio::spawn(server::monitor::serve(
        metrics_listener,
        server::monitor::Monitor {
            metrics: metrics.clone(),
            sources: sources.clone(),
            health: health.clone(),
        },
        monitor_stop.clone(),
    ));
    let result = serve(
        config,
        listener,
        shutdown,
        Parts {
            started,
            sealer,
            admin_token,
            acceptor,
            certificate,
            metrics,
            sources,
            health,
            metrics_address,
            reload: options.reload,
            log: options.log,
        },
    )
    .await;
    monitor_stop.cancel();
    let _ = monitor.await;
    result
}

/// What `run_with` prepared before the store opens.
struct Parts {
    started: Instant,
    sealer: Arc<secret::Sealer>,
    admin_token: secret::Secret,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    certificate: Option<Arc<tls::CertResolver>>,
    metrics: Arc<metrics::Metrics>,
    sources: Arc<OnceLock<metrics::Sources>>,
    health: health::Health,
    metrics_address: Option<SocketAddr>,
    reload: Option<reload::Requests>,
    log: Option<telemetry::LogControl>,
}

async fn serve(
    config: Arc<Config>,
    listener: TcpListener,
    shutdown: CancellationToken,
    parts: Parts,
) -> Result<(), RunError> {
    let Parts {
        started,
        sealer,
        admin_token,
        acceptor,
        certificate,
        metrics,
        sources,
        health,
        metrics_address,
        reload,
        log,
    } = parts;
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
        let storage = config.storage.clone();
        let settings = store::WriterSettings {
            max_age_ms: config.delivery.max_age.as_millis() as u64,
            disable_after_ms: config.delivery.disable_after.as_millis() as u64,
            min_free: config.storage.min_free,
        };
        let sink = queues.clone();
        let observer = metrics.clone();
        let catalog = api::catalog_scopes(&config);
        store::Store::from_config(&storage, settings, catalog, sink, observer).await?
    };

    let tokens = Arc::new(delivery::oauth2::Tokens::counted(
        metrics.oauth_token_fetches.clone(),
    ));
    let dispatcher = dispatch::Dispatcher::new(
        queues.clone(),
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
            metrics: metrics.clone(),
        },
    );
    dispatcher.recover();
    let _ = sources.set(metrics::Sources {
        queues: queues.clone(),
        subscriptions: store.subscriptions_view(),
    });
    let state = Arc::new(
        api::AppState::new(
            store.clone(),
            sealer,
            config.clone(),
            &admin_token,
            health.clone(),
        )
        .map_err(RunError::Api)?,
    );
    drop(admin_token);

    let attempts = TaskTracker::new();
    let abandon = CancellationToken::new();
    let dispatch_task =
        tokio::spawn(dispatcher.run(attempts.clone(), shutdown.clone(), abandon.clone()));
    let sweeper_task = tokio::spawn(sweeper::run(
        store.clone(),
        config.delivery.max_age,
        shutdown.clone(),
    ));
    let retention_task = tokio::spawn(retention::run(
        store.clone(),
        config.storage.retention,
        shutdown.clone(),
    ));
    if let Some(requests) = reload {
        let reloader = reload::Reloader {
            certificate,
            log,
            config_path: config.path.clone(),
        };
        tokio::spawn(reloader.serve(requests, shutdown.clone()));
    }
    health.watch_storage(store.health().clone());
    health.set_ready();
    let address = listener.local_addr().ok();
    let due = store.subscriptions_view().due_count().await.unwrap_or(0);
    tracing::info!(
        address = ?address,
        metrics = ?metrics_address,
        tls = acceptor.is_some(),
        due,
        subscriptions = store.subscriptions().len(),
        startup_ms = started.elapsed().as_millis() as u64,
        "hookd is serving"
    );

    notify::ready(); // Type=notify: the listener is bound and the store open.
    server::serve(
        listener,
        acceptor,
        state,
        shutdown.clone(),
        config.server.shutdown_grace,
    )
    .await;
    let _ = dispatch_task.await;
    let _ = retention_task.await;
    let _ = sweeper_task.await;
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
