//! Blobs in an object store — S3 or any S3-compatible server, or memory —
//! through the `object_store` crate.
//!
//! A blob lives at `PREFIX/sha256/<2 hex>/<64 hex>`. A blob sent in one piece
//! is hashed first, then written create-only; a store that ignores create-only
//! writes overwrites the same bytes under the same name, which is harmless,
//! and the size is read back either way.
//!
//! A chunked upload is an S3 multipart upload whose id, parts and running
//! SHA-256 live in the metadata store, so it resumes after a restart or
//! through another replica sharing both stores ([`upload`]).

use std::sync::Arc;

use futures::StreamExt;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

mod hashing;
mod memory;
mod upload;

use memory::{ChannelReader, Recent, SharedBytes, RECENT_MAX_BLOB};
use upload::Upload;

use super::{check_whole, mismatch, BlobReader, BlobStat, BlobStore};
use crate::bridge::Bridge;
use crate::error::{RegistryError, Result};
use crate::store::KvStore;
use algobay_runtime::Digest;

/// The smallest part S3 accepts (all parts but the last).
pub const MIN_PART_BYTES: u64 = 5 << 20;
/// The largest part this store writes: an upload gathers a part's bytes in
/// memory before writing it, so this bounds what each upload may hold.
pub const MAX_PART_BYTES: u64 = 64 << 20;

/// Both halves of an object store: objects and multipart uploads.
pub trait ObjectBackend: ObjectStore + MultipartStore {}
impl<T: ObjectStore + MultipartStore> ObjectBackend for T {}

/// How an [`ObjectBlobStore`] is set up.
#[derive(Clone, Debug)]
pub struct ObjectBlobOptions {
    /// Blobs larger than this are refused.
    pub max_blob_bytes: u64,
    /// Bytes per multipart part (all but the last); at least [`MIN_PART_BYTES`] on S3.
    pub part_bytes: u64,
    /// Names under this prefix (`""`, or `a/b/`).
    pub prefix: String,
}

impl Default for ObjectBlobOptions {
    fn default() -> Self {
        ObjectBlobOptions {
            max_blob_bytes: 8 << 30,
            part_bytes: 8 << 20,
            prefix: String::new(),
        }
    }
}

