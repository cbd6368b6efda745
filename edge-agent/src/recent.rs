//! The inputs of recent requests, kept so that the application's ground truth
//! (`POST /v1/feedback`) can attach to a request that was not kept as a hard
//! example.
//!
//! A bounded ring on disk: `recent/<seq>.req`, each a JSON header line (the
//! request id and the sample it would make) followed by the input bytes, the
//! same layout as the sample queue. Files are written whole under a temporary
//! name and renamed (not synced: losing the last requests in a power cut loses
//! only the chance of feedback on them). Past `capacity` requests, or past
//! `budget` bytes, the oldest files go: the disk never fills.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{io, write_atomic, AgentError, Result};
use crate::samples::SampleMeta;

#[derive(Serialize, Deserialize)]
struct Header {
    request_id: String,
    sample: SampleMeta,
    /// The feedback it got (a request takes feedback once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    feedback: Option<String>,
}

/// What taking feedback for a request found.
#[derive(Debug)]
pub enum Taken {
    /// The request's sample; the label is now recorded against it.
    Sample(SampleMeta, Vec<u8>),
    /// It had feedback already: this label.
    Already(String),
    /// Not among the recent requests.
    Gone,
}

/// The ring.
#[derive(Debug)]
pub struct RecentRequests {
    dir: PathBuf,
    capacity: usize,
    budget: u64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    /// (seq, request id, bytes), oldest first.
    order: VecDeque<(u64, String, u64)>,
    bytes: u64,
    by_id: HashMap<String, u64>,
}

fn name(seq: u64) -> String {
    format!("{seq:020}.req")
}

