use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::{Batch, KvStore, Tree};
use crate::error::{RegistryError, Result};

/// Metadata in sled, the embedded default: one sled tree per [`Tree`], batches
/// as multi-tree transactions, flushed before `commit` returns.
#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    /// sled is one process's: its notes go to that process's subscribers.
    hub: super::Hub,
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
        self.tree(tree)
            .scan_prefix(prefix)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(storage))
            .collect()
    }

    fn commit(&self, batch: Batch) -> Result<bool> {
        let index = |t: Tree| {
            Tree::ALL
                .iter()
                .position(|x| *x == t)
                .expect("every tree is opened")
        };
        let result = self.trees[..].transaction(|views| {
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
                self.db.flush().map_err(storage)?;
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
