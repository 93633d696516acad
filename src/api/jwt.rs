//! JWT bearer tokens from the configured issuer, verified with ring. The algorithm is
//! fixed by the config (HS256, RS256 or ES256), never taken from the token header; `exp`
//! is required, `nbf` honoured, `iss` and `aud` must match, with 30 s of leeway. Errors
//! say which check failed, never anything about the key.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::{hmac, signature};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;

use crate::config::Jwt as JwtConfig;

const LEEWAY_SECONDS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum JwtKeyError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} is not a PEM \"PUBLIC KEY\" (SPKI) of the configured algorithm")]
    Spki { path: String },
    #[error("[auth.jwt] names no key file")]
    NoKey,
}

enum Key {
    Hs256(hmac::Key),
    Rs256(Vec<u8>),
    Es256(Vec<u8>),
}

pub struct Verifier {
    key: Key,
    issuer: String,
    audience: String,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub entity: String,
    pub scopes: Vec<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    /// Extensions the issuer says must be understood (RFC 7515 4.1.11). hookd
    /// understands none, so a token carrying any is refused rather than half-honoured.
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawClaims {
    exp: Option<serde_json::Value>,
    nbf: Option<serde_json::Value>,
    iss: Option<String>,
    aud: Option<serde_json::Value>,
    sub: Option<String>,
    entity: Option<String>,
    scope: Option<String>,
}

impl Verifier {
    pub fn from_config(config: &JwtConfig) -> Result<Self, JwtKeyError> {
        let key = if let Some(path) = &config.hs256_secret_file {
            let bytes = std::fs::read(path).map_err(|e| read_error(path, e))?;
            Key::Hs256(hmac::Key::new(hmac::HMAC_SHA256, bytes.trim_ascii()))
        } else if let Some(path) = &config.rs256_public_key_file {
            Key::Rs256(spki_key(path, RSA_OID)?)
        } else if let Some(path) = &config.es256_public_key_file {
            Key::Es256(spki_key(path, EC_OID)?)
        } else {
            return Err(JwtKeyError::NoKey);
        };
        Ok(Self {
            key,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        })
    }

    fn algorithm(&self) -> &'static str {
        match self.key {
            Key::Hs256(_) => "HS256",
            Key::Rs256(_) => "RS256",
            Key::Es256(_) => "ES256",
        }
    }

    /// Verifies `token` at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, &'static str> {
        const MALFORMED: &str = "the token is not a valid JWT";
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(MALFORMED);
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| MALFORMED);
        let header: Header = serde_json::from_slice(&decode(header)?).map_err(|_| MALFORMED)?;
        // The configured algorithm decides; a token naming another is refused.
        if header.alg != self.algorithm() {
            return Err("the token's algorithm is not the configured one");
        }
        if header.crit.is_some() {
            return Err(
                "the token names critical header extensions (crit), which hookd does not support",
            );
        }
        let signed = &token[..token.len() - sig.len() - 1];
        let sig = decode(sig)?;
        let valid = match &self.key {
            Key::Hs256(key) => hmac::verify(key, signed.as_bytes(), &sig).is_ok(),
            Key::Rs256(der) => {
                signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, der)
                    .verify(signed.as_bytes(), &sig)
                    .is_ok()
            }
            Key::Es256(point) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(signed.as_bytes(), &sig)
                    .is_ok()
            }
        };
        if !valid {
            return Err("the token's signature is not valid");
        }
        let claims: RawClaims = serde_json::from_slice(&decode(payload)?).map_err(|_| MALFORMED)?;
        let exp = claims
            .exp
            .as_ref()
            .and_then(seconds)
            .ok_or("the token has no exp")?;
        if now > exp + LEEWAY_SECONDS {
            return Err("the token has expired");
        }
        if claims
            .nbf
            .as_ref()
            .and_then(seconds)
            .is_some_and(|nbf| now + LEEWAY_SECONDS < nbf)
        {
            return Err("the token is not valid yet");
        }
        if claims.iss.as_deref() != Some(self.issuer.as_str()) {
            return Err("the token's issuer is not accepted");
        }
        let audience_ok = match &claims.aud {
            Some(serde_json::Value::String(aud)) => *aud == self.audience,
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .any(|a| a.as_str() == Some(self.audience.as_str())),
            _ => false,
        };
        if !audience_ok {
            return Err("the token's audience is not accepted");
        }
        let entity = claims
            .entity
            .or(claims.sub)
            .ok_or("the token names no entity")?;
        let scopes = claims
            .scope
            .map(|s| {
                s.split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Claims { entity, scopes })
    }
}

