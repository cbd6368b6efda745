use std::collections::HashMap;
use std::sync::Mutex;

use sha2::Digest as _;

use super::{mismatch, within_limit, BlobReader, BlobStat, BlobStore};
use algobay_runtime::Digest;

use crate::error::{RegistryError, Result};

/// Blobs in memory: for tests.
#[derive(Debug)]
pub struct MemoryBlobStore {
    max_blob_bytes: u64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    blobs: HashMap<Digest, std::sync::Arc<Vec<u8>>>,
    uploads: HashMap<Digest, (u64, Vec<u8>)>,
    /// When each upload last received bytes.
    touched: HashMap<Digest, std::time::Instant>,
}

impl MemoryBlobStore {
    pub fn new(max_blob_bytes: u64) -> Self {
        MemoryBlobStore {
            max_blob_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| RegistryError::Storage("memory blob store lock poisoned".into()))
    }
}

impl BlobStore for MemoryBlobStore {
    fn sweep_partials(&self, older_than: std::time::Duration) -> Result<usize> {
        let mut i = self.lock()?;
        let stale: Vec<Digest> = i
            .touched
            .iter()
            .filter(|(_, t)| t.elapsed() >= older_than)
            .map(|(d, _)| *d)
            .collect();
        for d in &stale {
            i.touched.remove(d);
            i.uploads.remove(d);
        }
        Ok(stale.len())
    }

    fn stat(&self, d: &Digest) -> Result<BlobStat> {
        let i = self.lock()?;
        if let Some(b) = i.blobs.get(d) {
            return Ok(BlobStat {
                size: Some(b.len() as u64),
                received: b.len() as u64,
            });
        }
        Ok(BlobStat {
            size: None,
            received: i.uploads.get(d).map_or(0, |(_, v)| v.len() as u64),
        })
    }

    fn begin(&self, d: &Digest, size: u64) -> Result<u64> {
        within_limit(d, size, self.max_blob_bytes)?;
        let mut i = self.lock()?;
        i.touched.insert(*d, std::time::Instant::now());
        let (declared, data) = i.uploads.entry(*d).or_insert((size, Vec::new()));
        if *declared != size {
            return Err(RegistryError::FailedPrecondition(format!(
                "an upload of {d} with {declared} bytes is in progress; this one claims {size}"
            )));
        }
        Ok(data.len() as u64)
    }

    fn append(&self, d: &Digest, offset: u64, chunk: &[u8]) -> Result<u64> {
        let mut i = self.lock()?;
        i.touched.insert(*d, std::time::Instant::now());
        let (size, data) = i.uploads.get_mut(d).ok_or_else(|| {
            RegistryError::FailedPrecondition(format!("no upload of {d} is in progress"))
        })?;
        if offset != data.len() as u64 {
            return Err(RegistryError::FailedPrecondition(format!(
                "chunk for {d} starts at byte {offset}, but {} bytes have been received",
                data.len()
            )));
        }
        if data.len() as u64 + chunk.len() as u64 > *size {
            return Err(RegistryError::invalid(
                "data",
                format!("chunks of {d} run past its declared size of {size} bytes"),
            ));
        }
        data.extend_from_slice(chunk);
        Ok(data.len() as u64)
    }

    fn finish(&self, d: &Digest) -> Result<u64> {
        let mut i = self.lock()?;
        if let Some(b) = i.blobs.get(d) {
            return Ok(b.len() as u64);
        }
        i.touched.remove(d);
        let (size, data) = i.uploads.remove(d).ok_or_else(|| {
            RegistryError::FailedPrecondition(format!("no upload of {d} is in progress"))
        })?;
        if data.len() as u64 != size {
            let have = data.len();
            i.uploads.insert(*d, (size, data));
            return Err(RegistryError::FailedPrecondition(format!(
                "upload of {d} has {have} of {size} bytes"
            )));
        }
        let got: [u8; 32] = sha2::Sha256::digest(&data).into();
        if &got != d.as_bytes() {
            return Err(mismatch(d, got));
        }
        i.blobs.insert(*d, std::sync::Arc::new(data));
        Ok(size)
    }

    fn open(&self, d: &Digest) -> Result<(u64, BlobReader)> {
        let i = self.lock()?;
        let b = i
            .blobs
            .get(d)
            .ok_or_else(|| RegistryError::NotFound(format!("blob {d}")))?
            .clone();
        let len = b.len() as u64;
        Ok((len, Box::new(std::io::Cursor::new(ArcBytes(b)))))
    }
}

struct ArcBytes(std::sync::Arc<Vec<u8>>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
