//! Liveness and readiness, answered by `/healthz` and `/readyz` on both listeners.
//! Ready means the store is open and the dispatcher has loaded the due queue; it ends
//! as soon as shutdown begins, so a load balancer stops sending before hookd stops
//! accepting, and while a store write has failed (until the store is writable again).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use tokio_util::sync::CancellationToken;

use crate::store::{StorageHealth, StorageState};

#[derive(Clone)]
pub struct Health {
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
    storage: Arc<OnceLock<StorageHealth>>,
}

/// What `/readyz` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Starting,
    Ready,
    Stopping,
    /// A store write failed; hookd refuses new work until it can write again.
    StorageUnavailable,
}

impl Health {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            ready: Arc::new(AtomicBool::new(false)),
            shutdown,
            storage: Arc::default(),
        }
    }

    /// Readiness follows the store's state from now on.
    pub fn watch_storage(&self, storage: StorageHealth) {
        let _ = self.storage.set(storage);
    }

    /// Called once the store is open and the dispatcher has recovered.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn readiness(&self) -> Readiness {
        if self.shutdown.is_cancelled() {
            Readiness::Stopping
        } else if self
            .storage
            .get()
            .is_some_and(|s| s.state() == StorageState::Faulted)
        {
            Readiness::StorageUnavailable
        } else if self.ready.load(Ordering::Acquire) {
            Readiness::Ready
        } else {
            Readiness::Starting
        }
    }

    /// `/healthz`: the process answers. `/readyz`: 200 while ready, else 503.
    pub fn respond(&self, path: &str) -> Option<Response<Full<Bytes>>> {
        let (status, text) = match path.trim_end_matches('/') {
            "/healthz" => (StatusCode::OK, "ok"),
            "/readyz" => match self.readiness() {
                Readiness::Ready => (StatusCode::OK, "ready"),
                Readiness::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
                Readiness::Stopping => (StatusCode::SERVICE_UNAVAILABLE, "stopping"),
                Readiness::StorageUnavailable => {
                    (StatusCode::SERVICE_UNAVAILABLE, "storage-unavailable")
                }
            },
            _ => return None,
        };
        let body = serde_json::json!({ "status": text }).to_string();
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Some(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_between_recovery_and_shutdown() {
        let shutdown = CancellationToken::new();
        let health = Health::new(shutdown.clone());
        let status = |path| health.respond(path).map(|r| r.status().as_u16());
        assert_eq!(status("/healthz"), Some(200));
        assert_eq!(status("/readyz"), Some(503));
        health.set_ready();
        assert_eq!(status("/readyz"), Some(200));
        shutdown.cancel();
        assert_eq!(health.readiness(), Readiness::Stopping);
        assert_eq!(status("/readyz"), Some(503));
        assert_eq!(status("/healthz"), Some(200));
        assert_eq!(status("/metrics"), None);
    }
}
