//! The blocking HTTPS client the CLI's admin commands use to call a running hookd
//! (ureq on rustls with the ring provider), authenticated with the admin token from
//! the config and trusting the CA the config names.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::CliError;
use crate::config::Config;

/// Each call is a short request to a local server.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A running hookd's API, called as the admin.
pub struct Api {
    pub agent: ureq::Agent,
    pub base: String,
    pub token: String,
}

impl Api {
    /// `url` overrides the address derived from `server.listen`; `cacert` replaces the
    /// CA files the config names.
    pub fn new(
        config: &Config,
        url: Option<&str>,
        cacert: Option<&Path>,
    ) -> Result<Self, CliError> {
        Ok(Self {
            agent: agent(config, cacert)?,
            base: url.map_or_else(
                || default_url(config),
                |u| u.trim_end_matches('/').to_owned(),
            ),
            token: config.admin_token()?.expose().to_owned(),
        })
    }

    /// Sends one request; a non-2xx answer becomes `CliError::Api` with the problem's
    /// detail.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        self.send(method, path, &[], body)
    }

    /// A GET with query parameters, which ureq percent-encodes (a cursor is opaque).
    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, CliError> {
        self.send("GET", path, query, None)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let failed = |source: ureq::Error| CliError::Http {
            url: url.clone(),
            source: Box::new(source),
        };
        let response = match method {
            "GET" => self
                .agent
                .get(&url)
                .query_pairs(query.iter().copied())
                .header("authorization", &auth)
                .call(),
            "DELETE" => self
                .agent
                .delete(&url)
                .header("authorization", &auth)
                .call(),
            _ => {
                let request = if method == "PATCH" {
                    self.agent.patch(&url)
                } else {
                    self.agent.post(&url)
                };
                let request = request.header("authorization", &auth);
                match body {
                    Some(body) => request.send_json(body),
                    None => request.send_empty(),
                }
            }
        }
        .map_err(failed)?;
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().map_err(failed)?;
        if !(200..300).contains(&status) {
            return Err(CliError::Api {
                status,
                detail: problem_detail(&text),
            });
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|_| CliError::Api {
            status,
            detail: "the answer is not JSON".into(),
        })
    }
}

/// `https://localhost:PORT` for a loopback or wildcard listen address, where the
/// certificate `hookd init` makes is valid; the address itself otherwise.
pub fn default_url(config: &Config) -> String {
    let listen = config.server.listen;
    let scheme = if config.server.plaintext {
        "http"
    } else {
        "https"
    };
    let host = match listen.ip() {
        ip if ip.is_loopback() || ip.is_unspecified() => "localhost".to_owned(),
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    format!("{scheme}://{host}:{}", listen.port())
}

/// A blocking client on rustls with the ring provider, trusting the system roots plus
/// `cacert`, or else the CA the config names: `delivery.extra_ca_file`, `ca.pem`
/// beside the server certificate (where `hookd init` writes it) and the certificate
/// chain file itself.
pub fn agent(config: &Config, cacert: Option<&Path>) -> Result<ureq::Agent, CliError> {
    let mut files: Vec<PathBuf> = Vec::new();
    match cacert {
        Some(path) => files.push(path.to_owned()),
        None => {
            files.extend(config.delivery.extra_ca_file.clone());
            if !config.server.plaintext {
                let tls_dir = config.server.tls_cert.parent().unwrap_or(Path::new(""));
                let beside = tls_dir.join("ca.pem");
                if beside.exists() {
                    files.push(beside);
                }
                files.push(config.server.tls_cert.clone());
            }
        }
    }
    let mut roots = Vec::new();
    for path in files {
        let certs = crate::tls::load_certs(&path).map_err(|source| CliError::Tls {
            key: "CA to trust",
            path: path.clone(),
            source,
        })?;
        roots.extend(
            certs
                .iter()
                .map(|c| ureq::tls::Certificate::from_der(c).to_owned()),
        );
    }
    roots.extend(
        rustls_native_certs::load_native_certs()
            .certs
            .iter()
            .map(|c| ureq::tls::Certificate::from_der(c).to_owned()),
    );
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .unversioned_rustls_crypto_provider(crate::tls::provider())
        .build();
    Ok(ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_connect(Some(TIMEOUT))
        .timeout_recv_response(Some(TIMEOUT))
        .build()
        .new_agent())
}

/// The `detail` of a problem+json answer, or the text itself.
pub fn problem_detail(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.trim().to_owned())
}
