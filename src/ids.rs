//! Typed, prefixed identifiers. Every id hookd generates is a UUIDv7 (time-ordered, so
//! an id is also a position in the event log) shown as `<prefix>_<32 hex digits>`.
//! Inside the store an id is its `u128`; across module boundaries it is a newtype,
//! never a bare integer or string.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom, SystemRandom};

/// A new UUIDv7: 48 bits of Unix milliseconds, version 7, variant 0b10, 74 random bits.
pub fn uuid_v7() -> u128 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut random = [0u8; 16];
    // SystemRandom reads the OS generator; if that fails nothing hookd does is safe,
    // so fall back to a clock-derived value only to keep ids unique, never secret.
    if SystemRandom::new().fill(&mut random).is_err() {
        random = (u128::from(ms) ^ 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834).to_le_bytes();
    }
    let random = u128::from_le_bytes(random);
    let mut id = (u128::from(ms) & 0xffff_ffff_ffff) << 80;
    id |= 0x7 << 76; // version
    id |= random & ((1 << 76) - 1) & !(0b11 << 62);
    id |= 0b10 << 62; // variant
    id
}

/// Milliseconds since the Unix epoch encoded in a UUIDv7.
pub fn uuid_v7_millis(id: u128) -> u64 {
    (id >> 80) as u64
}

fn parse_prefixed(prefix: &str, s: &str) -> Option<u128> {
    let hex = s.strip_prefix(prefix)?.strip_prefix('_')?;
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(hex, 16).ok()
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u128);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                Self(uuid_v7())
            }

            /// Parses `<prefix>_<32 hex>`; anything else is `None` (a 404 in a path).
            pub fn parse(s: &str) -> Option<Self> {
                parse_prefixed($prefix, s).map(Self)
            }

            /// Creation time carried by the UUIDv7, in Unix milliseconds.
            pub fn millis(self) -> u64 {
                uuid_v7_millis(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{:032x}", $prefix, self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    };
}

prefixed_id!(
    /// An accepted event (`evt_…`); also the `webhook-id` every delivery of it carries.
    EventId,
    "evt"
);
prefixed_id!(
    /// A subscription (`sub_…`).
    SubscriptionId,
    "sub"
);
prefixed_id!(
    /// One event bound for one subscription (`dlv_…`).
    DeliveryId,
    "dlv"
);
prefixed_id!(
    /// An API key (`key_…`).
    ApiKeyId,
    "key"
);

/// A customer account. Callers may choose the id (1-64 of `[A-Za-z0-9_-]`); hookd
/// generates `ent_…` otherwise. The root entity is the ancestor of every other.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct EntityId(String);

impl EntityId {
    pub const ROOT: &'static str = "root";

    pub fn root() -> Self {
        Self(Self::ROOT.to_owned())
    }

    pub fn generate() -> Self {
        Self(format!("ent_{:032x}", uuid_v7()))
    }

    pub fn parse(s: &str) -> Option<Self> {
        let valid = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        valid.then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v7_has_version_variant_and_time() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let id = uuid_v7();
        assert_eq!((id >> 76) & 0xf, 7);
        assert_eq!((id >> 62) & 0b11, 0b10);
        assert!(uuid_v7_millis(id) >= before);
        assert_ne!(uuid_v7(), uuid_v7());
    }

    #[test]
    fn prefixed_ids_round_trip_and_reject_garbage() {
        let id = EventId::generate();
        let text = id.to_string();
        assert!(text.starts_with("evt_") && text.len() == 36);
        assert_eq!(EventId::parse(&text), Some(id));
        assert_eq!(SubscriptionId::parse(&text), None);
        assert_eq!(EventId::parse("evt_xyz"), None);
        assert_eq!(EventId::parse(&format!("evt_{}", "g".repeat(32))), None);
    }

    #[test]
    fn entity_ids_are_bounded() {
        assert!(EntityId::parse("acme-corp_1").is_some());
        assert!(EntityId::parse("").is_none());
        assert!(EntityId::parse(&"a".repeat(65)).is_none());
        assert!(EntityId::parse("a b").is_none());
    }
}
