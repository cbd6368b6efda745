//! A typed async client of the registry: domain values in and out, errors that
//! carry the server's message.

use std::path::Path;

use tonic::transport::{Certificate, Channel, ClientTlsConfig};
/// gRPC status codes, as [`SdkError::Status`] carries them.
pub use tonic::Code;
use tonic::Request;

use algobay_proto::v1 as pb;
use algobay_runtime::archive::KitArchive;
use algobay_runtime::{Digest, Manifest};

mod transfer;
mod types;
pub use types::*;

/// Bytes per upload chunk.
pub const CHUNK: usize = 1 << 20;

/// Called with (bytes done, bytes in all) as a transfer goes on.
pub type Progress = std::sync::Arc<dyn Fn(u64, u64) + Send + Sync>;

/// A progress callback that does nothing.
pub fn no_progress() -> Progress {
    std::sync::Arc::new(|_, _| {})
}

/// What can go wrong talking to the registry.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The registry could not be reached or its certificate was not trusted.
    #[error("cannot reach the registry at {url}: {message}")]
    Connect { url: String, message: String },
    /// The registry answered with an error.
    #[error("{message}")]
    Status { code: Code, message: String },
    /// A local file or value is not usable.
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Runtime(#[from] algobay_runtime::Error),
}

impl From<tonic::Status> for SdkError {
    fn from(s: tonic::Status) -> Self {
        SdkError::Status {
            code: s.code(),
            message: s.message().to_owned(),
        }
    }
}

type Result<T, E = SdkError> = std::result::Result<T, E>;

/// Reads an https registry's certificate without trusting it, so a person can
/// compare its fingerprint with the one the registry printed when it started.
/// Returns the certificate (PEM) and its sha256 fingerprint (colon-separated hex).
pub async fn fetch_certificate(url: &str) -> Result<(String, String)> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let err = |m: String| SdkError::Connect {
        url: url.to_owned(),
        message: m,
    };
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| err("only an https registry has a certificate".into()))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let (host, addr) = match hostport.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') || h.starts_with('[') => {
            (h.trim_matches(['[', ']']).to_owned(), hostport.to_owned())
        }
        _ => (
            hostport.trim_matches(['[', ']']).to_owned(),
            format!("{hostport}:443"),
        ),
    };
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(ReadOnly(provider)))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| err(e.to_string()))?;
    let name = rustls::pki_types::ServerName::try_from(host)
        .map_err(|e| err(format!("bad host name: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| err(e.to_string()))?;
    let der = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| err("the registry presented no certificate".into()))?
        .to_vec();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ascii"))
        .collect();
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    );
    let fp = sha2::Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok((pem, fp))
}

/// Accepts any certificate: used only to read one, never to trust it.
#[derive(Debug)]
struct ReadOnly(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for ReadOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A connection to a registry.
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) channel: Channel,
    token: Option<String>,
}

impl Client {
    /// Connects to `url` (`https://…`, or `http://…` for an `--insecure` registry),
    /// trusting `ca_pem` for TLS when given.
    pub async fn connect(
        url: &str,
        token: Option<String>,
        ca_pem: Option<String>,
    ) -> Result<Client> {
        Self::connect_with(url, token, ca_pem, None).await
    }

