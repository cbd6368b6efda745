//! A replica's copy of what every device sync and every call reads — device
//! records, the certificate index, deployments, the catalog's records and
//! digest index, tokens, teams, small inline blobs and blob owners — over a
//! shared store whose every read is a round trip (PostgreSQL).
//!
//! Coherence comes from the store's notes: every batch that writes a cached
//! tree carries a note naming the keys (or, for a large batch, the tree), and
//! each replica's copy drops what a note names, its own commits included. A
//! read that raced a note is not kept (an epoch moves on every drop); notes
//! that may have been lost drop everything; and each entry also expires
//! (`GET_TTL`, `SCAN_TTL`), so even a note never sent cannot keep a value
//! stale for long. A checked batch compares with the stored bytes themselves,
//! so a stale copy can make a batch fail its check, never write over news: the
//! keys a failed batch checked are dropped, and the caller's retry reads them
//! afresh. The layer's own subscribers hear each notice after the copy has
//! applied it, so what a note wakes reads the news.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Batch, KvStore, Notice, Subscription, Tree};
use crate::error::Result;

/// Trees whose keys are read one at a time on the hot path (every call reads
/// its token, every publish its team, the small blobs it names and their owners).
const GETS: [Tree; 6] = [
    Tree::Devices,
    Tree::DeviceCerts,
    Tree::Artifacts,
    Tree::Tokens,
    Tree::Teams,
    Tree::InlineBlobs,
];
/// Of those, trees whose absent keys are remembered too: a digest's inline
/// blob is looked up for every blob a publish names, and most have none.
const ABSENT_TOO: [Tree; 1] = [Tree::InlineBlobs];
/// Trees read by prefix on the hot path.
const SCANS: [Tree; 3] = [Tree::Deployments, Tree::Digests, Tree::BlobOwners];
const GET_TTL: Duration = Duration::from_secs(10);
const SCAN_TTL: Duration = Duration::from_secs(2);
/// Past this many cached keys in one batch, its note names the whole tree.
const MAX_NOTED_KEYS: usize = 32;
/// Entries kept at most (then the copy starts over).
const MAX_ENTRIES: usize = 200_000;
/// What the notes of this layer begin with.
const PREFIX: &str = "kv ";

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Default)]
struct Copies {
    gets: HashMap<(Tree, Vec<u8>), (Instant, Option<Vec<u8>>)>,
    scans: HashMap<(Tree, Vec<u8>), (Instant, Pairs)>,
}

/// The store with a coherent copy of the hot trees.
pub struct CachedKv {
    inner: Arc<dyn KvStore>,
    copies: Arc<Mutex<Copies>>,
    /// Moves on every drop: a read that began before it is not kept.
    epoch: Arc<AtomicU64>,
    /// This layer's subscribers hear a notice only once the copy has
    /// applied it: whoever a note wakes (a device's long poll) reads news,
    /// not the copy the note was about to drop.
    hub: Arc<super::Hub>,
}

impl std::fmt::Debug for CachedKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedKv").finish_non_exhaustive()
    }
}

fn tree_of(name: &str) -> Option<Tree> {
    Tree::ALL.iter().copied().find(|t| t.name() == name)
}

fn cached(t: Tree) -> bool {
    GETS.contains(&t) || SCANS.contains(&t)
}

impl Copies {
    fn drop_key(&mut self, t: Tree, key: &[u8]) {
        self.gets.remove(&(t, key.to_vec()));
        if SCANS.contains(&t) {
            self.scans
                .retain(|(st, prefix), _| *st != t || !key.starts_with(prefix));
        }
    }

    fn drop_tree(&mut self, t: Tree) {
        self.gets.retain(|(gt, _), _| *gt != t);
        self.scans.retain(|(st, _), _| *st != t);
    }

