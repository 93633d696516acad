//! The address guard: which IP addresses hookd may connect to. It runs in the connector
//! on the address actually dialled (after DNS, and for IP-literal URLs too, which skip the
//! resolver), so neither a literal like `https://127.0.0.1/` nor DNS rebinding gets past.
//! Everything that is not a public unicast address is refused unless the operator listed
//! it in `delivery.allow_networks`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::Cidr;

#[derive(Debug, Clone, Default)]
pub struct AddressGuard {
    allow: Vec<Cidr>,
}

impl AddressGuard {
    pub fn new(allow: Vec<Cidr>) -> Self {
        Self { allow }
    }

    /// `Err(reason)` when `ip` may not be dialled.
    pub fn check(&self, ip: IpAddr) -> Result<(), &'static str> {
        let ip = canonical(ip);
        if self.allow.iter().any(|net| net.contains(ip)) {
            return Ok(());
        }
        match blocked_range(ip) {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }
}

/// IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) IPv6 addresses are
/// judged as the IPv4 address they carry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[..6].iter().all(|&x| x == 0) && !(s[6] == 0 && s[7] <= 1) {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return IpAddr::V4(Ipv4Addr::new(a, b, c, d));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

fn blocked_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn blocked_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() || a == 0 => "unspecified address (0.0.0.0/8)",
        _ if ip.is_loopback() => "loopback address (127.0.0.0/8)",
        (10, _, _) => "private address (10.0.0.0/8)",
        (172, 16..=31, _) => "private address (172.16.0.0/12)",
        (192, 168, _) => "private address (192.168.0.0/16)",
        (169, 254, _) => "link-local address (169.254.0.0/16, cloud metadata)",
        (100, 64..=127, _) => "shared address space (100.64.0.0/10, CGNAT)",
        (192, 0, 0) => "IETF protocol assignment (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation address",
        (198, 18..=19, _) => "benchmarking address (198.18.0.0/15)",
        (224..=239, _, _) => "multicast address (224.0.0.0/4)",
        (240..=255, _, _) => "reserved or broadcast address (240.0.0.0/4)",
        _ => return None,
    })
}

fn blocked_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(match s[0] {
        _ if ip.is_unspecified() => "unspecified address (::)",
        _ if ip.is_loopback() => "loopback address (::1)",
        0xfc00..=0xfdff => "unique local address (fc00::/7)",
        0xfe80..=0xfebf => "link-local address (fe80::/10)",
        0xff00..=0xffff => "multicast address (ff00::/8)",
        0x2001 if s[1] == 0x0db8 => "documentation address (2001:db8::/32)",
        0x2001 if s[1] == 0x0002 && s[2] == 0 => "benchmarking address (2001:2::/48)",
        0x0064 if s[1] == 0xff9b => "NAT64 address (64:ff9b::/96)",
        0x0100 if s[1..4] == [0, 0, 0] => "discard-only address (100::/64)",
        // These two tunnel to an IPv4 address they embed, which could be a private one.
        0x2002 => "6to4 address (2002::/16)",
        0x2001 if s[1] == 0 => "Teredo address (2001::/32)",
        0x2000..=0x3fff => return None,
        _ => "not a global unicast address (outside 2000::/3)",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_every_non_public_range() {
        let guard = AddressGuard::default();
        for blocked in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::10.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert!(
                guard.check(ip(blocked)).is_err(),
                "{blocked} should be refused"
            );
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "172.32.0.1",
            "2606:4700::1111",
            "100.128.0.1",
        ] {
            assert!(
                guard.check(ip(public)).is_ok(),
                "{public} should be allowed"
            );
        }
    }

    #[test]
    fn the_allow_list_exempts_exactly_its_networks() {
        let guard = AddressGuard::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(guard.check(ip("127.0.0.1")).is_ok());
        assert!(guard.check(ip("::ffff:127.0.0.2")).is_ok());
        assert!(guard.check(ip("::1")).is_err());
        assert!(guard.check(ip("10.0.0.1")).is_err());
    }
}
