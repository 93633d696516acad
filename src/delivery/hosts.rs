//! Requests in flight and connections per host, so the delivery pool never holds more
//! connections to a host than it has requests for (see `Hosts`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use http::Uri;
use http::uri::{Authority, Scheme};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::client::DIAL_WAIT;
use super::error::DeliveryError;

/// hyper-util's pool key: requests and dials to the same one share connections.
pub(super) type PoolKey = (Scheme, Authority);

pub(super) fn pool_key(uri: &Uri) -> Option<PoolKey> {
    Some((uri.scheme()?.clone(), uri.authority()?.clone()))
}

/// Requests in flight and connections (open or being dialled) per pool key.
///
/// hyper-util races a dial against the pool for every request that finds no idle
/// connection; when a busy connection comes back first, the request takes it and the
/// dial still completes in the background, into one more idle connection. Under steady
/// load those spares add up (285 connections were seen to one receiver). Here a dial
/// goes ahead only while its host has fewer connections than requests, so connections
/// never outnumber the requests in flight: at most `per_endpoint_concurrency` for one
/// subscription's endpoint, and several subscriptions on one host still get a
/// connection each (no cap across them).
#[derive(Default)]
pub(super) struct Hosts {
    load: Mutex<HashMap<PoolKey, Load>>,
    /// Signalled whenever a connection closes or a dial fails.
    closed: Notify,
}

#[derive(Default)]
struct Load {
    requests: usize,
    connections: usize,
}

#[derive(Clone, Copy)]
enum Kind {
    Request,
    Connection,
}

/// One request or connection counted against its host until dropped.
pub(super) struct Counted {
    hosts: Arc<Hosts>,
    key: PoolKey,
    kind: Kind,
}

impl Hosts {
    pub(super) fn request(self: &Arc<Self>, key: PoolKey) -> Counted {
        self.count(key, Kind::Request)
    }

    /// Counts a new connection to `key` when one is needed: at once while the host has
    /// fewer connections than requests; otherwise a connection is about to come back to
    /// the pool (or to close), so this waits for a close, for the request that started
    /// it to be over (it took a pooled connection: `Err`, the dial is dropped), or at
    /// most `DIAL_WAIT`. A dial no request started (`origin` unset) is not held back.
    pub(super) async fn dial(
        self: &Arc<Self>,
        key: PoolKey,
        origin: Option<CancellationToken>,
    ) -> Result<Counted, DeliveryError> {
        let Some(origin) = origin else {
            return Ok(self.count(key, Kind::Connection));
        };
        let give_up = tokio::time::sleep(DIAL_WAIT);
        tokio::pin!(give_up);
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            // Registered before the check, so a close between the two is not missed.
            closed.as_mut().enable();
            if let Some(counted) = self.needed_connection(&key) {
                return Ok(counted);
            }
            tokio::select! {
                _ = &mut closed => {}
                _ = origin.cancelled() => {
                    return Err(DeliveryError::Http("dial no longer needed".into()));
                }
                _ = &mut give_up => break,
            }
        }
        tracing::debug!(host = %key.1, "no pooled connection came back in time; dialling");
        Ok(self.count(key, Kind::Connection))
    }

    /// Counts a connection to `key` if the host has fewer than requests.
    fn needed_connection(self: &Arc<Self>, key: &PoolKey) -> Option<Counted> {
        let mut hosts = self.lock();
        let load = hosts.get_mut(key)?;
        if load.connections >= load.requests {
            return None;
        }
        load.connections += 1;
        Some(Counted {
            hosts: self.clone(),
            key: key.clone(),
            kind: Kind::Connection,
        })
    }

    fn count(self: &Arc<Self>, key: PoolKey, kind: Kind) -> Counted {
        let mut hosts = self.lock();
        let load = hosts.entry(key.clone()).or_default();
        match kind {
            Kind::Request => load.requests += 1,
            Kind::Connection => load.connections += 1,
        }
        Counted {
            hosts: self.clone(),
            key,
            kind,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Load>> {
        // Counts stay consistent under a panic elsewhere: each change is one statement.
        self.load.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut hosts = self.hosts.lock();
        if let Some(load) = hosts.get_mut(&self.key) {
            match self.kind {
                Kind::Request => load.requests = load.requests.saturating_sub(1),
                Kind::Connection => load.connections = load.connections.saturating_sub(1),
            }
            if load.requests == 0 && load.connections == 0 {
                hosts.remove(&self.key);
            }
        }
        drop(hosts);
        if let Kind::Connection = self.kind {
            self.hosts.closed.notify_waiters();
        }
    }
}
