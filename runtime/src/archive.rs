//! The kit file: a tar of `manifest.json`, `signatures/<key id>.json` and
//! `blobs/sha256/<hex>`, read defensively and verified before anything runs.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::sign::{PublicKey, Signature, TrustRoots};

/// Size limits applied while reading a kit file.
#[derive(Clone, Copy, Debug)]
pub struct ReadLimits {
    /// Largest `manifest.json` or signature entry.
    pub max_metadata_bytes: u64,
    /// Largest single blob.
    pub max_blob_bytes: u64,
    /// Largest sum of all entries.
    pub max_total_bytes: u64,
    /// Most entries in the archive.
    pub max_entries: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_metadata_bytes: 4 << 20,
            max_blob_bytes: 4 << 30,
            max_total_bytes: 8 << 30,
            max_entries: 10_000,
        }
    }
}

/// A kit file's contents, digests checked, signatures not yet judged.
#[derive(Clone)]
pub struct KitArchive {
    pub manifest: Manifest,
    /// The exact bytes of `manifest.json` (canonical).
    pub manifest_bytes: Vec<u8>,
    pub signatures: Vec<Signature>,
    pub blobs: BTreeMap<Digest, Arc<Vec<u8>>>,
}

impl std::fmt::Debug for KitArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KitArchive")
            .field("kit", &self.manifest.reference())
            .field("digest", &self.digest())
            .field("signatures", &self.signatures.len())
            .field("blobs", &self.blobs.len())
            .finish()
    }
}

/// A kit whose digests and signatures have been verified against the caller's trust roots.
#[derive(Clone, Debug)]
pub struct VerifiedKit {
    pub archive: KitArchive,
    /// The trusted keys that signed it.
    pub signers: Vec<PublicKey>,
}

impl KitArchive {
    /// The kit's digest (the digest of its manifest).
    pub fn digest(&self) -> Digest {
        Digest::of(&self.manifest_bytes)
    }

    /// A blob by digest.
    pub fn blob(&self, digest: &Digest) -> Result<&Arc<Vec<u8>>> {
        self.blobs.get(digest).ok_or_else(|| Error::MissingBlob {
            digest: digest.to_string(),
            by: "the pipeline".into(),
        })
    }

    /// Reads a kit file from disk.
    pub fn read_file(path: &Path) -> Result<KitArchive> {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        KitArchive::read(std::io::BufReader::new(f), ReadLimits::default())
    }

