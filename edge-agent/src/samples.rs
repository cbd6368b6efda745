//! Hard examples waiting to go to the registry: a bounded on-disk queue.
//!
//! Each sample is one file, `queue/<seq>.sample`: a JSON header line (what the
//! kit said, why it was kept, where its input bytes are) followed by the input
//! bytes. A file is written under a temporary name, synced and renamed, so a
//! crash leaves whole samples only. When the queue passes its byte budget the
//! oldest samples are dropped first and counted; the disk never fills.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{io, write_atomic, AgentError, Result};

/// One input of a sample, its bytes at `offset..offset+size` after the header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleInput {
    pub name: String,
    /// The protocol's datatype (`FP32`, …) or `BYTES`.
    pub datatype: String,
    pub shape: Vec<i64>,
    /// `sha256:<hex>` of the bytes.
    pub digest: String,
    pub size: u64,
}

/// What is known about a sample besides its input bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleMeta {
    /// sha256 over the kit digest and the input digests: the same input on the
    /// same kit is the same sample.
    pub id: String,
    pub kit_reference: String,
    pub kit_digest: String,
    pub deployment_id: String,
    pub reason: String,
    pub trace_id: String,
    pub created_unix: i64,
    /// The kit's outputs, as JSON.
    pub outputs: serde_json::Value,
    pub inputs: Vec<SampleInput>,
    /// The application's ground truth for it (`POST /v1/feedback`), sent as a
    /// `feedback` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<String>,
    /// On a canary: what the kit it replaces answered to the same inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowAnswer>,
}

/// The shadow kit's answer to a sample's inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShadowAnswer {
    /// `sha256:<hex>` of the shadow kit's manifest.
    pub digest: String,
    pub outputs: serde_json::Value,
}

/// The queue.
#[derive(Debug)]
pub struct SampleQueue {
    dir: PathBuf,
    budget: u64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    /// (seq, bytes) of every queued file, oldest first.
    files: Vec<(u64, u64)>,
    dropped: u64,
}

fn name(seq: u64) -> String {
    format!("{seq:020}.sample")
}

impl SampleQueue {
    /// Opens `<data>/samples` with a budget of `budget` bytes.
    pub fn open(data: &Path, budget: u64) -> Result<SampleQueue> {
        let dir = data.join("samples");
        let q = dir.join("queue");
        std::fs::create_dir_all(&q).map_err(|e| io(&q, e))?;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&q).map_err(|e| io(&q, e))? {
            let entry = entry.map_err(|e| io(&q, e))?;
            let n = entry.file_name().to_string_lossy().into_owned();
            match n
                .strip_suffix(".sample")
                .and_then(|s| s.parse::<u64>().ok())
            {
                Some(seq) => files.push((seq, entry.metadata().map_err(|e| io(&q, e))?.len())),
                // A write cut short by a crash.
                None => {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        files.sort_unstable();
        let dropped = std::fs::read_to_string(dir.join("dropped"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let next = files.last().map(|(s, _)| s + 1).unwrap_or(0);
        Ok(SampleQueue {
            dir,
            budget,
            inner: Mutex::new(Inner {
                next,
                files,
                dropped,
            }),
        })
    }

    fn queue_dir(&self) -> PathBuf {
        self.dir.join("queue")
    }

    /// Samples dropped to keep within the budget, since the device started keeping them.
    pub fn dropped(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).dropped
    }

    /// Counts `n` samples given up on (the registry refuses them for good).
    pub fn count_dropped(&self, n: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.dropped += n;
        if let Err(e) = self.save_dropped(g.dropped) {
            tracing::warn!(error = %e, "could not record dropped samples");
        }
    }

    /// Samples waiting and their bytes.
    pub fn len(&self) -> (usize, u64) {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (g.files.len(), g.files.iter().map(|(_, b)| b).sum())
    }

    pub fn is_empty(&self) -> bool {
        self.len().0 == 0
    }

    /// Adds a sample; drops the oldest ones while the queue is over its budget.
    pub fn push(&self, meta: &SampleMeta, data: &[u8]) -> Result<()> {
        let mut bytes = serde_json::to_vec(meta).map_err(|e| AgentError::State {
            path: self.dir.display().to_string(),
            message: e.to_string(),
        })?;
        bytes.push(b'\n');
        bytes.extend_from_slice(data);
        let size = bytes.len() as u64;
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if size > self.budget {
            g.dropped += 1;
            self.save_dropped(g.dropped)?;
            return Ok(());
        }
        let seq = g.next;
        g.next += 1;
        write_atomic(&self.queue_dir().join(name(seq)), &bytes, false)?;
        g.files.push((seq, size));
        let mut total: u64 = g.files.iter().map(|(_, b)| b).sum();
        let mut dropped = 0;
        while total > self.budget && !g.files.is_empty() {
            let (old, b) = g.files.remove(0);
            let p = self.queue_dir().join(name(old));
            std::fs::remove_file(&p).map_err(|e| io(&p, e))?;
            total -= b;
            dropped += 1;
        }
        if dropped > 0 {
            g.dropped += dropped;
            tracing::warn!(
                dropped,
                total_dropped = g.dropped,
                "sample queue over its budget; oldest dropped"
            );
            self.save_dropped(g.dropped)?;
        }
        Ok(())
    }

    fn save_dropped(&self, n: u64) -> Result<()> {
        write_atomic(&self.dir.join("dropped"), n.to_string().as_bytes(), false)
    }

    /// The oldest samples, up to `max_bytes` (at least one), with their sequence numbers.
    pub fn peek(
        &self,
        max_bytes: u64,
        max_count: usize,
    ) -> Result<Vec<(u64, SampleMeta, Vec<u8>)>> {
        let files: Vec<(u64, u64)> = self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .files
            .clone();
        let mut out = Vec::new();
        let mut total = 0;
        for (seq, size) in files {
            if !out.is_empty() && (total + size > max_bytes || out.len() >= max_count.max(1)) {
                break;
            }
            let p = self.queue_dir().join(name(seq));
            let bytes = match std::fs::read(&p) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&p, e)),
            };
            let nl = bytes
                .iter()
                .position(|b| *b == b'\n')
                .unwrap_or(bytes.len());
            let meta: SampleMeta =
                serde_json::from_slice(&bytes[..nl]).map_err(|e| AgentError::State {
                    path: p.display().to_string(),
                    message: e.to_string(),
                })?;
            out.push((seq, meta, bytes.get(nl + 1..).unwrap_or_default().to_vec()));
            total += size;
        }
        Ok(out)
    }

