//! The files every replica must agree on — the registry's signing key, its TLS
//! certificate (when it made its own) and the device CA — kept in the metadata
//! store as well as in each replica's data folder, so that replicas sharing a
//! store present one certificate, trust one CA and countersign with one key.
//!
//! At start a replica first writes into its folder what the store holds
//! ([`pull`]), then loads or makes the files as a lone registry would, then
//! offers them to the store ([`push`]), which takes the first replica's only.
//! The store is then as secret as the data folder: guard it likewise.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;

use crate::error::{RegistryError, Result};
use crate::store::{Batch, KvStore, Tree};

/// The shared files, relative to the data folder, and whether each is private.
pub const FILES: &[(&str, bool)] = &[
    ("registry.key", true),
    ("registry.key.pub", false),
    ("tls/cert.pem", false),
    ("tls/key.pem", true),
    ("ca/ca.pem", false),
    ("ca/ca.key", true),
];

const KEY: &[u8] = b"files";

fn io(path: &Path, e: std::io::Error) -> RegistryError {
    RegistryError::Storage(format!("{}: {e}", path.display()))
}

fn decode(raw: &[u8]) -> Result<BTreeMap<String, String>> {
    serde_json::from_slice(raw)
        .map_err(|e| RegistryError::Storage(format!("the shared files record is corrupt: {e}")))
}

/// Writes the files the store holds into `data`; returns whether it held any.
/// A local file that differs is kept beside as `NAME.local`.
pub fn pull(kv: &dyn KvStore, data: &Path) -> Result<bool> {
    let Some(raw) = kv.get(Tree::Secrets, KEY)? else {
        return Ok(false);
    };
    for (name, b64) in decode(&raw)? {
        let Some(&(_, private)) = FILES.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| RegistryError::Storage(format!("shared file {name}: {e}")))?;
        let path = data.join(&name);
        match std::fs::read(&path) {
            Ok(have) if have == bytes => continue,
            Ok(have) => {
                let keep = data.join(format!("{name}.local"));
                crate::tls::write_private(&keep, &have)?;
                tracing::warn!(file = %path.display(), kept = %keep.display(),
                    "replaced by the shared copy in the metadata store");
            }
            Err(_) => {}
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        if private {
            crate::tls::write_private(&path, &bytes)?;
        } else {
            std::fs::write(&path, &bytes).map_err(|e| io(&path, e))?;
        }
    }
    Ok(true)
}

/// Offers the files present in `data` to the store; returns false when the
/// store holds other files (another replica's, stored first: then [`pull`] and
/// load again).
pub fn push(kv: &dyn KvStore, data: &Path) -> Result<bool> {
    let mut files = BTreeMap::new();
    for (name, _) in FILES {
        let path = data.join(name);
        match std::fs::read(&path) {
            Ok(b) => {
                files.insert(
                    name.to_string(),
                    base64::engine::general_purpose::STANDARD.encode(b),
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path, e)),
        }
    }
    if let Some(raw) = kv.get(Tree::Secrets, KEY)? {
        return Ok(decode(&raw)? == files);
    }
    let value = serde_json::to_vec(&files)
        .map_err(|e| RegistryError::Storage(format!("shared files: {e}")))?;
    kv.commit(
        Batch::new()
            .check(Tree::Secrets, KEY, None)
            .put(Tree::Secrets, KEY, value),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn the_first_replica_s_files_win_and_the_second_takes_them() {
        let kv = MemoryStore::new();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(a.path().join("registry.key"), "key of a").unwrap();
        std::fs::create_dir_all(a.path().join("ca")).unwrap();
        std::fs::write(a.path().join("ca/ca.pem"), "ca of a").unwrap();
        std::fs::write(b.path().join("registry.key"), "key of b").unwrap();
        assert!(!pull(&kv, a.path()).unwrap(), "nothing shared yet");
        assert!(push(&kv, a.path()).unwrap());
        // b made its own key before it looked: the shared one replaces it, its own is kept aside.
        assert!(pull(&kv, b.path()).unwrap());
        assert_eq!(
            std::fs::read_to_string(b.path().join("registry.key")).unwrap(),
            "key of a"
        );
        assert_eq!(
            std::fs::read_to_string(b.path().join("registry.key.local")).unwrap(),
            "key of b"
        );
        assert_eq!(
            std::fs::read_to_string(b.path().join("ca/ca.pem")).unwrap(),
            "ca of a"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(b.path().join("registry.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "private keys are written private");
        }
        assert!(
            push(&kv, b.path()).unwrap(),
            "the same files: nothing to do"
        );
    }

    #[test]
    fn of_two_replicas_offering_files_at_once_one_wins() {
        let kv = std::sync::Arc::new(MemoryStore::new());
        let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
        for (i, d) in dirs.iter().enumerate() {
            std::fs::write(d.path().join("registry.key"), format!("key {i}")).unwrap();
        }
        let won: Vec<bool> = std::thread::scope(|s| {
            let hs: Vec<_> = dirs
                .iter()
                .map(|d| {
                    let kv = kv.clone();
                    s.spawn(move || push(&*kv, d.path()).unwrap())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
        // The loser pulls the winner's key.
        let loser = &dirs[won.iter().position(|w| !w).unwrap()];
        let winner = &dirs[won.iter().position(|w| *w).unwrap()];
        pull(&*kv, loser.path()).unwrap();
        assert_eq!(
            std::fs::read(loser.path().join("registry.key")).unwrap(),
            std::fs::read(winner.path().join("registry.key")).unwrap()
        );
    }
}
