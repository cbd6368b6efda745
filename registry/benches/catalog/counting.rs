//! A metadata store that counts the calls reaching it, so the benchmark can
//! say how many round trips an operation costs on a shared store.

use std::collections::BTreeMap;
use std::sync::Mutex;

use algobay_registry::error::Result;
use algobay_registry::store::{Batch, KvStore, Subscription, Tree};

pub struct Counting {
    inner: std::sync::Arc<dyn KvStore>,
    calls: Mutex<BTreeMap<String, u64>>,
}

impl Counting {
    pub fn new(inner: std::sync::Arc<dyn KvStore>) -> Counting {
        Counting {
            inner,
            calls: Mutex::new(BTreeMap::new()),
        }
    }

    fn count(&self, what: String) {
        *self.calls.lock().unwrap().entry(what).or_default() += 1;
    }

    /// The calls counted since the last take, by kind and tree.
    pub fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl KvStore for Counting {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.count(format!("get {tree:?}"));
        self.inner.get(tree, key)
    }
    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.count(format!("scan {tree:?}"));
        self.inner.scan_prefix(tree, prefix)
    }
    fn commit(&self, batch: Batch) -> Result<bool> {
        self.count("commit".into());
        self.inner.commit(batch)
    }
    fn subscribe(&self) -> Result<Subscription> {
        self.inner.subscribe()
    }
}