    /// Applies one note of this layer (`kv <tree> <hex key>…` or `kv <tree> *`).
    fn apply(&mut self, note: &str) {
        let mut words = note[PREFIX.len()..].split(' ');
        let Some(t) = words.next().and_then(tree_of) else {
            return;
        };
        for w in words {
            if w == "*" {
                self.drop_tree(t);
            } else if let Ok(k) = hex::decode(w) {
                self.drop_key(t, &k);
            }
        }
    }
}

impl CachedKv {
    /// Wraps `inner`, following its notes on a thread of its own.
    pub fn new(inner: Arc<dyn KvStore>) -> Result<CachedKv> {
        let copies: Arc<Mutex<Copies>> = Default::default();
        let epoch = Arc::new(AtomicU64::new(0));
        let mut rx = inner.subscribe()?;
        let hub: Arc<super::Hub> = Arc::default();
        let (c, e, h) = (Arc::downgrade(&copies), epoch.clone(), hub.clone());
        std::thread::Builder::new()
            .name("algobay-kv-copies".into())
            .spawn(move || {
                while let Some(n) = rx.blocking_recv() {
                    let Some(copies) = c.upgrade() else { return };
                    {
                        let mut m = copies.lock().unwrap_or_else(|p| p.into_inner());
                        match &n {
                            Notice::Missed => {
                                *m = Copies::default();
                                e.fetch_add(1, Ordering::SeqCst);
                            }
                            Notice::Note(s) if s.starts_with(PREFIX) => {
                                m.apply(s);
                                e.fetch_add(1, Ordering::SeqCst);
                            }
                            Notice::Note(_) => {}
                        }
                    }
                    h.send(n);
                }
            })
            .map_err(|e| crate::error::RegistryError::Storage(format!("kv copies: {e}")))?;
        Ok(CachedKv {
            inner,
            copies,
            epoch,
            hub,
        })
    }

    fn copies(&self) -> std::sync::MutexGuard<'_, Copies> {
        self.copies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a whole scan read since `epoch`, unless a drop came in between.
    fn keep_scan(&self, tree: Tree, prefix: &[u8], epoch: u64, got: &Pairs) {
        let mut m = self.copies();
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        if m.scans.len() >= MAX_ENTRIES / 10 {
            m.scans.clear();
        }
        m.scans
            .insert((tree, prefix.to_vec()), (Instant::now(), got.clone()));
    }
}

impl KvStore for CachedKv {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if !GETS.contains(&tree) {
            return self.inner.get(tree, key);
        }
        if let Some((at, v)) = self.copies().gets.get(&(tree, key.to_vec())) {
            if at.elapsed() < GET_TTL {
                return Ok(v.clone());
            }
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let got = self.inner.get(tree, key)?;
        if got.is_some() || ABSENT_TOO.contains(&tree) {
            let mut m = self.copies();
            // Only if nothing was dropped while it was read (it might be older news).
            if self.epoch.load(Ordering::SeqCst) == epoch {
                if m.gets.len() >= MAX_ENTRIES {
                    m.gets.clear();
                }
                m.gets
                    .insert((tree, key.to_vec()), (Instant::now(), got.clone()));
            }
        }
        Ok(got)
    }

