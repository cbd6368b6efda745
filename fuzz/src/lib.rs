//! A small mutation fuzzer for Algobay's parsers and decoders, on the stable
//! toolchain: each [`Target`] is a function over bytes that must answer every
//! input with a result, never a panic. Inputs are mutated from a corpus seeded
//! with real kits and samples; an input that ends in a kind of answer not seen
//! before (its "outcome class": the error with its numbers masked) joins the
//! corpus, so the search spreads over the code's distinct paths of refusal.
//! A panic is a finding, kept with the input that caused it.
//!
//! The tests run each target for a bounded number of executions; `algobay-fuzz
//! run` runs them for as long as asked and prints the figures.

pub mod targets;

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// One thing to fuzz.
pub struct Target {
    pub name: &'static str,
    /// Real inputs to start from.
    pub seeds: Vec<Vec<u8>>,
    /// Runs one input: `Err` is a clean refusal (its message), a panic a finding.
    #[allow(clippy::type_complexity)]
    pub run: Box<dyn Fn(&[u8]) -> Result<(), String> + Send + Sync>,
    /// Post-processing of a mutated input (e.g. fixing tar checksums), if any.
    pub fixup: Option<fn(&mut Vec<u8>)>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("seeds", &self.seeds.len())
            .finish_non_exhaustive()
    }
}

/// How long a run may go: whichever limit comes first.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub execs: u64,
    pub time: Duration,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    pub target: String,
    pub execs: u64,
    pub elapsed: Duration,
    /// Inputs kept (seeds included).
    pub corpus: usize,
    /// Distinct outcome classes seen (clean answers and refusals).
    pub classes: usize,
    /// Inputs that made the target panic, with the panic message.
    pub findings: Vec<(Vec<u8>, String)>,
}

impl Report {
    pub fn execs_per_second(&self) -> f64 {
        self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// xorshift64*: deterministic for a given seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Values that tend to sit at the edges of what code expects.
const INTERESTING: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    u64::MAX,
];

/// One mutation of `input`, possibly spliced with another corpus entry.
pub fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = v.len();
        match rng.below(10) {
            0 | 1 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                v[i] = INTERESTING[rng.below(INTERESTING.len())] as u8;
            }
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(i..i, bytes);
            }
            4 if len > 1 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                v.drain(i..i + n);
            }
            5 if len > 1 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let copy = v[i..i + n].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, copy);
            }
            6 if len >= 8 => {
                // A little-endian integer field set to an edge value.
                let i = rng.below(len - 7);
                let w = [1usize, 2, 4, 8][rng.below(4)];
                let x = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                v[i..i + w].copy_from_slice(&x[..w]);
            }
            7 => {
                // A decimal number in text set to an edge value (lengths, shapes, sizes).
                let digits: Vec<usize> = (0..len).filter(|&i| v[i].is_ascii_digit()).collect();
                if let Some(&i) = digits.get(rng.below(digits.len())) {
                    let mut end = i;
                    while end < len && v[end].is_ascii_digit() {
                        end += 1;
                    }
                    let x = INTERESTING[rng.below(INTERESTING.len())];
                    let text = match rng.below(3) {
                        0 => format!("-{x}"),
                        1 => format!("{x}"),
                        _ => format!("{x}e300"),
                    };
                    v.splice(i..end, text.into_bytes());
                }
            }
            8 if !corpus.is_empty() && len > 0 => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let cut = rng.below(len);
                    let from = rng.below(other.len());
                    v.truncate(cut);
                    v.extend_from_slice(&other[from..]);
                }
            }
            9 if len > 0 => v.truncate(rng.below(len)),
            _ => v.push(rng.next() as u8),
        }
    }
    v
}

/// The class of an outcome: its message with numbers masked, cut short.
fn class_of(outcome: &Result<(), String>) -> String {
    match outcome {
        Ok(()) => "ok".into(),
        Err(m) => {
            // The first line, without what it quotes of the input, and with
            // every word that holds a digit (numbers, digests, offsets) masked.
            let mut unquoted = String::new();
            let mut quoted = false;
            for c in m.lines().next().unwrap_or_default().chars() {
                match c {
                    '`' | '"' | '\'' => quoted = !quoted,
                    _ if quoted => {}
                    c => unquoted.push(c),
                }
            }
            let mut out = String::new();
            let mut word = String::new();
            for c in unquoted.chars().chain(std::iter::once(' ')) {
                if c.is_alphanumeric() || c == '_' {
                    word.push(c);
                    continue;
                }
                if word.chars().any(|w| w.is_ascii_digit()) {
                    out.push('#');
                } else {
                    out.push_str(&word);
                }
                word.clear();
                out.push(c);
            }
            out.trim_end().chars().take(80).collect()
        }
    }
}

/// Most inputs kept in a run's corpus.
const MAX_CORPUS: usize = 512;

/// The name of the thread a run loops on (its panics are findings, not noise).
const LOOP_THREAD: &str = "algobay-fuzz-loop";

/// Runs one target within `budget`, from `seed`.
pub fn fuzz(target: &Target, budget: Budget, seed: u64) -> Report {
    quiet_panics();
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name(LOOP_THREAD.into())
            .spawn_scoped(s, || fuzz_loop(target, budget, seed))
            .expect("start the fuzzing thread")
            .join()
            .unwrap_or_default()
    })
}

fn fuzz_loop(target: &Target, budget: Budget, seed: u64) -> Report {
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut corpus: Vec<Vec<u8>> = target.seeds.clone();
    let mut classes = BTreeSet::new();
    let mut report = Report {
        target: target.name.into(),
        ..Report::default()
    };
    let mut queue: Vec<Vec<u8>> = target.seeds.clone();
    while report.execs < budget.execs && started.elapsed() < budget.time {
        let input = match queue.pop() {
            Some(i) => i,
            None => {
                let base = if corpus.is_empty() {
                    Vec::new()
                } else {
                    corpus[rng.below(corpus.len())].clone()
                };
                let mut m = mutate(&mut rng, &base, &corpus);
                if let Some(fix) = target.fixup {
                    if rng.below(2) == 0 {
                        fix(&mut m);
                    }
                }
                m
            }
        };
        report.execs += 1;
        match catch_unwind(AssertUnwindSafe(|| (target.run)(&input))) {
            Ok(outcome) => {
                if classes.insert(class_of(&outcome)) && corpus.len() < MAX_CORPUS {
                    corpus.push(input);
                }
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic".into());
                if report.findings.len() < 16 {
                    report.findings.push((input, message));
                }
            }
        }
    }
    report.elapsed = started.elapsed();
    report.corpus = corpus.len();
    report.classes = classes.len();
    report
}

/// Panics are caught and reported: keep the default hook from printing each one.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let fuzzing = std::thread::current().name() == Some(LOOP_THREAD);
            if !fuzzing || std::env::var_os("ALGOBAY_FUZZ_LOUD").is_some() {
                default(info);
            }
        }));
    });
}
