//! The blob store: immutable bytes named by their sha256 digest.
//!
//! Uploads arrive in chunks into a partial file that survives restarts (so an
//! upload resumes from the last byte received); on completion the partial is
//! hashed, synced and renamed into place, so a crash never leaves a half blob
//! under a real name. Reads are verified against the digest.

mod inline;
mod local;
mod memory;
pub mod object;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

use std::io::Read;

pub use inline::{WithInlineBlobs, MAX_INLINE_BLOB, MAX_INLINE_TOTAL};
pub use local::LocalBlobStore;
pub use memory::MemoryBlobStore;
pub use object::{ObjectBlobOptions, ObjectBlobStore};

use algobay_runtime::Digest;

use crate::error::Result;

/// The blob store `--blobs` names: an `s3://` URL (upload records in `kv`), or
/// a folder at `local` when none is given.
pub fn open_blobs(
    url: Option<&str>,
    local: &std::path::Path,
    kv: std::sync::Arc<dyn crate::store::KvStore>,
    max_blob_bytes: u64,
) -> Result<std::sync::Arc<dyn BlobStore>> {
    match url {
        None | Some("") => Ok(std::sync::Arc::new(LocalBlobStore::open(
            local,
            max_blob_bytes,
        )?)),
        Some(u) => Ok(std::sync::Arc::new(ObjectBlobStore::open_url(
            u,
            kv,
            max_blob_bytes,
            None,
        )?)),
    }
}

/// Refuses an upload that claims more than `max` bytes.
pub(crate) fn within_limit(d: &Digest, size: u64, max: u64) -> Result<()> {
    if size > max {
        return Err(crate::error::RegistryError::TooLarge(format!(
            "upload of {d} claims {size} bytes, over the limit of {max} bytes"
        )));
    }
    Ok(())
}

/// The error for uploaded bytes whose sha256 is `got`, not `d`.
pub(crate) fn mismatch(d: &Digest, got: [u8; 32]) -> crate::error::RegistryError {
    crate::error::RegistryError::invalid(
        "digest",
        format!(
            "uploaded bytes hash to sha256:{}, not {d}; the upload was discarded",
            hex::encode(got)
        ),
    )
}

/// Checks a blob sent whole: within `max` bytes and hashing to `d`.
pub(crate) fn check_whole(d: &Digest, data: &[u8], max: u64) -> Result<()> {
    use sha2::Digest as _;
    within_limit(d, data.len() as u64, max)?;
    let got: [u8; 32] = sha2::Sha256::digest(data).into();
    if &got != d.as_bytes() {
        return Err(mismatch(d, got));
    }
    Ok(())
}

/// What the store knows of a digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BlobStat {
    /// The size of the stored blob, if it is stored.
    pub size: Option<u64>,
    /// Bytes of an unfinished upload received so far.
    pub received: u64,
}

/// A readable blob.
pub type BlobReader = Box<dyn Read + Send>;

/// What a blob backend provides. Calls block: use them off the async threads.
pub trait BlobStore: Send + Sync + 'static {
    fn stat(&self, digest: &Digest) -> Result<BlobStat>;
    /// Starts or resumes an upload of `size` bytes; returns the offset to continue from.
    fn begin(&self, digest: &Digest, size: u64) -> Result<u64>;
    /// Appends bytes at `offset`, which must be the bytes received so far; returns the new count.
    fn append(&self, digest: &Digest, offset: u64, data: &[u8]) -> Result<u64>;
    /// Verifies the complete upload against its digest and stores it under its name.
    fn finish(&self, digest: &Digest) -> Result<u64>;
    /// A reader over the stored blob. Callers verify as they read ([`VerifyingReader`]).
    fn open(&self, digest: &Digest) -> Result<(u64, BlobReader)>;
    /// Removes unfinished uploads untouched for longer than `older_than`;
    /// returns how many.
    fn sweep_partials(&self, older_than: std::time::Duration) -> Result<usize>;
    /// Whether the blob is stored (cheaper than [`BlobStore::stat`] where an
    /// unfinished upload's progress costs a lookup of its own).
    fn has(&self, digest: &Digest) -> Result<bool> {
        Ok(self.stat(digest)?.size.is_some())
    }
    /// The fewest bytes an append should carry to be written as it comes
    /// (an object store's part size: smaller appends are staged and read
    /// back); 0 when any size is as good. An upload may gather its chunks to
    /// this size before appending.
    fn preferred_append(&self) -> usize {
        0
    }
    /// Stores bytes in one go (verify, write, rename).
    fn put(&self, digest: &Digest, data: &[u8]) -> Result<()> {
        if self.stat(digest)?.size.is_some() {
            return Ok(());
        }
        let from = self.begin(digest, data.len() as u64)?;
        self.append(digest, from, &data[from as usize..])?;
        self.finish(digest).map(|_| ())
    }
    /// Reads and verifies a whole blob.
    fn read_all(&self, digest: &Digest) -> Result<Vec<u8>> {
        let (size, r) = self.open(digest)?;
        let mut v = Vec::with_capacity(size as usize);
        VerifyingReader::new(*digest, size, r)
            .read_to_end(&mut v)
            .map_err(|e| crate::error::RegistryError::Storage(e.to_string()))?;
        Ok(v)
    }
}

/// Hashes what passes through and fails the read that reaches the end if the
/// bytes do not match the digest (or the size).
#[allow(missing_debug_implementations)] // holds a boxed reader and a hasher state
pub struct VerifyingReader {
    digest: Digest,
    size: u64,
    seen: u64,
    hasher: sha2::Sha256,
    inner: BlobReader,
}

impl VerifyingReader {
    pub fn new(digest: Digest, size: u64, inner: BlobReader) -> Self {
        use sha2::Digest as _;
        VerifyingReader {
            digest,
            size,
            seen: 0,
            hasher: sha2::Sha256::new(),
            inner,
        }
    }
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.seen += n as u64;
        if n == 0 || self.seen > self.size {
            let got: [u8; 32] = self.hasher.clone().finalize().into();
            if self.seen != self.size || &got != self.digest.as_bytes() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "stored blob {} is corrupt: its bytes no longer match the digest",
                        self.digest
                    ),
                ));
            }
        }
        Ok(n)
    }
}
