//! Secrets in memory and at rest. `Secret` never prints its value (`Debug` shows
//! `Secret(****)`); `Sealer` encrypts secrets with AES-256-GCM under the master key
//! before they reach the store, so the redb file never holds one in clear.

use std::fmt;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// A secret string: a signing secret, password, client secret or header value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The clear value, for the one place that must send or sign with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the master key must be exactly 32 bytes, this one is {0}")]
    KeyLength(usize),
    #[error("a sealed secret could not be opened: wrong master key or damaged record")]
    Open,
    #[error("the system random generator failed")]
    Random,
}

/// AES-256-GCM under the master key. A sealed value is `nonce (12 bytes) || ciphertext
/// || tag`; the associated data binds it to its owner (for example the subscription id)
/// so a sealed value copied to another record does not open.
pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(****)")
    }
}

impl Sealer {
    pub fn new(master_key: &[u8]) -> Result<Self, SealError> {
        let unbound = UnboundKey::new(&AES_256_GCM, master_key)
            .map_err(|_| SealError::KeyLength(master_key.len()))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        })
    }

    pub fn seal(&self, owner: &[u8], secret: &Secret) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(NONCE_LEN + secret.0.len() + 16);
        out.extend_from_slice(&nonce);
        let mut body = secret.0.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(owner),
                &mut body,
            )
            .map_err(|_| SealError::Random)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    pub fn open(&self, owner: &[u8], sealed: &[u8]) -> Result<Secret, SealError> {
        if sealed.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut body = body.to_vec();
        let clear = self
            .key
            .open_in_place(nonce, Aad::from(owner), &mut body)
            .map_err(|_| SealError::Open)?;
        let text = String::from_utf8(clear.to_vec()).map_err(|_| SealError::Open)?;
        Ok(Secret(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_binds_the_owner() {
        let sealer = Sealer::new(&[7u8; 32]).unwrap();
        let secret = Secret::new("whsec_topsecret".into());
        let sealed = sealer.seal(b"sub_1", &secret).unwrap();
        assert!(!sealed.windows(9).any(|w| w == b"topsecret"));
        assert_eq!(sealer.open(b"sub_1", &sealed).unwrap(), secret);
        assert!(sealer.open(b"sub_2", &sealed).is_err());
        assert!(Sealer::new(&[7u8; 32][..31]).is_err());
    }

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("hunter2".into());
        assert_eq!(format!("{secret:?}"), "Secret(****)");
    }
}
