//! The Algobay registry: the cloud catalog of teams, models, tools and kits.
//!
//! # Layout
//! - [`store`]: the metadata store trait (trees of bytes, atomic checked batches),
//!   with sled (the embedded default) and in-memory backends.
//! - [`blobs`]: the content-addressed blob store trait, with a local-folder and an
//!   in-memory backend; resumable uploads, verified reads.
//! - [`error`]: the registry's error type and its mapping to gRPC status codes.
//! - [`domain`]: artifacts, teams, enterprises, tokens, principals, queries.
//! - [`service`]: the registry itself, over domain types: auth, publishing, search, coverage.
//! - [`fleet`]: enterprises' devices (enrollment, mTLS identity, revocation),
//!   deployments with canary rollouts and health gates, each device's desired state.
//! - [`telemetry`]: devices' serving figures from their OpenTelemetry metrics
//!   (the embedded OTLP receiver is in [`grpc`]).
//! - [`index`]: the in-memory search index.
//! - [`grpc`]: the thin gRPC adapter (wire types stay there); [`server`] wires it
//!   up with health checking and reflection; [`tls`] makes or reads the identity;
//!   [`metrics`] counts and logs every call and serves Prometheus text.

pub mod access;
pub mod blobs;
mod bridge;
pub mod domain;
pub mod error;
pub mod fleet;
pub mod grpc;
pub mod index;
pub mod leases;
pub mod limits;
pub mod metrics;
pub mod samples;
pub mod server;
pub mod service;
pub mod shared;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod traces;
pub mod training;
pub mod web;

pub use error::{RegistryError, Result};

#[cfg(test)]
mod conformance {
    use std::sync::Arc;

    use crate::blobs::{self, LocalBlobStore, MemoryBlobStore};
    use crate::store::{self, MemoryStore, SledStore};

    #[test]
    fn memory_store_passes_the_kv_conformance_suite() {
        store::testsuite::run_all(&MemoryStore::new());
        store::testsuite::concurrent_creates_have_one_winner(Arc::new(MemoryStore::new()));
        let s = MemoryStore::new();
        store::testsuite::notes_of_committed_batches_reach_subscribers(&s, &s);
    }

    #[test]
    fn the_copy_of_hot_trees_passes_the_kv_conformance_suite() {
        let cached = |kv: Arc<dyn store::KvStore>| Arc::new(store::CachedKv::new(kv).unwrap());
        store::testsuite::run_all(&*cached(Arc::new(MemoryStore::new())));
        store::testsuite::concurrent_creates_have_one_winner(cached(Arc::new(MemoryStore::new())));
        let pg = store::postgres::throwaway::Postgres::start();
        let url = pg.database("cached");
        store::testsuite::run_all(&*cached(Arc::new(store::PgStore::connect(&url).unwrap())));
    }

