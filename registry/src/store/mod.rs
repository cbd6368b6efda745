//! The metadata store: a few named trees of bytes with atomic, checked batches.
//!
//! Backends only move bytes ([`KvStore`]); the registry's logic sits above them
//! once. Every backend passes the same [`testsuite`].

mod cached;
mod memory;
pub mod postgres;
mod sled_store;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

pub use cached::CachedKv;
pub use memory::MemoryStore;
pub use postgres::PgStore;
pub use sled_store::SledStore;

use crate::error::Result;

/// The trees of the metadata store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tree {
    Teams,
    Enterprises,
    Tokens,
    Artifacts,
    Digests,
    /// `enterprise/device id` → device.
    Devices,
    /// Client certificate fingerprint → `enterprise/device id`.
    DeviceCerts,
    /// Enrollment token id → enrollment.
    Enrollments,
    /// `enterprise/deployment id` → deployment.
    Deployments,
    /// `enterprise/kit digest/sample id` → hard example.
    Samples,
    /// Digest → bytes of a small blob published inline with its artifact.
    InlineBlobs,
    /// `enterprise/digest` → bytes of a sample input (each enterprise's own namespace).
    SampleInputs,
    /// `digest/team` → whether that team's upload of the blob is under way or done.
    BlobOwners,
    /// `enterprise/kit digest/sample id/source` → the label of a sample from one source.
    Labels,
    /// `enterprise/run id` → a training run.
    Runs,
    /// `enterprise/kit name` → the enterprise's training policy for the kit.
    TrainPolicies,
    /// Name → which replica holds a lease on some work, and until when.
    Leases,
    /// Name → a counter replicas share (`seq`: deployments' and runs' order).
    Counters,
    /// Digest → an unfinished upload to an object store: its multipart upload and the parts received.
    Uploads,
    /// `files` → the files replicas share (signing key, TLS certificate, device CA).
    Secrets,
    /// `enterprise/device id/kit digest` → the device's cumulative serving figures for the kit.
    Telemetry,
    /// `enterprise/trace id` → a sampled request trace.
    Traces,
    /// Hex sha256 of a web session's secret → the session (its token, role, expiry).
    Sessions,
    /// `artifact key/day` → downloads of the artifact's file that day.
    Downloads,
}

impl Tree {
    /// Every tree, in a fixed order.
    pub const ALL: [Tree; 24] = [
        Tree::Teams,
        Tree::Enterprises,
        Tree::Tokens,
        Tree::Artifacts,
        Tree::Digests,
        Tree::Devices,
        Tree::DeviceCerts,
        Tree::Enrollments,
        Tree::Deployments,
        Tree::Samples,
        Tree::InlineBlobs,
        Tree::SampleInputs,
        Tree::BlobOwners,
        Tree::Labels,
        Tree::Runs,
        Tree::TrainPolicies,
        Tree::Leases,
        Tree::Counters,
        Tree::Uploads,
        Tree::Secrets,
        Tree::Telemetry,
        Tree::Traces,
        Tree::Sessions,
        Tree::Downloads,
    ];

    /// The tree's name on disk.
    pub fn name(self) -> &'static str {
        match self {
            Tree::Teams => "teams",
            Tree::Enterprises => "enterprises",
            Tree::Tokens => "tokens",
            Tree::Artifacts => "artifacts",
            Tree::Digests => "digests",
            Tree::Devices => "devices",
            Tree::DeviceCerts => "device_certs",
            Tree::Enrollments => "enrollments",
            Tree::Deployments => "deployments",
            Tree::Samples => "samples",
            Tree::InlineBlobs => "inline_blobs",
            Tree::SampleInputs => "sample_inputs",
            Tree::BlobOwners => "blob_owners",
            Tree::Labels => "labels",
            Tree::Runs => "runs",
            Tree::TrainPolicies => "train_policies",
            Tree::Leases => "leases",
            Tree::Counters => "counters",
            Tree::Uploads => "uploads",
            Tree::Secrets => "secrets",
            Tree::Telemetry => "telemetry",
            Tree::Traces => "traces",
            Tree::Sessions => "sessions",
            Tree::Downloads => "downloads",
        }
    }
}