/// The blob store on an object store, with upload records in the metadata store.
pub struct ObjectBlobStore {
    store: Arc<dyn ObjectBackend>,
    kv: Arc<dyn KvStore>,
    opts: ObjectBlobOptions,
    bridge: Arc<Bridge>,
    describe: String,
    /// Small blobs read or written lately. A digest names its bytes forever,
    /// so a copy never goes stale; it saves a round trip to the store for the
    /// configs and small weights every publish and golden run reads.
    recent: std::sync::Mutex<Recent>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn storage(what: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Storage(format!("object store: {what}: {e}"))
}

fn not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl ObjectBlobStore {
    /// The store over `backend`, keeping upload records in `kv`.
    pub fn new(
        backend: Arc<dyn ObjectBackend>,
        kv: Arc<dyn KvStore>,
        opts: ObjectBlobOptions,
    ) -> Result<ObjectBlobStore> {
        if opts.part_bytes == 0 || opts.part_bytes > MAX_PART_BYTES {
            return Err(RegistryError::invalid(
                "part_bytes",
                format!(
                    "{} must be above 0 and at most {MAX_PART_BYTES} (64 MiB)",
                    opts.part_bytes
                ),
            ));
        }
        let prefix = opts.prefix.trim_matches('/');
        let opts = ObjectBlobOptions {
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            ..opts
        };
        Ok(ObjectBlobStore {
            describe: backend.to_string(),
            store: backend,
            kv,
            opts,
            bridge: Arc::new(Bridge::new("objects")?),
            recent: Default::default(),
        })
    }

    /// Blobs in memory (tests and trials), records in `kv`.
    pub fn memory(kv: Arc<dyn KvStore>, opts: ObjectBlobOptions) -> Result<ObjectBlobStore> {
        Self::new(Arc::new(object_store::memory::InMemory::new()), kv, opts)
    }

    /// Opens `s3://bucket[/prefix][?endpoint=URL&region=R&part_mb=N]`; the
    /// credentials come from the usual `AWS_*` variables (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL`), or from `keys` (access key id, secret) when given.
    /// Checks that the bucket answers.
    pub fn open_url(
        url: &str,
        kv: Arc<dyn KvStore>,
        max_blob_bytes: u64,
        keys: Option<(&str, &str)>,
    ) -> Result<Self> {
        let bad = |m: String| RegistryError::invalid("blobs", m);
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad(format!("`{url}` is not an s3:// URL")))?;
        let (place, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = place.split_once('/').unwrap_or((place, ""));
        if bucket.is_empty() {
            return Err(bad(format!("`{url}` names no bucket")));
        }
        // The signing keys and TLS come from rustls with ring, as everywhere in the registry.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_virtual_hosted_style_request(false);
        if let Some((id, secret)) = keys {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
        }
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            b = b.with_region("us-east-1");
        }
        let mut opts = ObjectBlobOptions {
            max_blob_bytes,
            prefix: prefix.to_owned(),
            ..Default::default()
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "endpoint" => {
                    b = b.with_endpoint(v).with_allow_http(v.starts_with("http://"));
                }
                "region" => b = b.with_region(v),
                "part_mb" => {
                    let mb: u64 = v
                        .parse()
                        .map_err(|_| bad(format!("part_mb `{v}` is not a whole number")))?;
                    if mb < 5 {
                        return Err(bad(format!(
                            "part_mb {mb} is below S3's smallest part (5 MiB)"
                        )));
                    }
                    if mb > MAX_PART_BYTES >> 20 {
                        return Err(bad(format!(
                            "part_mb {mb} is above the largest part an upload may hold in memory ({} MiB)",
                            MAX_PART_BYTES >> 20
                        )));
                    }
                    opts.part_bytes = mb << 20;
                }
                other => {
                    return Err(bad(format!(
                        "`{other}` is not a setting of s3:// URLs (endpoint, region, part_mb)"
                    )))
                }
            }
        }
        let s3 = b
            .build()
            .map_err(|e| bad(format!("cannot use `{url}`: {e}")))?;
        let store = Self::new(Arc::new(s3), kv, opts)?;
        store.check_reachable()?;
        Ok(store)
    }

    /// Fails when the bucket does not answer (wrong endpoint, bucket or keys).
    fn check_reachable(&self) -> Result<()> {
        let store = self.store.clone();
        // A listing, not a HEAD: a missing bucket answers a HEAD like a missing object.
        let probe = self.path("sha256");
        let describe = self.describe.clone();
        self.bridge.run(async move {
            store
                .list_with_delimiter(Some(&probe))
                .await
                .map(|_| ())
                .map_err(|e| storage(&describe, e))
        })
    }

    fn path(&self, rest: &str) -> Path {
        Path::from(format!("{}{rest}", self.opts.prefix))
    }

    fn blob_path(&self, d: &Digest) -> Path {
        let hex = d.hex();
        self.path(&format!("sha256/{}/{hex}", &hex[..2]))
    }

    fn whole_path(&self, d: &Digest, u: &Upload) -> Path {
        self.path(&format!("uploads/{}/{}/whole", d.hex(), u.nonce))
    }

    fn chunk_path(&self, d: &Digest, u: &Upload, offset: u64) -> Path {
        self.path(&format!(
            "uploads/{}/{}/chunk-{offset:020}",
            d.hex(),
            u.nonce
        ))
    }

    fn head_size(&self, p: Path) -> Result<Option<u64>> {
        let store = self.store.clone();
        self.bridge.run(async move {
            match store.head(&p).await {
                Ok(m) => Ok(Some(m.size)),
                Err(e) if not_found(&e) => Ok(None),
                Err(e) => Err(storage(&format!("head {p}"), e)),
            }
        })
    }
}

impl BlobStore for ObjectBlobStore {
    fn stat(&self, d: &Digest) -> Result<BlobStat> {
        if let Some(b) = self.recent().get(d) {
            return Ok(BlobStat {
                size: Some(b.len() as u64),
                received: b.len() as u64,
            });
        }
        if let Some(size) = self.head_size(self.blob_path(d))? {
            return Ok(BlobStat {
                size: Some(size),
                received: size,
            });
        }
        Ok(BlobStat {
            size: None,
            received: self.upload_received(d)?,
        })
    }

