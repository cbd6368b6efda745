//! What replicas sharing the metadata store agree on through it.
//!
//! Leases on work that one replica does at a time (the time-driven gates and
//! training triggers): a record names the holder and until when; the holder
//! renews it, anyone takes it once it lapsed, and a checked batch makes a
//! take-over race have one winner. Replicas' clocks are assumed close
//! (seconds); a lease is far longer.
//!
//! The sequence that orders deployments and names training runs: one counter,
//! moved by checked batches, so two replicas never hand out the same number.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::service::{json, parse, Registry};
use crate::store::{Batch, Tree};

/// How long the `tick` lease lasts; its holder renews it every second.
pub const TICK_LEASE_SECONDS: i64 = 10;

#[derive(Debug, Serialize, Deserialize)]
struct Lease {
    holder: String,
    until_unix: i64,
}

impl Registry {
    /// Takes or renews the lease `name` for `seconds`; whether this replica holds it.
    pub(crate) fn hold_lease(&self, name: &str, seconds: i64) -> Result<bool> {
        let now = self.clock.now_unix();
        let old = self.kv.get(Tree::Leases, name.as_bytes())?;
        if let Some(v) = &old {
            let l: Lease = parse("lease", v)?;
            if l.holder != self.replica && l.until_unix >= now {
                return Ok(false);
            }
        }
        let new = Lease {
            holder: self.replica.clone(),
            until_unix: now + seconds,
        };
        self.kv
            .commit(Batch::new().check(Tree::Leases, name.as_bytes(), old).put(
                Tree::Leases,
                name.as_bytes(),
                json(&new),
            ))
    }
}

impl Registry {
    /// The next number of the shared sequence (never given out twice).
    pub(crate) fn next_seq(&self) -> Result<u64> {
        use std::sync::atomic::Ordering;
        for _ in 0..1000 {
            let old = self.kv.get(Tree::Counters, b"seq")?;
            let stored = old
                .as_deref()
                .and_then(|b| std::str::from_utf8(b).ok()?.parse::<u64>().ok())
                .unwrap_or(0);
            // Stores made before the counter existed start from what is in them.
            let next = stored.max(self.seq.load(Ordering::SeqCst)) + 1;
            if self
                .kv
                .commit(Batch::new().check(Tree::Counters, &b"seq"[..], old).put(
                    Tree::Counters,
                    &b"seq"[..],
                    next.to_string(),
                ))?
            {
                self.seq.fetch_max(next, Ordering::SeqCst);
                return Ok(next);
            }
        }
        Err(crate::error::RegistryError::Storage(
            "the shared sequence: 1000 tries lost to other replicas".into(),
        ))
    }
}
