//! The registry service over domain types: authentication, role and tenant
//! checks, validated publishing, reads, search and coverage. Every method
//! blocks (storage, model checks): call them from a blocking thread.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use rand::RngCore;
use sha2::Digest as _;

use algobay_runtime::archive::KitArchive;
use algobay_runtime::golden::run_golden_checked;
use algobay_runtime::manifest::{validate_name, Limits, Manifest, StepKind};
use algobay_runtime::sign::{PublicKey, Signature, TrustRoots};
use algobay_runtime::{Digest, Runtime};

use crate::blobs::{BlobReader, BlobStat, BlobStore};
use crate::domain::*;
use crate::error::{RegistryError, Result};
use crate::index::SearchIndex;
use crate::limits::{check_len, check_list, shown, text, Ceilings};
use crate::store::{Batch, KvStore, Tree};

mod api;
mod catalog;
mod datasets;
mod downloads;
mod golden;
mod publish;
mod sessions;
mod tenants;

pub use api::RegistryApi;
pub use datasets::{profile_csv, DatasetSpec};
pub use sessions::{WebSession, SESSION_TTL};

/// What a publisher says about a model it publishes.
#[derive(Clone, Debug, Default)]
pub struct ModelSpec {
    pub name: String,
    pub version: String,
    pub digest: String,
    pub domain: String,
    pub task: String,
    pub architecture: String,
    pub config_digest: String,
    pub description: String,
    pub license: String,
    pub industries: Vec<String>,
    pub tags: Vec<String>,
    pub card: String,
    pub metrics: BTreeMap<String, f64>,
    pub parent: String,
    /// (digest, bytes) of small blobs sent with the publish instead of uploaded
    /// before it; stored with the artifact, atomically.
    pub inline: Vec<(String, Vec<u8>)>,
}

/// What a publisher says about a tool it publishes.
#[derive(Clone, Debug, Default)]
pub struct ToolSpec {
    pub name: String,
    pub version: String,
    pub digest: String,
    pub tool_kind: String,
    pub description: String,
    pub license: String,
    pub industries: Vec<String>,
    pub tags: Vec<String>,
    pub card: String,
}

/// Tool kinds the registry knows.
pub const TOOL_KINDS: &[&str] = &[
    "preprocess",
    "postprocess",
    "annotation",
    "training",
    "evaluation",
    "conversion",
    "deployment",
];

/// The registry over a metadata store and a blob store.
pub struct Registry {
    pub(crate) kv: Arc<dyn KvStore>,
    blobs: Arc<dyn BlobStore>,
    runtime: Arc<Runtime>,
    pub(crate) clock: Arc<dyn Clock>,
    index: RwLock<SearchIndex>,
    /// Signs enrolled devices' certificates (none when serving without TLS).
    pub(crate) device_ca: Option<crate::tls::DeviceCa>,
    /// The highest sequence number this replica saw (the shared one is
    /// `Tree::Counters`/`seq`; this covers stores made before it).
    pub(crate) seq: std::sync::atomic::AtomicU64,
    /// When each device last synced (kept in memory; stored only on a change of state).
    pub(crate) seen: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    /// Bumped on every change of what some device should run.
    changes: tokio::sync::watch::Sender<u64>,
    /// Countersigns every kit it accepts (devices may trust it as a root).
    signing_key: Option<algobay_runtime::SecretKey>,
    /// What a kit may ask of the registry, and upload limits.
    ceilings: Ceilings,
    /// Golden runs under way and waiting, scheduled between teams.
    golden: golden::GoldenQueue,
    /// This process among the replicas sharing the stores (random, per start).
    pub(crate) replica: String,
}

/// Set when the caller of a long call has gone away, so the work stops.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A guard that cancels when dropped: hold it in the request's future, which
    /// the server drops when the caller goes away.
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }
}

/// Cancels its [`Cancel`] when dropped.
#[derive(Debug)]
pub struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

pub(crate) fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("domain types serialise")
}

pub fn parse<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::Storage(format!("stored {what} is unreadable: {e}")))
}

fn digest(field: &str, s: &str) -> Result<Digest> {
    if s.is_empty() {
        return Err(RegistryError::invalid(field, "is required"));
    }
    s.parse()
        .map_err(|e: algobay_runtime::Error| RegistryError::invalid(field, e.to_string()))
}

fn check_version(v: &str) -> Result<()> {
    if v.len() > text::WORD {
        return Err(RegistryError::invalid(
            "version",
            format!("`{}` is not a semantic version", shown(v)),
        ));
    }
    semver::Version::parse(v).map(|_| ()).map_err(|e| {
        RegistryError::invalid("version", format!("`{v}` is not a semantic version: {e}"))
    })
}

fn check_simple_name(field: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if !ok {
        return Err(RegistryError::invalid(
            field,
            format!(
                "`{}` must be 1-64 of a-z 0-9 - _ . not starting with . or -",
                shown(name)
            ),
        ));
    }
    Ok(())
}

/// Checks the descriptive text of a published artifact.
fn check_text(
    description: &str,
    card: &str,
    license: &str,
    industries: &[String],
    tags: &[String],
) -> Result<()> {
    check_len("description", description, text::DESCRIPTION)?;
    check_len("card", card, text::CARD)?;
    check_len("license", license, text::WORD)?;
    check_list("industries", industries)?;
    check_list("tags", tags)
}

