//! A short, bounded run of every fuzz target: no input may make one panic.
//! Longer runs: `algobay-fuzz run --seconds N`.
#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;
use std::time::Duration;

use algobay_fuzz::{fuzz, targets, Budget, Target};

fn all() -> &'static [Target] {
    static ALL: OnceLock<Vec<Target>> = OnceLock::new();
    ALL.get_or_init(|| targets::all().expect("set up the fuzz targets"))
}

fn run(name: &str, execs: u64) {
    let t = all().iter().find(|t| t.name == name).unwrap();
    let r = fuzz(
        t,
        Budget {
            execs,
            time: Duration::from_secs(30),
        },
        0x5eed,
    );
    eprintln!(
        "{name}: {} execs in {:.1} s, corpus {}, {} outcome classes",
        r.execs,
        r.elapsed.as_secs_f64(),
        r.corpus,
        r.classes
    );
    assert!(r.execs > 0);
    if let Some((input, message)) = r.findings.first() {
        let head: Vec<String> = input.iter().take(64).map(|b| format!("{b:02x}")).collect();
        panic!(
            "{name} panicked on a {}-byte input (starts {}): {message}",
            input.len(),
            head.join("")
        );
    }
    assert!(
        r.classes >= 2,
        "{name}: the mutations reached only {} kinds of answer",
        r.classes
    );
}

#[test]
fn the_kit_archive_reader_never_panics() {
    run("kit-archive", 20_000);
}

#[test]
fn the_manifest_parser_never_panics_and_its_canonical_form_is_stable() {
    run("manifest", 50_000);
}

#[test]
fn the_kitfile_parser_never_panics() {
    run("kitfile", 50_000);
}

#[test]
fn the_inference_protocol_decoders_never_panic() {
    run("oip-http", 50_000);
}

#[test]
fn the_image_reader_never_panics() {
    run("image", 20_000);
}

#[test]
fn the_wav_reader_stage_never_panics() {
    run("wav", 10_000);
}
