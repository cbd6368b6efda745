//! Team keys, manifest signatures and the trust roots that verify them offline.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};

const SECRET_HEADER: &str = "algobay-ed25519-secret-key v1";
const PUBLIC_PREFIX: &str = "ed25519:";

/// A team's signing key.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.public().id())
    }
}

/// A public key: what a trust root holds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> SecretKey {
        SecretKey(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The key file text.
    pub fn to_text(&self) -> String {
        format!("{SECRET_HEADER}\n{}\n", B64.encode(self.0.to_bytes()))
    }

    /// Parses key file text.
    pub fn from_text(text: &str) -> Result<SecretKey> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some(SECRET_HEADER) {
            return Err(Error::Signature(format!(
                "secret key file must start with `{SECRET_HEADER}`"
            )));
        }
        let body = lines
            .next()
            .ok_or_else(|| Error::Signature("secret key file has no key line".into()))?;
        let bytes = B64
            .decode(body)
            .map_err(|e| Error::Signature(format!("secret key is not base64: {e}")))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::Signature("secret key must be 32 bytes".into()))?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    /// Reads a key file.
    pub fn read(path: &Path) -> Result<SecretKey> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        SecretKey::from_text(&text)
    }

    /// Signs `message` (a manifest's canonical bytes).
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature {
            key: self.public().to_string(),
            signature: B64.encode(self.0.sign(message).to_bytes()),
        }
    }
}

impl PublicKey {
    /// A short stable id: the first 16 hex characters of the key's sha256.
    pub fn id(&self) -> String {
        Digest::of(self.0.as_bytes()).hex()[..16].to_owned()
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", B64.encode(self.0.as_bytes()))
    }
}

impl std::str::FromStr for PublicKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<PublicKey> {
        let body = s.trim().strip_prefix(PUBLIC_PREFIX).ok_or_else(|| {
            Error::Signature(format!("public key must start with `{PUBLIC_PREFIX}`"))
        })?;
        let bytes = B64
            .decode(body)
            .map_err(|e| Error::Signature(format!("public key is not base64: {e}")))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::Signature("public key must be 32 bytes".into()))?;
        let key = VerifyingKey::from_bytes(&arr).map_err(|e| {
            Error::Signature(format!("public key is not a valid ed25519 point: {e}"))
        })?;
        // A small-order key "verifies" forged signatures: refuse it outright.
        if key.is_weak() {
            return Err(Error::Signature(
                "public key is a weak (small-order) ed25519 point".into(),
            ));
        }
        Ok(PublicKey(key))
    }
}

/// One signature over a manifest, as stored in `signatures/<key id>.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// `ed25519:<base64>` of the signer's public key.
    pub key: String,
    /// base64 of the 64-byte ed25519 signature.
    pub signature: String,
}

impl Signature {
    /// The signer's key.
    pub fn public_key(&self) -> Result<PublicKey> {
        self.key.parse()
    }

    /// Checks the signature over `message`.
    pub fn verify(&self, message: &[u8]) -> Result<PublicKey> {
        let key = self.public_key()?;
        let raw = B64.decode(&self.signature).map_err(|e| {
            Error::Signature(format!("signature of key {} is not base64: {e}", key.id()))
        })?;
        let sig = ed25519_dalek::Signature::from_slice(&raw).map_err(|_| {
            Error::Signature(format!("signature of key {} must be 64 bytes", key.id()))
        })?;
        // Strict verification: no small-order R, canonical S (RFC 8032 with the
        // checks that rule out signatures valid for many messages).
        key.0.verify_strict(message, &sig).map_err(|_| {
            Error::Signature(format!(
                "signature of key {} does not match the manifest",
                key.id()
            ))
        })?;
        Ok(key)
    }
}

/// The public keys a caller trusts. Verification needs nothing else: it works offline.
#[derive(Clone, Debug, Default)]
pub struct TrustRoots {
    keys: Vec<PublicKey>,
}

impl TrustRoots {
    /// No trusted keys: every kit is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a trusted key.
    pub fn trust(&mut self, key: PublicKey) -> &mut Self {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
        self
    }

    /// Adds the key in a `.pub` file (`ed25519:<base64>`).
    pub fn trust_file(&mut self, path: &Path) -> Result<&mut Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let key = text.parse().map_err(|e| match e {
            Error::Signature(m) => Error::Signature(format!("{}: {m}", path.display())),
            other => other,
        })?;
        Ok(self.trust(key))
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Checks that every signature is valid and at least one is by a trusted key.
    /// Returns the trusted signers.
    pub fn verify(&self, message: &[u8], signatures: &[Signature]) -> Result<Vec<PublicKey>> {
        if signatures.is_empty() {
            return Err(Error::Signature("the kit is not signed".into()));
        }
        let mut trusted = Vec::new();
        let mut untrusted = Vec::new();
        for sig in signatures {
            let key = sig.verify(message)?;
            if self.keys.contains(&key) {
                trusted.push(key);
            } else {
                untrusted.push(key.id());
            }
        }
        if trusted.is_empty() {
            return Err(Error::Signature(format!(
                "signed only by untrusted key(s) {}; trust the publisher's key to run it",
                untrusted.join(", ")
            )));
        }
        Ok(trusted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_text_round_trips() {
        let k = SecretKey::generate();
        let back = SecretKey::from_text(&k.to_text()).unwrap();
        assert_eq!(back.public(), k.public());
        let p: PublicKey = k.public().to_string().parse().unwrap();
        assert_eq!(p, k.public());
    }

    #[test]
    fn trusted_signature_verifies_and_tampered_message_does_not() {
        let k = SecretKey::generate();
        let sig = k.sign(b"manifest");
        let mut roots = TrustRoots::new();
        roots.trust(k.public());
        assert_eq!(
            roots
                .verify(b"manifest", std::slice::from_ref(&sig))
                .unwrap(),
            vec![k.public()]
        );
        let err = roots.verify(b"manifesT", &[sig]).unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn untrusted_signer_is_refused_by_id() {
        let k = SecretKey::generate();
        let err = TrustRoots::new()
            .verify(b"m", &[k.sign(b"m")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("untrusted") && err.contains(&k.public().id()),
            "{err}"
        );
    }

    #[test]
    fn garbage_keys_are_rejected_with_a_reason() {
        assert!(SecretKey::from_text("hello")
            .unwrap_err()
            .to_string()
            .contains("must start"));
        assert!("ed25519:!!"
            .parse::<PublicKey>()
            .unwrap_err()
            .to_string()
            .contains("base64"));
    }

    #[test]
    fn a_small_order_key_and_its_forged_signature_are_refused() {
        // The identity point (y = 1): with R = identity and S = 0 a lax verifier
        // accepts this "signature" over any message.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let key = format!("{PUBLIC_PREFIX}{}", B64.encode(identity));
        let err = key.parse::<PublicKey>().unwrap_err().to_string();
        assert!(err.contains("weak"), "{err}");
        let mut forged = [0u8; 64];
        forged[0] = 1;
        let sig = Signature {
            key,
            signature: B64.encode(forged),
        };
        assert!(sig.verify(b"any manifest at all").is_err());
    }
}
