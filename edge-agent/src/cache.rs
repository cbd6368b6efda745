//! The content-addressed blob cache every kit on the device shares: a blob is
//! stored once under its digest, downloads resume from a `.partial` file, and
//! nothing gets its name before its digest is checked.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use algobay_runtime::Digest;

use crate::error::{io, Result};

/// Blobs under `<data>/blobs/sha256/<hex>`.
#[derive(Clone, Debug)]
pub struct BlobCache {
    dir: PathBuf,
}

impl BlobCache {
    pub fn open(data: &Path) -> Result<BlobCache> {
        let dir = data.join("blobs").join("sha256");
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        Ok(BlobCache { dir })
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.dir.join(d.hex())
    }

    pub fn has(&self, d: &Digest) -> bool {
        self.path(d).exists()
    }

    /// The blob's bytes, checked against its digest.
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>> {
        let p = self.path(d);
        let bytes = std::fs::read(&p).map_err(|e| io(&p, e))?;
        d.verify(&p.display().to_string(), &bytes)?;
        Ok(bytes)
    }

    /// Stores a blob that came another way (an OCI mirror), after checking
    /// it against its digest; written whole and synced before it is named.
    pub fn put(&self, d: &Digest, bytes: &[u8]) -> Result<()> {
        if self.has(d) {
            return Ok(());
        }
        let p = self.path(d);
        d.verify(&p.display().to_string(), bytes)?;
        crate::error::write_atomic(&p, bytes, false)
    }

    /// Bytes of an unfinished download of the blob.
    pub fn partial_len(&self, d: &Digest) -> u64 {
        std::fs::metadata(format!("{}.partial", self.path(d).display()))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Fetches the blob unless it is here, resuming an interrupted download.
    /// Returns the bytes sent over the wire.
    pub async fn fetch(&self, client: &algobay_sdk::Client, d: &Digest) -> Result<u64> {
        if self.has(d) {
            return Ok(0);
        }
        let before = self.partial_len(d);
        let total = client
            .download_to(&d.to_string(), &self.path(d), algobay_sdk::no_progress())
            .await?;
        Ok(total.saturating_sub(before))
    }

    /// Deletes blobs (and abandoned partial downloads) outside `keep` that are
    /// older than `grace`; returns how many bytes it freed.
    pub fn gc(&self, keep: &BTreeSet<Digest>, grace: Duration) -> Result<u64> {
        let keep: BTreeSet<String> = keep.iter().map(Digest::hex).collect();
        let now = SystemTime::now();
        let mut freed = 0;
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))? {
            let entry = entry.map_err(|e| io(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let hex = name.trim_end_matches(".partial");
            if keep.contains(hex) {
                continue;
            }
            let meta = entry.metadata().map_err(|e| io(&entry.path(), e))?;
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            if age >= grace {
                std::fs::remove_file(entry.path()).map_err(|e| io(&entry.path(), e))?;
                freed += meta.len();
                tracing::info!(blob = %name, bytes = meta.len(), "blob collected");
            }
        }
        Ok(freed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn garbage_collection_keeps_used_and_young_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::open(dir.path()).unwrap();
        let put = |data: &[u8]| {
            let d = Digest::of(data);
            std::fs::write(cache.path(&d), data).unwrap();
            d
        };
        let used = put(b"used by the active kit");
        let unused = put(b"used by nothing");
        let abandoned = Digest::of(b"a download nobody finished");
        std::fs::write(
            format!("{}.partial", cache.path(&abandoned).display()),
            b"half",
        )
        .unwrap();
        let keep: BTreeSet<Digest> = [used].into();

        // Within the grace period nothing goes.
        assert_eq!(cache.gc(&keep, Duration::from_secs(3600)).unwrap(), 0);
        assert!(cache.has(&unused));
        // Past it, what no kit uses goes; what one uses stays and still verifies.
        let freed = cache.gc(&keep, Duration::ZERO).unwrap();
        assert_eq!(freed, b"used by nothing".len() as u64 + 4);
        assert!(!cache.has(&unused) && cache.partial_len(&abandoned) == 0);
        assert_eq!(cache.read(&used).unwrap(), b"used by the active kit");
    }

    #[test]
    fn a_corrupted_cached_blob_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::open(dir.path()).unwrap();
        let d = Digest::of(b"original");
        std::fs::write(cache.path(&d), b"tampered").unwrap();
        let err = cache.read(&d).unwrap_err().to_string();
        assert!(err.contains("digest"), "{err}");
    }
}
