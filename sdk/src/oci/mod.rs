//! Kits as OCI artifacts, in any registry that speaks the OCI distribution API
//! (Harbor, a cloud's container registry, `docker-registry`).
//!
//! A kit becomes one image manifest:
//!
//! - its **config** is the kit's signed canonical manifest
//!   (`application/vnd.algobay.kit.manifest.v1+json`), so the config's digest
//!   is the kit's digest;
//! - each **blob** of the kit is a layer (`application/vnd.algobay.kit.blob.v1`)
//!   with the same sha256 digest it has in the kit;
//! - the **signatures** are one more layer
//!   (`application/vnd.algobay.kit.signatures.v1+json`), so a copy made with
//!   standard tools (`skopeo copy`, `oras cp`, `crane copy`) carries them.
//!
//! Pulling checks every digest (the manifest's if the reference names one,
//! each layer's, the config's), that the layers are exactly the kit's blobs at
//! the sizes its manifest lists, and returns the kit unjudged: the caller
//! verifies its signatures against its own trust roots, offline, exactly as a
//! kit from the Algobay registry.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use algobay_runtime::sign::Signature;
use algobay_runtime::{Digest, KitArchive};
use sha2::Digest as _;

use crate::client::SdkError;
use crate::Progress;

/// The media type of an OCI image manifest.
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The artifact type a kit is pushed with.
pub const ARTIFACT_TYPE: &str = "application/vnd.algobay.kit.v1";
/// The config: the kit's canonical manifest.
pub const CONFIG_TYPE: &str = "application/vnd.algobay.kit.manifest.v1+json";
/// A blob of the kit.
pub const BLOB_TYPE: &str = "application/vnd.algobay.kit.blob.v1";
/// The kit's signatures, as a JSON array.
pub const SIGNATURES_TYPE: &str = "application/vnd.algobay.kit.signatures.v1+json";

/// The largest manifest or signatures document read (a kit with thousands
/// of blobs stays far below).
const MAX_DOCUMENT_BYTES: usize = 4 << 20;

type Result<T, E = SdkError> = std::result::Result<T, E>;

fn invalid(reference: &OciRef, message: impl std::fmt::Display) -> SdkError {
    SdkError::Invalid(format!("{reference}: {message}"))
}

/// `[http://|https://]host[:port]/repository[:tag][@sha256:…]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciRef {
    /// Talk plain HTTP (an `http://` prefix, or a `localhost`/`127.0.0.1` host).
    pub plain_http: bool,
    pub host: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl FromStr for OciRef {
    type Err = SdkError;
    fn from_str(s: &str) -> Result<OciRef> {
        let bad = |m: &str| {
            SdkError::Invalid(format!(
                "OCI reference `{s}`: {m} (expected host[:port]/repository[:tag][@sha256:digest])"
            ))
        };
        let (explicit, rest) = if let Some(r) = s.strip_prefix("http://") {
            (Some(true), r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (Some(false), r)
        } else {
            (None, s.strip_prefix("oci://").unwrap_or(s))
        };
        let (host, path) = rest.split_once('/').ok_or_else(|| bad("no repository"))?;
        if host.is_empty() || !(host.contains('.') || host.contains(':') || host == "localhost") {
            return Err(bad("the first part must be a registry host"));
        }
        let (path, digest) = match path.split_once('@') {
            Some((p, d)) => {
                d.parse::<Digest>()
                    .map_err(|_| bad("the digest is not sha256:<64 hex digits>"))?;
                (p, Some(d.to_owned()))
            }
            None => (path, None),
        };
        let (repository, tag) = match path.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, Some(t.to_owned())),
            _ => (path, None),
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        if !repository.split('/').all(component_ok) {
            return Err(bad(
                "the repository must be lowercase letters, digits, `.`, `_`, `-` and `/`",
            ));
        }
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(bad(
                    "the tag must be up to 128 letters, digits, `.`, `_`, `-`",
                ));
            }
        }
        if tag.is_none() && digest.is_none() {
            return Err(bad("name a tag or a digest"));
        }
        let local = host.starts_with("localhost") || host.starts_with("127.0.0.1");
        Ok(OciRef {
            plain_http: explicit.unwrap_or(local),
            host: host.to_owned(),
            repository: repository.to_owned(),
            tag,
            digest,
        })
    }
}

