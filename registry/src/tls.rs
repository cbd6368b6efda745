//! The server's TLS identity: given files, or a self-signed certificate made on first start.

use std::path::Path;

use sha2::Digest as _;

use crate::error::{RegistryError, Result};

/// A certificate and its key, PEM-encoded.
#[derive(Clone)]
pub struct TlsIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

fn io(p: &Path, e: std::io::Error) -> RegistryError {
    RegistryError::Storage(format!("{}: {e}", p.display()))
}

impl TlsIdentity {
    /// Reads the certificate and key files.
    pub fn read(cert: &Path, key: &Path) -> Result<TlsIdentity> {
        Ok(TlsIdentity {
            cert_pem: std::fs::read_to_string(cert).map_err(|e| io(cert, e))?,
            key_pem: std::fs::read_to_string(key).map_err(|e| io(key, e))?,
        })
    }

    /// `dir/cert.pem` and `dir/key.pem`, made (self-signed for localhost and
    /// 127.0.0.1 plus `hosts`) when they do not exist yet.
    pub fn self_signed_in(dir: &Path, hosts: &[String]) -> Result<(TlsIdentity, bool)> {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        if cert.exists() && key.exists() {
            return Ok((TlsIdentity::read(&cert, &key)?, false));
        }
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        names.extend(hosts.iter().cloned());
        let ck = rcgen::generate_simple_self_signed(names)
            .map_err(|e| RegistryError::Storage(format!("cannot make a certificate: {e}")))?;
        let id = TlsIdentity {
            cert_pem: ck.cert.pem(),
            key_pem: ck.signing_key.serialize_pem(),
        };
        write_private(&key, id.key_pem.as_bytes())?;
        std::fs::write(&cert, &id.cert_pem).map_err(|e| io(&cert, e))?;
        Ok((id, true))
    }

    /// The sha256 fingerprint of the certificate (DER), as colon-separated hex.
    pub fn fingerprint(&self) -> String {
        let der = pem_to_der(&self.cert_pem).unwrap_or_default();
        sha2::Sha256::digest(der)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

#[cfg(unix)]
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io(path, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| io(path, e))
}

#[cfg(not(unix))]
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| io(path, e))
}
