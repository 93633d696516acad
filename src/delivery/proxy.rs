//! The HTTP CONNECT tunnel behind `delivery.proxy` (operators use it for a fixed egress
//! IP). The connector dials the proxy, which the operator configured and so is trusted
//! and not subject to the address guard, asks it for a tunnel to the endpoint's
//! `host:port`, and gets the stream back for TLS (or plain HTTP under
//! `delivery.allow_http`). Only the answer's head is consumed, byte by byte, so nothing
//! the endpoint sends after it is lost. The proxy URL never carries credentials (config
//! refuses them), so the proxy's address is safe to show in errors.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::client::{CONNECT_TIMEOUT, connect_tcp};
use super::error::DeliveryError;

/// Longest CONNECT answer head accepted; real proxies send well under 1 KiB, and the
/// bound keeps a misbehaving proxy from growing the buffer without end.
const MAX_HEAD: usize = 8 * 1024;
/// How long the proxy may take to answer CONNECT. It dials the endpoint in the
/// meantime, so this matches the time a direct TCP connect gets.
const HANDSHAKE_TIMEOUT: Duration = CONNECT_TIMEOUT;
/// Added to a refusal when the proxy, not hookd, resolved the endpoint's name.
const RESOLVED_BY_PROXY: &str =
    " (the proxy resolves host names and applies its own address policy)";

/// Where the proxy listens, parsed from `delivery.proxy` (`http://host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTarget {
    host: String,
    port: u16,
}

/// `delivery.proxy` is not `http://host:port`. Config validation refuses such values
/// first, so this only guards callers that skip it.
#[derive(Debug, thiserror::Error)]
#[error("delivery.proxy \"{0}\" must be http://host:port")]
pub struct InvalidProxyUrl(String);

impl ProxyTarget {
    pub fn parse(url: &str) -> Result<Self, InvalidProxyUrl> {
        let invalid = || InvalidProxyUrl(url.to_owned());
        let uri: http::Uri = url.parse().map_err(|_| invalid())?;
        if uri.scheme_str() != Some("http") {
            return Err(invalid());
        }
        let authority = uri.authority().ok_or_else(invalid)?;
        if authority.as_str().contains('@') {
            return Err(invalid());
        }
        let port = authority.port_u16().ok_or_else(invalid)?;
        let host = unbracket(authority.host());
        if host.is_empty() {
            return Err(invalid());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// Dials the proxy from `source` when set, trying each of its addresses in turn.
    /// The guard is not consulted: the operator chose this address, and it is commonly
    /// a private one.
    pub async fn dial(&self, source: Option<IpAddr>) -> Result<TcpStream, DeliveryError> {
        let failed = |source| DeliveryError::ProxyConnect {
            proxy: self.to_string(),
            source,
        };
        let addresses = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(failed)?;
        let mut last: io::Error = io::ErrorKind::NotFound.into();
        for address in addresses {
            match tokio::time::timeout(CONNECT_TIMEOUT, connect_tcp(address, source)).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(error)) => last = error,
                Err(_) => last = io::ErrorKind::TimedOut.into(),
            }
        }
        Err(failed(last))
    }

    /// Asks the proxy for a tunnel to `host:port` over `stream` and returns once it
    /// answered 2xx; from then on `stream` carries the endpoint's bytes. `by_name` says
    /// the proxy resolves `host`, which the error of a refusal then points out.
    pub async fn tunnel<S>(
        &self,
        stream: &mut S,
        host: &str,
        port: u16,
        by_name: bool,
    ) -> Result<(), DeliveryError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let target = authority(host, port);
        let failed = |source| DeliveryError::ProxyTunnel {
            proxy: self.to_string(),
            target: target.clone(),
            source,
        };
        let exchange = async {
            let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
            stream.write_all(request.as_bytes()).await?;
            stream.flush().await?;
            read_head(stream).await
        };
        let head = tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
            .await
            .map_err(|_| failed(io::ErrorKind::TimedOut.into()))?
            .map_err(failed)?;
        let status = status_code(&head).ok_or_else(|| {
            failed(io::Error::new(
                io::ErrorKind::InvalidData,
                "the answer does not start with an HTTP/1.x status line",
            ))
        })?;
        if (200..300).contains(&status) {
            return Ok(());
        }
        Err(DeliveryError::ProxyRefused {
            proxy: self.to_string(),
            target,
            status,
            note: if by_name { RESOLVED_BY_PROXY } else { "" },
        })
    }
}

impl fmt::Display for ProxyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&authority(&self.host, self.port))
    }
}

