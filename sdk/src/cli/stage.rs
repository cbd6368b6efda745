//! `algobay stage new`: a stage crate that builds anywhere, outside this
//! repository, with the guest crate and the imaging library written beside it.

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};

use super::Usage;

#[derive(Debug, Subcommand)]
pub enum StageCommand {
    /// Create a stage crate in a new folder NAME: a pre- or post-processing
    /// stage with a unit test, SIMD on, its own workspace, and a copy of the
    /// algobay-stage guest crate (and the imaging library) under vendor/, so it
    /// builds without this project's sources.
    #[command(
        after_help = "Examples:\n  algobay stage new my-pre --kind preprocess\n  \
cd my-pre && cargo test && cargo build --release --target wasm32-wasip2\n  \
then name it in a Kitfile: [[step]] name = \"pre\"  stage = \"../my-pre\""
    )]
    New {
        /// The crate's name (and folder): lowercase letters, digits, `-` and `_`.
        name: String,
        /// What the template does.
        #[arg(long, value_enum, default_value = "preprocess")]
        kind: StageKind,
        /// The folder to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StageKind {
    /// A PGM/PPM image in, a resized, normalised tensor out (Pillow or OpenCV exact).
    Preprocess,
    /// A classifier's scores in, the likeliest labels out as JSON.
    Postprocess,
}

/// The guest crate and the imaging, text and audio libraries, as published: (path under vendor/, contents).
const VENDORED: &[(&str, &str)] = &[
    (
        "algobay-stage/Cargo.toml",
        include_str!("../../stage/Cargo.toml"),
    ),
    (
        "algobay-stage/README.md",
        include_str!("../../stage/README.md"),
    ),
    (
        "algobay-stage/src/lib.rs",
        include_str!("../../stage/src/lib.rs"),
    ),
    (
        "algobay-stage/wit/stage.wit",
        include_str!("../../stage/wit/stage.wit"),
    ),
    (
        "algobay-imaging/Cargo.toml",
        include_str!("../../algobay-imaging/Cargo.toml"),
    ),
    (
        "algobay-imaging/README.md",
        include_str!("../../algobay-imaging/README.md"),
    ),
    (
        "algobay-imaging/src/lib.rs",
        include_str!("../../algobay-imaging/src/lib.rs"),
    ),
    (
        "algobay-imaging/src/simd.rs",
        include_str!("../../algobay-imaging/src/simd.rs"),
    ),
    (
        "algobay-imaging/src/pillow.rs",
        include_str!("../../algobay-imaging/src/pillow.rs"),
    ),
    (
        "algobay-imaging/src/opencv/mod.rs",
        include_str!("../../algobay-imaging/src/opencv/mod.rs"),
    ),
    (
        "algobay-imaging/src/opencv/area.rs",
        include_str!("../../algobay-imaging/src/opencv/area.rs"),
    ),
    (
        "algobay-imaging/src/opencv/cubic.rs",
        include_str!("../../algobay-imaging/src/opencv/cubic.rs"),
    ),
    (
        "algobay-imaging/src/opencv/kernels.rs",
        include_str!("../../algobay-imaging/src/opencv/kernels.rs"),
    ),
    (
        "algobay-imaging/src/opencv/wasm.rs",
        include_str!("../../algobay-imaging/src/opencv/wasm.rs"),
    ),
    (
        "algobay-imaging/src/geometry.rs",
        include_str!("../../algobay-imaging/src/geometry.rs"),
    ),
    (
        "algobay-imaging/src/jpeg/mod.rs",
        include_str!("../../algobay-imaging/src/jpeg/mod.rs"),
    ),
    (
        "algobay-imaging/src/jpeg/entropy.rs",
        include_str!("../../algobay-imaging/src/jpeg/entropy.rs"),
    ),
    (
        "algobay-imaging/src/jpeg/pixels.rs",
        include_str!("../../algobay-imaging/src/jpeg/pixels.rs"),
    ),
    (
        "algobay-audio/Cargo.toml",
        include_str!("../../algobay-audio/Cargo.toml"),
    ),
    (
        "algobay-audio/src/lib.rs",
        include_str!("../../algobay-audio/src/lib.rs"),
    ),
    (
        "algobay-text/Cargo.toml",
        include_str!("../../algobay-text/Cargo.toml"),
    ),
    (
        "algobay-text/src/lib.rs",
        include_str!("../../algobay-text/src/lib.rs"),
    ),
];

/// The versions this release was built and tested with; cargo keeps those it uses.
const LOCK: &str = include_str!("../../../Cargo.lock");

const PREPROCESS: &str = include_str!("stage_templates/preprocess.rs");
const POSTPROCESS: &str = include_str!("stage_templates/postprocess.rs");

pub fn run(cmd: StageCommand) -> anyhow::Result<()> {
    match cmd {
        StageCommand::New { name, kind, dir } => {
            let root = new_stage(&dir, &name, kind)?;
            println!("created stage crate {name} in {}", root.display());
            println!(
                "  cd {} && cargo test                                # unit tests, natively",
                root.display()
            );
            println!(
                "  cargo build --release --target wasm32-wasip2       # the component (SIMD on)"
            );
            println!("  in a Kitfile: [[step]] name = \"{name}\" stage = \"<path to {name}>\"");
            Ok(())
        }
    }
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        anyhow::bail!(Usage(format!(
            "name `{}`: a crate name of 1-64 lowercase letters, digits, `-` and `_`, starting with a letter",
            algobay_runtime::shown(name)
        )));
    }
    Ok(())
}