    #[test]
    fn sled_store_passes_the_kv_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        store::testsuite::run_all(&SledStore::open(&dir.path().join("a")).unwrap());
        store::testsuite::concurrent_creates_have_one_winner(Arc::new(
            SledStore::open(&dir.path().join("b")).unwrap(),
        ));
        let s = SledStore::open(&dir.path().join("c")).unwrap();
        store::testsuite::notes_of_committed_batches_reach_subscribers(&s, &s);
    }

    #[test]
    fn postgres_store_passes_the_kv_conformance_suite_on_a_real_server() {
        let pg = store::postgres::throwaway::Postgres::start();
        store::testsuite::run_all(&store::PgStore::connect(&pg.database("suite")).unwrap());
        let race = pg.database("race");
        store::testsuite::concurrent_creates_have_one_winner(Arc::new(
            store::PgStore::connect(&race).unwrap(),
        ));
        // A second store on the same database (another replica) finds the
        // schema made, applies nothing twice, sees what the first wrote and
        // hears its notes.
        let a = store::PgStore::connect(&race).unwrap();
        let b = store::PgStore::connect(&race).unwrap();
        store::testsuite::notes_of_committed_batches_reach_subscribers(&a, &b);
        // The listening connection is cut (an administrator ends it): the store
        // connects again, says notes may have been missed, and hears again.
        let mut rx = crate::store::KvStore::subscribe(&b).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&race, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let n = client
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .unwrap();
            assert!(n >= 1, "a listening connection was there to end");
        });
        assert_eq!(
            store::testsuite::next_notice(&mut rx),
            Some(crate::store::Notice::Missed)
        );
        assert!(crate::store::KvStore::commit(
            &a,
            crate::store::Batch::new().note("after the cut")
        )
        .unwrap());
        let mut heard = Vec::new();
        while let Some(n) = store::testsuite::next_notice(&mut rx) {
            heard.push(n.clone());
            if n == crate::store::Notice::Note("after the cut".into()) {
                break;
            }
        }
        assert_eq!(
            heard.last(),
            Some(&crate::store::Notice::Note("after the cut".into())),
            "{heard:?}"
        );
        assert!(crate::store::KvStore::commit(
            &a,
            crate::store::Batch::new().put(crate::store::Tree::Runs, b"\xff\x00k".to_vec(), "v")
        )
        .unwrap());
        assert_eq!(
            crate::store::KvStore::scan_prefix(&b, crate::store::Tree::Runs, b"\xff").unwrap(),
            vec![(b"\xff\x00k".to_vec(), b"v".to_vec())]
        );
    }

    #[test]
    fn a_postgres_url_that_cannot_be_reached_is_a_clear_error() {
        let err = store::PgStore::connect("postgres://nobody@127.0.0.1:1/none?sslmode=disable")
            .unwrap_err()
            .to_string();
        assert!(err.contains("postgres: connect"), "{err}");
        let err = store::PgStore::connect("mysql://x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("meta"), "{err}");
    }

    #[test]
    fn sled_store_keeps_committed_writes_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            assert!(crate::store::KvStore::commit(
                &s,
                crate::store::Batch::new().put(crate::store::Tree::Teams, "t", "v")
            )
            .unwrap());
        }
        // sled's background flusher lets go of the file lock a moment after
        // the store is dropped (a process that exits lets go at once).
        let mut tries = 0;
        let s = loop {
            match SledStore::open(dir.path()) {
                Ok(s) => break s,
                Err(e) if tries < 100 && e.to_string().contains("lock") => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(
            crate::store::KvStore::get(&s, crate::store::Tree::Teams, b"t")
                .unwrap()
                .as_deref(),
            Some(&b"v"[..])
        );
    }

    #[test]
    fn memory_blob_store_passes_the_blob_conformance_suite() {
        blobs::testsuite::run_all(&MemoryBlobStore::new(1 << 30));
    }

    #[test]
    fn local_blob_store_passes_the_blob_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        blobs::testsuite::run_all(&LocalBlobStore::open(dir.path(), 1 << 30).unwrap());
    }

    #[test]
    fn local_blob_store_resumes_an_upload_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        blobs::testsuite::upload_resumes_through_another_store(
            &LocalBlobStore::open(dir.path(), 1 << 30).unwrap(),
            &LocalBlobStore::open(dir.path(), 1 << 30).unwrap(),
            3 << 20,
        );
    }

    #[test]
    fn object_blob_store_in_memory_passes_the_blob_conformance_suite() {
        use blobs::{ObjectBlobOptions, ObjectBlobStore};
        let opts = ObjectBlobOptions {
            max_blob_bytes: 1 << 30,
            part_bytes: 256 << 10,
            prefix: "suite".into(),
        };
        blobs::testsuite::run_all(
            &ObjectBlobStore::memory(Arc::new(MemoryStore::new()), opts.clone()).unwrap(),
        );
        // Two stores over one object store and one metadata store: two replicas.
        let kv = Arc::new(MemoryStore::new());
        let objects = Arc::new(object_store::memory::InMemory::new());
        let a = ObjectBlobStore::new(objects.clone(), kv.clone(), opts.clone()).unwrap();
        let b = ObjectBlobStore::new(objects, kv, opts).unwrap();
        blobs::testsuite::upload_resumes_through_another_store(&a, &b, 3 << 20);
    }

    #[test]
    fn object_blob_store_passes_the_blob_conformance_suite_on_a_real_s3_server() {
        use blobs::object::throwaway::{ACCESS_KEY, S3, SECRET_KEY};
        use blobs::ObjectBlobStore;
        let s3 = S3::start();
        let keys = Some((ACCESS_KEY, SECRET_KEY));
        let url = s3.bucket("suite");
        blobs::testsuite::run_all(
            &ObjectBlobStore::open_url(&url, Arc::new(MemoryStore::new()), 1 << 30, keys).unwrap(),
        );
        // Parts of S3's smallest size (5 MiB): 12 MiB make three, resumed through another store.
        let dir = tempfile::tempdir().unwrap();
        let kv = Arc::new(SledStore::open(dir.path()).unwrap());
        let url = format!("{}&part_mb=5", s3.bucket("shared"));
        let a = ObjectBlobStore::open_url(&url, kv.clone(), 1 << 30, keys).unwrap();
        let b = ObjectBlobStore::open_url(&url, kv, 1 << 30, keys).unwrap();
        blobs::testsuite::upload_resumes_through_another_store(&a, &b, 12 << 20);
        // A bucket that is not there, or keys the server refuses, are named at start.
        let err = ObjectBlobStore::open_url(
            &format!("s3://absent?endpoint=http://127.0.0.1:{}", s3.port),
            Arc::new(MemoryStore::new()),
            1 << 30,
            keys,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("object store"), "{err}");
        let err = ObjectBlobStore::open_url(
            &s3.bucket("suite"),
            Arc::new(MemoryStore::new()),
            1 << 30,
            Some((ACCESS_KEY, "wrong")),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("object store"), "{err}");
    }

    #[test]
    fn a_malformed_blobs_url_is_a_clear_error() {
        use blobs::ObjectBlobStore;
        let kv = || -> Arc<dyn store::KvStore> { Arc::new(MemoryStore::new()) };
        for (url, says) in [
            ("file:///tmp/x", "not an s3:// URL"),
            ("s3://", "names no bucket"),
            ("s3://b?colour=red", "`colour` is not a setting"),
            ("s3://b?part_mb=1", "below S3's smallest part"),
            (
                "s3://b?part_mb=65",
                "above the largest part an upload may hold",
            ),
            ("s3://b?part_mb=lots", "not a whole number"),
        ] {
            let err = ObjectBlobStore::open_url(url, kv(), 1 << 30, None)
                .unwrap_err()
                .to_string();
            assert!(err.contains("blobs") && err.contains(says), "{url}: {err}");
        }
    }

    #[test]
    fn inline_blobs_over_a_local_store_pass_the_blob_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let kv = Arc::new(SledStore::open(&dir.path().join("meta")).unwrap());
        let local = Arc::new(LocalBlobStore::open(&dir.path().join("blobs"), 1 << 30).unwrap());
        blobs::testsuite::run_all(&blobs::WithInlineBlobs::new(kv, local));
    }

    #[test]
    fn a_blob_kept_inline_is_found_and_verified_like_any_other() {
        use crate::blobs::BlobStore;
        use crate::store::{Batch, KvStore, Tree};
        let kv = Arc::new(MemoryStore::new());
        let s = blobs::WithInlineBlobs::new(kv.clone(), Arc::new(MemoryBlobStore::new(1 << 30)));
        let data = b"tiny weights".to_vec();
        let d = algobay_runtime::Digest::of(&data);
        assert_eq!(s.stat(&d).unwrap().size, None);
        assert!(kv
            .commit(Batch::new().put(Tree::InlineBlobs, d.to_string(), data.clone()))
            .unwrap());
        assert_eq!(s.stat(&d).unwrap().size, Some(data.len() as u64));
        assert_eq!(s.read_all(&d).unwrap(), data);
        s.put(&d, &data).unwrap(); // already there: nothing written twice
                                   // Bytes that do not match their name fail the read.
        let other = algobay_runtime::Digest::of(b"something else");
        assert!(kv
            .commit(Batch::new().put(Tree::InlineBlobs, other.to_string(), data))
            .unwrap());
        assert!(s.read_all(&other).is_err());
    }

    #[test]
    fn local_blob_store_detects_a_blob_corrupted_on_disk() {
        use crate::blobs::BlobStore;
        let dir = tempfile::tempdir().unwrap();
        let s = LocalBlobStore::open(dir.path(), 1 << 30).unwrap();
        let data = vec![3u8; 4096];
        let d = algobay_runtime::Digest::of(&data);
        s.put(&d, &data).unwrap();
        let hex = d.hex();
        let path = dir.path().join("sha256").join(&hex[..2]).join(&hex);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let err = s.read_all(&d).unwrap_err().to_string();
        assert!(err.contains("is corrupt"), "{err}");
    }
}