    /// Reads a kit archive, checking paths, sizes and every blob's digest.
    pub fn read(reader: impl Read, limits: ReadLimits) -> Result<KitArchive> {
        let mut tail = TailReader {
            inner: reader,
            total: 0,
            last: Vec::with_capacity(2048),
        };
        let mut ar = tar::Archive::new(&mut tail);
        let mut manifest_bytes: Option<Vec<u8>> = None;
        let mut signatures = Vec::new();
        let mut blobs: BTreeMap<Digest, Arc<Vec<u8>>> = BTreeMap::new();
        let mut total: u64 = 0;
        let entries = ar
            .entries()
            .map_err(|e| Error::Archive(format!("cannot read entries: {e}")))?;
        for (count, entry) in entries.enumerate() {
            if count >= limits.max_entries {
                return Err(Error::Archive(format!(
                    "more than {} entries",
                    limits.max_entries
                )));
            }
            let mut entry = entry
                .map_err(|e| Error::Archive(format!("truncated or corrupt entry header: {e}")))?;
            let path_bytes = entry.path_bytes().into_owned();
            let path = String::from_utf8(path_bytes)
                .map_err(|_| Error::Archive("entry path is not utf-8".into()))?;
            check_entry_path(&path)?;
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                continue;
            }
            if !kind.is_file() {
                return Err(Error::Archive(format!(
                    "entry `{path}` is not a regular file (tar type `{}`)",
                    entry_type_name(kind)
                )));
            }
            let size = entry.size();
            total = total.saturating_add(size);
            if total > limits.max_total_bytes {
                return Err(Error::Archive(format!(
                    "entries exceed {} bytes in total",
                    limits.max_total_bytes
                )));
            }
            let cap = if path.starts_with("blobs/") {
                limits.max_blob_bytes
            } else {
                limits.max_metadata_bytes
            };
            if size > cap {
                return Err(Error::Archive(format!(
                    "entry `{path}` is {size} bytes, over the limit of {cap}"
                )));
            }
            // Memory grows with the bytes that arrive, never with what a header claims.
            let mut data = Vec::with_capacity(size.min(1 << 20) as usize);
            (&mut entry)
                .take(size)
                .read_to_end(&mut data)
                .map_err(|e| Error::Archive(format!("entry `{path}` is truncated: {e}")))?;
            if data.len() as u64 != size {
                return Err(Error::Archive(format!(
                    "entry `{path}` is truncated: {} of {size} bytes",
                    data.len()
                )));
            }
            if path == "manifest.json" {
                if manifest_bytes.replace(data).is_some() {
                    return Err(Error::Archive("`manifest.json` appears twice".into()));
                }
            } else if let Some(rest) = path.strip_prefix("signatures/") {
                let sig: Signature = serde_json::from_slice(&data).map_err(|e| {
                    Error::Signature(format!("signatures/{rest} is malformed: {e}"))
                })?;
                signatures.push(sig);
            } else if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                let digest: Digest = format!("sha256:{hex}").parse().map_err(|_| {
                    Error::Archive(format!("entry `{path}` is not named by a sha256 digest"))
                })?;
                digest.verify(&path, &data)?;
                if blobs.insert(digest, Arc::new(data)).is_some() {
                    return Err(Error::Archive(format!("entry `{path}` appears twice")));
                }
            } else {
                return Err(Error::Archive(format!("unexpected entry `{path}`")));
            }
        }
        let _ = ar.into_inner();
        std::io::copy(&mut tail, &mut std::io::sink())
            .map_err(|e| Error::Archive(format!("reading: {e}")))?;
        if tail.total % 512 != 0
            || tail.last.len() < 1024
            || tail.last[tail.last.len() - 1024..].iter().any(|&b| b != 0)
        {
            return Err(Error::Archive(
                "truncated: the end-of-archive marker is missing".into(),
            ));
        }
        let manifest_bytes = manifest_bytes
            .ok_or_else(|| Error::Archive("`manifest.json` is missing (truncated kit?)".into()))?;
        KitArchive::from_parts(manifest_bytes, signatures, blobs)
    }

    /// A kit from its manifest's bytes, its signatures and its blobs (each
    /// already checked against its digest), wherever they came from: the
    /// manifest must be canonical, and the blobs exactly those it lists, at
    /// the sizes it lists. Signatures are judged later, by [`KitArchive::verify`].
    pub fn from_parts(
        manifest_bytes: Vec<u8>,
        signatures: Vec<Signature>,
        blobs: BTreeMap<Digest, Arc<Vec<u8>>>,
    ) -> Result<KitArchive> {
        let manifest = Manifest::from_json(&manifest_bytes)?;
        if manifest.canonical_json() != manifest_bytes {
            return Err(Error::invalid(
                "manifest.json",
                "is not in canonical form (sorted keys, no white space)",
            ));
        }
        for (digest, size) in &manifest.blobs {
            let blob = blobs.get(digest).ok_or_else(|| Error::MissingBlob {
                digest: digest.to_string(),
                by: "the manifest (truncated kit?)".into(),
            })?;
            if blob.len() as u64 != *size {
                return Err(Error::invalid(
                    "blobs",
                    format!("{digest} is {} bytes, the manifest says {size}", blob.len()),
                ));
            }
        }
        if let Some(extra) = blobs.keys().find(|d| !manifest.blobs.contains_key(d)) {
            return Err(Error::Archive(format!(
                "blob {extra} is not named by the manifest"
            )));
        }
        Ok(KitArchive {
            manifest,
            manifest_bytes,
            signatures,
            blobs,
        })
    }

    /// Verifies signatures against `roots`, turning the archive into a kit that may run.
    pub fn verify(self, roots: &TrustRoots) -> Result<VerifiedKit> {
        let signers = roots.verify(&self.manifest_bytes, &self.signatures)?;
        Ok(VerifiedKit {
            archive: self,
            signers,
        })
    }

    /// Writes the kit file atomically: a temporary file in the same folder, synced, then renamed.
    pub fn write_file(&self, path: &Path) -> Result<()> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("kit"),
            std::process::id()
        ));
        let result = (|| {
            let f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            let mut w = std::io::BufWriter::new(f);
            self.write(&mut w)?;
            let f = w
                .into_inner()
                .map_err(|e| Error::io(&tmp, e.into_error()))?;
            f.sync_all().map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            crate::fsx::sync_dir(dir.unwrap_or(Path::new("."))).map_err(|e| Error::io(path, e))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Writes the archive with deterministic headers.
    pub fn write(&self, w: &mut impl Write) -> Result<()> {
        let mut b = tar::Builder::new(w);
        let io = |e: std::io::Error| Error::Archive(format!("writing: {e}"));
        append(&mut b, "manifest.json", &self.manifest_bytes).map_err(io)?;
        for sig in &self.signatures {
            let key = sig.public_key()?;
            let body = serde_json::to_vec_pretty(sig).expect("signature serialises");
            append(&mut b, &format!("signatures/{}.json", key.id()), &body).map_err(io)?;
        }
        for (digest, data) in &self.blobs {
            append(&mut b, &format!("blobs/sha256/{}", digest.hex()), data).map_err(io)?;
        }
        b.into_inner().map_err(io)?.flush().map_err(io)?;
        Ok(())
    }
}

/// Counts the bytes read and keeps the last 1024 of them.
struct TailReader<R> {
    inner: R,
    total: u64,
    last: Vec<u8>,
}

impl<R: Read> Read for TailReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.total += n as u64;
        self.last.extend_from_slice(&buf[..n]);
        if self.last.len() > 2048 {
            let cut = self.last.len() - 1024;
            self.last.drain(..cut);
        }
        Ok(n)
    }
}

