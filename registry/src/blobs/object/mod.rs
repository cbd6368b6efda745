//! Blobs in an object store — S3 or any S3-compatible server, or memory —
//! through the `object_store` crate.
//!
//! A blob lives at `PREFIX/sha256/<2 hex>/<64 hex>`. A blob sent in one piece
//! is hashed first, then written create-only; a store that ignores create-only
//! writes overwrites the same bytes under the same name, which is harmless,
//! and the size is read back either way.
//!
//! A chunked upload is an S3 multipart upload whose id and parts live in the
//! metadata store ([`Tree::Uploads`]), so it resumes after a restart or through
//! another replica sharing both stores. S3 wants parts of 5 MiB or more, and
//! chunks are smaller: each chunk is first staged as an object of its own and
//! recorded; once the staged chunks reach a part's size (or the blob's end) they
//! become the next part. Every step writes the object first and the record
//! second, with a check that the record did not move meanwhile, so a crash or
//! kill anywhere leaves at most an orphan object the sweep removes, never a
//! record naming bytes that are not there. On completion the assembled object
//! is read back and hashed before it is copied to its real name.

use std::sync::Arc;

use futures::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

mod memory;

use memory::{ChannelReader, Recent, SharedBytes, RECENT_MAX_BLOB};

use super::{check_whole, mismatch, within_limit, BlobReader, BlobStat, BlobStore};
use crate::bridge::Bridge;
use crate::error::{RegistryError, Result};
use crate::store::{Batch, KvStore, Tree};
use algobay_runtime::Digest;

/// The smallest part S3 accepts (all parts but the last).
pub const MIN_PART_BYTES: u64 = 5 << 20;

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

/// A part received: the store's tag for it and its length.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Part {
    tag: String,
    len: u64,
}

/// The record of an unfinished upload.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Upload {
    size: u64,
    /// The multipart upload's id.
    id: String,
    /// Names this upload's staging objects (two uploads of one digest never share them).
    nonce: String,
    parts: Vec<Part>,
    /// Lengths of the chunks staged since the last part, in order.
    staged: Vec<u64>,
    /// Whether the parts were assembled into the staging object.
    assembled: bool,
    touched_ms: u64,
}

