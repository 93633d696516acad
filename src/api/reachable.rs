//! Refuses, when a subscription is created or changed, an `endpointUrl` or `tokenUrl`
//! that could never be delivered: a host that is an IP address the address guard
//! refuses (in any spelling a resolver accepts: `127.1`, `0x7f000001`, `2130706433`,
//! `[::ffff:127.0.0.1]`), an IPv4 address not written as four decimal numbers, an IPv6
//! zone id, a host with an empty label (`localhost..`), or a name that resolves, at that
//! moment, only to addresses the guard refuses. Behind `delivery.proxy` names are the
//! proxy's to resolve (hookd never dials them itself), so only literals are checked.
//! The guard in the connector still checks the address actually dialled on every
//! attempt: DNS can change after this check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::ApiError;
use crate::delivery::guard::{AddressGuard, canonical};

/// A lookup slower than this is not waited for: the name is accepted and the guard
/// decides when it is dialled.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks the host of `url` (already validated as an absolute http(s) URL); resolves a
/// name only when `resolve` (no proxy).
pub async fn check(
    guard: &AddressGuard,
    resolve: bool,
    field: &str,
    url: &str,
) -> Result<(), ApiError> {
    let refuse = |detail: String| Err(ApiError::invalid(field, detail));
    let Ok(uri) = url.parse::<http::Uri>() else {
        return refuse("is not a valid absolute URL".into());
    };
    let Some(host) = uri.host() else {
        return refuse("must name a host".into());
    };
    let host = match literal(host) {
        Ok(Some(ip)) => {
            return match guard.check(ip) {
                Ok(()) => Ok(()),
                Err(reason) => refuse(format!(
                    "names {ip}, a {reason}; hookd does not deliver there unless \
                     delivery.allow_networks lists it"
                )),
            };
        }
        Ok(None) if resolve => host,
        Ok(None) => return Ok(()),
        Err(why) => return refuse(why.into()),
    };
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("http") => 80,
        _ => 443,
    });
    let lookup = tokio::net::lookup_host((host, port));
    let Ok(Ok(addresses)) = tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await else {
        // Unknown today is not unknown tomorrow; the dial-time guard decides then.
        return Ok(());
    };
    // The connector tries each address and the guard skips refused ones, so a name is
    // undeliverable only when every address it has now is refused.
    let mut refused = None;
    for address in addresses {
        match guard.check(address.ip()) {
            Ok(()) => return Ok(()),
            Err(reason) => refused = refused.or(Some((canonical(address.ip()), reason))),
        }
    }
    match refused {
        Some((ip, reason)) => refuse(format!(
            "{host} resolves to {ip}, a {reason}; hookd does not deliver there unless \
             delivery.allow_networks lists it"
        )),
        None => Ok(()),
    }
}

/// The IP address a host names, `None` for a name, or why the host is refused.
fn literal(host: &str) -> Result<Option<IpAddr>, &'static str> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        if inner.contains('%') {
            return Err("must not carry an IPv6 zone id (%)");
        }
        return inner
            .parse::<Ipv6Addr>()
            .map(|ip| Some(IpAddr::V6(ip)))
            .map_err(|_| "has an IPv6 address that does not parse");
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.split('.').any(str::is_empty) {
        return Err("has a host name with an empty label (such as a..b)");
    }
    match inet_aton(name) {
        Some(ip) if name.parse::<Ipv4Addr>().ok() != Some(ip) || name != host => {
            Err("writes an IPv4 address in a form other than four decimal numbers (a.b.c.d)")
        }
        Some(ip) => Ok(Some(IpAddr::V4(ip))),
        None => Ok(None),
    }
}

/// An IPv4 address as C's `inet_aton` (and so `getaddrinfo`) reads it: one to four
/// parts, each decimal, octal (leading 0) or hex (0x), the last filling the remaining
/// bytes. `127.1`, `0x7f000001` and `2130706433` are all 127.0.0.1.
fn inet_aton(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<u64> = text.split('.').map(number).collect::<Option<_>>()?;
    let (last, leading) = parts.split_last()?;
    if leading.len() > 3 || leading.iter().any(|&p| p > 0xff) {
        return None;
    }
    let room = 8 * (4 - leading.len() as u32);
    if *last >= 1u64 << room {
        return None;
    }
    let high = leading
        .iter()
        .enumerate()
        .fold(0u64, |acc, (i, &p)| acc | p << (24 - 8 * i as u32));
    u32::try_from(high | last).ok().map(Ipv4Addr::from)
}

fn number(part: &str) -> Option<u64> {
    let (digits, radix) = match part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None if part.len() > 1 && part.starts_with('0') => (&part[1..], 8),
        None => (part, 10),
    };
    if digits.is_empty() && radix != 16 {
        return None;
    }
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, radix)
        .ok()
        .filter(|n| *n <= u64::from(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_an_ipv4_address_is_read_as_the_resolver_reads_it() {
        let loopback = Some(Ipv4Addr::LOCALHOST);
        for spelling in [
            "127.0.0.1",
            "127.1",
            "127.0.1",
            "0x7f000001",
            "2130706433",
            "0177.0.0.1",
            "0x7f.1",
        ] {
            assert_eq!(inet_aton(spelling), loopback, "{spelling}");
        }
        for name in [
            "example.com",
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.3.256",
            "4294967296",
            "08.1.1.1",
            "",
        ] {
            assert_eq!(inet_aton(name), None, "{name}");
        }
    }

    #[test]
    fn literals_are_found_and_odd_hosts_refused() {
        assert_eq!(
            literal("203.0.113.7"),
            Ok(Some("203.0.113.7".parse().unwrap()))
        );
        assert_eq!(literal("example.com"), Ok(None));
        assert_eq!(literal("example.com."), Ok(None));
        assert_eq!(literal("[::1]"), Ok(Some("::1".parse().unwrap())));
        for refused in [
            "127.1",
            "0x7f000001",
            "2130706433",
            "127.0.0.1.",
            "[fe80::1%25eth0]",
            "localhost..",
            ".example.com",
            "a..b",
        ] {
            assert!(literal(refused).is_err(), "{refused}");
        }
    }

    #[tokio::test]
    async fn hosts_the_guard_refuses_are_refused_now() {
        let closed = AddressGuard::new(Vec::new());
        for url in [
            "https://127.0.0.1/hook",
            "https://[::ffff:127.0.0.1]/hook",
            "https://[::1]:8443/hook",
            "https://127.1/hook",
            "https://localhost/hook",
        ] {
            let refused = check(&closed, true, "endpointUrl", url).await.unwrap_err();
            assert!(
                matches!(&refused, ApiError::Invalid { field, .. } if field == "endpointUrl"),
                "{url}"
            );
        }
        // A name that does not resolve today is accepted: the dial-time guard decides.
        assert!(
            check(&closed, true, "u", "https://receiver.invalid/hook")
                .await
                .is_ok()
        );
        // Behind a proxy a name is the proxy's business; a literal is still judged.
        assert!(
            check(&closed, false, "u", "https://localhost/hook")
                .await
                .is_ok()
        );
        assert!(
            check(&closed, false, "u", "https://127.0.0.1/hook")
                .await
                .is_err()
        );
        let loopback = AddressGuard::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(
            check(&loopback, true, "u", "https://127.0.0.1:9/hook")
                .await
                .is_ok()
        );
        assert!(
            check(&loopback, true, "u", "https://localhost:9/hook")
                .await
                .is_ok()
        );
        assert!(
            check(&loopback, true, "u", "https://127.1/hook")
                .await
                .is_err(),
            "odd spelling"
        );
    }
}
