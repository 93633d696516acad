//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`,
//! where the key is the base64-decoded part of a `whsec_` secret. hookd signs; `hookd
//! listen` and the tests verify with the same code.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::secret::Secret;

const PREFIX: &str = "whsec_";
/// A fresh secret carries this many random bytes (the spec allows 24..=64).
const NEW_SECRET_BYTES: usize = 32;

/// A signing key: the decoded bytes of a `whsec_` secret.
#[derive(Clone)]
pub struct SigningKey(hmac::Key);

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("a signing secret starts with `whsec_` followed by base64")]
    Format,
    #[error("a signing secret decodes to 24..=64 bytes, this one to {0}")]
    Length(usize),
}

impl SigningKey {
    pub fn from_secret(secret: &str) -> Result<Self, SecretError> {
        let encoded = secret.strip_prefix(PREFIX).ok_or(SecretError::Format)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| SecretError::Format)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(SecretError::Length(bytes.len()));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
    }

    /// `v1,<base64 signature>` of one message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(msg_id.as_bytes());
        ctx.update(b".");
        ctx.update(timestamp.to_string().as_bytes());
        ctx.update(b".");
        ctx.update(body);
        format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
    }

    /// True when any `v1,` entry of a space-separated `webhook-signature` header is this
    /// key's signature of the message (constant-time comparison through ring).
    pub fn verify(&self, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        let mut msg = Vec::with_capacity(msg_id.len() + body.len() + 24);
        msg.extend_from_slice(msg_id.as_bytes());
        msg.push(b'.');
        msg.extend_from_slice(timestamp.to_string().as_bytes());
        msg.push(b'.');
        msg.extend_from_slice(body);
        header.split(' ').any(|entry| {
            entry
                .strip_prefix("v1,")
                .and_then(|sig| STANDARD.decode(sig).ok())
                .is_some_and(|sig| hmac::verify(&self.0, &msg, &sig).is_ok())
        })
    }
}

/// A new random `whsec_` secret.
pub fn generate_secret(rng: &SystemRandom) -> Result<Secret, ring::error::Unspecified> {
    let mut bytes = [0u8; NEW_SECRET_BYTES];
    rng.fill(&mut bytes)?;
    Ok(Secret::new(format!("{PREFIX}{}", STANDARD.encode(bytes))))
}

/// The `webhook-signature` header value: one signature per key, space-separated
/// (two while a rotated secret overlaps its successor).
pub fn signature_header(keys: &[SigningKey], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut header = String::new();
    for key in keys {
        if !header.is_empty() {
            header.push(' ');
        }
        header.push_str(&key.sign(msg_id, timestamp, body));
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector published with the Standard Webhooks specification.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1614265330;
    const PAYLOAD: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        let key = SigningKey::from_secret(SECRET).unwrap();
        assert_eq!(key.sign(MSG_ID, TIMESTAMP, PAYLOAD), EXPECTED);
        assert!(key.verify(MSG_ID, TIMESTAMP, PAYLOAD, EXPECTED));
    }

    #[test]
    fn verify_rejects_a_changed_message_and_accepts_any_listed_signature() {
        let key = SigningKey::from_secret(SECRET).unwrap();
        assert!(!key.verify(MSG_ID, TIMESTAMP + 1, PAYLOAD, EXPECTED));
        assert!(!key.verify(MSG_ID, TIMESTAMP, b"{}", EXPECTED));
        let other =
            SigningKey::from_secret(generate_secret(&SystemRandom::new()).unwrap().expose())
                .unwrap();
        let both = signature_header(&[other, key.clone()], MSG_ID, TIMESTAMP, PAYLOAD);
        assert!(both.contains(' '));
        assert!(key.verify(MSG_ID, TIMESTAMP, PAYLOAD, &both));
    }

    #[test]
    fn rejects_malformed_secrets() {
        assert!(matches!(
            SigningKey::from_secret("abc"),
            Err(SecretError::Format)
        ));
        assert!(matches!(
            SigningKey::from_secret("whsec_AAAA"),
            Err(SecretError::Length(3))
        ));
    }
}