    /// Removes samples the registry has.
    pub fn ack(&self, seqs: &[u64]) -> Result<()> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for seq in seqs {
            let p = self.queue_dir().join(name(*seq));
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&p, e)),
            }
            g.files.retain(|(s, _)| s != seq);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn meta(id: &str) -> SampleMeta {
        SampleMeta {
            id: id.into(),
            kit_reference: "t/k@1.0.0".into(),
            kit_digest: "sha256:00".into(),
            deployment_id: "dep".into(),
            reason: "low score".into(),
            trace_id: String::new(),
            created_unix: 0,
            outputs: serde_json::json!({"result": 1}),
            inputs: vec![],
            feedback: None,
            shadow: None,
        }
    }

    #[test]
    fn the_oldest_samples_go_first_past_the_budget_and_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let q = SampleQueue::open(dir.path(), 1000).unwrap();
        for i in 0..5 {
            q.push(&meta(&format!("s{i}")), &[i as u8; 200]).unwrap();
        }
        let (n, bytes) = q.len();
        assert!(bytes <= 1000, "{bytes}");
        assert!(q.dropped() >= 1 && n as u64 + q.dropped() == 5);
        let first = q.peek(u64::MAX, usize::MAX).unwrap();
        assert_eq!(
            first[0].1.id,
            format!("s{}", q.dropped()),
            "oldest dropped first"
        );
        assert_eq!(first[0].2, vec![q.dropped() as u8; 200]);
        // One bigger than the whole budget is dropped, not stored.
        q.push(&meta("huge"), &[0; 2000]).unwrap();
        assert_eq!(q.len().0, n);

        // It all survives a restart.
        let dropped = q.dropped();
        drop(q);
        let q = SampleQueue::open(dir.path(), 1000).unwrap();
        assert_eq!((q.len().0, q.dropped()), (n, dropped));
        let batch = q.peek(1, usize::MAX).unwrap();
        assert_eq!(
            batch.len(),
            1,
            "at least one, then no more than the byte limit"
        );
        q.ack(&[batch[0].0]).unwrap();
        assert_eq!(q.len().0, n - 1);
        q.push(&meta("after"), b"x").unwrap();
        assert_eq!(
            q.peek(u64::MAX, usize::MAX).unwrap().last().unwrap().1.id,
            "after"
        );
    }
}
