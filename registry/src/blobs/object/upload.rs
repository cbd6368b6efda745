//! Chunked uploads into an object store: S3 multipart uploads whose id,
//! parts and running SHA-256 live in the metadata store ([`Tree::Uploads`]).
//!
//! An upload assembles at the blob's own name. A chunk of the part size or
//! more becomes the next part as it comes; smaller chunks are staged as
//! objects of their own until they make a part (S3 wants parts of 5 MiB or
//! more). Each part's bytes advance the SHA-256 kept in the record, so at the
//! end the digest of everything received is known: the upload completes only
//! when it matches, and nothing is read back or copied. Records of earlier
//! versions (assembled at a staging name, without a hash) finish the old way:
//! the assembled object is read back and hashed, then copied to its name.
//!
//! Every step writes the object first and the record second, with a check
//! that the record did not move meanwhile, so a crash or kill anywhere leaves
//! at most an orphan object or an open multipart upload the sweep removes,
//! never a record naming bytes that are not there, and never a blob under its
//! name whose bytes were not verified.

use futures::StreamExt;
use object_store::multipart::PartId;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::hashing::HashState;
use super::{mismatch, now_ms, storage, ObjectBlobStore};
use crate::blobs::within_limit;
use crate::error::{RegistryError, Result};
use crate::store::{Batch, Tree};
use algobay_runtime::Digest;

/// A part received: the store's tag for it and its length.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(super) struct Part {
    tag: String,
    len: u64,
}

/// The record of an unfinished upload.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(super) struct Upload {
    size: u64,
    /// The multipart upload's id.
    id: String,
    /// Names this upload's staging objects (two uploads of one digest never share them).
    pub(super) nonce: String,
    parts: Vec<Part>,
    /// Lengths of the chunks staged since the last part, in order.
    staged: Vec<u64>,
    /// Whether the parts were assembled (the multipart upload completed).
    assembled: bool,
    touched_ms: u64,
    /// SHA-256 of the bytes in `parts`; with it the upload assembles at the
    /// blob's name. Without (a record of an earlier version), at a staging
    /// name, hashed by reading it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hash: Option<HashState>,
}

impl Upload {
    fn in_parts(&self) -> u64 {
        self.parts.iter().map(|p| p.len).sum()
    }
    fn received(&self) -> u64 {
        self.in_parts() + self.staged.iter().sum::<u64>()
    }
}