pub(crate) fn hash_secret(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

impl Registry {
    /// A registry over the given stores; the search index is rebuilt from the metadata.
    pub fn open(
        kv: Arc<dyn KvStore>,
        blobs: Arc<dyn BlobStore>,
        runtime: Arc<Runtime>,
        clock: Arc<dyn Clock>,
    ) -> Result<Registry> {
        let mut index = SearchIndex::default();
        for (_, v) in kv.scan_prefix(Tree::Artifacts, b"")? {
            index.upsert(parse::<Artifact>("artifact", &v)?);
        }
        let mut seq = 0;
        for (_, v) in kv.scan_prefix(Tree::Deployments, b"")? {
            seq = seq.max(parse::<Deployment>("deployment", &v)?.seq);
        }
        // Training runs draw their numbers from the same sequence.
        for (_, v) in kv.scan_prefix(Tree::Runs, b"")? {
            seq = seq.max(parse::<crate::training::Run>("run", &v)?.seq);
        }
        // Small blobs published inline live in the metadata store; reads find them there.
        let blobs: Arc<dyn BlobStore> =
            Arc::new(crate::blobs::WithInlineBlobs::new(kv.clone(), blobs));
        let registry = Registry {
            kv,
            blobs,
            runtime,
            clock,
            index: RwLock::new(index),
            device_ca: None,
            seq: std::sync::atomic::AtomicU64::new(seq),
            seen: Default::default(),
            changes: tokio::sync::watch::Sender::new(0),
            signing_key: None,
            ceilings: Ceilings::default(),
            golden: Default::default(),
            replica: {
                use rand::RngCore;
                let mut b = [0u8; 8];
                rand::thread_rng().fill_bytes(&mut b);
                hex::encode(b)
            },
        };
        {
            let mut index = registry.index.write().unwrap_or_else(|e| e.into_inner());
            registry.load_downloads(&mut index)?;
        }
        Ok(registry)
    }

    /// Names this replica (kept across its restarts, so a restarted one takes
    /// its leases back at once instead of waiting for them to lapse).
    pub fn with_replica(mut self, id: &str) -> Registry {
        self.replica = id.to_owned();
        self
    }

    /// Sets the ceilings on kits and uploads.
    pub fn with_ceilings(mut self, ceilings: Ceilings) -> Registry {
        self.ceilings = ceilings;
        self
    }

    /// Enrolls devices with certificates signed by this CA.
    pub fn with_device_ca(mut self, ca: crate::tls::DeviceCa) -> Registry {
        self.device_ca = Some(ca);
        self
    }

    /// Countersigns accepted kits with this key.
    pub fn with_signing_key(mut self, key: algobay_runtime::SecretKey) -> Registry {
        self.signing_key = Some(key);
        self
    }

    /// The public key kits are countersigned with.
    pub fn registry_key(&self) -> Option<PublicKey> {
        self.signing_key.as_ref().map(|k| k.public())
    }

    /// Stores a record under a freshly drawn random id; a collision (the key
    /// is taken) is refused rather than overwriting.
    pub(crate) fn insert_new(
        &self,
        tree: Tree,
        key: &str,
        value: Vec<u8>,
        what: &str,
    ) -> Result<()> {
        if !self
            .kv
            .commit(Batch::new().check(tree, key.as_bytes(), None).put(
                tree,
                key.as_bytes(),
                value,
            ))?
        {
            return Err(RegistryError::Storage(format!(
                "{what} id collision; try again"
            )));
        }
        Ok(())
    }

    /// Wakes every device waiting here for its desired state to change; the
    /// batch that made the change carries [`Registry::note_desired`] for the
    /// other replicas.
    pub(crate) fn wake(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// The note that tells other replicas an artifact changed.
    pub(crate) fn note_artifact(&self, key: &str) -> String {
        format!("{} a {key}", self.replica)
    }

    /// The note that tells other replicas what some device should run changed.
    pub(crate) fn note_desired(&self) -> String {
        format!("{} d", self.replica)
    }

    /// Hears the store's notes (other replicas' changes); pass each to [`Registry::follow`].
    pub fn subscribe_store(&self) -> Result<crate::store::Subscription> {
        self.kv.subscribe()
    }

    /// Applies what another replica changed: an artifact is read again into the
    /// search index; a change of desired state wakes the devices waiting here;
    /// notes that may have been missed read the whole catalog again.
    pub fn follow(&self, n: crate::store::Notice) -> Result<()> {
        use crate::store::Notice;
        let note = match n {
            Notice::Missed => {
                let mut index = SearchIndex::default();
                for (_, v) in self.kv.scan_prefix(Tree::Artifacts, b"")? {
                    index.upsert(parse::<Artifact>("artifact", &v)?);
                }
                self.load_downloads(&mut index)?;
                *self.index.write().unwrap_or_else(|e| e.into_inner()) = index;
                self.wake();
                return Ok(());
            }
            Notice::Note(note) => note,
        };
        let Some((who, what)) = note.split_once(' ') else {
            return Ok(());
        };
        if who == self.replica {
            return Ok(());
        }
        match what.split_once(' ') {
            Some(("a", key)) => {
                if let Some(v) = self.kv.get(Tree::Artifacts, key.as_bytes())? {
                    let a = parse::<Artifact>("artifact", &v)?;
                    self.index
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .upsert(a);
                }
            }
            Some(("n", key)) => self.recount_downloads(key)?,
            None if what == "d" => self.wake(),
            _ => tracing::debug!(note, "a note this version does not know"),
        }
        Ok(())
    }

    /// A receiver that sees every change of desired state.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The blob store.
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, SearchIndex> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }
}