fn parse(path: &Path, bytes: &[u8]) -> Result<(Header, Vec<u8>)> {
    let nl = bytes
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(bytes.len());
    let h: Header = serde_json::from_slice(&bytes[..nl]).map_err(|e| AgentError::State {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok((h, bytes.get(nl + 1..).unwrap_or_default().to_vec()))
}

impl RecentRequests {
    /// Opens `<data>/recent`, keeping at most `capacity` requests (0: none)
    /// and `budget` bytes.
    pub fn open(data: &Path, capacity: usize, budget: u64) -> Result<RecentRequests> {
        let dir = data.join("recent");
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let entry = entry.map_err(|e| io(&dir, e))?;
            let n = entry.file_name().to_string_lossy().into_owned();
            match n.strip_suffix(".req").and_then(|s| s.parse::<u64>().ok()) {
                Some(seq) => found.push((seq, entry.path())),
                None => {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        found.sort();
        let mut inner = Inner::default();
        for (seq, path) in found {
            let read = std::fs::read(&path).ok().and_then(|b| {
                let size = b.len() as u64;
                parse(&path, &b).ok().map(|(h, _)| (h.request_id, size))
            });
            match read {
                Some((id, size)) => {
                    inner.by_id.insert(id.clone(), seq);
                    inner.order.push_back((seq, id, size));
                    inner.bytes += size;
                    inner.next = seq + 1;
                }
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let ring = RecentRequests {
            dir,
            capacity,
            budget,
            inner: Mutex::new(inner),
        };
        ring.trim(&mut ring.lock())?;
        Ok(ring)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn trim(&self, g: &mut Inner) -> Result<()> {
        while g.order.len() > self.capacity || g.bytes > self.budget {
            let Some((seq, id, size)) = g.order.pop_front() else {
                break;
            };
            g.bytes -= size;
            if g.by_id.get(&id) == Some(&seq) {
                g.by_id.remove(&id);
            }
            let p = self.dir.join(name(seq));
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&p, e)),
            }
        }
        Ok(())
    }

    /// Whether it keeps anything.
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// Requests it holds.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps a request's sample under its request id (a later one with the same id replaces it).
    pub fn record(&self, request_id: &str, sample: &SampleMeta, data: &[u8]) -> Result<()> {
        if self.capacity == 0 || data.len() as u64 > self.budget {
            return Ok(());
        }
        let mut bytes = serde_json::to_vec(&Header {
            request_id: request_id.to_owned(),
            sample: sample.clone(),
            feedback: None,
        })
        .map_err(|e| AgentError::State {
            path: self.dir.display().to_string(),
            message: e.to_string(),
        })?;
        bytes.push(b'\n');
        bytes.extend_from_slice(data);
        let mut g = self.lock();
        let seq = g.next;
        g.next += 1;
        write_atomic(&self.dir.join(name(seq)), &bytes, false)?;
        g.by_id.insert(request_id.to_owned(), seq);
        g.order
            .push_back((seq, request_id.to_owned(), bytes.len() as u64));
        g.bytes += bytes.len() as u64;
        self.trim(&mut g)
    }

    /// Takes the application's feedback for a request, once: returns its
    /// sample and records the label, or the label it had already.
    pub fn take_feedback(&self, request_id: &str, label: &str) -> Result<Taken> {
        let g = self.lock();
        let Some(seq) = g.by_id.get(request_id).copied() else {
            return Ok(Taken::Gone);
        };
        let p = self.dir.join(name(seq));
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Taken::Gone),
            Err(e) => return Err(io(&p, e)),
        };
        let (mut h, data) = parse(&p, &bytes)?;
        if let Some(prev) = h.feedback {
            return Ok(Taken::Already(prev));
        }
        h.feedback = Some(label.to_owned());
        let mut out = serde_json::to_vec(&h).map_err(|e| AgentError::State {
            path: p.display().to_string(),
            message: e.to_string(),
        })?;
        out.push(b'\n');
        out.extend_from_slice(&data);
        write_atomic(&p, &out, false)?;
        drop(g);
        Ok(Taken::Sample(h.sample, data))
    }

    /// The sample a request made, while it is still held.
    pub fn find(&self, request_id: &str) -> Result<Option<(SampleMeta, Vec<u8>)>> {
        let Some(seq) = self.lock().by_id.get(request_id).copied() else {
            return Ok(None);
        };
        let p = self.dir.join(name(seq));
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(parse(&p, &b).map(|(h, d)| (h.sample, d))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&p, e)),
        }
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
            reason: String::new(),
            trace_id: String::new(),
            created_unix: 0,
            outputs: serde_json::json!({}),
            inputs: vec![],
            feedback: None,
            shadow: None,
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_requests_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let r = RecentRequests::open(dir.path(), 3, 1 << 20).unwrap();
        for i in 0..5 {
            r.record(&format!("req-{i}"), &meta(&format!("s{i}")), &[i as u8; 4])
                .unwrap();
        }
        assert_eq!(r.len(), 3);
        assert!(r.find("req-1").unwrap().is_none(), "the oldest went");
        let (m, d) = r.find("req-4").unwrap().unwrap();
        assert_eq!((m.id.as_str(), d), ("s4", vec![4u8; 4]));
        drop(r);
        // Reopened with a smaller capacity: the oldest beyond it go.
        let r = RecentRequests::open(dir.path(), 2, 1 << 20).unwrap();
        assert_eq!(r.len(), 2);
        assert!(r.find("req-2").unwrap().is_none());
        assert_eq!(r.find("req-3").unwrap().unwrap().0.id, "s3");
        assert_eq!(
            std::fs::read_dir(dir.path().join("recent"))
                .unwrap()
                .count(),
            2,
            "files beyond the ring are deleted"
        );
    }

    #[test]
    fn the_ring_keeps_within_its_byte_budget() {
        let dir = tempfile::tempdir().unwrap();
        let r = RecentRequests::open(dir.path(), 100, 2000).unwrap();
        for i in 0..10 {
            r.record(&format!("req-{i}"), &meta(&format!("s{i}")), &[0u8; 500])
                .unwrap();
        }
        let on_disk: u64 = std::fs::read_dir(dir.path().join("recent"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(on_disk <= 2000, "{on_disk} bytes");
        assert!(r.len() >= 2 && r.find("req-9").unwrap().is_some());
        // A request bigger than the whole budget is not kept.
        r.record("huge", &meta("h"), &[0u8; 4000]).unwrap();
        assert!(r.find("huge").unwrap().is_none());
        assert!(r.find("req-9").unwrap().is_some());
    }
}