/// Writes the crate; refuses to write into a folder that is not empty.
pub fn new_stage(dir: &Path, name: &str, kind: StageKind) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let root = dir.join(name);
    if root.exists() && std::fs::read_dir(&root)?.next().is_some() {
        anyhow::bail!(Usage(format!(
            "{} exists and is not empty; choose another name or folder",
            root.display()
        )));
    }
    let template = match kind {
        StageKind::Preprocess => PREPROCESS,
        StageKind::Postprocess => POSTPROCESS,
    };
    let mut files: Vec<(PathBuf, String)> = vec![
        (root.join("Cargo.toml"), cargo_toml(name)),
        (root.join(".cargo/config.toml"), CARGO_CONFIG.to_owned()),
        (root.join("src/lib.rs"), template.to_owned()),
        (root.join("README.md"), readme(name, kind)),
        (root.join(".gitignore"), "/target\n".to_owned()),
        (root.join("Cargo.lock"), LOCK.to_owned()),
    ];
    for (path, text) in VENDORED {
        let text = if path.ends_with("Cargo.toml") {
            // Tests of the vendored crates are not copied, nor what they need.
            match text.find("\n[dev-dependencies]") {
                Some(at) => format!("{}\n", &text[..at]),
                None => text.to_string(),
            }
        } else {
            text.to_string()
        };
        files.push((root.join("vendor").join(path), text));
    }
    for (path, text) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)?;
    }
    Ok(root)
}

const CARGO_CONFIG: &str = "\
# WASM SIMD: what brings pre- and post-processing close to native speed.
# `algobay kit build` runs cargo in this folder, so this applies there too,
# and the kit records that the stage uses it.
[target.wasm32-wasip2]
rustflags = [\"-C\", \"target-feature=+simd128\"]
";

fn cargo_toml(name: &str) -> String {
    format!(
        "[package]
name = \"{name}\"
version = \"0.1.0\"
edition = \"2021\"
publish = false

[lib]
# The WASM component for the kit, and an rlib for the unit tests.
crate-type = [\"cdylib\", \"rlib\"]

[dependencies]
# A copy of the guest crate written by `algobay stage new`; once it is on
# crates.io, `algobay-stage = \"0.1\"` does the same.
algobay-stage = {{ version = \"0.1.0\", path = \"vendor/algobay-stage\" }}
serde_json = \"1\"

[profile.release]
lto = true
codegen-units = 1
strip = true

# A workspace of its own: the crate builds wherever it is put.
[workspace]
"
    )
}

fn readme(name: &str, kind: StageKind) -> String {
    let what = match kind {
        StageKind::Preprocess => "reads a PGM, PPM or JPEG image and returns the model's input tensor, resized and normalised exactly as Pillow or OpenCV would (`algobay_stage::imaging`)",
        StageKind::Postprocess => "reads a classifier's scores and returns the likeliest labels as JSON",
    };
    format!(
        "# {name}

An Algobay stage: it {what}. A stage runs as a WebAssembly component in the
device's sandbox: no files, network or clock, only its inputs, its
configuration and the assets its kit ships.

```sh
cargo test                                            # the unit tests, natively
cargo build --release --target wasm32-wasip2          # target/wasm32-wasip2/release/{lib}.wasm
```

(`rustup target add wasm32-wasip2` once.) `.cargo/config.toml` turns WASM
SIMD on.

Use it in a kit by naming this folder in the Kitfile; `algobay kit build`
builds it here, so this folder's cargo configuration applies:

```toml
[[step]]
name = \"{name}\"
stage = \"../{name}\"
config = {{ }}
```

Publish it on its own as a tool other teams can use:

```sh
algobay tool publish target/wasm32-wasip2/release/{lib}.wasm --name TEAM/{name} --version 0.1.0 --kind {kind}
```

`vendor/` holds the guest crate `algobay-stage` and the imaging, text and audio libraries, as
this version of `algobay` was built with them; `Cargo.lock` pins the versions
they were tested with.
",
        lib = name.replace('-', "_"),
        kind = match kind {
            StageKind::Preprocess => "preprocess",
            StageKind::Postprocess => "postprocess",
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_crate_names_are_refused_and_a_full_folder_is_kept() {
        for bad in ["", "My-Stage", "1stage", "a b", "../x"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("taken")).unwrap();
        std::fs::write(dir.path().join("taken/keep.txt"), "mine").unwrap();
        let e = new_stage(dir.path(), "taken", StageKind::Preprocess)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not empty"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("taken/keep.txt")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn every_source_file_of_the_vendored_crates_is_vendored() {
        let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for (krate, dir) in [
            ("algobay-stage", "stage"),
            ("algobay-imaging", "algobay-imaging"),
            ("algobay-audio", "algobay-audio"),
            ("algobay-text", "algobay-text"),
        ] {
            let mut folders = vec![sdk.join(dir).join("src")];
            while let Some(folder) = folders.pop() {
                for entry in std::fs::read_dir(&folder).unwrap() {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        folders.push(path);
                        continue;
                    }
                    let rel = path.strip_prefix(sdk.join(dir)).unwrap();
                    let name = format!("{krate}/{}", rel.display());
                    assert!(
                        VENDORED.iter().any(|(p, _)| *p == name),
                        "{name} is not vendored by `stage new`"
                    );
                }
            }
        }
    }

    #[test]
    fn the_vendored_manifests_stand_alone() {
        for (path, text) in VENDORED {
            if path.ends_with("Cargo.toml") {
                assert!(
                    !text.contains("workspace = true"),
                    "{path} inherits from this workspace"
                );
                assert!(
                    !text.contains(".workspace"),
                    "{path} inherits from this workspace"
                );
            }
        }
    }
}
