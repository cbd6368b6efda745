//! The server's TLS identity: given files, or a self-signed certificate made on first start.

use std::path::Path;

use sha2::Digest as _;

use crate::error::{RegistryError, Result};

/// A certificate and its key, PEM-encoded.
#[derive(Clone)]
pub struct TlsIdentity {
    pub cert_pem: String,
    pub key_pem: String,
    /// Client certificates signed by this CA are accepted (devices' mTLS);
    /// clients without one still connect and authenticate by token.
    pub client_ca_pem: Option<String>,
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
            client_ca_pem: None,
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
            client_ca_pem: None,
        };
        write_private(&key, id.key_pem.as_bytes())?;
        std::fs::write(&cert, &id.cert_pem).map_err(|e| io(&cert, e))?;
        Ok((id, true))
    }

    /// Accepts client certificates signed by `ca_pem` (the device CA).
    pub fn with_client_ca(mut self, ca_pem: &str) -> TlsIdentity {
        self.client_ca_pem = Some(ca_pem.to_owned());
        self
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

pub(crate) fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// Writes a secret (a key, a token) atomically, readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    algobay_runtime::fsx::write_private(path, bytes).map_err(|e| io(path, e))
}

/// The registry's own certificate authority for devices: made on first start
/// under `<data>/ca/`, it signs each enrolled device's client certificate.
pub struct DeviceCa {
    cert_pem: String,
    key: rcgen::KeyPair,
}

impl std::fmt::Debug for DeviceCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCa").finish_non_exhaustive()
    }
}

fn ca_params() -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "algobay device CA");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2124, 1, 1);
    p
}

impl DeviceCa {
    /// `dir/ca.pem` and `dir/ca.key`, made when they do not exist yet.
    pub fn open_or_create(dir: &Path) -> Result<DeviceCa> {
        let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
        let bad = |e: rcgen::Error| RegistryError::Storage(format!("device CA: {e}"));
        if cert.exists() && key.exists() {
            let key_pem = std::fs::read_to_string(&key).map_err(|e| io(&key, e))?;
            return Ok(DeviceCa {
                cert_pem: std::fs::read_to_string(&cert).map_err(|e| io(&cert, e))?,
                key: rcgen::KeyPair::from_pem(&key_pem).map_err(bad)?,
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let kp = rcgen::KeyPair::generate().map_err(bad)?;
        let c = ca_params().self_signed(&kp).map_err(bad)?;
        write_private(&key, kp.serialize_pem().as_bytes())?;
        algobay_runtime::fsx::write_atomic(&cert, c.pem().as_bytes()).map_err(|e| io(&cert, e))?;
        Ok(DeviceCa {
            cert_pem: c.pem(),
            key: kp,
        })
    }

    /// The CA certificate, which the server trusts for client certificates.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Signs a device's certificate signing request. The subject is set here
    /// (the device id), whatever the request asked for.
    pub fn issue(&self, csr_pem: &str, device_id: &str) -> Result<String> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            RegistryError::invalid(
                "csr_pem",
                format!("not a valid certificate signing request: {e}"),
            )
        })?;
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, device_id);
        p.subject_alt_names = vec![];
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        p.not_before = rcgen::date_time_ymd(2024, 1, 1);
        p.not_after = rcgen::date_time_ymd(2124, 1, 1);
        let mut serial = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut serial);
        serial[0] &= 0x7f;
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        csr.params = p;
        let issuer = rcgen::Issuer::new(ca_params(), &self.key);
        let cert = csr
            .signed_by(&issuer)
            .map_err(|e| RegistryError::Storage(format!("device CA: cannot sign: {e}")))?;
        Ok(cert.pem())
    }
}

/// The sha256 fingerprint (lowercase hex) of a DER certificate: a device's identity.
pub fn der_fingerprint(der: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(der))
}