impl Upload {
    fn in_parts(&self) -> u64 {
        self.parts.iter().map(|p| p.len).sum()
    }
    fn received(&self) -> u64 {
        self.in_parts() + self.staged.iter().sum::<u64>()
    }
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
        if opts.part_bytes == 0 {
            return Err(RegistryError::invalid("part_bytes", "must be above 0"));
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

    /// The record and its stored bytes (for the check of the next write).
    fn record(&self, d: &Digest) -> Result<Option<(Upload, Vec<u8>)>> {
        match self.kv.get(Tree::Uploads, d.hex().as_bytes())? {
            None => Ok(None),
            Some(raw) => {
                let u = serde_json::from_slice(&raw).map_err(|e| {
                    RegistryError::Storage(format!("upload record of {d} is corrupt: {e}"))
                })?;
                Ok(Some((u, raw)))
            }
        }
    }

    /// Replaces the record if it still holds `old`; false when another writer moved it.
    fn swap(&self, d: &Digest, old: Option<Vec<u8>>, new: Option<&Upload>) -> Result<bool> {
        let key = d.hex().into_bytes();
        let batch = Batch::new().check(Tree::Uploads, key.clone(), old);
        let batch = match new {
            Some(u) => batch.put(
                Tree::Uploads,
                key,
                serde_json::to_vec(u).map_err(|e| storage("record", e))?,
            ),
            None => batch.delete(Tree::Uploads, key),
        };
        self.kv.commit(batch)
    }

    fn moved(d: &Digest) -> RegistryError {
        RegistryError::FailedPrecondition(format!(
            "the upload of {d} moved on meanwhile (another connection is sending it); ask where to resume"
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

    /// Removes an upload's objects and its multipart upload (best effort).
    fn discard(&self, d: &Digest, u: &Upload) {
        let store = self.store.clone();
        let whole = self.whole_path(d, u);
        let mut chunks = Vec::new();
        let mut at = u.in_parts();
        for len in &u.staged {
            chunks.push(self.chunk_path(d, u, at));
            at += len;
        }
        let id = u.id.clone();
        let assembled = u.assembled;
        let _ = self.bridge.run(async move {
            for c in chunks {
                let _ = store.delete(&c).await;
            }
            if !assembled {
                let _ = store.abort_multipart(&whole, &id).await;
            }
            let _ = store.delete(&whole).await;
            Ok(())
        });
    }

    /// Reads the staged chunks back, in order, as one part.
    fn gather(&self, d: &Digest, u: &Upload, last: Option<&[u8]>) -> Result<Vec<u8>> {
        let mut paths = Vec::new();
        let mut at = u.in_parts();
        for len in &u.staged {
            paths.push((self.chunk_path(d, u, at), *len));
            at += len;
        }
        let store = self.store.clone();
        let mut out = self.bridge.run(async move {
            let mut out = Vec::new();
            for (p, len) in paths {
                let b = store
                    .get(&p)
                    .await
                    .map_err(|e| storage(&format!("get {p}"), e))?
                    .bytes()
                    .await
                    .map_err(|e| storage(&format!("get {p}"), e))?;
                if b.len() as u64 != len {
                    return Err(RegistryError::Storage(format!(
                        "staged chunk {p} has {} bytes, not {len}",
                        b.len()
                    )));
                }
                out.extend_from_slice(&b);
            }
            Ok(out)
        })?;
        if let Some(last) = last {
            out.extend_from_slice(last);
        }
        Ok(out)
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
            received: self.record(d)?.map(|(u, _)| u.received()).unwrap_or(0),
        })
    }

    fn begin(&self, d: &Digest, size: u64) -> Result<u64> {
        within_limit(d, size, self.opts.max_blob_bytes)?;
        loop {
            if let Some((u, _)) = self.record(d)? {
                if u.size != size {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "an upload of {d} with {} bytes is in progress; this one claims {size}",
                        u.size
                    )));
                }
                return Ok(u.received());
            }
            let mut u = Upload {
                size,
                id: String::new(),
                nonce: hex::encode(rand::random::<[u8; 8]>()),
                parts: Vec::new(),
                staged: Vec::new(),
                assembled: false,
                touched_ms: now_ms(),
            };
            let store = self.store.clone();
            let whole = self.whole_path(d, &u);
            u.id = self.bridge.run(async move {
                store
                    .create_multipart(&whole)
                    .await
                    .map_err(|e| storage(&format!("create multipart upload {whole}"), e))
            })?;
            if self.swap(d, None, Some(&u))? {
                return Ok(0);
            }
            // Another connection began the same upload first: use that one.
            self.discard(d, &u);
        }
    }

    fn append(&self, d: &Digest, offset: u64, data: &[u8]) -> Result<u64> {
        let (mut u, raw) = self.record(d)?.ok_or_else(|| {
            RegistryError::FailedPrecondition(format!("no upload of {d} is in progress"))
        })?;
        let received = u.received();
        if offset != received {
            return Err(RegistryError::FailedPrecondition(format!(
                "chunk for {d} starts at byte {offset}, but {received} bytes have been received"
            )));
        }
        if received + data.len() as u64 > u.size {
            return Err(RegistryError::invalid(
                "data",
                format!(
                    "chunks of {d} run past its declared size of {} bytes",
                    u.size
                ),
            ));
        }
        if data.is_empty() {
            return Ok(received);
        }
        let after = received + data.len() as u64;
        let staged: u64 = u.staged.iter().sum();
        let old_chunks: Vec<Path> = {
            let mut at = u.in_parts();
            u.staged
                .iter()
                .map(|len| {
                    let p = self.chunk_path(d, &u, at);
                    at += len;
                    p
                })
                .collect()
        };
        if staged + data.len() as u64 >= self.opts.part_bytes || after == u.size {
            // The staged chunks and this one make the next part.
            let body = self.gather(d, &u, Some(data))?;
            let idx = u.parts.len();
            let (store, whole, id) = (self.store.clone(), self.whole_path(d, &u), u.id.clone());
            let len = body.len() as u64;
            let PartId { content_id } = self.bridge.run(async move {
                store
                    .put_part(&whole, &id, idx, PutPayload::from(body))
                    .await
                    .map_err(|e| storage(&format!("part {idx} of {whole}"), e))
            })?;
            u.parts.push(Part {
                tag: content_id,
                len,
            });
            u.staged.clear();
        } else {
            let (store, p, body) = (
                self.store.clone(),
                self.chunk_path(d, &u, received),
                data.to_vec(),
            );
            self.bridge.run(async move {
                store
                    .put(&p, PutPayload::from(body))
                    .await
                    .map(|_| ())
                    .map_err(|e| storage(&format!("put {p}"), e))
            })?;
            u.staged.push(data.len() as u64);
        }
        u.touched_ms = now_ms();
        if !self.swap(d, Some(raw), Some(&u))? {
            return Err(Self::moved(d));
        }
        if u.staged.is_empty() && !old_chunks.is_empty() {
            let store = self.store.clone();
            self.bridge.spawn(async move {
                for c in old_chunks {
                    let _ = store.delete(&c).await;
                }
            });
        }
        Ok(after)
    }

    fn finish(&self, d: &Digest) -> Result<u64> {
        if let Some(size) = self.head_size(self.blob_path(d))? {
            return Ok(size);
        }
        let (mut u, mut raw) = self.record(d)?.ok_or_else(|| {
            RegistryError::FailedPrecondition(format!("no upload of {d} is in progress"))
        })?;
        let received = u.received();
        if received != u.size {
            return Err(RegistryError::FailedPrecondition(format!(
                "upload of {d} has {received} of {} bytes",
                u.size
            )));
        }
        let whole = self.whole_path(d, &u);
        if !u.assembled {
            let store = self.store.clone();
            let (w, id) = (whole.clone(), u.id.clone());
            let parts: Vec<PartId> = u
                .parts
                .iter()
                .map(|p| PartId {
                    content_id: p.tag.clone(),
                })
                .collect();
            let empty = u.size == 0;
            self.bridge.run(async move {
                if empty {
                    // S3 wants at least one part; nothing to assemble.
                    let _ = store.abort_multipart(&w, &id).await;
                    store.put(&w, PutPayload::default()).await.map(|_| ())
                } else {
                    store.complete_multipart(&w, &id, parts).await.map(|_| ())
                }
                .map_err(|e| storage(&format!("complete {w}"), e))
            })?;
            u.assembled = true;
            let new_raw = serde_json::to_vec(&u).map_err(|e| storage("record", e))?;
            if !self.swap(d, Some(raw), Some(&u))? {
                return Err(Self::moved(d));
            }
            raw = new_raw;
        }
        // Read it back: the bytes must hash to the digest before they get its name.
        let store = self.store.clone();
        let w = whole.clone();
        let (got, len) = self.bridge.run(async move {
            let mut s = store
                .get(&w)
                .await
                .map_err(|e| storage(&format!("get {w}"), e))?
                .into_stream();
            let mut h = sha2::Sha256::new();
            let mut len = 0u64;
            while let Some(b) = s.next().await {
                let b = b.map_err(|e| storage(&format!("read {w}"), e))?;
                len += b.len() as u64;
                h.update(&b);
            }
            let got: [u8; 32] = h.finalize().into();
            Ok((got, len))
        })?;
        if &got != d.as_bytes() || len != u.size {
            if self.swap(d, Some(raw), None)? {
                self.discard(d, &u);
            }
            return Err(mismatch(d, got));
        }
        let (store, dest) = (self.store.clone(), self.blob_path(d));
        let w = whole.clone();
        self.bridge.run(async move {
            store
                .copy(&w, &dest)
                .await
                .map_err(|e| storage(&format!("copy {w} to {dest}"), e))
        })?;
        match self.head_size(self.blob_path(d))? {
            Some(s) if s == u.size => {}
            other => {
                return Err(RegistryError::Storage(format!(
                    "object store: {d} reads back as {other:?} bytes after the copy, not {}",
                    u.size
                )))
            }
        }
        if self.swap(d, Some(raw), None)? {
            self.discard(d, &u);
        }
        Ok(u.size)
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
        let limit = now_ms().saturating_sub(older_than.as_millis() as u64);
        let mut removed = 0;
        for (key, raw) in self.kv.scan_prefix(Tree::Uploads, b"")? {
            let Ok(u) = serde_json::from_slice::<Upload>(&raw) else {
                continue;
            };
            let Some(d) = std::str::from_utf8(&key)
                .ok()
                .and_then(|h| format!("sha256:{h}").parse::<Digest>().ok())
            else {
                continue;
            };
            if u.touched_ms <= limit && self.swap(&d, Some(raw), None)? {
                self.discard(&d, &u);
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(any(test, feature = "testsuite"))]
pub mod throwaway;
