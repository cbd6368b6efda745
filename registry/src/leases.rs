//! Leases on work that one replica does at a time (the time-driven gates and
//! training triggers), kept in the shared metadata store: a record names the
//! holder and until when; the holder renews it, anyone takes it once it
//! lapsed, and a checked batch makes a take-over race have one winner.
//! Replicas' clocks are assumed close (seconds); a lease is far longer.

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
