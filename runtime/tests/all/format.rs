//! Malformed Kitfiles, manifests and kit files get errors that name what is wrong.

use algobay_runtime::archive::{KitArchive, ReadLimits};
use algobay_runtime::{Error, SecretKey, TrustRoots};

use crate::common::*;

fn kit_bytes(archive: &KitArchive) -> Vec<u8> {
    let mut v = Vec::new();
    archive.write(&mut v).unwrap();
    v
}

fn read(bytes: &[u8]) -> algobay_runtime::Result<KitArchive> {
    KitArchive::read(bytes, ReadLimits::default())
}

#[test]
fn kit_file_round_trips_and_keeps_its_digest() {
    let a = example("digits");
    let back = read(&kit_bytes(&a)).unwrap();
    assert_eq!(back.digest(), a.digest());
    assert_eq!(back.manifest, a.manifest);
    assert_eq!(kit_bytes(&back), kit_bytes(&a), "writing is deterministic");
}

#[test]
fn truncated_kit_file_is_rejected_at_every_cut() {
    let bytes = kit_bytes(&example("digits"));
    for cut in [
        0,
        10,
        511,
        512,
        700,
        bytes.len() / 3,
        bytes.len() / 2,
        bytes.len() - 1536,
        bytes.len() - 1024,
        bytes.len() - 1,
    ] {
        let err = read(&bytes[..cut]).expect_err(&format!(
            "a kit cut at {cut} of {} bytes was accepted",
            bytes.len()
        ));
        let msg = err.to_string();
        assert!(
            msg.contains("truncated") || msg.contains("missing") || msg.contains("kit archive"),
            "cut at {cut}: {msg}"
        );
    }
}

