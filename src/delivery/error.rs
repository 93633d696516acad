//! Why an attempt failed. The `Display` text is what an operator reads in the attempt
//! record, so it names the cause (refused address, TLS, timeout) and never a secret.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the URL must be https:// with a host (http:// only with delivery.allow_http)")]
    Scheme,
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("refused to connect to {address}: {reason} (delivery.allow_networks can permit it)")]
    Refused {
        address: IpAddr,
        reason: &'static str,
    },
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot connect to proxy {proxy}: {source}")]
    ProxyConnect {
        proxy: String,
        source: std::io::Error,
    },
    #[error("CONNECT to {target} through proxy {proxy} failed: {source}")]
    ProxyTunnel {
        proxy: String,
        target: String,
        source: std::io::Error,
    },
    /// `note` says when the proxy, not hookd, resolved the name (and so applied its own
    /// address policy in place of `delivery.allow_networks`).
    #[error("proxy {proxy} refused CONNECT to {target}: {status}{note}")]
    ProxyRefused {
        proxy: String,
        target: String,
        status: u16,
        note: &'static str,
    },
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("token request to {url} failed: {reason}")]
    TokenRequest { url: String, reason: String },
    #[error("token endpoint {url} answered {status}{}", code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    TokenRefused {
        url: String,
        status: u16,
        code: Option<String>,
    },
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Http(String),
}

impl DeliveryError {
    /// Unwraps hyper-util's error to the connector's own when there is one, so the
    /// attempt record says "refused to connect ..." rather than "client error (Connect)".
    pub fn from_client(error: hyper_util::client::legacy::Error) -> Self {
        use std::error::Error;
        let mut cause: Option<&(dyn Error + 'static)> = error.source();
        while let Some(inner) = cause {
            if let Some(own) = inner.downcast_ref::<DeliveryError>() {
                return own.clone_shallow();
            }
            cause = inner.source();
        }
        let mut text = error.to_string();
        let mut cause = error.source();
        while let Some(inner) = cause {
            text.push_str(": ");
            text.push_str(&inner.to_string());
            cause = inner.source();
        }
        Self::Http(text)
    }

    fn clone_shallow(&self) -> Self {
        match self {
            Self::Scheme => Self::Scheme,
            Self::Refused { address, reason } => Self::Refused {
                address: *address,
                reason,
            },
            Self::ProxyRefused {
                proxy,
                target,
                status,
                note,
            } => Self::ProxyRefused {
                proxy: proxy.clone(),
                target: target.clone(),
                status: *status,
                note,
            },
            Self::Timeout(d) => Self::Timeout(*d),
            other => Self::Http(other.to_string()),
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }
}
