//! The monitoring listener on `server.metrics_listen`: plain HTTP/1.1, no auth (it is
//! loopback unless the operator says otherwise), serving `/metrics`, `/healthz` and
//! `/readyz` only. It starts before the store opens, so `/readyz` answers 503 while
//! hookd recovers, and stops last, so it answers 503 during the shutdown drain.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::health::Health;
use crate::metrics::{Metrics, Sources};

/// A scraper or two and an operator's curl; more is a misbehaving client.
const MAX_CONNECTIONS: usize = 64;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// What Prometheus and the OpenMetrics spec expect for this text.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Everything the listener answers from.
#[derive(Clone)]
pub struct Monitor {
    pub metrics: Arc<Metrics>,
    /// Set once the store is open; until then only the counters are shown.
    pub sources: Arc<OnceLock<Sources>>,
    pub health: Health,
}

pub async fn serve(listener: TcpListener, monitor: Monitor, stop: CancellationToken) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    loop {
        let Some((stream, _, permit)) =
            super::next_connection(&listener, &limit, &stop, "metrics").await
        else {
            break;
        };
        let monitor = monitor.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let service = service_fn(move |request: hyper::Request<Incoming>| {
                let monitor = monitor.clone();
                async move {
                    let response = answer(&monitor, request.method(), request.uri().path());
                    Ok::<_, Infallible>(response.await)
                }
            });
            super::serve_http1(stream, service, HEADER_TIMEOUT, &stop, Some(HEADER_TIMEOUT)).await;
            drop(permit);
        });
    }
    connections.close();
    connections.wait().await;
}

async fn answer(monitor: &Monitor, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    if let Some(response) = monitor.health.respond(path) {
        return response;
    }
    if path != "/metrics" {
        return text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into());
    }
    match monitor.metrics.scrape(monitor.sources.get()).await {
        Ok(body) => text(StatusCode::OK, OPENMETRICS, body),
        Err(error) => {
            tracing::error!(%error, "cannot encode the metrics");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                String::new(),
            )
        }
    }
}

fn text(status: StatusCode, kind: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    response
}