fn seconds(value: &serde_json::Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_f64().map(|f| f as i64))
}

fn read_error(path: &Path, error: impl std::fmt::Display) -> JwtKeyError {
    JwtKeyError::Read {
        path: path.display().to_string(),
        reason: error.to_string(),
    }
}

/// rsaEncryption, 1.2.840.113549.1.1.1
const RSA_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey, 1.2.840.10045.2.1 (the curve, P-256, is checked by ring)
const EC_OID: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// The key inside a PEM SPKI: ring wants the inner RSAPublicKey or EC point, not the
/// SubjectPublicKeyInfo wrapper.
fn spki_key(path: &Path, oid: &[u8]) -> Result<Vec<u8>, JwtKeyError> {
    let spki = SubjectPublicKeyInfoDer::from_pem_file(path).map_err(|e| read_error(path, e))?;
    let wrong = || JwtKeyError::Spki {
        path: path.display().to_string(),
    };
    let (tag, outer, _) = der(spki.as_ref()).ok_or_else(wrong)?;
    if tag != 0x30 {
        return Err(wrong());
    }
    let (tag, algorithm, rest) = der(outer).ok_or_else(wrong)?;
    let (oid_tag, found_oid, _) = der(algorithm).ok_or_else(wrong)?;
    if tag != 0x30 || oid_tag != 0x06 || found_oid != oid {
        return Err(wrong());
    }
    let (tag, bits, _) = der(rest).ok_or_else(wrong)?;
    match bits.split_first() {
        Some((0, key)) if tag == 0x03 => Ok(key.to_vec()),
        _ => Err(wrong()),
    }
}

/// One DER element: (tag, contents, the bytes after it).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs_verifier() -> Verifier {
        Verifier {
            key: Key::Hs256(hmac::Key::new(hmac::HMAC_SHA256, b"secret")),
            issuer: "https://auth.example.com".into(),
            audience: "hookd".into(),
        }
    }

    fn sign(header: &str, claims: serde_json::Value) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, b"secret"),
            signed.as_bytes(),
        );
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    fn claims(exp: i64) -> serde_json::Value {
        serde_json::json!({"iss": "https://auth.example.com", "aud": ["x", "hookd"], "exp": exp, "sub": "acme", "scope": "events:write subscriptions:read"})
    }

    #[test]
    fn checks_signature_algorithm_and_claims_with_leeway() {
        let v = hs_verifier();
        let ok = sign(r#"{"alg":"HS256","typ":"JWT"}"#, claims(1000));
        let c = v.verify(&ok, 1020).unwrap();
        assert_eq!(c.entity, "acme");
        assert_eq!(c.scopes, vec!["events:write", "subscriptions:read"]);
        assert_eq!(v.verify(&ok, 1031), Err("the token has expired"));
        let none = sign(r#"{"alg":"none"}"#, claims(1000));
        assert!(v.verify(&none, 0).is_err());
        let mut tampered = ok.clone();
        tampered.pop();
        tampered.push(if ok.ends_with('A') { 'B' } else { 'A' });
        assert!(v.verify(&tampered, 0).is_err());
        let mut wrong_aud = claims(1000);
        wrong_aud["aud"] = "other".into();
        assert_eq!(
            v.verify(&sign(r#"{"alg":"HS256"}"#, wrong_aud), 0),
            Err("the token's audience is not accepted")
        );
        let mut early = claims(1000);
        early["nbf"] = 500.into();
        assert_eq!(
            v.verify(&sign(r#"{"alg":"HS256"}"#, early.clone()), 400),
            Err("the token is not valid yet")
        );
        assert!(v.verify(&sign(r#"{"alg":"HS256"}"#, early), 480).is_ok());
        assert!(v.verify("a.b", 0).is_err());
        let critical = sign(r#"{"alg":"HS256","crit":["exp"]}"#, claims(1000));
        assert!(v.verify(&critical, 1000).unwrap_err().contains("crit"));
    }

    #[test]
    fn der_reads_lengths() {
        assert_eq!(
            der(&[0x04, 0x02, 1, 2, 9]),
            Some((0x04, &[1u8, 2][..], &[9u8][..]))
        );
        assert_eq!(
            der(&[0x04, 0x81, 0x01, 7]),
            Some((0x04, &[7u8][..], &[][..]))
        );
        assert_eq!(der(&[0x04, 0x05, 1]), None);
    }
}