    /// Connects as an enrolled device: mTLS with its certificate and key (PEM), no token.
    pub async fn connect_device(
        url: &str,
        ca_pem: Option<String>,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<Client> {
        let id = tonic::transport::Identity::from_pem(cert_pem, key_pem);
        Self::connect_with(url, None, ca_pem, Some(id)).await
    }

    /// A channel to the registry as an enrolled device (mTLS), connected on
    /// first use and reconnected after a failure: for exporters that outlive
    /// outages (OpenTelemetry metrics).
    pub fn device_channel(
        url: &str,
        ca_pem: Option<String>,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<Channel> {
        let err = |m: String| SdkError::Connect {
            url: url.to_owned(),
            message: m,
        };
        let mut tls = ClientTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert_pem, key_pem));
        if let Some(pem) = ca_pem {
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        Ok(Channel::from_shared(url.to_owned())
            .map_err(|e| err(format!("not a valid url: {e}")))?
            .tls_config(tls)
            .map_err(|e| err(e.to_string()))?
            .connect_timeout(std::time::Duration::from_secs(10))
            .connect_lazy())
    }

    async fn connect_with(
        url: &str,
        token: Option<String>,
        ca_pem: Option<String>,
        identity: Option<tonic::transport::Identity>,
    ) -> Result<Client> {
        let err = |m: String| SdkError::Connect {
            url: url.to_owned(),
            message: m,
        };
        let mut ep = Channel::from_shared(url.to_owned())
            .map_err(|e| err(format!("not a valid url: {e}")))?;
        if url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(pem) = ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let Some(id) = identity {
                tls = tls.identity(id);
            }
            ep = ep.tls_config(tls).map_err(|e| err(e.to_string()))?;
        }
        let channel = ep
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(8 << 20)
            .connect_timeout(std::time::Duration::from_secs(10))
            .connect()
            .await
            .map_err(|e| {
                err(format!(
                    "{e}: {}",
                    std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                ))
            })?;
        Ok(Client { channel, token })
    }

