//! The device's identity: a key made on the device, and the client
//! certificate the registry's CA issued for it at enrollment.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::AgentConfig;
use crate::error::{io, write_atomic, AgentError, Result};

/// Who this device is to the registry.
#[derive(Clone, Serialize, Deserialize)]
pub struct Identity {
    pub device_id: String,
    pub enterprise: String,
    #[serde(skip)]
    pub cert_pem: String,
    #[serde(skip)]
    pub key_pem: String,
    /// The registry's countersigning key, as enrollment gave it (`ed25519:…`).
    #[serde(default)]
    pub registry_key: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("device_id", &self.device_id)
            .field("enterprise", &self.enterprise)
            .finish_non_exhaustive()
    }
}

fn dir(data: &Path) -> PathBuf {
    data.join("identity")
}

impl Identity {
    /// The identity enrolled earlier, if any.
    pub fn load(data: &Path) -> Result<Option<Identity>> {
        let d = dir(data);
        let meta = d.join("device.json");
        if !meta.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&meta).map_err(|e| io(&meta, e))?;
        let mut id: Identity = serde_json::from_str(&text).map_err(|e| AgentError::State {
            path: meta.display().to_string(),
            message: e.to_string(),
        })?;
        let (c, k) = (d.join("cert.pem"), d.join("key.pem"));
        id.cert_pem = std::fs::read_to_string(&c).map_err(|e| io(&c, e))?;
        id.key_pem = std::fs::read_to_string(&k).map_err(|e| io(&k, e))?;
        Ok(Some(id))
    }

    /// Enrolls with the one-time token: the key never leaves the device, only
    /// a signing request does. Written so that a crash leaves no half identity
    /// (`device.json` is written last).
    pub async fn enroll(cfg: &AgentConfig, server_ca: Option<String>) -> Result<Identity> {
        let token = cfg
            .enrollment_token
            .clone()
            .or_else(|| std::env::var("ALGOBAY_ENROLLMENT_TOKEN").ok())
            .ok_or_else(|| {
                AgentError::Config(
                    "enrollment_token: this device is not enrolled yet; give the token from `algobay device token`"
                        .into(),
                )
            })?;
        let key = rcgen::KeyPair::generate().map_err(|e| AgentError::Enroll(e.to_string()))?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            if cfg.name.is_empty() {
                "device"
            } else {
                &cfg.name
            },
        );
        let csr = params
            .serialize_request(&key)
            .and_then(|r| r.pem())
            .map_err(|e| AgentError::Enroll(e.to_string()))?;
        let client = algobay_sdk::Client::connect(&cfg.registry, None, server_ca).await?;
        let e = client
            .enroll(&token, &csr, &cfg.name, cfg.labels.clone())
            .await?;
        let id = Identity {
            device_id: e.device_id,
            enterprise: e.enterprise,
            cert_pem: e.certificate_pem,
            key_pem: key.serialize_pem(),
            registry_key: e.registry_key,
        };
        let d = dir(&cfg.data_dir);
        write_atomic(&d.join("key.pem"), id.key_pem.as_bytes(), true)?;
        write_atomic(&d.join("cert.pem"), id.cert_pem.as_bytes(), false)?;
        write_atomic(&d.join("ca.pem"), e.ca_pem.as_bytes(), false)?;
        let meta = serde_json::to_vec_pretty(&id).map_err(|e| AgentError::Enroll(e.to_string()))?;
        write_atomic(&d.join("device.json"), &meta, false)?;
        Ok(id)
    }
}
