//! Small blobs published inline with their artifact: stored in the metadata
//! store, in the same atomic batch as the artifact record, so a publish is one
//! call and one durable write. Reads look there first, then in the blob store
//! behind; uploads go to the blob store as before.

use std::sync::Arc;

use algobay_runtime::Digest;

use super::{BlobReader, BlobStat, BlobStore};
use crate::error::Result;
use crate::store::{KvStore, Tree};

/// The largest blob a publish may carry inline.
pub const MAX_INLINE_BLOB: usize = 256 * 1024;
/// The most inline bytes in one publish.
pub const MAX_INLINE_TOTAL: usize = 1024 * 1024;

/// A blob store that also finds the blobs kept inline in the metadata store.
pub struct WithInlineBlobs {
    kv: Arc<dyn KvStore>,
    inner: Arc<dyn BlobStore>,
}

impl std::fmt::Debug for WithInlineBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithInlineBlobs").finish_non_exhaustive()
    }
}

impl WithInlineBlobs {
    pub fn new(kv: Arc<dyn KvStore>, inner: Arc<dyn BlobStore>) -> WithInlineBlobs {
        WithInlineBlobs { kv, inner }
    }

    fn inline(&self, d: &Digest) -> Result<Option<Vec<u8>>> {
        self.kv.get(Tree::InlineBlobs, d.to_string().as_bytes())
    }
}

impl BlobStore for WithInlineBlobs {
    fn stat(&self, d: &Digest) -> Result<BlobStat> {
        match self.inline(d)? {
            Some(b) => Ok(BlobStat {
                size: Some(b.len() as u64),
                received: 0,
            }),
            None => self.inner.stat(d),
        }
    }

    fn begin(&self, d: &Digest, size: u64) -> Result<u64> {
        self.inner.begin(d, size)
    }

    fn append(&self, d: &Digest, offset: u64, data: &[u8]) -> Result<u64> {
        self.inner.append(d, offset, data)
    }

    fn finish(&self, d: &Digest) -> Result<u64> {
        self.inner.finish(d)
    }

    fn has(&self, d: &Digest) -> Result<bool> {
        Ok(self.inline(d)?.is_some() || self.inner.has(d)?)
    }

    fn preferred_append(&self) -> usize {
        self.inner.preferred_append()
    }

    fn sweep_partials(&self, older_than: std::time::Duration) -> Result<usize> {
        self.inner.sweep_partials(older_than)
    }

    fn open(&self, d: &Digest) -> Result<(u64, BlobReader)> {
        match self.inline(d)? {
            Some(b) => Ok((b.len() as u64, Box::new(std::io::Cursor::new(b)))),
            None => self.inner.open(d),
        }
    }

    fn put(&self, d: &Digest, data: &[u8]) -> Result<()> {
        if self.inline(d)?.is_some() {
            return Ok(());
        }
        self.inner.put(d, data)
    }
}