    pub(crate) fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        if let Some(t) = &self.token {
            if let Ok(v) = format!("Bearer {t}").parse() {
                r.metadata_mut().insert("authorization", v);
            }
        }
        r
    }

    pub(crate) fn fleet(&self) -> pb::fleet_client::FleetClient<Channel> {
        pb::fleet_client::FleetClient::new(self.channel.clone())
    }

    fn admin(&self) -> pb::admin_client::AdminClient<Channel> {
        pb::admin_client::AdminClient::new(self.channel.clone())
    }
    fn blobs(&self) -> pb::blobs_client::BlobsClient<Channel> {
        pb::blobs_client::BlobsClient::new(self.channel.clone()).max_decoding_message_size(16 << 20)
    }
    fn catalog(&self) -> pb::catalog_client::CatalogClient<Channel> {
        pb::catalog_client::CatalogClient::new(self.channel.clone())
    }

    /// The role and subject of this client's token.
    pub async fn whoami(&self) -> Result<(String, String)> {
        let r = self
            .admin()
            .who_am_i(self.req(pb::WhoAmIRequest {}))
            .await?
            .into_inner();
        let role = pb::Role::try_from(r.role)
            .map(|r| r.as_str_name().trim_start_matches("ROLE_").to_lowercase())
            .unwrap_or_default();
        Ok((role, r.subject))
    }

    /// Operator: registers a team with the public key it signs kits with.
    pub async fn create_team(
        &self,
        name: &str,
        display_name: &str,
        signing_key: &str,
    ) -> Result<()> {
        self.admin()
            .create_team(self.req(pb::CreateTeamRequest {
                name: name.into(),
                display_name: display_name.into(),
                signing_key: signing_key.into(),
            }))
            .await?;
        Ok(())
    }

    /// Operator: registers an enterprise (a tenant with its own fleet).
    pub async fn create_enterprise(
        &self,
        name: &str,
        display_name: &str,
        industries: Vec<String>,
    ) -> Result<()> {
        self.admin()
            .create_enterprise(self.req(pb::CreateEnterpriseRequest {
                name: name.into(),
                display_name: display_name.into(),
                industries,
            }))
            .await?;
        Ok(())
    }

    /// Operator: a token for `role` (`operator`, `team`, `enterprise`); returns (id, secret).
    pub async fn create_token(
        &self,
        role: &str,
        subject: &str,
        ttl_seconds: i64,
    ) -> Result<(String, String)> {
        let role = match role {
            "operator" => pb::Role::Operator,
            "team" => pb::Role::Team,
            "enterprise" => pb::Role::Enterprise,
            other => {
                return Err(SdkError::Invalid(format!(
                    "role `{other}` must be operator, team or enterprise"
                )))
            }
        };
        let r = self
            .admin()
            .create_token(self.req(pb::CreateTokenRequest {
                role: role as i32,
                subject: subject.into(),
                ttl_seconds,
                description: String::new(),
            }))
            .await?
            .into_inner();
        Ok((r.token_id, r.token))
    }

    /// Operator.
    pub async fn revoke_token(&self, id: &str) -> Result<()> {
        self.admin()
            .revoke_token(self.req(pb::RevokeTokenRequest {
                token_id: id.into(),
            }))
            .await?;
        Ok(())
    }

    /// Uploads a model file (and its architecture's config, if any) and publishes it.
    /// Small files (up to 256 KiB each) travel inside the publish call itself.
    pub async fn publish_model(
        &self,
        model: &[u8],
        config: Option<&[u8]>,
        info: ModelInfo,
        progress: Progress,
    ) -> Result<Artifact> {
        self.publish_model_with_metrics(model, config, info, Default::default(), progress)
            .await
    }

    /// [`Client::publish_model`] with the model's measured metrics (holdout
    /// scores, intervals, baselines), which search results and cards show.
    pub async fn publish_model_with_metrics(
        &self,
        model: &[u8],
        config: Option<&[u8]>,
        info: ModelInfo,
        metrics: std::collections::HashMap<String, f64>,
        progress: Progress,
    ) -> Result<Artifact> {
        const INLINE: usize = 256 * 1024;
        let mut blobs = Vec::new();
        for (i, bytes) in std::iter::once(model).chain(config).enumerate() {
            if bytes.len() <= INLINE {
                blobs.push(pb::InlineBlob {
                    digest: Digest::of(bytes).to_string(),
                    data: bytes.to_vec(),
                });
            } else if i == 0 {
                self.upload(bytes, progress.clone()).await?;
            } else {
                self.upload(bytes, no_progress()).await?;
            }
        }
        let config_digest = config.map_or(String::new(), |c| Digest::of(c).to_string());
        let a = self
            .catalog()
            .publish_model(self.req(pb::PublishModelRequest {
                name: info.name,
                version: info.version,
                digest: Digest::of(model).to_string(),
                domain: info.domain,
                task: info.task,
                architecture: info.architecture,
                config_digest,
                description: info.description,
                license: info.license,
                industries: info.industries,
                tags: info.tags,
                card: info.card,
                blobs,
                metrics,
                ..Default::default()
            }))
            .await?
            .into_inner();
        Ok(Artifact::from_pb(a))
    }

    /// Uploads a data file (CSV; inline when small) and publishes it as a dataset.
    pub async fn publish_dataset(
        &self,
        data: &[u8],
        info: DatasetInfo,
        progress: Progress,
    ) -> Result<Artifact> {
        const INLINE: usize = 256 * 1024;
        let mut blobs = Vec::new();
        if data.len() <= INLINE {
            blobs.push(pb::InlineBlob {
                digest: Digest::of(data).to_string(),
                data: data.to_vec(),
            });
        } else {
            self.upload(data, progress).await?;
        }
        let a = self
            .catalog()
            .publish_dataset(self.req(pb::PublishDatasetRequest {
                name: info.name,
                version: info.version,
                digest: Digest::of(data).to_string(),
                format: "csv".into(),
                license: info.license,
                source: info.source,
                label_column: info.label_column,
                header: info.header,
                domain: info.domain,
                task: info.task,
                description: info.description,
                industries: info.industries,
                tags: info.tags,
                card: info.card,
                blobs,
            }))
            .await?
            .into_inner();
        Ok(Artifact::from_pb(a))
    }

    /// Uploads a stage's WASM and publishes it as a tool.
    #[allow(clippy::too_many_arguments)]
    pub async fn publish_tool(
        &self,
        wasm: &[u8],
        name: &str,
        version: &str,
        tool_kind: &str,
        description: &str,
        license: &str,
        card: &str,
    ) -> Result<Artifact> {
        self.upload(wasm, no_progress()).await?;
        let a = self
            .catalog()
            .publish_tool(self.req(pb::PublishToolRequest {
                name: name.into(),
                version: version.into(),
                digest: Digest::of(wasm).to_string(),
                tool_kind: tool_kind.into(),
                description: description.into(),
                license: license.into(),
                card: card.into(),
                ..Default::default()
            }))
            .await?
            .into_inner();
        Ok(Artifact::from_pb(a))
    }

    /// Uploads the blobs of a kit the registry lacks, then publishes it.
    pub async fn push_kit(&self, kit: &KitArchive, progress: Progress) -> Result<(Artifact, u64)> {
        self.push_kit_for(kit, "", progress).await
    }

    /// [`Self::push_kit`] for a kit made for one enterprise (`private_to`; empty: the public catalog).
    pub async fn push_kit_for(
        &self,
        kit: &KitArchive,
        private_to: &str,
        progress: Progress,
    ) -> Result<(Artifact, u64)> {
        let total: u64 = kit.blobs.values().map(|b| b.len() as u64).sum();
        let mut done = 0u64;
        let mut sent = 0u64;
        for b in kit.blobs.values() {
            let base = done;
            let outer = progress.clone();
            let up = self
                .upload(b, std::sync::Arc::new(move |d, _| outer(base + d, total)))
                .await?;
            sent += up.sent;
            done += b.len() as u64;
        }
        let sigs = kit
            .signatures
            .iter()
            .map(|s| pb::KitSignature {
                key: s.key.clone(),
                signature: s.signature.clone(),
            })
            .collect();
        let a = self
            .catalog()
            .publish_kit(self.req(pb::PublishKitRequest {
                manifest: kit.manifest_bytes.clone(),
                signatures: sigs,
                private_to: private_to.to_owned(),
            }))
            .await?
            .into_inner();
        Ok((Artifact::from_pb(a), sent))
    }

    /// Fetches a kit by reference or digest into the kit file `output`. Blobs are
    /// fetched into `<output>.parts/` first, each resumable and verified, so an
    /// interrupted pull continues where it stopped when run again; the kit file is
    /// written atomically once every blob is there.
    pub async fn pull_kit(
        &self,
        reference: &str,
        output: &Path,
        progress: Progress,
    ) -> Result<KitArchive> {
        let a = self.get(reference, Some(Kind::Kit)).await?;
        let parts = output.with_extension("kit.parts");
        let io = |p: &Path, e: std::io::Error| SdkError::Io {
            path: p.display().to_string(),
            source: e,
        };
        std::fs::create_dir_all(&parts).map_err(|e| io(&parts, e))?;
        let manifest_bytes = self.download(&a.digest).await?;
        let manifest = Manifest::from_json(&manifest_bytes)?;
        let total: u64 = manifest.blobs.values().sum();
        let mut done = 0u64;
        let mut blobs = std::collections::BTreeMap::new();
        for (d, size) in &manifest.blobs {
            let file = parts.join(d.hex());
            let have = std::fs::read(&file).ok().filter(|b| Digest::of(b) == *d);
            let bytes = match have {
                Some(b) => b,
                None => {
                    let base = done;
                    let outer = progress.clone();
                    self.download_to(
                        &d.to_string(),
                        &file,
                        std::sync::Arc::new(move |x, _| outer(base + x, total)),
                    )
                    .await?;
                    std::fs::read(&file).map_err(|e| io(&file, e))?
                }
            };
            d.verify(&file.display().to_string(), &bytes)?;
            blobs.insert(*d, std::sync::Arc::new(bytes));
            done += size;
            progress(done, total);
        }
        let kit = KitArchive {
            manifest,
            manifest_bytes,
            signatures: a.signatures,
            blobs,
        };
        kit.write_file(output)?;
        let _ = std::fs::remove_dir_all(&parts);
        Ok(kit)
    }

    pub async fn get(&self, reference: &str, kind: Option<Kind>) -> Result<Artifact> {
        let a = self
            .catalog()
            .get(self.req(pb::GetRequest {
                reference: reference.into(),
                kind: Kind::to_pb(kind),
            }))
            .await?
            .into_inner();
        Ok(Artifact::from_pb(a))
    }

    /// What an artifact is made of (a kit's steps, the models and tools they
    /// run, its golden samples) and which kits use it (a model or tool).
    pub async fn relations(&self, reference: &str, kind: Option<Kind>) -> Result<Relations> {
        let r = self
            .catalog()
            .relations(self.req(pb::GetRequest {
                reference: reference.into(),
                kind: Kind::to_pb(kind),
            }))
            .await?
            .into_inner();
        Ok(Relations {
            steps: r
                .steps
                .into_iter()
                .map(|s| StepUse {
                    step: s.step,
                    kind: s.kind,
                    digest: s.digest,
                    size: s.size,
                    artifacts: s.artifacts,
                    inputs: s.inputs,
                    outputs: s.outputs,
                })
                .collect(),
            golden: r
                .golden
                .into_iter()
                .map(|g| GoldenUse {
                    inputs: g.inputs.into_iter().collect(),
                    expected: g.expected,
                    tolerance: g.tolerance,
                })
                .collect(),
            used_by: r.used_by,
        })
    }

    pub async fn search(&self, q: Search) -> Result<Page> {
        let r = self
            .catalog()
            .search(self.req(pb::SearchRequest {
                text: q.text,
                kind: Kind::to_pb(q.kind),
                domain: q.domain,
                task: q.task,
                industry: q.industry,
                team: q.team,
                page_size: q.page_size,
                page_token: q.page_token,
                ..Default::default()
            }))
            .await?
            .into_inner();
        Ok(Page {
            artifacts: r.artifacts.into_iter().map(Artifact::from_pb).collect(),
            next_page_token: r.next_page_token,
            total: r.total,
        })
    }

    /// The operator's counts, as name → count maps and totals.
    pub async fn coverage(&self) -> Result<serde_json::Value> {
        let slices = |v: Vec<pb::CoverageSlice>| -> serde_json::Map<String, serde_json::Value> {
            v.into_iter()
                .map(|s| {
                    (
                        s.name,
                        serde_json::json!({
                            "models": s.models, "tools": s.tools, "kits": s.kits,
                            "teams": s.teams, "datasets": s.datasets,
                            "enterprises": s.enterprises,
                            "enterprises_served": s.enterprises_served, "devices": s.devices,
                        }),
                    )
                })
                .collect()
        };
        let c = self
            .catalog()
            .coverage(self.req(pb::CoverageRequest {}))
            .await?
            .into_inner();
        let sorted = |m: std::collections::HashMap<String, u64>| {
            m.into_iter().collect::<std::collections::BTreeMap<_, _>>()
        };
        Ok(serde_json::json!({
            "models": c.models, "tools": c.tools, "kits": c.kits, "datasets": c.datasets,
            "teams": c.teams, "publishing_teams": c.publishing_teams,
            "industries": c.industries, "enterprises": c.enterprises,
            "models_by_domain": sorted(c.models_by_domain), "models_by_task": sorted(c.models_by_task),
            "tools_by_kind": sorted(c.tools_by_kind), "kits_by_industry": sorted(c.kits_by_industry),
            "kits_by_scenario": sorted(c.kits_by_scenario),
            "enterprises_served": c.enterprises_served, "industries_served": c.industries_served,
            "devices": c.devices,
            "by_industry": slices(c.by_industry), "by_domain": slices(c.by_domain),
        }))
    }
}