impl std::fmt::Display for OciRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.host, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl OciRef {
    fn base(&self) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{}/v2/{}", self.host, self.repository)
    }

    /// What a manifest is pushed or pulled by: the digest if named, else the tag.
    fn manifest_key(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

/// How to reach OCI registries.
#[derive(Clone, Debug, Default)]
pub struct OciOptions {
    /// User and password (or token) for registries that ask for them.
    pub credentials: Option<(String, String)>,
    /// PEM CA certificates trusted besides the system's.
    pub ca_pem: Option<String>,
}

impl OciOptions {
    /// What the environment says: `ALGOBAY_OCI_USERNAME` and
    /// `ALGOBAY_OCI_PASSWORD` (both, or neither), and `ALGOBAY_OCI_CA_CERT`,
    /// a PEM file of further CA certificates.
    pub fn from_env() -> Result<OciOptions> {
        let credentials = match (
            std::env::var("ALGOBAY_OCI_USERNAME"),
            std::env::var("ALGOBAY_OCI_PASSWORD"),
        ) {
            (Ok(u), Ok(p)) => Some((u, p)),
            _ => None,
        };
        let ca_pem = match std::env::var_os("ALGOBAY_OCI_CA_CERT") {
            Some(p) => Some(std::fs::read_to_string(&p).map_err(|e| SdkError::Io {
                path: format!("ALGOBAY_OCI_CA_CERT {}", p.to_string_lossy()),
                source: e,
            })?),
            None => None,
        };
        Ok(OciOptions {
            credentials,
            ca_pem,
        })
    }
}

/// A client of OCI distribution registries.
pub struct OciClient {
    http: reqwest::Client,
    credentials: Option<(String, String)>,
    /// Bearer tokens by (host, scope), from the registry's token service.
    tokens: Mutex<BTreeMap<(String, String), String>>,
}

impl std::fmt::Debug for OciClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciClient")
            .field("credentials", &self.credentials.as_ref().map(|c| &c.0))
            .finish()
    }
}

/// What a push did.
#[derive(Clone, Debug)]
pub struct OciPushed {
    /// The OCI manifest's digest: pull by `REPOSITORY@DIGEST` to get exactly this.
    pub manifest_digest: String,
    /// Bytes of the config and layers sent (the rest the registry had).
    pub sent: u64,
    /// Bytes of the config and layers in all.
    pub total: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ImageManifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    artifact_type: String,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

fn sha256(bytes: &[u8]) -> String {
    let mut h = sha2::Sha256::new();
    h.update(bytes);
    format!("sha256:{}", hex(&h.finalize()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl OciClient {
    /// A client; https is verified against the system's roots and `ca_pem`.
    pub fn new(options: OciOptions) -> Result<OciClient> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if let Some(pem) = &options.ca_pem {
            let certs = rustls_pemfile_certs(pem)?;
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| SdkError::Invalid(format!("OCI CA certificate: {e}")))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SdkError::Invalid(format!("tls: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(concat!("algobay/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(15))
            .build()
            .map_err(|e| SdkError::Invalid(format!("http client: {e}")))?;
        Ok(OciClient {
            http,
            credentials: options.credentials,
            tokens: Mutex::new(BTreeMap::new()),
        })
    }

    /// Sends a request, answering the registry's authentication challenge
    /// (Basic, or a Bearer token from its token service) once if it asks.
    async fn send(
        &self,
        r: &OciRef,
        scope: &str,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let key = (r.host.clone(), scope.to_owned());
        let token = self.tokens.lock().expect("lock").get(&key).cloned();
        let with_auth = |b: reqwest::RequestBuilder, token: &Option<String>| match token {
            Some(t) if t.starts_with("Basic ") => b.header("Authorization", t),
            Some(t) => b.bearer_auth(t),
            None => b,
        };
        let connect = |e: reqwest::Error| SdkError::Connect {
            url: r.host.clone(),
            message: e.to_string(),
        };
        let resp = with_auth(make(&self.http), &token)
            .send()
            .await
            .map_err(connect)?;
        if resp.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let fresh = self.authenticate(r, &challenge, scope).await?;
        self.tokens.lock().expect("lock").insert(key, fresh.clone());
        with_auth(make(&self.http), &Some(fresh))
            .send()
            .await
            .map_err(connect)
    }

    async fn authenticate(&self, r: &OciRef, challenge: &str, scope: &str) -> Result<String> {
        use base64::Engine as _;
        let denied = |m: String| SdkError::Status {
            code: tonic::Code::Unauthenticated,
            message: format!("{r}: {m}"),
        };
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let (user, pass) = self.credentials.as_ref().ok_or_else(|| {
                denied("the registry asks for a user and password: set ALGOBAY_OCI_USERNAME and ALGOBAY_OCI_PASSWORD".into())
            })?;
            let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            return Ok(format!("Basic {enc}"));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(denied(format!(
                "the registry refused access and asks for `{challenge}`, which is not Basic or Bearer"
            )));
        }
        let mut fields = BTreeMap::new();
        for part in split_params(params) {
            if let Some((k, v)) = part.split_once('=') {
                fields.insert(
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_owned(),
                );
            }
        }
        let realm = fields
            .get("realm")
            .ok_or_else(|| denied("its Bearer challenge names no realm".into()))?;
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| denied(format!("its token service `{realm}` is not a URL: {e}")))?;
        url.query_pairs_mut().append_pair("scope", scope);
        if let Some(s) = fields.get("service") {
            url.query_pairs_mut().append_pair("service", s);
        }
        let mut req = self.http.get(url);
        if let Some((u, p)) = &self.credentials {
            req = req.basic_auth(u, Some(p));
        }
        let resp = req.send().await.map_err(|e| SdkError::Connect {
            url: realm.clone(),
            message: e.to_string(),
        })?;
        if !resp.status().is_success() {
            return Err(denied(format!(
                "its token service at {realm} answered {}",
                resp.status()
            )));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| denied(format!("reading its token service's answer: {e}")))?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| denied(format!("its token service's answer is not JSON: {e}")))?;
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_owned)
            .ok_or_else(|| denied("its token service gave no token".into()))
    }

