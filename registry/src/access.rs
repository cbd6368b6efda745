//! Who may read which blob. A blob is readable only through something the
//! caller may see: an artifact of the public catalog, one of its own team's or
//! one made for its enterprise; a blob its team uploaded itself; a kit deployed
//! to its enterprise (for a device); or a sample input of its own enterprise.
//! Whatever else exists answers "not found", exactly as what does not exist.
//!
//! Sample inputs live apart from the catalog's blobs, in each enterprise's own
//! namespace of the metadata store (`enterprise/digest`), so that a device can
//! neither publish bytes into the catalog nor name a catalog blob as a sample.

use algobay_runtime::Digest;

use crate::blobs::{BlobReader, BlobStat};
use crate::domain::{Artifact, Principal, Role};
use crate::error::{RegistryError, Result};
use crate::service::{parse, Registry};
use crate::store::{Batch, Tree};

/// Where a readable blob lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobSource {
    /// The catalog's blob store.
    Catalog,
    /// An enterprise's sample inputs.
    Sample(String),
}

/// How far a team's upload of a blob got (`BlobOwners` values).
const UPLOADING: &[u8] = b"uploading";
const UPLOADED: &[u8] = b"uploaded";

/// Largest sample input a device may send (one input of one hard example).
pub const MAX_SAMPLE_INPUT: usize = 4 << 20;

pub(crate) fn sample_key(enterprise: &str, d: &Digest) -> String {
    format!("{enterprise}/{d}")
}

fn owner_key(d: &Digest, owner: &str) -> String {
    format!("{d}/{owner}")
}

/// Who an upload is recorded for: a team by name, operators together.
fn uploader(p: &Principal) -> Option<&str> {
    match p.role {
        Role::Team => Some(p.subject.as_str()),
        Role::Operator => Some("@operator"),
        Role::Enterprise | Role::Device | Role::Visitor => None,
    }
}

fn not_found(d: &Digest) -> RegistryError {
    RegistryError::NotFound(format!("blob {d}"))
}

impl Registry {
    /// Where the caller may read `d` from, or "not found". `enterprise` names
    /// the sample namespace an operator reads; others read their own.
    pub fn blob_source(&self, p: &Principal, d: &Digest, enterprise: &str) -> Result<BlobSource> {
        let samples_of = match p.role {
            Role::Enterprise if enterprise.is_empty() || enterprise == p.subject => {
                Some(p.subject.as_str())
            }
            Role::Operator if !enterprise.is_empty() => Some(enterprise),
            _ => None,
        };
        if let Some(e) = samples_of {
            if self
                .kv
                .get(Tree::SampleInputs, sample_key(e, d).as_bytes())?
                .is_some()
            {
                return Ok(BlobSource::Sample(e.to_owned()));
            }
        }
        let stored = || -> Result<bool> { Ok(self.blobs().stat(d)?.size.is_some()) };
        let readable = match p.role {
            Role::Device => self.deployed_to(&p.subject, d)?,
            Role::Operator => true,
            Role::Team | Role::Enterprise | Role::Visitor => {
                self.visible_artifact_has(p, d)?
                    || uploader(p).is_some_and(|u| {
                        self.kv
                            .get(Tree::BlobOwners, owner_key(d, u).as_bytes())
                            .ok()
                            .flatten()
                            .is_some_and(|v| v == UPLOADED)
                    })
            }
        };
        if readable && stored()? {
            return Ok(BlobSource::Catalog);
        }
        Err(not_found(d))
    }

    /// Whether an artifact the caller may see names `d` (as its file, a blob or a kit's manifest).
    fn visible_artifact_has(&self, p: &Principal, d: &Digest) -> Result<bool> {
        let prefix = format!("{d}/");
        for (k, _) in self.kv.scan_prefix(Tree::Digests, prefix.as_bytes())? {
            let key = &k[prefix.len()..];
            if let Some(v) = self.kv.get(Tree::Artifacts, key)? {
                if p.may_see(&parse::<Artifact>("artifact", &v)?) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// What the caller may know of a blob: present (and its size) only if it
    /// may read it; for its own unfinished upload, how much arrived.
    pub fn stat_blob(&self, p: &Principal, d: &Digest, enterprise: &str) -> Result<BlobStat> {
        match self.blob_source(p, d, enterprise) {
            Ok(BlobSource::Catalog) => self.blobs().stat(d),
            Ok(BlobSource::Sample(e)) => {
                let n = self
                    .kv
                    .get(Tree::SampleInputs, sample_key(&e, d).as_bytes())?
                    .map_or(0, |v| v.len() as u64);
                Ok(BlobStat {
                    size: Some(n),
                    received: n,
                })
            }
            Err(RegistryError::NotFound(_)) => {
                let own_upload = uploader(p).is_some_and(|u| {
                    self.kv
                        .get(Tree::BlobOwners, owner_key(d, u).as_bytes())
                        .ok()
                        .flatten()
                        .is_some()
                });
                let received = if own_upload {
                    self.blobs().stat(d)?.received
                } else {
                    0
                };
                Ok(BlobStat {
                    size: None,
                    received,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Opens a blob the caller may read.
    pub fn open_blob(
        &self,
        p: &Principal,
        d: &Digest,
        enterprise: &str,
    ) -> Result<(u64, BlobReader)> {
        match self.blob_source(p, d, enterprise)? {
            BlobSource::Catalog => self.blobs().open(d),
            BlobSource::Sample(e) => {
                let bytes = self
                    .kv
                    .get(Tree::SampleInputs, sample_key(&e, d).as_bytes())?
                    .ok_or_else(|| not_found(d))?;
                Ok((bytes.len() as u64, Box::new(std::io::Cursor::new(bytes))))
            }
        }
    }

    /// Whether the caller may send blobs at all (teams and operators).
    pub fn may_upload(&self, p: &Principal) -> Result<()> {
        if uploader(p).is_none() {
            return Err(RegistryError::PermissionDenied(
                "enterprises and devices do not upload blobs".into(),
            ));
        }
        Ok(())
    }

    /// Records that the caller started (`done: false`) or completed an upload
    /// of `d`; a completed upload makes the blob readable to its team.
    pub fn note_upload(&self, p: &Principal, d: &Digest, done: bool) -> Result<()> {
        let Some(u) = uploader(p) else {
            return self.may_upload(p);
        };
        let key = owner_key(d, u);
        if self.kv.get(Tree::BlobOwners, key.as_bytes())?.as_deref() == Some(UPLOADED) {
            return Ok(());
        }
        self.kv.commit(Batch::new().put(
            Tree::BlobOwners,
            key,
            if done { UPLOADED } else { UPLOADING }.to_vec(),
        ))?;
        Ok(())
    }

    /// Whether the caller already may read `d` from the catalog (so an upload of it can stop at once).
    pub fn sees_in_catalog(&self, p: &Principal, d: &Digest) -> Result<bool> {
        match self.blob_source(p, d, "") {
            Ok(BlobSource::Catalog) => Ok(true),
            Ok(BlobSource::Sample(_)) | Err(RegistryError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
