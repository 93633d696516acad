//! Value syntaxes of the config file that serde does not know: durations (`"15s"`),
//! sizes (`"32MiB"` or a byte count), optional values where `""` means unset, CIDR
//! networks; and turning a toml error into a `ConfigError` with line, column and key.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::ConfigError;

pub(super) fn duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(de)?;
    parse_duration(&text).map_err(de::Error::custom)
}

pub(super) fn durations<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<Duration>, D::Error> {
    let texts = Vec::<String>::deserialize(de)?;
    texts
        .iter()
        .map(|text| parse_duration(text))
        .collect::<Result<_, _>>()
        .map_err(de::Error::custom)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|error| {
        format!("invalid duration \"{text}\" ({error}); write e.g. \"500ms\", \"15s\", \"5m\", \"72h\" or \"30d\"")
    })
}

/// A byte count: a TOML integer, or a string with an optional binary unit.
pub(super) fn size<'de, D: Deserializer<'de>>(de: D) -> Result<usize, D::Error> {
    struct SizeVisitor;

    impl Visitor<'_> for SizeVisitor {
        type Value = usize;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte count or a size such as \"64KiB\", \"32MiB\", \"1GiB\"")
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<usize, E> {
            usize::try_from(value)
                .map_err(|_| E::custom(format!("invalid size {value}: must not be negative")))
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<usize, E> {
            usize::try_from(value)
                .map_err(|_| E::custom(format!("invalid size {value}: too large")))
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<usize, E> {
            parse_size(value).map_err(E::custom)
        }
    }

    de.deserialize_any(SizeVisitor)
}

/// How much free disk `storage.min_free` keeps: a size (`"1GiB"`, a byte count) or a
/// share of the file system (`"5%"`). Below it, new events are refused while the work
/// already accepted (attempt outcomes, purges) goes on writing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinFree {
    Bytes(u64),
    /// Percent of the file system's size, 0 to 100.
    Percent(f64),
}

impl MinFree {
    /// The free bytes to keep on a file system of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            Self::Bytes(n) => n,
            Self::Percent(p) => (total as f64 * p / 100.0) as u64,
        }
    }
}

impl<'de> Deserialize<'de> for MinFree {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct MinFreeVisitor;

        impl Visitor<'_> for MinFreeVisitor {
            type Value = MinFree;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"1GiB\", a byte count, or a share such as \"5%\"")
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<MinFree, E> {
                Ok(MinFree::Bytes(value))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<MinFree, E> {
                u64::try_from(value)
                    .map(MinFree::Bytes)
                    .map_err(|_| E::custom(format!("invalid size {value}: must not be negative")))
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<MinFree, E> {
                parse_min_free(value).map_err(E::custom)
            }
        }

        de.deserialize_any(MinFreeVisitor)
    }
}

pub(super) fn parse_min_free(text: &str) -> Result<MinFree, String> {
    match text.trim().strip_suffix('%') {
        Some(number) => number
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|p| (0.0..=100.0).contains(p))
            .map(MinFree::Percent)
            .ok_or_else(|| format!("invalid share \"{text}\": write a percentage from 0% to 100%")),
        None => parse_size(text).map(|n| MinFree::Bytes(n as u64)),
    }
}

pub(super) fn parse_size(text: &str) -> Result<usize, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let unit_bytes: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "invalid size \"{text}\": unknown unit \"{other}\"; use B, KiB, MiB or GiB (powers of 1024)"
            ));
        }
    };
    let count: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size \"{text}\": expected a number before the unit"))?;
    count
        .checked_mul(unit_bytes)
        .and_then(|bytes| usize::try_from(bytes).ok())
        .ok_or_else(|| format!("invalid size \"{text}\": too large"))
}

pub(super) fn optional_path<'de, D: Deserializer<'de>>(de: D) -> Result<Option<PathBuf>, D::Error> {
    Ok(optional_string(de)?.map(PathBuf::from))
}

pub(super) fn optional_string<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(de)?;
    Ok((!text.is_empty()).then_some(text))
}