    fn scope(r: &OciRef, push: bool) -> String {
        let actions = if push { "pull,push" } else { "pull" };
        format!("repository:{}:{actions}", r.repository)
    }

    async fn status_error(r: &OciRef, what: &str, resp: reqwest::Response) -> SdkError {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let detail: String = body.chars().take(300).collect();
        let code = match status.as_u16() {
            401 | 403 => tonic::Code::PermissionDenied,
            404 => tonic::Code::NotFound,
            400 | 413 | 415 => tonic::Code::InvalidArgument,
            _ => tonic::Code::Unavailable,
        };
        SdkError::Status {
            code,
            message: format!("{r}: {what}: the registry answered {status}: {detail}"),
        }
    }

    async fn has_blob(&self, r: &OciRef, digest: &str) -> Result<bool> {
        let url = format!("{}/blobs/{digest}", r.base());
        let resp = self
            .send(r, &Self::scope(r, true), |c| c.head(&url))
            .await?;
        Ok(resp.status().is_success())
    }

    async fn put_blob(&self, r: &OciRef, digest: &str, bytes: Arc<Vec<u8>>) -> Result<()> {
        let start = format!("{}/blobs/uploads/", r.base());
        let scope = Self::scope(r, true);
        let resp = self.send(r, &scope, |c| c.post(&start)).await?;
        if resp.status() != reqwest::StatusCode::ACCEPTED {
            return Err(Self::status_error(r, "starting an upload", resp).await);
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| invalid(r, "the registry gave no upload location"))?
            .to_owned();
        let location = if location.starts_with('/') {
            let scheme = if r.plain_http { "http" } else { "https" };
            format!("{scheme}://{}{location}", r.host)
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={digest}");
        let resp = self
            .send(r, &scope, |c| {
                c.put(&url)
                    .header("Content-Type", "application/octet-stream")
                    .body(reqwest::Body::from(bytes::Bytes::from_owner(Shared(
                        bytes.clone(),
                    ))))
            })
            .await?;
        if resp.status() != reqwest::StatusCode::CREATED {
            return Err(Self::status_error(r, &format!("uploading blob {digest}"), resp).await);
        }
        Ok(())
    }

    /// Pushes a kit as an OCI artifact to `r` (its tag, or its digest).
    /// Blobs the registry has are not sent again.
    pub async fn push_kit(
        &self,
        kit: &KitArchive,
        r: &OciRef,
        progress: Progress,
    ) -> Result<OciPushed> {
        let signatures = serde_json::to_vec(&kit.signatures).expect("signatures serialise");
        let mut uploads: Vec<(String, Arc<Vec<u8>>)> = vec![
            (
                kit.digest().to_string(),
                Arc::new(kit.manifest_bytes.clone()),
            ),
            (sha256(&signatures), Arc::new(signatures.clone())),
        ];
        let mut layers = Vec::new();
        for (d, bytes) in &kit.blobs {
            layers.push(Descriptor {
                media_type: BLOB_TYPE.into(),
                digest: d.to_string(),
                size: bytes.len() as u64,
                annotations: BTreeMap::new(),
            });
            uploads.push((d.to_string(), bytes.clone()));
        }
        layers.push(Descriptor {
            media_type: SIGNATURES_TYPE.into(),
            digest: sha256(&signatures),
            size: signatures.len() as u64,
            annotations: BTreeMap::new(),
        });
        let total: u64 = uploads.iter().map(|u| u.1.len() as u64).sum();
        let (mut done, mut sent) = (0u64, 0u64);
        progress(0, total);
        for (digest, bytes) in uploads {
            let n = bytes.len() as u64;
            if !self.has_blob(r, &digest).await? {
                self.put_blob(r, &digest, bytes).await?;
                sent += n;
            }
            done += n;
            progress(done, total);
        }
        let m = &kit.manifest;
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: MANIFEST_TYPE.into(),
            artifact_type: ARTIFACT_TYPE.into(),
            config: Descriptor {
                media_type: CONFIG_TYPE.into(),
                digest: kit.digest().to_string(),
                size: kit.manifest_bytes.len() as u64,
                annotations: BTreeMap::new(),
            },
            layers,
            annotations: BTreeMap::from([
                ("org.opencontainers.image.title".into(), m.name.clone()),
                ("org.opencontainers.image.version".into(), m.version.clone()),
                (
                    "org.opencontainers.image.description".into(),
                    m.description.clone(),
                ),
                ("io.algobay.kit.digest".into(), kit.digest().to_string()),
            ]),
        };
        let body = serde_json::to_vec(&manifest).expect("manifest serialises");
        let digest = sha256(&body);
        if let Some(want) = &r.digest {
            if want != &digest {
                return Err(invalid(
                    r,
                    format!("this kit's OCI manifest is {digest}, not the digest named"),
                ));
            }
        }
        let url = format!("{}/manifests/{}", r.base(), r.manifest_key());
        let resp = self
            .send(r, &Self::scope(r, true), |c| {
                c.put(&url)
                    .header("Content-Type", MANIFEST_TYPE)
                    .body(body.clone())
            })
            .await?;
        if resp.status() != reqwest::StatusCode::CREATED {
            return Err(Self::status_error(r, "putting the manifest", resp).await);
        }
        Ok(OciPushed {
            manifest_digest: digest,
            sent,
            total,
        })
    }