impl ObjectBlobStore {
    /// Where the multipart upload assembles.
    fn target(&self, d: &Digest, u: &Upload) -> Path {
        if u.hash.is_some() {
            self.blob_path(d)
        } else {
            self.whole_path(d, u)
        }
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

    /// Bytes of an unfinished upload received so far.
    pub(super) fn upload_received(&self, d: &Digest) -> Result<u64> {
        Ok(self.record(d)?.map(|(u, _)| u.received()).unwrap_or(0))
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

    /// Removes an upload's staged objects and its multipart upload (best
    /// effort). The blob's own name is never deleted: an upload that
    /// assembles there completes only with verified bytes.
    fn discard(&self, d: &Digest, u: &Upload) {
        let store = self.store.clone();
        let target = self.target(d, u);
        let staging = u.hash.is_none().then(|| self.whole_path(d, u));
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
                let _ = store.abort_multipart(&target, &id).await;
            }
            if let Some(w) = staging {
                let _ = store.delete(&w).await;
            }
            Ok(())
        });
    }

    /// Reads the staged chunks back, in order, followed by `last`, as one part.
    fn gather(&self, d: &Digest, u: &Upload, last: &[u8]) -> Result<Vec<u8>> {
        let mut paths = Vec::new();
        let mut at = u.in_parts();
        for len in &u.staged {
            paths.push((self.chunk_path(d, u, at), *len));
            at += len;
        }
        if paths.is_empty() {
            return Ok(last.to_vec());
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
        out.extend_from_slice(last);
        Ok(out)
    }

    pub(super) fn begin_upload(&self, d: &Digest, size: u64) -> Result<u64> {
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
                hash: Some(HashState::default()),
            };
            let store = self.store.clone();
            let target = self.target(d, &u);
            u.id = self.bridge.run(async move {
                store
                    .create_multipart(&target)
                    .await
                    .map_err(|e| storage(&format!("create multipart upload {target}"), e))
            })?;
            if self.swap(d, None, Some(&u))? {
                return Ok(0);
            }
            // Another connection began the same upload first: use that one.
            self.discard(d, &u);
        }
    }

    pub(super) fn append_upload(&self, d: &Digest, offset: u64, data: &[u8]) -> Result<u64> {
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
            // The staged chunks (if any) and this one make the next part.
            let body = self.gather(d, &u, data)?;
            if let Some(h) = &mut u.hash {
                h.update(&body).map_err(|e| {
                    RegistryError::Storage(format!("upload record of {d} is corrupt: {e}"))
                })?;
            }
            let idx = u.parts.len();
            let (store, target, id) = (self.store.clone(), self.target(d, &u), u.id.clone());
            let len = body.len() as u64;
            let PartId { content_id } = self.bridge.run(async move {
                store
                    .put_part(&target, &id, idx, PutPayload::from(body))
                    .await
                    .map_err(|e| storage(&format!("part {idx} of {target}"), e))
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

    pub(super) fn finish_upload(&self, d: &Digest) -> Result<u64> {
        if let Some(size) = self.head_size(self.blob_path(d))? {
            return Ok(size);
        }
        let (u, raw) = self.record(d)?.ok_or_else(|| {
            RegistryError::FailedPrecondition(format!("no upload of {d} is in progress"))
        })?;
        let received = u.received();
        if received != u.size {
            return Err(RegistryError::FailedPrecondition(format!(
                "upload of {d} has {received} of {} bytes",
                u.size
            )));
        }
        match &u.hash {
            Some(h) => self.finish_hashed(d, &u, raw, h),
            None => self.finish_read_back(d, u, raw),
        }
    }

    /// Completes the multipart upload at `target` from its recorded parts
    /// (S3 wants at least one part: an empty blob is written whole).
    fn complete(&self, target: Path, u: &Upload) -> Result<()> {
        let store = self.store.clone();
        let id = u.id.clone();
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
                let _ = store.abort_multipart(&target, &id).await;
                store.put(&target, PutPayload::default()).await.map(|_| ())
            } else {
                store
                    .complete_multipart(&target, &id, parts)
                    .await
                    .map(|_| ())
            }
            .map_err(|e| storage(&format!("complete {target}"), e))
        })
    }

    /// Completes an upload whose bytes were hashed as they came, at the
    /// blob's name, when they hash to `d`.
    fn finish_hashed(&self, d: &Digest, u: &Upload, raw: Vec<u8>, h: &HashState) -> Result<u64> {
        let got = h
            .finish()
            .map_err(|e| RegistryError::Storage(format!("upload record of {d} is corrupt: {e}")))?;
        if &got != d.as_bytes() || h.len() != u.size {
            if self.swap(d, Some(raw), None)? {
                self.discard(d, u);
            }
            return Err(mismatch(d, got));
        }
        self.complete(self.blob_path(d), u)?;
        match self.head_size(self.blob_path(d))? {
            Some(s) if s == u.size => {}
            other => {
                return Err(RegistryError::Storage(format!(
                    "object store: {d} reads back as {other:?} bytes after its upload, not {}",
                    u.size
                )))
            }
        }
        // Done: the record goes (its multipart upload is complete, nothing to abort).
        let _ = self.swap(d, Some(raw), None)?;
        Ok(u.size)
    }

    /// Completes an upload of an earlier version: assembled at a staging
    /// name, read back and hashed, then copied to the blob's name.
    fn finish_read_back(&self, d: &Digest, mut u: Upload, mut raw: Vec<u8>) -> Result<u64> {
        let whole = self.whole_path(d, &u);
        if !u.assembled {
            self.complete(whole.clone(), &u)?;
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

    pub(super) fn sweep_uploads(&self, older_than: std::time::Duration) -> Result<usize> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use super::*;
    use crate::blobs::{BlobStore, ObjectBlobOptions};
    use crate::store::{KvStore, MemoryStore};

    fn store() -> (ObjectBlobStore, Arc<dyn KvStore>) {
        let kv: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        let opts = ObjectBlobOptions {
            max_blob_bytes: 1 << 30,
            part_bytes: 64 << 10,
            prefix: "t".into(),
        };
        let objects = Arc::new(object_store::memory::InMemory::new());
        (ObjectBlobStore::new(objects, kv.clone(), opts).unwrap(), kv)
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len as u32).map(|i| (i * 7 + i / 300) as u8).collect()
    }

    #[test]
    fn an_upload_recorded_by_an_earlier_version_finishes_by_reading_back() {
        let (s, kv) = store();
        let bytes = data(150 << 10);
        let d = Digest::of(&bytes);
        // The record as an earlier version wrote it: no hash, assembling at a
        // staging name.
        let mut u = Upload {
            size: bytes.len() as u64,
            id: String::new(),
            nonce: "0011223344556677".into(),
            parts: Vec::new(),
            staged: Vec::new(),
            assembled: false,
            touched_ms: now_ms(),
            hash: None,
        };
        let (objects, whole) = (s.store.clone(), s.whole_path(&d, &u));
        u.id = s
            .bridge
            .run(async move { Ok(objects.create_multipart(&whole).await.unwrap()) })
            .unwrap();
        let raw = serde_json::to_vec(&u).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("hash"));
        kv.commit(Batch::new().put(Tree::Uploads, d.hex().into_bytes(), raw))
            .unwrap();
        let mut at = s.begin(&d, bytes.len() as u64).unwrap();
        for piece in bytes.chunks(40 << 10) {
            at = s.append(&d, at, piece).unwrap();
        }
        assert_eq!(s.finish(&d).unwrap(), bytes.len() as u64);
        assert!(s.read_all(&d).unwrap() == bytes);
        assert_eq!(s.upload_received(&d).unwrap(), 0, "the record is gone");
    }

    #[test]
    fn a_record_left_by_a_crash_after_completion_is_swept_and_the_blob_kept() {
        let (s, kv) = store();
        let bytes = data(200 << 10);
        let d = Digest::of(&bytes);
        let mut at = s.begin(&d, bytes.len() as u64).unwrap();
        for piece in bytes.chunks(70 << 10) {
            at = s.append(&d, at, piece).unwrap();
        }
        // The process dies between completing the upload and removing its record.
        let left = kv.get(Tree::Uploads, d.hex().as_bytes()).unwrap().unwrap();
        assert_eq!(s.finish(&d).unwrap(), bytes.len() as u64);
        kv.commit(Batch::new().put(Tree::Uploads, d.hex().into_bytes(), left))
            .unwrap();
        // Finishing again answers from the blob; the sweep removes the record only.
        assert_eq!(s.finish(&d).unwrap(), bytes.len() as u64);
        assert_eq!(s.sweep_partials(std::time::Duration::ZERO).unwrap(), 1);
        assert!(s.read_all(&d).unwrap() == bytes);
    }

    #[test]
    fn parts_hash_as_they_come_and_an_upload_that_is_not_its_digest_leaves_no_blob() {
        let (s, _) = store();
        let bytes = data(300 << 10);
        let claimed = Digest::of(b"something else");
        let mut at = s.begin(&claimed, bytes.len() as u64).unwrap();
        for piece in bytes.chunks(100 << 10) {
            at = s.append(&claimed, at, piece).unwrap();
        }
        let err = s.finish(&claimed).unwrap_err().to_string();
        assert!(
            err.contains(&format!("hash to {}", Digest::of(&bytes))),
            "{err}"
        );
        assert_eq!(s.stat(&claimed).unwrap().size, None);
        assert!(s.open(&claimed).is_err());
    }
}
