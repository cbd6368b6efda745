use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use super::{check_whole, mismatch, within_limit, BlobReader, BlobStat, BlobStore};
use algobay_runtime::Digest;

use crate::error::{RegistryError, Result};

/// Blobs as files under a folder: `sha256/<2 hex>/<64 hex>`, partial uploads in `uploads/`.
#[derive(Debug)]
pub struct LocalBlobStore {
    root: PathBuf,
    max_blob_bytes: u64,
}

fn io(path: &Path, e: std::io::Error) -> RegistryError {
    RegistryError::Storage(format!("{}: {e}", path.display()))
}

impl LocalBlobStore {
    /// Opens (or creates) the store; blobs larger than `max_blob_bytes` are refused.
    pub fn open(root: &Path, max_blob_bytes: u64) -> Result<LocalBlobStore> {
        for d in ["sha256", "uploads"] {
            std::fs::create_dir_all(root.join(d)).map_err(|e| io(root, e))?;
        }
        // A whole-blob write cut short by a crash is never resumed: drop it.
        let uploads = root.join("uploads");
        for entry in std::fs::read_dir(&uploads).map_err(|e| io(&uploads, e))? {
            let path = entry.map_err(|e| io(&uploads, e))?.path();
            if path.extension().is_some_and(|x| x == "whole") {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(LocalBlobStore {
            root: root.to_path_buf(),
            max_blob_bytes,
        })
    }

    fn path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.root.join("sha256").join(&hex[..2]).join(hex)
    }

    fn partial(&self, d: &Digest) -> PathBuf {
        self.root
            .join("uploads")
            .join(format!("{}.partial", d.hex()))
    }

    fn size_file(&self, d: &Digest) -> PathBuf {
        self.root.join("uploads").join(format!("{}.size", d.hex()))
    }

    fn declared_size(&self, d: &Digest) -> Result<Option<u64>> {
        match std::fs::read_to_string(self.size_file(d)) {
            Ok(s) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| RegistryError::Storage(format!("upload record of {d} is corrupt"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&self.size_file(d), e)),
        }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io(dir, e))
}

impl BlobStore for LocalBlobStore {
    fn sweep_partials(&self, older_than: std::time::Duration) -> Result<usize> {
        let dir = self.root.join("uploads");
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        for entry in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let Some(hex) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".partial"))
                .map(str::to_owned)
            else {
                continue;
            };
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default();
            if age >= older_than {
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(dir.join(format!("{hex}.size")));
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn stat(&self, d: &Digest) -> Result<BlobStat> {
        if let Ok(m) = std::fs::metadata(self.path(d)) {
            return Ok(BlobStat {
                size: Some(m.len()),
                received: m.len(),
            });
        }
        let received = std::fs::metadata(self.partial(d))
            .map(|m| m.len())
            .unwrap_or(0);
        Ok(BlobStat {
            size: None,
            received,
        })
    }

    fn begin(&self, d: &Digest, size: u64) -> Result<u64> {
        within_limit(d, size, self.max_blob_bytes)?;
        match self.declared_size(d)? {
            Some(s) if s != size => {
                return Err(RegistryError::FailedPrecondition(format!(
                    "an upload of {d} with {s} bytes is in progress; this one claims {size}"
                )))
            }
            Some(_) => {}
            None => {
                let p = self.size_file(d);
                std::fs::write(&p, size.to_string()).map_err(|e| io(&p, e))?;
            }
        }
        let partial = self.partial(d);
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&partial)
            .map_err(|e| io(&partial, e))?;
        let len = f.metadata().map_err(|e| io(&partial, e))?.len();
        if len > size {
            // Longer than declared: the partial is useless; start over.
            f.set_len(0).map_err(|e| io(&partial, e))?;
            return Ok(0);
        }
        Ok(len)
    }

    fn append(&self, d: &Digest, offset: u64, data: &[u8]) -> Result<u64> {
        let size = self.declared_size(d)?.ok_or_else(|| {
            RegistryError::FailedPrecondition(format!("no upload of {d} is in progress"))
        })?;
        let partial = self.partial(d);
        let mut f = OpenOptions::new()
            .append(true)
            .open(&partial)
            .map_err(|e| io(&partial, e))?;
        let len = f.metadata().map_err(|e| io(&partial, e))?.len();
        if offset != len {
            return Err(RegistryError::FailedPrecondition(format!(
                "chunk for {d} starts at byte {offset}, but {len} bytes have been received"
            )));
        }
        if len + data.len() as u64 > size {
            return Err(RegistryError::invalid(
                "data",
                format!("chunks of {d} run past its declared size of {size} bytes"),
            ));
        }
        f.write_all(data).map_err(|e| io(&partial, e))?;
        Ok(len + data.len() as u64)
    }

    fn finish(&self, d: &Digest) -> Result<u64> {
        let dest = self.path(d);
        if let Ok(m) = std::fs::metadata(&dest) {
            return Ok(m.len());
        }
        let size = self.declared_size(d)?.ok_or_else(|| {
            RegistryError::FailedPrecondition(format!("no upload of {d} is in progress"))
        })?;
        let partial = self.partial(d);
        let mut f = File::open(&partial).map_err(|e| io(&partial, e))?;
        let len = f.metadata().map_err(|e| io(&partial, e))?.len();
        if len != size {
            return Err(RegistryError::FailedPrecondition(format!(
                "upload of {d} has {len} of {size} bytes"
            )));
        }
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(|e| io(&partial, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let got: [u8; 32] = h.finalize().into();
        if &got != d.as_bytes() {
            let _ = std::fs::remove_file(&partial);
            let _ = std::fs::remove_file(self.size_file(d));
            return Err(mismatch(d, got));
        }
        f.sync_all().map_err(|e| io(&partial, e))?;
        let dir = dest.parent().expect("blob path has a parent");
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        std::fs::rename(&partial, &dest).map_err(|e| io(&dest, e))?;
        sync_dir(dir)?;
        let _ = std::fs::remove_file(self.size_file(d));
        Ok(size)
    }

    /// A whole blob in one go: hashed in memory, written under a name of its
    /// own in `uploads/` (so it never meets a chunked upload of the same
    /// digest), synced, renamed into place.
    fn put(&self, d: &Digest, data: &[u8]) -> Result<()> {
        let dest = self.path(d);
        if dest.exists() {
            return Ok(());
        }
        check_whole(d, data, self.max_blob_bytes)?;
        let tmp =
            self.root
                .join("uploads")
                .join(format!("{}.{}.whole", d.hex(), rand::random::<u64>()));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&tmp, e));
        }
        let dir = dest.parent().expect("blob path has a parent");
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        std::fs::rename(&tmp, &dest).map_err(|e| io(&dest, e))?;
        sync_dir(dir)
    }

    fn open(&self, d: &Digest) -> Result<(u64, BlobReader)> {
        let p = self.path(d);
        let mut f = File::open(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RegistryError::NotFound(format!("blob {d}")),
            _ => io(&p, e),
        })?;
        let size = f.metadata().map_err(|e| io(&p, e))?.len();
        f.seek(SeekFrom::Start(0)).map_err(|e| io(&p, e))?;
        Ok((
            size,
            Box::new(std::io::BufReader::with_capacity(1 << 20, f)),
        ))
    }
}
