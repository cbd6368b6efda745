//! Who may read which blob. A blob is readable only through something the
//! caller may see: an artifact of the public catalog, one of its own team's or
//! one made for its enterprise; a blob its team uploaded itself; a kit deployed
//! to its enterprise (for a device); or a sample input of its own enterprise.
//! Whatever else exists answers "not found", exactly as what does not exist.
//!
//! Sample inputs live apart from the catalog's blobs, in each enterprise's own
//! namespace of the metadata store (`enterprise/digest`), so that a device can
//! neither publish bytes into the catalog nor name a catalog blob as a sample.
//!
//! Content stays its enterprise's: a blob that first entered the registry as
//! part of an artifact private to an enterprise, or as weights a round trained
//! on its data, is marked as that enterprise's (`BlobOwners`,
//! `digest/@enterprise:<name>`). It can then be part only of artifacts private
//! to that enterprise, whoever publishes them and whatever manifest is put
//! around it; and weights trained on its data are readable by the training
//! team only while a round of that team's kit for that enterprise is open.

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

/// The mark of a blob that is an enterprise's content.
const ENTERPRISE_MARK: &str = "@enterprise:";

fn enterprise_key(d: &Digest, enterprise: &str) -> String {
    format!("{d}/{ENTERPRISE_MARK}{enterprise}")
}

/// Why a blob is an enterprise's (the value of its mark).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ContentOwner {
    pub enterprise: String,
    /// What brought it in (an artifact reference, or a training run).
    pub via: String,
    /// Derived from the enterprise's data (weights a round trained).
    pub trained: bool,
}

