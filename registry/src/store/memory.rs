use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Batch, KvStore, Tree};
use crate::error::{RegistryError, Result};

/// Every tree's pairs, keyed by (tree, key).
type Trees = BTreeMap<(Tree, Vec<u8>), Vec<u8>>;

/// Metadata in memory: for tests and throw-away registries.
#[derive(Debug, Default)]
pub struct MemoryStore {
    trees: Mutex<Trees>,
    hub: super::Hub,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl KvStore for MemoryStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let m = self
            .trees
            .lock()
            .map_err(|_| RegistryError::Storage("memory store lock poisoned".into()))?;
        Ok(m.get(&(tree, key.to_vec())).cloned())
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
        let m = self
            .trees
            .lock()
            .map_err(|_| RegistryError::Storage("memory store lock poisoned".into()))?;
        Ok(m.range((tree, prefix.to_vec())..)
            .take_while(|((t, k), _)| *t == tree && k.starts_with(prefix))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn commit(&self, batch: Batch) -> Result<bool> {
        let mut m = self
            .trees
            .lock()
            .map_err(|_| RegistryError::Storage("memory store lock poisoned".into()))?;
        for (tree, key, expected) in &batch.checks {
            if m.get(&(*tree, key.clone())) != expected.as_ref() {
                return Ok(false);
            }
        }
        for (tree, key, value) in batch.writes {
            match value {
                Some(v) => m.insert((tree, key), v),
                None => m.remove(&(tree, key)),
            };
        }
        drop(m);
        for n in batch.notes {
            self.hub.send(super::Notice::Note(n));
        }
        Ok(true)
    }

    fn subscribe(&self) -> Result<super::Subscription> {
        Ok(self.hub.subscribe())
    }
}
