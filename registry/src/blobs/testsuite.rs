//! The conformance suite every [`BlobStore`] backend runs.
#![allow(clippy::unwrap_used)]

use algobay_runtime::Digest;

use super::BlobStore;
use crate::error::RegistryError;

/// Runs every check against a fresh, empty store whose limit is at least 1 MiB and below 10 GB.
pub fn run_all(s: &dyn BlobStore) {
    put_then_read_back_verified(s);
    put_of_mismatching_bytes_stores_nothing(s);
    upload_resumes_from_what_was_received(s);
    wrong_offset_is_refused(s);
    mismatching_bytes_are_discarded_not_stored(s);
    oversize_claim_is_refused(s);
    missing_blob_is_not_found(s);
    abandoned_uploads_are_swept_and_recent_ones_kept(s);
}

fn abandoned_uploads_are_swept_and_recent_ones_kept(s: &dyn BlobStore) {
    let data = vec![5u8; 3000];
    let d = Digest::of(&data);
    let from = s.begin(&d, data.len() as u64).unwrap();
    s.append(&d, from, &data[..1000]).unwrap();
    s.sweep_partials(std::time::Duration::from_secs(3600))
        .unwrap();
    assert_eq!(
        s.stat(&d).unwrap().received,
        1000,
        "a recent upload is kept"
    );
    assert!(s.sweep_partials(std::time::Duration::ZERO).unwrap() >= 1);
    assert_eq!(
        s.stat(&d).unwrap().received,
        0,
        "an abandoned upload is gone"
    );
    // It can start over, and a finished blob is never swept.
    let from = s.begin(&d, data.len() as u64).unwrap();
    assert_eq!(from, 0);
    s.append(&d, 0, &data).unwrap();
    s.finish(&d).unwrap();
    s.sweep_partials(std::time::Duration::ZERO).unwrap();
    assert_eq!(s.read_all(&d).unwrap(), data);
}

fn put_then_read_back_verified(s: &dyn BlobStore) {
    let data = b"hello blob".to_vec();
    let d = Digest::of(&data);
    s.put(&d, &data).unwrap();
    assert_eq!(s.stat(&d).unwrap().size, Some(data.len() as u64));
    assert_eq!(s.read_all(&d).unwrap(), data);
    s.put(&d, &data).unwrap(); // idempotent
}

fn put_of_mismatching_bytes_stores_nothing(s: &dyn BlobStore) {
    let claimed = Digest::of(b"what the client said");
    let err = s.put(&claimed, b"other bytes").unwrap_err();
    assert!(err.to_string().contains("not sha256:"), "{err}");
    assert_eq!(s.stat(&claimed).unwrap(), super::BlobStat::default());
}

fn upload_resumes_from_what_was_received(s: &dyn BlobStore) {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let d = Digest::of(&data);
    assert_eq!(s.begin(&d, data.len() as u64).unwrap(), 0);
    s.append(&d, 0, &data[..100_000]).unwrap();
    // The connection drops; the client asks where to resume.
    assert_eq!(
        s.stat(&d).unwrap(),
        super::BlobStat {
            size: None,
            received: 100_000
        }
    );
    let from = s.begin(&d, data.len() as u64).unwrap();
    assert_eq!(from, 100_000);
    s.append(&d, from, &data[100_000..]).unwrap();
    assert_eq!(s.finish(&d).unwrap(), data.len() as u64);
    assert_eq!(s.read_all(&d).unwrap(), data);
}

fn wrong_offset_is_refused(s: &dyn BlobStore) {
    let data = vec![7u8; 1000];
    let d = Digest::of(&data);
    s.begin(&d, 1000).unwrap();
    let err = s.append(&d, 500, &data[..10]).unwrap_err();
    assert!(matches!(err, RegistryError::FailedPrecondition(_)), "{err}");
    let err = s.append(&d, 0, &[0u8; 1001]).unwrap_err();
    assert!(err.to_string().contains("past its declared size"), "{err}");
    let err = s.finish(&d).unwrap_err();
    assert!(err.to_string().contains("has 0 of 1000 bytes"), "{err}");
}

fn mismatching_bytes_are_discarded_not_stored(s: &dyn BlobStore) {
    let claimed = Digest::of(b"what the client said");
    s.begin(&claimed, 5).unwrap();
    s.append(&claimed, 0, b"other").unwrap();
    let err = s.finish(&claimed).unwrap_err();
    assert!(err.to_string().contains("upload was discarded"), "{err}");
    assert_eq!(
        s.stat(&claimed).unwrap(),
        super::BlobStat {
            size: None,
            received: 0
        }
    );
}

fn oversize_claim_is_refused(s: &dyn BlobStore) {
    let d = Digest::of(b"big");
    let err = s.begin(&d, 10_000_000_000).unwrap_err();
    assert!(
        matches!(err, RegistryError::TooLarge(_)) && err.to_string().contains("10000000000"),
        "{err}"
    );
}

fn missing_blob_is_not_found(s: &dyn BlobStore) {
    let err = s
        .open(&Digest::of(b"never stored"))
        .err()
        .expect("missing blob");
    assert!(matches!(err, RegistryError::NotFound(_)), "{err}");
}

/// For two stores over the same stored state (two replicas, or one reopened):
/// an upload of `len` bytes, in 1 MiB chunks, begun through `a` and cut off
/// partway resumes through `b` from the byte `a` acknowledged, and the blob
/// reads back through both.
pub fn upload_resumes_through_another_store(a: &dyn BlobStore, b: &dyn BlobStore, len: usize) {
    let data: Vec<u8> = (0..len as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let d = Digest::of(&data);
    let chunk = 1 << 20;
    let cut = len / 2 + 1234;
    assert_eq!(a.begin(&d, len as u64).unwrap(), 0);
    let mut at = 0;
    while at < cut {
        let end = (at + chunk).min(cut);
        assert_eq!(a.append(&d, at as u64, &data[at..end]).unwrap(), end as u64);
        at = end;
    }
    // The sender reconnects to the other store and asks where to go on.
    assert_eq!(b.stat(&d).unwrap().received, cut as u64);
    assert_eq!(b.begin(&d, len as u64).unwrap(), cut as u64);
    // A stale sender still writing to the first store at an old offset is refused.
    let err = a.append(&d, 0, &data[..10]).unwrap_err();
    assert!(matches!(err, RegistryError::FailedPrecondition(_)), "{err}");
    while at < len {
        let end = (at + chunk).min(len);
        assert_eq!(b.append(&d, at as u64, &data[at..end]).unwrap(), end as u64);
        at = end;
    }
    assert_eq!(b.finish(&d).unwrap(), len as u64);
    assert_eq!(a.stat(&d).unwrap().size, Some(len as u64));
    assert_eq!(
        a.finish(&d).unwrap(),
        len as u64,
        "finishing twice is harmless"
    );
    assert!(a.read_all(&d).unwrap() == data);
    assert!(b.read_all(&d).unwrap() == data);
}