    async fn get_bytes(
        &self,
        r: &OciRef,
        url: &str,
        accept: &str,
        what: &str,
        max: u64,
    ) -> Result<Vec<u8>> {
        let scope = Self::scope(r, false);
        let mut resp = self
            .send(r, &scope, |c| c.get(url).header("Accept", accept))
            .await?;
        if !resp.status().is_success() {
            return Err(Self::status_error(r, what, resp).await);
        }
        let mut out = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| SdkError::Connect {
            url: r.host.clone(),
            message: format!("{what}: {e}"),
        })? {
            if out.len() as u64 + chunk.len() as u64 > max {
                return Err(invalid(r, format!("{what} is larger than {max} bytes")));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    async fn get_blob(&self, r: &OciRef, d: &Descriptor, what: &str) -> Result<Vec<u8>> {
        let url = format!("{}/blobs/{}", r.base(), d.digest);
        let bytes = self
            .get_bytes(r, &url, "application/octet-stream", what, d.size)
            .await?;
        if bytes.len() as u64 != d.size {
            return Err(invalid(
                r,
                format!(
                    "{what} is {} bytes, its descriptor says {}",
                    bytes.len(),
                    d.size
                ),
            ));
        }
        let got = sha256(&bytes);
        if got != d.digest {
            return Err(algobay_runtime::Error::DigestMismatch {
                name: format!("{r} {what}"),
                expected: d.digest.clone(),
                actual: got,
            }
            .into());
        }
        Ok(bytes)
    }

    /// Pulls the kit at `r`. Every digest is checked; the signatures are
    /// not judged here (verify the kit against your trust roots).
    pub async fn pull_kit(&self, r: &OciRef, progress: Progress) -> Result<(KitArchive, String)> {
        let url = format!("{}/manifests/{}", r.base(), r.manifest_key());
        let body = self
            .get_bytes(
                r,
                &url,
                MANIFEST_TYPE,
                "the manifest",
                MAX_DOCUMENT_BYTES as u64,
            )
            .await?;
        let manifest_digest = sha256(&body);
        if let Some(want) = &r.digest {
            if want != &manifest_digest {
                return Err(algobay_runtime::Error::DigestMismatch {
                    name: format!("{r} manifest"),
                    expected: want.clone(),
                    actual: manifest_digest,
                }
                .into());
            }
        }
        let m: ImageManifest = serde_json::from_slice(&body)
            .map_err(|e| invalid(r, format!("the manifest is not an OCI image manifest: {e}")))?;
        if m.config.media_type != CONFIG_TYPE {
            return Err(invalid(
                r,
                format!(
                    "not an Algobay kit: its config is `{}`, not `{CONFIG_TYPE}`",
                    m.config.media_type
                ),
            ));
        }
        // The bounds a kit file is read within, checked before anything is
        // fetched: the registry's descriptors and the kit manifest are not
        // trusted until the signatures are judged.
        let limits = algobay_runtime::archive::ReadLimits::default();
        if m.config.size > limits.max_metadata_bytes {
            return Err(invalid(r, "the kit manifest is too large"));
        }
        if m.layers.len() > limits.max_entries {
            return Err(invalid(
                r,
                format!(
                    "{} layers, over the limit of {}",
                    m.layers.len(),
                    limits.max_entries
                ),
            ));
        }
        let declared: u64 = m.layers.iter().map(|l| l.size).fold(0, u64::saturating_add);
        if declared > limits.max_total_bytes {
            return Err(invalid(
                r,
                format!(
                    "its layers are {declared} bytes, over the limit of {}",
                    limits.max_total_bytes
                ),
            ));
        }
        let total: u64 = m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>();
        let mut done = 0u64;
        progress(0, total);
        let manifest_bytes = self.get_blob(r, &m.config, "the kit manifest").await?;
        done += m.config.size;
        progress(done, total);
        let kit_manifest = algobay_runtime::Manifest::from_json(&manifest_bytes)?;
        let mut signatures: Option<Vec<Signature>> = None;
        let mut blobs = BTreeMap::new();
        for layer in &m.layers {
            match layer.media_type.as_str() {
                SIGNATURES_TYPE => {
                    if layer.size > limits.max_metadata_bytes {
                        return Err(invalid(r, "the signatures layer is too large"));
                    }
                    let bytes = self.get_blob(r, layer, "the signatures").await?;
                    let sigs: Vec<Signature> = serde_json::from_slice(&bytes).map_err(|e| {
                        algobay_runtime::Error::Signature(format!(
                            "the signatures layer of {r} is malformed: {e}"
                        ))
                    })?;
                    if signatures.replace(sigs).is_some() {
                        return Err(invalid(r, "two signatures layers"));
                    }
                }
                BLOB_TYPE => {
                    let d: Digest = layer
                        .digest
                        .parse()
                        .map_err(|_| invalid(r, format!("layer {} is not sha256", layer.digest)))?;
                    if layer.size > limits.max_blob_bytes {
                        return Err(invalid(
                            r,
                            format!(
                                "layer {d} is {} bytes, over the limit of {}",
                                layer.size, limits.max_blob_bytes
                            ),
                        ));
                    }
                    match kit_manifest.blobs.get(&d) {
                        Some(&size) if size == layer.size => {}
                        Some(size) => {
                            return Err(invalid(
                                r,
                                format!(
                                    "layer {d} is {} bytes, the kit manifest says {size}",
                                    layer.size
                                ),
                            ))
                        }
                        None => {
                            return Err(invalid(r, format!("layer {d} is not a blob of the kit")))
                        }
                    }
                    let bytes = self.get_blob(r, layer, &format!("blob {d}")).await?;
                    blobs.insert(d, Arc::new(bytes));
                }
                other => {
                    return Err(invalid(
                        r,
                        format!(
                            "layer {} has media type `{other}`, not a kit's",
                            layer.digest
                        ),
                    ))
                }
            }
            done += layer.size;
            progress(done, total);
        }
        let signatures = signatures.ok_or_else(|| {
            algobay_runtime::Error::Signature(format!("{r} carries no signatures layer"))
        })?;
        let kit = KitArchive::from_parts(manifest_bytes, signatures, blobs)?;
        Ok((kit, manifest_digest))
    }
}

/// A kit blob lent to a request body without copying it.
struct Shared(Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Splits `a="x,y",b=c` at the commas outside quotes.
fn split_params(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn rustls_pemfile_certs(pem: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| SdkError::Invalid(format!("OCI CA certificate is not PEM: {e}")))
}

#[cfg(test)]
mod tests;