/// "public kit t/k@1", or "kit t/k@1, private to `e`".
pub(crate) fn describe(kind: &str, reference: &str, private_to: &str) -> String {
    if private_to.is_empty() {
        format!("public {kind} {reference}")
    } else {
        format!("{kind} {reference}, private to `{private_to}`")
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
        if readable && self.may_read_content(p, d)? && stored()? {
            return Ok(BlobSource::Catalog);
        }
        Err(not_found(d))
    }

    /// The enterprise whose content `d` is, if any.
    pub fn content_owner(&self, d: &Digest) -> Result<Option<ContentOwner>> {
        let prefix = format!("{d}/{ENTERPRISE_MARK}");
        match self
            .kv
            .scan_prefix_first(Tree::BlobOwners, prefix.as_bytes(), 1)?
            .first()
        {
            Some((_, v)) => Ok(Some(parse("blob owner", v)?)),
            None => Ok(None),
        }
    }

    /// Whether the caller may read an enterprise's content: the enterprise
    /// itself and operators always; a team only what is not trained on the
    /// enterprise's data, or while a round of its kit for that enterprise is
    /// open (what it needs to train, and no more).
    fn may_read_content(&self, p: &Principal, d: &Digest) -> Result<bool> {
        let Some(owner) = self.content_owner(d)? else {
            return Ok(true);
        };
        Ok(match p.role {
            // A device reaches here only for what is deployed to its enterprise.
            Role::Operator | Role::Device => true,
            Role::Enterprise => p.subject == owner.enterprise,
            Role::Visitor => false,
            Role::Team if !owner.trained => true,
            Role::Team => self
                .kv
                .scan_prefix(Tree::Runs, format!("{}/", owner.enterprise).as_bytes())?
                .iter()
                .filter_map(|(_, v)| parse::<crate::training::Run>("run", v).ok())
                .any(|r| {
                    !r.state.finished() && r.kit.split('/').next() == Some(p.subject.as_str())
                }),
        })
    }

    /// Refuses blobs that are another tenant's content as part of `what`
    /// (`private_to`: the enterprise it is made for, empty when public).
    pub(crate) fn check_content<'a>(
        &self,
        blobs: impl IntoIterator<Item = &'a Digest>,
        private_to: &str,
        what: &dyn Fn() -> String,
    ) -> Result<()> {
        for d in blobs {
            if let Some(owner) = self.content_owner(d)? {
                if owner.enterprise != private_to {
                    return Err(RegistryError::PermissionDenied(format!(
                        "blob {d} is enterprise `{}`'s content ({}); it cannot be part of {}",
                        owner.enterprise,
                        owner.via,
                        what()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Checks that an artifact about to be stored takes no other tenant's
    /// content, and returns the marks to write with it: its blobs that enter
    /// the registry with it become its enterprise's when it is private.
    pub(crate) fn content_marks(&self, a: &Artifact) -> Result<Vec<(Tree, Vec<u8>, Vec<u8>)>> {
        let all: std::collections::BTreeSet<&Digest> =
            a.blobs.iter().chain(std::iter::once(&a.digest)).collect();
        self.check_content(all.iter().copied(), &a.private_to, &|| {
            describe(a.kind.as_str(), &a.reference(), &a.private_to)
        })?;
        let mut marks = Vec::new();
        if a.private_to.is_empty() {
            return Ok(marks);
        }
        for d in all {
            let known = self.content_owner(d)?.is_some()
                || !self
                    .kv
                    .scan_prefix_first(Tree::Digests, format!("{d}/").as_bytes(), 1)?
                    .is_empty();
            if !known {
                let owner = ContentOwner {
                    enterprise: a.private_to.clone(),
                    via: format!("it came in with {} {}", a.kind.as_str(), a.reference()),
                    trained: false,
                };
                marks.push((
                    Tree::BlobOwners,
                    enterprise_key(d, &a.private_to).into_bytes(),
                    crate::service::json(&owner),
                ));
            }
        }
        Ok(marks)
    }

    /// Marks weights a round trained on `enterprise`'s data as its content;
    /// refuses when they are already part of what another tenant may use.
    pub(crate) fn mark_trained(&self, d: &Digest, enterprise: &str, run: &str) -> Result<()> {
        if let Some(owner) = self.content_owner(d)? {
            if owner.enterprise != enterprise {
                return Err(RegistryError::PermissionDenied(format!(
                    "blob {d} is enterprise `{}`'s content ({}); weights trained on `{enterprise}`'s data cannot be it",
                    owner.enterprise, owner.via
                )));
            }
            if owner.trained {
                return Ok(());
            }
        }
        let prefix = format!("{d}/");
        for (k, _) in self.kv.scan_prefix(Tree::Digests, prefix.as_bytes())? {
            if let Some(v) = self.kv.get(Tree::Artifacts, &k[prefix.len()..])? {
                let a: Artifact = parse("artifact", &v)?;
                if a.private_to != enterprise {
                    return Err(RegistryError::PermissionDenied(format!(
                        "the weights {d} trained on enterprise `{enterprise}`'s data are already part of {} {}; they cannot leave the enterprise",
                        a.kind.as_str(),
                        a.reference()
                    )));
                }
            }
        }
        let owner = ContentOwner {
            enterprise: enterprise.to_owned(),
            via: format!("weights trained on its data by {run}"),
            trained: true,
        };
        self.kv.commit(Batch::new().put(
            Tree::BlobOwners,
            enterprise_key(d, enterprise),
            crate::service::json(&owner),
        ))?;
        Ok(())
    }

    /// Whether an artifact the caller may see names `d` (as its file, a blob or a kit's manifest).
    fn visible_artifact_has(&self, p: &Principal, d: &Digest) -> Result<bool> {
        let prefix = format!("{d}/");
        let sees = |keys: &[(Vec<u8>, Vec<u8>)]| -> Result<bool> {
            for (k, _) in keys {
                if let Some(v) = self.kv.get(Tree::Artifacts, &k[prefix.len()..])? {
                    if p.may_see(&parse::<Artifact>("artifact", &v)?) {
                        return Ok(true);
                    }
                }
            }
            Ok(false)
        };
        // Most blobs are in public artifacts: the first few answer, and only
        // when none of them is visible is every artifact of the blob read.
        const FIRST: usize = 8;
        let first = self
            .kv
            .scan_prefix_first(Tree::Digests, prefix.as_bytes(), FIRST)?;
        if sees(&first)? {
            return Ok(true);
        }
        if first.len() < FIRST {
            return Ok(false);
        }
        let all = self.kv.scan_prefix(Tree::Digests, prefix.as_bytes())?;
        sees(all.get(FIRST..).unwrap_or_default())
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

    /// Whether the caller opened the unfinished upload of `d` (a session is
    /// its opener's: another principal learns nothing of it).
    pub fn opened_upload(&self, p: &Principal, d: &Digest) -> Result<bool> {
        let Some(u) = uploader(p) else {
            return Ok(false);
        };
        Ok(self
            .kv
            .get(Tree::BlobOwners, owner_key(d, u).as_bytes())?
            .is_some_and(|v| v == UPLOADING))
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
