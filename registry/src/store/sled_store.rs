use std::path::Path;
use std::sync::{Condvar, Mutex};

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::{Batch, KvStore, Tree};
use crate::error::{RegistryError, Result};

/// Metadata in sled, the embedded default: one sled tree per [`Tree`], batches
/// as transactions over the trees they touch, flushed to disk before
/// `commit` returns (commits that wait at once share one flush).
#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    /// sled is one process's: its notes go to that process's subscribers.
    hub: super::Hub,
    flushes: GroupFlush,
}

/// Group commit: a flush covers every write made before it began, so the
/// commits waiting while one runs are all made durable by the next, one
/// fsync for the lot rather than one each.
#[derive(Debug, Default)]
struct GroupFlush {
    state: Mutex<FlushState>,
    finished: Condvar,
}

#[derive(Debug, Default)]
struct FlushState {
    /// Tickets handed out: each to a commit whose writes are done.
    issued: u64,
    /// Every ticket up to this one is on disk.
    durable: u64,
    running: bool,
}

impl GroupFlush {
    /// Returns once the writes this thread made before the call are on disk.
    fn flush(&self, db: &sled::Db) -> Result<()> {
        let lock = || self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = lock();
        st.issued += 1;
        let mine = st.issued;
        loop {
            if st.durable >= mine {
                return Ok(());
            }
            if st.running {
                st = self.finished.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Every ticket issued so far had its writes done before it was
            // issued: the flush that starts now covers them all.
            st.running = true;
            let covers = st.issued;
            drop(st);
            let flushed = flush_db(db);
            st = lock();
            st.running = false;
            if flushed.is_ok() {
                st.durable = st.durable.max(covers);
            }
            self.finished.notify_all();
            // A failed flush fails its caller; the others waiting try again.
            flushed?;
        }
    }
}

fn flush_db(db: &sled::Db) -> Result<()> {
    db.flush().map(|_| ()).map_err(storage)
}

fn storage(e: sled::Error) -> RegistryError {
    RegistryError::Storage(format!("sled: {e}"))
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<SledStore> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(storage)?;
        let trees = Tree::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(storage)?;
        Ok(SledStore {
            db,
            trees,
            hub: super::Hub::default(),
            flushes: GroupFlush::default(),
        })
    }

    fn tree(&self, t: Tree) -> &sled::Tree {
        &self.trees[Tree::ALL
            .iter()
            .position(|x| *x == t)
            .expect("every tree is opened")]
    }
}

impl KvStore for SledStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tree(tree)
            .get(key)
            .map_err(storage)?
            .map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_prefix_first(tree, prefix, usize::MAX)
    }

    fn scan_prefix_first(
        &self,
        tree: Tree,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.tree(tree)
            .scan_prefix(prefix)
            .take(limit)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(storage))
            .collect()
    }

    fn commit(&self, batch: Batch) -> Result<bool> {
        // The transaction spans only the trees the batch touches: each tree
        // in it is locked and checked, so fewer is cheaper.
        let mut touched: Vec<Tree> = batch
            .checks
            .iter()
            .map(|(t, _, _)| *t)
            .chain(batch.writes.iter().map(|(t, _, _)| *t))
            .collect();
        touched.sort_by_key(|t| Tree::ALL.iter().position(|x| x == t));
        touched.dedup();
        if touched.is_empty() {
            for n in batch.notes {
                self.hub.send(super::Notice::Note(n));
            }
            return Ok(true);
        }
        let trees: Vec<sled::Tree> = touched.iter().map(|t| self.tree(*t).clone()).collect();
        let index = |t: Tree| {
            touched
                .iter()
                .position(|x| *x == t)
                .expect("every tree of the batch is in the transaction")
        };
        let result = trees[..].transaction(|views| {
            for (tree, key, expected) in &batch.checks {
                let current = views[index(*tree)].get(key)?;
                if current.as_deref() != expected.as_deref() {
                    return Err(ConflictableTransactionError::Abort(()));
                }
            }
            for (tree, key, value) in &batch.writes {
                match value {
                    Some(v) => views[index(*tree)].insert(key.as_slice(), v.as_slice())?,
                    None => views[index(*tree)].remove(key.as_slice())?,
                };
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                self.flushes.flush(&self.db)?;
                for n in batch.notes {
                    self.hub.send(super::Notice::Note(n));
                }
                Ok(true)
            }
            Err(TransactionError::Abort(())) => Ok(false),
            Err(TransactionError::Storage(e)) => Err(storage(e)),
        }
    }

    fn subscribe(&self) -> Result<super::Subscription> {
        Ok(self.hub.subscribe())
    }
}