    fn begin(&self, d: &Digest, size: u64) -> Result<u64> {
        self.begin_upload(d, size)
    }

    fn append(&self, d: &Digest, offset: u64, data: &[u8]) -> Result<u64> {
        self.append_upload(d, offset, data)
    }

    fn finish(&self, d: &Digest) -> Result<u64> {
        self.finish_upload(d)
    }

    fn has(&self, d: &Digest) -> Result<bool> {
        Ok(self.recent().get(d).is_some() || self.head_size(self.blob_path(d))?.is_some())
    }

    fn preferred_append(&self) -> usize {
        self.opts.part_bytes as usize
    }

    /// A whole blob in one go: hashed here, written create-only, size read back.
    fn put(&self, d: &Digest, data: &[u8]) -> Result<()> {
        check_whole(d, data, self.opts.max_blob_bytes)?;
        let (store, dest, body) = (self.store.clone(), self.blob_path(d), data.to_vec());
        self.bridge.run(async move {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match store
                .put_opts(&dest, PutPayload::from(body.clone()), opts)
                .await
            {
                Ok(_) => Ok(()),
                Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
                // A store without create-only writes: the same bytes under the same name.
                Err(object_store::Error::NotImplemented { .. }) => store
                    .put(&dest, PutPayload::from(body))
                    .await
                    .map(|_| ())
                    .map_err(|e| storage(&format!("put {dest}"), e)),
                Err(e) => Err(storage(&format!("put {dest}"), e)),
            }
        })?;
        match self.head_size(self.blob_path(d))? {
            Some(s) if s == data.len() as u64 => {
                self.recent().keep(*d, Arc::new(data.to_vec()));
                Ok(())
            }
            other => Err(RegistryError::Storage(format!(
                "object store: {d} reads back as {other:?} bytes after the write, not {}",
                data.len()
            ))),
        }
    }

    fn open(&self, d: &Digest) -> Result<(u64, BlobReader)> {
        if let Some(b) = self.recent().get(d) {
            return Ok((
                b.len() as u64,
                Box::new(std::io::Cursor::new(SharedBytes(b))),
            ));
        }
        let (store, p) = (self.store.clone(), self.blob_path(d));
        let what = d.to_string();
        let got = self.bridge.run(async move {
            match store.get(&p).await {
                Ok(g) => Ok(g),
                Err(e) if not_found(&e) => Err(RegistryError::NotFound(format!("blob {what}"))),
                Err(e) => Err(storage(&format!("get {p}"), e)),
            }
        })?;
        let size = got.meta.size;
        if size as usize <= RECENT_MAX_BLOB {
            // Small: read whole, and kept for the next reader (verified as it is read).
            let body = self
                .bridge
                .run(async move { got.bytes().await.map_err(|e| storage("read", e)) })?;
            let body = Arc::new(body.to_vec());
            if Digest::of(&body) == *d {
                self.recent().keep(*d, body.clone());
            }
            return Ok((size, Box::new(std::io::Cursor::new(SharedBytes(body)))));
        }
        // The body streams through a short queue into a plain reader.
        let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(4);
        let mut stream = got.into_stream();
        self.bridge.spawn(async move {
            while let Some(b) = stream.next().await {
                let item = b
                    .map(|b| b.to_vec())
                    .map_err(|e| std::io::Error::other(e.to_string()));
                let stop = item.is_err();
                let tx = tx.clone();
                let sent = tokio::task::spawn_blocking(move || tx.send(item).is_ok())
                    .await
                    .unwrap_or(false);
                if !sent || stop {
                    return;
                }
            }
        });
        Ok((
            size,
            Box::new(ChannelReader {
                rx,
                buf: Vec::new(),
                at: 0,
                bridge: self.bridge.clone(),
            }),
        ))
    }

    fn sweep_partials(&self, older_than: std::time::Duration) -> Result<usize> {
        self.sweep_uploads(older_than)
    }
}

#[cfg(any(test, feature = "testsuite"))]
pub mod throwaway;
