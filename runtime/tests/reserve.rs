//! The kit reader's memory follows the bytes that arrive, never the sizes a
//! header claims. Its own test binary: an allocator here records the largest
//! single request made on each thread.
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use algobay_runtime::archive::{KitArchive, ReadLimits};

struct Recording;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Recording {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(new_size)));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Recording = Recording;

/// A tar header for `path` claiming `size` bytes, of entry type `kind`.
fn header(path: &str, size: u64, kind: u8) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..path.len()].copy_from_slice(path.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

#[test]
fn an_entry_claiming_4_gib_is_refused_without_reserving_it() {
    let hex = "ab".repeat(32);
    let mut tar = header(&format!("blobs/sha256/{hex}"), 4 << 30, b'0');
    tar.extend(vec![7u8; 280 << 10]);
    LARGEST.with(|l| l.set(0));
    let err = KitArchive::read(std::io::Cursor::new(tar), ReadLimits::default())
        .err()
        .expect("a truncated entry is refused")
        .to_string();
    assert!(err.contains("truncated"), "{err}");
    let largest = LARGEST.with(|l| l.get());
    assert!(
        largest < 8 << 20,
        "the reader asked for {largest} bytes at once for a 280 KiB file"
    );
}

#[test]
fn an_unknown_entry_type_is_named_by_its_byte() {
    let mut tar = header("manifest.json", 0, b'V');
    tar.extend(vec![0u8; 1024]);
    let err = KitArchive::read(std::io::Cursor::new(tar), ReadLimits::default())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("not a regular file") && err.contains("unknown `V` (byte 86)"),
        "{err}"
    );
    assert!(!err.contains("Nonexhaustive"), "{err}");
}
