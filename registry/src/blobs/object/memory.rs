//! What an [`ObjectBlobStore`] keeps in memory and hands out as readers: the
//! small blobs read or written lately, and the stream of a large one.

use std::sync::Arc;

use algobay_runtime::Digest;

use super::ObjectBlobStore;
use crate::bridge::Bridge;

/// Blobs up to this size are kept in [`ObjectBlobStore::recent`]...
pub(super) const RECENT_MAX_BLOB: usize = 256 << 10;
/// ... up to this many bytes in all (the oldest go first).
pub(super) const RECENT_BUDGET: usize = 64 << 20;

#[derive(Debug, Default)]
pub(super) struct Recent {
    bytes: std::collections::HashMap<Digest, Arc<Vec<u8>>>,
    order: std::collections::VecDeque<Digest>,
    total: usize,
}

impl Recent {
    pub(super) fn get(&self, d: &Digest) -> Option<Arc<Vec<u8>>> {
        self.bytes.get(d).cloned()
    }

    pub(super) fn keep(&mut self, d: Digest, data: Arc<Vec<u8>>) {
        if data.len() > RECENT_MAX_BLOB || self.bytes.contains_key(&d) {
            return;
        }
        self.total += data.len();
        self.bytes.insert(d, data);
        self.order.push_back(d);
        while self.total > RECENT_BUDGET {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(b) = self.bytes.remove(&old) {
                self.total -= b.len();
            }
        }
    }
}

impl std::fmt::Debug for ObjectBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBlobStore")
            .field("store", &self.describe)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl ObjectBlobStore {
    pub(super) fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Shared bytes, readable through a cursor.
pub(super) struct SharedBytes(pub(super) Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Reads what the streaming task sends.
pub(super) struct ChannelReader {
    pub(super) rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    pub(super) buf: Vec<u8>,
    pub(super) at: usize,
    /// Keeps the runtime the stream runs on alive while it is read.
    #[allow(dead_code)]
    pub(super) bridge: Arc<Bridge>,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.buf.len() {
            match self.rx.recv() {
                Ok(Ok(b)) => {
                    self.buf = b;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