pub(super) fn optional_ip<'de, D: Deserializer<'de>>(de: D) -> Result<Option<IpAddr>, D::Error> {
    optional_string(de)?
        .map(|text| {
            text.parse()
                .map_err(|_| de::Error::custom(format!("invalid IP address \"{text}\"")))
        })
        .transpose()
}

/// An IP network: address and prefix length, host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum CidrError {
    #[error("invalid network \"{text}\": {source}")]
    Address {
        text: String,
        source: std::net::AddrParseError,
    },
    #[error("invalid network \"{text}\": the prefix length must be 0..={max}")]
    Prefix { text: String, max: u8 },
}

impl Cidr {
    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// True when `ip` is inside the network. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`)
    /// is compared as the IPv4 address it carries, so `::ffff:127.0.0.1` cannot slip past
    /// a check written for `127.0.0.0/8`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask_v4(u32::from(ip), self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask_v6(u128::from(ip), self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask_v4(bits: u32, prefix: u8) -> u32 {
    // checked_shl: a shift by 32 (prefix 0) would overflow; /0 keeps no bits.
    bits & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(bits: u128, prefix: u8) -> u128 {
    bits & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `127.0.0.0/8`, `::1/128`, or a bare address (a single host). Host bits are
    /// accepted and cleared: `10.1.2.3/8` means `10.0.0.0/8`.
    fn from_str(text: &str) -> Result<Self, CidrError> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let address: IpAddr = address.parse().map_err(|source| CidrError::Address {
            text: text.to_owned(),
            source,
        })?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| CidrError::Prefix {
                    text: text.to_owned(),
                    max,
                })?,
        };
        let network = match address {
            IpAddr::V4(v4) => IpAddr::V4(mask_v4(u32::from(v4), prefix).into()),
            IpAddr::V6(v6) => IpAddr::V6(mask_v6(u128::from(v6), prefix).into()),
        };
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// A toml error as a `ConfigError::Parse`: 1-based line and column from the error's
/// byte span, and the dotted key. toml keeps the key path private but prints it as
/// "in `a.b`" when it has no input to quote, so that rendering is where it is read
/// from; an unknown field's own name is only in the message and is appended.
pub(super) fn parse_error(text: &str, path: Option<&Path>, error: &toml::de::Error) -> ConfigError {
    let (line, column) = error
        .span()
        .map_or((0, 0), |span| line_column(text, span.start));
    let mut bare = error.clone();
    bare.set_input(None);
    let rendered = bare.to_string();
    let mut key = rendered
        .lines()
        .filter_map(|line| line.strip_prefix("in `")?.strip_suffix('`'))
        .next_back()
        .unwrap_or_default()
        .to_owned();
    let message = error.message().trim().to_owned();
    if let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    {
        if !key.is_empty() {
            key.push('.');
        }
        key.push_str(field);
    }
    ConfigError::Parse {
        path: path.map(Path::to_owned),
        line,
        column,
        key,
        message,
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    // A span inside a multi-byte character would not be a char boundary; step back.
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_free_is_a_size_or_a_share() {
        assert_eq!(parse_min_free("1GiB"), Ok(MinFree::Bytes(1 << 30)));
        assert_eq!(parse_min_free("0"), Ok(MinFree::Bytes(0)));
        assert_eq!(parse_min_free("5%"), Ok(MinFree::Percent(5.0)));
        assert_eq!(parse_min_free("2.5 %"), Ok(MinFree::Percent(2.5)));
        assert!(parse_min_free("101%").is_err());
        assert!(parse_min_free("-1%").is_err());
        assert!(parse_min_free("1GB").is_err());
        assert_eq!(MinFree::Percent(5.0).bytes(1000), 50);
        assert_eq!(MinFree::Bytes(7).bytes(1000), 7);
        let parsed: MinFree = toml::from_str::<toml::Table>("v = 1024")
            .unwrap()
            .get("v")
            .cloned()
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(parsed, MinFree::Bytes(1024));
    }
}