    fn scan_prefix_first(
        &self,
        tree: Tree,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if !SCANS.contains(&tree) || prefix.is_empty() {
            return self.inner.scan_prefix_first(tree, prefix, limit);
        }
        if let Some((at, v)) = self.copies().scans.get(&(tree, prefix.to_vec())) {
            if at.elapsed() < SCAN_TTL {
                return Ok(v.iter().take(limit).cloned().collect());
            }
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let got = self.inner.scan_prefix_first(tree, prefix, limit)?;
        // Fewer than asked for is every pair under the prefix: kept as the
        // whole scan (most such questions find none, and ask again).
        if got.len() < limit {
            self.keep_scan(tree, prefix, epoch, &got);
        }
        Ok(got)
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if !SCANS.contains(&tree) || prefix.is_empty() {
            return self.inner.scan_prefix(tree, prefix);
        }
        if let Some((at, v)) = self.copies().scans.get(&(tree, prefix.to_vec())) {
            if at.elapsed() < SCAN_TTL {
                return Ok(v.clone());
            }
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let got = self.inner.scan_prefix(tree, prefix)?;
        if got.len() <= 1000 {
            self.keep_scan(tree, prefix, epoch, &got);
        }
        Ok(got)
    }

    fn commit(&self, mut batch: Batch) -> Result<bool> {
        // Name the cached keys it writes, per tree, in a note other replicas hear.
        let mut touched: HashMap<Tree, Vec<&[u8]>> = HashMap::new();
        for (t, k, _) in &batch.writes {
            if cached(*t) {
                touched.entry(*t).or_default().push(k);
            }
        }
        let mut notes = Vec::new();
        for (t, keys) in &touched {
            if keys.len() > MAX_NOTED_KEYS {
                notes.push(format!("{PREFIX}{} *", t.name()));
            } else {
                let hexes: Vec<String> = keys.iter().map(hex::encode).collect();
                notes.push(format!("{PREFIX}{} {}", t.name(), hexes.join(" ")));
            }
        }
        let written: Vec<(Tree, Vec<u8>)> = batch
            .writes
            .iter()
            .filter(|(t, _, _)| cached(*t))
            .map(|(t, k, _)| (*t, k.clone()))
            .collect();
        let checked: Vec<(Tree, Vec<u8>)> = batch
            .checks
            .iter()
            .filter(|(t, _, _)| cached(*t))
            .map(|(t, k, _)| (*t, k.clone()))
            .collect();
        // This layer's notes first: a replica applies them before it passes
        // on the batch's own notes, which may wake readers of these keys.
        notes.append(&mut batch.notes);
        batch.notes = notes;
        let ok = self.inner.commit(batch);
        // Whatever happened, these keys are read afresh next time.
        let mut m = self.copies();
        for (t, k) in written.iter().chain(&checked) {
            m.drop_key(*t, k);
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
        ok
    }

    fn subscribe(&self) -> Result<Subscription> {
        Ok(self.hub.subscribe())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn settle() {
        std::thread::sleep(Duration::from_millis(50));
    }

    #[test]
    fn an_absent_key_one_replica_remembers_appears_once_the_other_writes_it() {
        let shared: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        let (a, b) = (
            CachedKv::new(shared.clone()).unwrap(),
            CachedKv::new(shared.clone()).unwrap(),
        );
        assert_eq!(b.get(Tree::InlineBlobs, b"sha256:aa").unwrap(), None);
        // Remembered: the shared store's own change, made past both copies, is not seen ...
        assert!(shared
            .commit(Batch::new().put(Tree::InlineBlobs, "sha256:aa", "bytes"))
            .unwrap());
        assert_eq!(b.get(Tree::InlineBlobs, b"sha256:aa").unwrap(), None);
        // ... but a replica's write carries a note, and the other drops its copy.
        assert!(a
            .commit(Batch::new().put(Tree::InlineBlobs, "sha256:aa", "bytes"))
            .unwrap());
        settle();
        assert_eq!(
            b.get(Tree::InlineBlobs, b"sha256:aa").unwrap().unwrap(),
            b"bytes"
        );
        // Trees without remembered absence ask every time.
        assert_eq!(b.get(Tree::Teams, b"acme").unwrap(), None);
        assert!(shared
            .commit(Batch::new().put(Tree::Teams, "acme", "t"))
            .unwrap());
        assert_eq!(b.get(Tree::Teams, b"acme").unwrap().unwrap(), b"t");
    }

    #[test]
    fn a_first_few_scan_that_found_them_all_is_remembered_until_a_replica_writes_under_it() {
        let shared: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        let (a, b) = (
            CachedKv::new(shared.clone()).unwrap(),
            CachedKv::new(shared.clone()).unwrap(),
        );
        assert!(b
            .scan_prefix_first(Tree::BlobOwners, b"sha256:aa/", 1)
            .unwrap()
            .is_empty());
        // Remembered as the whole (empty) scan: a change past both copies is not seen ...
        assert!(shared
            .commit(Batch::new().put(Tree::BlobOwners, "sha256:aa/x", "o"))
            .unwrap());
        assert!(b
            .scan_prefix(Tree::BlobOwners, b"sha256:aa/")
            .unwrap()
            .is_empty());
        // ... but a replica's write under the prefix drops it.
        assert!(a
            .commit(Batch::new().put(Tree::BlobOwners, "sha256:aa/y", "o"))
            .unwrap());
        settle();
        assert_eq!(
            b.scan_prefix_first(Tree::BlobOwners, b"sha256:aa/", 1)
                .unwrap()
                .len(),
            1
        );
        // A scan cut at its limit is not remembered as the whole.
        assert_eq!(
            b.scan_prefix(Tree::BlobOwners, b"sha256:aa/")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn a_subscriber_hears_a_note_only_once_the_copy_has_dropped_what_it_names() {
        let shared: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        let (a, b) = (
            CachedKv::new(shared.clone()).unwrap(),
            CachedKv::new(shared.clone()).unwrap(),
        );
        let mut heard = b.subscribe().unwrap();
        for round in 0..20 {
            // B keeps a copy of the deployments, then A writes one with a note.
            let before = b.scan_prefix(Tree::Deployments, b"acme/").unwrap().len();
            assert_eq!(before, round);
            let key = format!("acme/{round:02}");
            assert!(a
                .commit(Batch::new().put(Tree::Deployments, key, "dep").note("r1 d"))
                .unwrap());
            // The moment B's subscriber hears A's note, B reads A's write.
            loop {
                match crate::store::testsuite::next_notice(&mut heard) {
                    Some(Notice::Note(n)) if n == "r1 d" => break,
                    Some(_) => continue,
                    None => panic!("no note heard"),
                }
            }
            assert_eq!(
                b.scan_prefix(Tree::Deployments, b"acme/").unwrap().len(),
                round + 1
            );
        }
    }

    #[test]
    fn two_replicas_copies_follow_each_other_s_writes() {
        let shared: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        let (a, b) = (
            CachedKv::new(shared.clone()).unwrap(),
            CachedKv::new(shared.clone()).unwrap(),
        );
        assert!(a
            .commit(Batch::new().put(Tree::Devices, "acme/d1", "v1"))
            .unwrap());
        assert_eq!(b.get(Tree::Devices, b"acme/d1").unwrap().unwrap(), b"v1");
        assert_eq!(b.scan_prefix(Tree::Deployments, b"acme/").unwrap(), vec![]);
        // A writes again: B's copies are dropped by the note.
        assert!(a
            .commit(Batch::new().put(Tree::Devices, "acme/d1", "v2").put(
                Tree::Deployments,
                "acme/1",
                "dep"
            ))
            .unwrap());
        settle();
        assert_eq!(b.get(Tree::Devices, b"acme/d1").unwrap().unwrap(), b"v2");
        assert_eq!(b.scan_prefix(Tree::Deployments, b"acme/").unwrap().len(), 1);
        // A batch checked against a stale copy fails, and the retry reads afresh.
        let stale = b.get(Tree::Devices, b"acme/d1").unwrap();
        assert!(shared
            .commit(Batch::new().put(Tree::Devices, "acme/d1", "v3"))
            .unwrap());
        assert!(!b
            .commit(Batch::new().check(Tree::Devices, "acme/d1", stale).put(
                Tree::Devices,
                "acme/d1",
                "mine"
            ))
            .unwrap());
        assert_eq!(b.get(Tree::Devices, b"acme/d1").unwrap().unwrap(), b"v3");
        // A batch of many keys names the whole tree.
        let mut big = Batch::new();
        for i in 0..100 {
            big = big.put(Tree::Artifacts, format!("t/n{i}@1"), "x");
        }
        b.get(Tree::Artifacts, b"t/n5@1").unwrap();
        assert!(a.commit(big).unwrap());
        settle();
        assert_eq!(b.get(Tree::Artifacts, b"t/n5@1").unwrap().unwrap(), b"x");
    }
}