/// `host:port` as CONNECT and Host want it: an IPv6 literal goes in brackets.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `Uri::host` keeps the brackets of an IPv6 literal.
pub fn unbracket(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Reads the answer's head up to and including its blank line, one byte at a time:
/// whatever follows belongs to the tunnel, so no read may reach past the head. The head
/// is a few dozen bytes once per connection, so the extra reads cost nothing that shows.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(128);
    loop {
        if head.len() == MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the answer's head exceeds {MAX_HEAD} bytes"),
            ));
        }
        head.push(stream.read_u8().await?);
        // RFC 9112 section 2.2 lets a recipient accept a bare LF as a line end.
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            return Ok(head);
        }
    }
}

/// The status code of an `HTTP/1.x NNN reason` head, if it is one.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    code.parse().ok().filter(|c| (100..600).contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy() -> ProxyTarget {
        ProxyTarget::parse("http://10.0.0.1:3128").unwrap()
    }

    #[test]
    fn parses_host_and_port_and_refuses_anything_else() {
        assert_eq!(proxy().to_string(), "10.0.0.1:3128");
        assert_eq!(
            ProxyTarget::parse("http://[fd00::1]:8080")
                .unwrap()
                .to_string(),
            "[fd00::1]:8080"
        );
        assert_eq!(
            ProxyTarget::parse("http://squid.internal:3128/")
                .unwrap()
                .to_string(),
            "squid.internal:3128"
        );
        for bad in [
            "https://p:1",
            "p:1",
            "http://p",
            "http://u:p@p:1",
            "",
            "http://:1",
        ] {
            assert!(ProxyTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_status_codes_of_http_1_heads_only() {
        assert_eq!(
            status_code(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Some(200)
        );
        assert_eq!(status_code(b"HTTP/1.0 407 Proxy Auth\r\n\r\n"), Some(407));
        assert_eq!(status_code(b"HTTP/1.1 204\n\n"), Some(204));
        assert_eq!(status_code(b"HTTP/2 200\r\n\r\n"), None);
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 20 x\r\n\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 999 x\r\n\r\n"), None);
    }

    #[tokio::test]
    async fn a_tunnel_consumes_exactly_the_answer_head() {
        let (mut hookd, mut proxy_side) = tokio::io::duplex(1024);
        let server = tokio::spawn(async move {
            let request = read_head(&mut proxy_side).await.unwrap();
            proxy_side
                .write_all(b"HTTP/1.1 200 OK\r\nProxy-Agent: t\r\n\r\nTUNNELLED")
                .await
                .unwrap();
            String::from_utf8(request).unwrap()
        });
        proxy()
            .tunnel(&mut hookd, "fd00::7", 443, false)
            .await
            .unwrap();
        let request = server.await.unwrap();
        assert_eq!(
            request,
            "CONNECT [fd00::7]:443 HTTP/1.1\r\nHost: [fd00::7]:443\r\n\r\n"
        );
        let mut rest = [0u8; 9];
        hookd.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"TUNNELLED");
    }

    #[tokio::test]
    async fn a_refusal_names_the_proxy_the_target_and_the_status() {
        let (mut hookd, mut proxy_side) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            proxy_side
                .write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n")
                .await
                .unwrap();
            // Keep the pipe open until the client is done reading.
            let mut sink = Vec::new();
            let _ = proxy_side.read_to_end(&mut sink).await;
        });
        let error = proxy()
            .tunnel(&mut hookd, "example.com", 443, true)
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "proxy 10.0.0.1:3128 refused CONNECT to example.com:443: 403{RESOLVED_BY_PROXY}"
            )
        );
    }

    #[tokio::test]
    async fn an_endless_or_truncated_head_is_an_error() {
        let (mut hookd, mut proxy_side) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut long = b"HTTP/1.1 200 OK\r\n".to_vec();
            long.extend(std::iter::repeat_n(b'x', MAX_HEAD));
            let _ = proxy_side.write_all(&long).await;
            let mut sink = Vec::new();
            let _ = proxy_side.read_to_end(&mut sink).await;
        });
        let error = proxy().tunnel(&mut hookd, "a", 1, true).await.unwrap_err();
        assert!(error.to_string().contains("exceeds 8192 bytes"), "{error}");

        let (mut hookd, proxy_side) = tokio::io::duplex(1024);
        drop(proxy_side);
        let error = proxy().tunnel(&mut hookd, "a", 1, true).await.unwrap_err();
        assert!(
            matches!(error, DeliveryError::ProxyTunnel { .. }),
            "{error}"
        );
    }
}