/// A set of writes applied all together or not at all, if every check holds.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// (tree, key, expected value: `None` means the key must be absent).
    pub checks: Vec<(Tree, Vec<u8>, Option<Vec<u8>>)>,
    /// (tree, key, new value: `None` deletes).
    pub writes: Vec<(Tree, Vec<u8>, Option<Vec<u8>>)>,
    /// Told to every subscriber of the store once the batch is committed
    /// (other replicas too), never when it is not.
    pub notes: Vec<String>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }
    /// The key must hold `expected` (or be absent when `None`).
    pub fn check(mut self, tree: Tree, key: impl Into<Vec<u8>>, expected: Option<Vec<u8>>) -> Self {
        self.checks.push((tree, key.into(), expected));
        self
    }
    pub fn put(mut self, tree: Tree, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        self.writes.push((tree, key.into(), Some(value.into())));
        self
    }
    pub fn delete(mut self, tree: Tree, key: impl Into<Vec<u8>>) -> Self {
        self.writes.push((tree, key.into(), None));
        self
    }
    /// Tells subscribers `note` once the batch is committed.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
    /// Adds another batch's checks, writes and notes.
    pub fn extend(mut self, other: Batch) -> Self {
        self.checks.extend(other.checks);
        self.writes.extend(other.writes);
        self.notes.extend(other.notes);
        self
    }
    /// Whether it checks and writes nothing.
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty() && self.writes.is_empty()
    }
}

/// What a metadata backend provides. Calls block: use them off the async threads.
pub trait KvStore: Send + Sync + 'static {
    /// The value of a key.
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Every pair whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// The first `limit` pairs whose key starts with `prefix`, in key order:
    /// for questions one match answers (is there any?), which should not
    /// read every match of a prefix that thousands of keys share.
    fn scan_prefix_first(
        &self,
        tree: Tree,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut all = self.scan_prefix(tree, prefix)?;
        all.truncate(limit);
        Ok(all)
    }
    /// Applies the batch atomically if all its checks hold; returns whether it did.
    /// Once it returns `true`, the writes survive a crash of the process.
    fn commit(&self, batch: Batch) -> Result<bool>;
    /// Hears the notes of batches committed from now on, by this process or
    /// (for a shared store) any other.
    fn subscribe(&self) -> Result<Subscription>;
}

/// What a subscriber hears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A note a committed batch carried.
    Note(String),
    /// Notes may have been missed (the connection that hears them was lost
    /// and made again): whoever keeps copies should read the store again.
    Missed,
}

/// The notices of a store, as they come.
pub type Subscription = tokio::sync::mpsc::UnboundedReceiver<Notice>;

/// Hands notices to the subscribers of one store; those gone are dropped.
#[derive(Debug, Default)]
pub struct Hub {
    subs: std::sync::Mutex<Vec<tokio::sync::mpsc::UnboundedSender<Notice>>>,
}

impl Hub {
    pub fn subscribe(&self) -> Subscription {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.subs.lock().unwrap_or_else(|e| e.into_inner()).push(tx);
        rx
    }

    pub fn send(&self, n: Notice) {
        self.subs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|tx| tx.send(n.clone()).is_ok());
    }

    /// Whether anyone listens.
    pub fn is_heard(&self) -> bool {
        !self
            .subs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

/// The metadata store `--meta` names: a `postgres://` URL, or sled under
/// `local` when none is given.
pub fn open_meta(
    url: Option<&str>,
    local: &std::path::Path,
) -> Result<std::sync::Arc<dyn KvStore>> {
    match url {
        None | Some("") => Ok(std::sync::Arc::new(SledStore::open(local)?)),
        // A round trip per read: the hot trees are read through a copy the notes keep coherent.
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => Ok(
            std::sync::Arc::new(CachedKv::new(std::sync::Arc::new(PgStore::connect(u)?))?),
        ),
        Some(other) => Err(crate::error::RegistryError::invalid(
            "meta",
            format!(
                "`{}` is not a postgres:// URL (leave it out for sled in the data folder)",
                algobay_runtime::shown(other)
            ),
        )),
    }
}