fn append<W: Write>(b: &mut tar::Builder<W>, path: &str, data: &[u8]) -> std::io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, path, data)
}

fn check_entry_path(path: &str) -> Result<()> {
    if path.starts_with('/')
        || path.contains('\\')
        || path.split('/').any(|s| s == ".." || s == ".")
    {
        return Err(Error::Archive(format!(
            "entry `{path}` points outside the archive root"
        )));
    }
    let ok = path == "manifest.json"
        || path == "signatures/"
        || path == "blobs/"
        || path == "blobs/sha256/"
        || (path.starts_with("signatures/")
            && path.ends_with(".json")
            && path.matches('/').count() == 1)
        || (path.starts_with("blobs/sha256/") && path.matches('/').count() == 2);
    if !ok {
        return Err(Error::Archive(format!("unexpected entry `{path}`")));
    }
    Ok(())
}

/// A tar entry type as a person reads it.
fn entry_type_name(kind: tar::EntryType) -> String {
    use tar::EntryType as T;
    match kind {
        T::Regular => "regular file".into(),
        T::Link => "hard link".into(),
        T::Symlink => "symbolic link".into(),
        T::Char => "character device".into(),
        T::Block => "block device".into(),
        T::Directory => "directory".into(),
        T::Fifo => "fifo".into(),
        T::Continuous => "contiguous file".into(),
        T::GNULongName => "GNU long name".into(),
        T::GNULongLink => "GNU long link".into(),
        T::GNUSparse => "GNU sparse file".into(),
        T::XGlobalHeader => "pax global header".into(),
        T::XHeader => "pax header".into(),
        other => {
            let b = other.as_byte();
            if b.is_ascii_graphic() {
                format!("unknown `{}` (byte {b})", b as char)
            } else {
                format!("unknown (byte {b})")
            }
        }
    }
}
