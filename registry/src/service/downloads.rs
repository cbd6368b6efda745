//! How often each artifact's file was downloaded, per day: counted when a
//! download from the start ends, kept in the shared store (one record per
//! artifact and day, moved by checked batches), summed into the search index
//! for ordering by downloads.

use super::*;

const DAY: i64 = 86_400;

fn day_key(artifact: &str, day: i64) -> String {
    format!("{artifact}/{day:010}")
}

impl Registry {
    /// Counts one whole download of `digest` for every artifact whose file it is.
    pub fn note_download(&self, digest: &Digest) -> Result<()> {
        let day = self.clock.now_unix().div_euclid(DAY);
        let prefix = format!("{digest}/");
        for (k, _) in self.kv.scan_prefix(Tree::Digests, prefix.as_bytes())? {
            let key = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            let Some(v) = self.kv.get(Tree::Artifacts, key.as_bytes())? else {
                continue;
            };
            if parse::<Artifact>("artifact", &v)?.digest != *digest {
                continue; // a blob it needs, not its file
            }
            let dk = day_key(&key, day);
            let mut counted = false;
            for _ in 0..8 {
                let old = self.kv.get(Tree::Downloads, dk.as_bytes())?;
                let n = old
                    .as_deref()
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
                if self.kv.commit(
                    Batch::new()
                        .check(Tree::Downloads, dk.as_bytes(), old)
                        .put(Tree::Downloads, dk.as_bytes(), (n + 1).to_string())
                        .note(self.note_downloads(&key)),
                )? {
                    counted = true;
                    break;
                }
            }
            if !counted {
                tracing::debug!(artifact = %key, "download count contended; one not counted");
            }
            self.recount_downloads(&key)?;
        }
        Ok(())
    }

    /// The note that tells other replicas an artifact's downloads changed.
    pub(crate) fn note_downloads(&self, key: &str) -> String {
        format!("{} n {key}", self.replica)
    }

    /// Sums an artifact's downloads into the search index.
    pub(crate) fn recount_downloads(&self, key: &str) -> Result<()> {
        let total: u64 = self.download_days(key)?.into_iter().map(|(_, n)| n).sum();
        self.index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .set_downloads(key, total);
        Ok(())
    }

    /// Every artifact's downloads, summed into the index (at start, or when
    /// other replicas' notes may have been missed).
    pub(crate) fn load_downloads(&self, index: &mut SearchIndex) -> Result<()> {
        let mut totals: BTreeMap<String, u64> = BTreeMap::new();
        for (k, v) in self.kv.scan_prefix(Tree::Downloads, b"")? {
            let k = String::from_utf8_lossy(&k);
            if let Some((artifact, _)) = k.rsplit_once('/') {
                *totals.entry(artifact.to_owned()).or_default() += count(&v);
            }
        }
        for (k, n) in totals {
            index.set_downloads(&k, n);
        }
        Ok(())
    }

    fn download_days(&self, key: &str) -> Result<Vec<(i64, u64)>> {
        let prefix = format!("{key}/");
        Ok(self
            .kv
            .scan_prefix(Tree::Downloads, prefix.as_bytes())?
            .into_iter()
            .filter_map(|(k, v)| {
                let day = std::str::from_utf8(&k[prefix.len()..]).ok()?.parse().ok()?;
                Some((day, count(&v)))
            })
            .collect())
    }

    /// An artifact the caller may see: its downloads per day (unix day
    /// numbers, oldest first; days without any left out).
    pub fn downloads(
        &self,
        p: &Principal,
        reference: &str,
        kind: Option<Kind>,
    ) -> Result<Vec<(i64, u64)>> {
        let a = self.get_for(p, reference, kind)?;
        self.download_days(&a.key())
    }
}

fn count(v: &[u8]) -> u64 {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