#[test]
fn tampered_blob_is_caught_by_its_digest() {
    let a = example("digits");
    let mut bytes = kit_bytes(&a);
    // Flip a byte inside the largest blob's data.
    let (d, blob) = a.blobs.iter().max_by_key(|(_, b)| b.len()).unwrap();
    let at = bytes.windows(64).position(|w| w == &blob[..64]).unwrap() + 100;
    bytes[at] ^= 0x55;
    match read(&bytes) {
        Err(Error::DigestMismatch { name, expected, .. }) => {
            assert!(name.contains(&d.hex()));
            assert_eq!(expected, d.to_string());
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
}

#[test]
fn changed_manifest_breaks_the_signature() {
    let mut a = example("digits");
    a.manifest.version = "9.9.9".into();
    a.manifest_bytes = a.manifest.canonical_json();
    let back = read(&kit_bytes(&a)).unwrap();
    let err = back.verify(&trust()).unwrap_err().to_string();
    assert!(err.contains("does not match the manifest"), "{err}");
}

#[test]
fn kit_signed_by_an_untrusted_key_is_refused() {
    let a = example("digits");
    let mut other = TrustRoots::new();
    other.trust(SecretKey::generate().public());
    let err = a.clone().verify(&other).unwrap_err().to_string();
    assert!(
        err.contains("untrusted key") && err.contains(&key().public().id()),
        "{err}"
    );
    let mut unsigned = a;
    unsigned.signatures.clear();
    assert!(unsigned
        .verify(&trust())
        .unwrap_err()
        .to_string()
        .contains("not signed"));
}

fn raw_entry(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
    }
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

#[test]
fn entries_outside_the_archive_root_are_refused() {
    for name in [
        "../evil",
        "/etc/passwd",
        "blobs/../../x",
        "blobs/sha256/./x",
    ] {
        let mut bytes = raw_entry(name, b"x");
        bytes.extend_from_slice(&[0; 1024]);
        let err = read(&bytes).unwrap_err().to_string();
        assert!(err.contains("outside the archive root"), "{name}: {err}");
    }
    let mut bytes = raw_entry("notes.txt", b"x");
    bytes.extend_from_slice(&[0; 1024]);
    assert!(read(&bytes)
        .unwrap_err()
        .to_string()
        .contains("unexpected entry `notes.txt`"));
}

#[test]
fn oversize_entries_are_refused_before_reading_them() {
    let bytes = kit_bytes(&example("digits"));
    let limits = ReadLimits {
        max_blob_bytes: 1000,
        ..ReadLimits::default()
    };
    let err = KitArchive::read(bytes.as_slice(), limits)
        .unwrap_err()
        .to_string();
    assert!(err.contains("over the limit of 1000"), "{err}");
}

fn kitfile_error(text: &str) -> String {
    let dir = kitfile(text);
    build(dir.path()).unwrap_err().to_string()
}

const HEAD: &str = r#"
[kit]
name = "test/bad"
version = "0.1.0"
scenario = "bad input"
"#;

#[test]
fn kitfile_with_unknown_or_missing_fields_names_them() {
    let err = kitfile_error(&format!("{HEAD}[[step]]\nname = \"a\"\nstagee = \"x\"\n"));
    assert!(err.contains("unknown field `stagee`"), "{err}");
    let err = kitfile_error("[kit]\nname = \"test/bad\"\nversion = \"0.1.0\"\n");
    assert!(err.contains("missing field `scenario`"), "{err}");
    let err = kitfile_error(&format!("{HEAD}[[step]]\nname = \"a\"\n"));
    assert!(
        err.contains("step `a`") && err.contains("unknown step kind"),
        "{err}"
    );
}

#[test]
fn bad_names_and_versions_are_refused() {
    let digits = root().join("examples/kits/digits");
    let with = |name: &str, version: &str| {
        let text = std::fs::read_to_string(digits.join("Kitfile"))
            .unwrap()
            .replace(
                "name = \"algobay/digits-mlp\"",
                &format!("name = \"{name}\""),
            )
            .replace("version = \"1.0.0\"", &format!("version = \"{version}\""))
            .replace("models/", &format!("{}/models/", digits.display()))
            .replace("samples/", &format!("{}/samples/", digits.display()))
            .replace(
                "../../stages/",
                &format!("{}/examples/stages/", root().display()),
            );
        kitfile_error(&text)
    };
    assert!(with("../etc", "1.0.0").contains("must be `team/name`"));
    assert!(with("team/../x", "1.0.0").contains("must be `team/name`"));
    assert!(with("Team/Up", "1.0.0").contains("must be `team/name`"));
    assert!(with("team/ok", "1.0").contains("is not a semantic version"));
}

#[test]
fn a_step_whose_input_does_not_fit_is_refused_with_both_types() {
    let text = format!(
        r#"{HEAD}
[[input]]
name = "words"
type = "text"
[[output]]
name = "result"
type = "json"
[[step]]
name = "mlp"
model = "{m}"
architecture = "mlp"
config = {{ layers = [64, 32, 10] }}
inputs = {{ x = "words" }}
"#,
        m = root()
            .join("examples/kits/digits/models/mlp.safetensors")
            .display()
    );
    let err = kitfile_error(&text);
    assert!(
        err.contains(
            "step `mlp` port `x` takes f32[?,64], but `words` from the kit's input is text"
        ),
        "{err}"
    );
}

#[test]
fn a_model_file_that_is_not_onnx_is_refused() {
    let dir = kitfile(&format!(
        "{HEAD}[[input]]\nname = \"x\"\ntype = \"f32[1]\"\n[[output]]\nname = \"x\"\ntype = \"f32[1]\"\n[[step]]\nname = \"det\"\nmodel = \"bad.onnx\"\n"
    ));
    std::fs::write(
        dir.path().join("bad.onnx"),
        b"this is not a protobuf at all, just text",
    )
    .unwrap();
    let err = build(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("model step `det`: is not a valid ONNX model"),
        "{err}"
    );
    std::fs::write(dir.path().join("bad.onnx"), b"").unwrap();
    let err = build(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("model step `det`: model file is empty"),
        "{err}"
    );
}

#[test]
fn weights_that_are_not_safetensors_are_refused() {
    let dir = kitfile(&format!(
        "{HEAD}[[input]]\nname = \"x\"\ntype = \"f32[1,64]\"\n[[output]]\nname = \"logits\"\ntype = \"f32[1,10]\"\n[[step]]\nname = \"mlp\"\nmodel = \"w.safetensors\"\narchitecture = \"mlp\"\nconfig = {{ layers = [64, 10] }}\ninputs = {{ x = \"x\" }}\n"
    ));
    std::fs::write(dir.path().join("w.safetensors"), [0xffu8; 64]).unwrap();
    let err = build(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("model step `mlp`: is not a safetensors file"),
        "{err}"
    );
}

#[test]
fn a_failing_golden_sample_fails_the_build_and_shows_the_difference() {
    let digits = root().join("examples/kits/digits");
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(digits.join("Kitfile"))
        .unwrap()
        .replace("models/", &format!("{}/models/", digits.display()))
        .replace("samples/", &format!("{}/samples/", digits.display()))
        .replace("samples/row4.json", "samples/row9.json")
        .replace(
            "../../stages/",
            &format!("{}/examples/stages/", root().display()),
        );
    std::fs::write(dir.path().join("Kitfile"), text).unwrap();
    let err = build(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("golden sample 0 failed") && err.contains("got \"9\", expected \"4\""),
        "{err}"
    );
}

#[test]
fn a_batch_axis_the_model_lacks_fails_the_build_by_name() {
    let model = root().join("examples/kits/vad/models/silero_vad.onnx");
    for (batch, message) in [
        (
            "{ input = 0, state = 1, output = 0, stateN = 1, nope = 0 }",
            "no port `nope`",
        ),
        (
            "{ input = 0, state = 1, output = 0 }",
            "output `stateN` needs a batch axis",
        ),
        (
            "{ input = 0, state = 0, output = 0, stateN = 1 }",
            "axis 0 of `state` is fixed at 2",
        ),
        (
            "{ input = 0, state = 3, output = 0, stateN = 1 }",
            "`state` has no axis 3",
        ),
    ] {
        let dir = kitfile(&format!(
            r#"{HEAD}[[input]]
name = "input"
type = "f32[?,?]"

[[input]]
name = "state"
type = "f32[2,?,128]"

[[input]]
name = "sr"
type = "i64[]"

[[output]]
name = "output"
type = "f32[?,1]"

[[step]]
name = "vad"
model = "{}"
batch = {batch}
"#,
            model.display()
        ));
        let err = build(dir.path()).unwrap_err().to_string();
        assert!(err.contains(message), "{batch}: {err}");
    }
}
