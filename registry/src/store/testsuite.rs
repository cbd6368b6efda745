//! The conformance suite every [`KvStore`] backend runs.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use super::{Batch, KvStore, Tree};

/// Runs every check against a fresh, empty store.
pub fn run_all(store: &dyn KvStore) {
    get_of_missing_key_is_none(store);
    batch_writes_then_reads_back(store);
    failed_check_writes_nothing(store);
    check_for_absence_guards_creation(store);
    delete_removes(store);
    trees_are_separate(store);
    scan_prefix_is_ordered_and_bounded(store);
}

/// Runs the concurrency check: many threads race to create the same key; exactly one wins.
pub fn concurrent_creates_have_one_winner(store: Arc<dyn KvStore>) {
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let s = store.clone();
            std::thread::spawn(move || {
                s.commit(Batch::new().check(Tree::Teams, "race", None).put(
                    Tree::Teams,
                    "race",
                    format!("{i}"),
                ))
                .expect("commit")
            })
        })
        .collect();
    let wins = handles
        .into_iter()
        .filter(|_| true)
        .map(|h| h.join().expect("thread"))
        .filter(|w| *w)
        .count();
    assert_eq!(wins, 1, "exactly one racing create must win");
}

fn get_of_missing_key_is_none(s: &dyn KvStore) {
    assert_eq!(s.get(Tree::Teams, b"nobody").unwrap(), None);
}

fn batch_writes_then_reads_back(s: &dyn KvStore) {
    assert!(s
        .commit(
            Batch::new()
                .put(Tree::Teams, "a", "1")
                .put(Tree::Artifacts, "a", "2")
        )
        .unwrap());
    assert_eq!(
        s.get(Tree::Teams, b"a").unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        s.get(Tree::Artifacts, b"a").unwrap().as_deref(),
        Some(&b"2"[..])
    );
}

fn failed_check_writes_nothing(s: &dyn KvStore) {
    let ok = s
        .commit(
            Batch::new()
                .check(Tree::Teams, "a", Some(b"wrong".to_vec()))
                .put(Tree::Teams, "b", "x")
                .put(Tree::Digests, "c", "y"),
        )
        .unwrap();
    assert!(!ok);
    assert_eq!(s.get(Tree::Teams, b"b").unwrap(), None);
    assert_eq!(s.get(Tree::Digests, b"c").unwrap(), None);
}

fn check_for_absence_guards_creation(s: &dyn KvStore) {
    assert!(s
        .commit(
            Batch::new()
                .check(Tree::Tokens, "t", None)
                .put(Tree::Tokens, "t", "first")
        )
        .unwrap());
    assert!(!s
        .commit(
            Batch::new()
                .check(Tree::Tokens, "t", None)
                .put(Tree::Tokens, "t", "second")
        )
        .unwrap());
    assert_eq!(
        s.get(Tree::Tokens, b"t").unwrap().as_deref(),
        Some(&b"first"[..])
    );
    assert!(s
        .commit(
            Batch::new()
                .check(Tree::Tokens, "t", Some(b"first".to_vec()))
                .put(Tree::Tokens, "t", "third")
        )
        .unwrap());
    assert_eq!(
        s.get(Tree::Tokens, b"t").unwrap().as_deref(),
        Some(&b"third"[..])
    );
}

fn delete_removes(s: &dyn KvStore) {
    assert!(s
        .commit(Batch::new().put(Tree::Enterprises, "gone", "x"))
        .unwrap());
    assert!(s
        .commit(Batch::new().delete(Tree::Enterprises, "gone"))
        .unwrap());
    assert_eq!(s.get(Tree::Enterprises, b"gone").unwrap(), None);
}

fn trees_are_separate(s: &dyn KvStore) {
    assert!(s
        .commit(Batch::new().put(Tree::Digests, "same", "d"))
        .unwrap());
    assert_eq!(s.get(Tree::Enterprises, b"same").unwrap(), None);
}

fn scan_prefix_is_ordered_and_bounded(s: &dyn KvStore) {
    let mut b = Batch::new();
    for k in ["m/b", "m/a", "m/c", "n/a", "l/z"] {
        b = b.put(Tree::Artifacts, k, k);
    }
    assert!(s.commit(b).unwrap());
    let keys: Vec<Vec<u8>> = s
        .scan_prefix(Tree::Artifacts, b"m/")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        vec![b"m/a".to_vec(), b"m/b".to_vec(), b"m/c".to_vec()]
    );
    let first = |n| -> Vec<Vec<u8>> {
        s.scan_prefix_first(Tree::Artifacts, b"m/", n)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(first(2), vec![b"m/a".to_vec(), b"m/b".to_vec()]);
    assert_eq!(first(10).len(), 3);
    assert!(first(0).is_empty());
    assert!(s
        .scan_prefix_first(Tree::Artifacts, b"x/", 5)
        .unwrap()
        .is_empty());
}

/// Waits up to 10 s for the next notice.
pub fn next_notice(rx: &mut super::Subscription) -> Option<super::Notice> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match rx.try_recv() {
            Ok(n) => return Some(n),
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return None,
            Err(_) if std::time::Instant::now() > until => return None,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    }
}

/// Notes reach a subscriber of `b` once a batch carrying them commits through
/// `a` (the same store, or another handle on it); a batch whose check fails
/// tells nothing.
pub fn notes_of_committed_batches_reach_subscribers(a: &dyn KvStore, b: &dyn KvStore) {
    let mut rx = b.subscribe().unwrap();
    assert!(!a
        .commit(
            Batch::new()
                .check(Tree::Counters, "note-test", Some(b"never".to_vec()))
                .put(Tree::Counters, "note-test", "x")
                .note("refused")
        )
        .unwrap());
    assert!(a
        .commit(
            Batch::new()
                .put(Tree::Counters, "note-test", "1")
                .note("first")
                .note("second")
        )
        .unwrap());
    assert_eq!(
        next_notice(&mut rx),
        Some(super::Notice::Note("first".into()))
    );
    assert_eq!(
        next_notice(&mut rx),
        Some(super::Notice::Note("second".into()))
    );
    assert!(
        rx.try_recv().is_err(),
        "nothing else, and never the refused batch's note"
    );
}
