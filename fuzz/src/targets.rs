//! The fuzz targets, each seeded from the project's real kits and samples.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use algobay_agent::oip::{parse_http_infer, to_value};
use algobay_runtime::archive::{KitArchive, ReadLimits};
use algobay_runtime::kitfile::Kitfile;
use algobay_runtime::{Manifest, PortType, Runtime, RuntimeOptions, SecretKey, TrustRoots};

use crate::Target;

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/ sits in the repository")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn runtime() -> anyhow::Result<Runtime> {
    Ok(Runtime::new(RuntimeOptions {
        cache_dir: None,
        ort_library: std::env::var_os("ORT_DYLIB_PATH")
            .map(PathBuf::from)
            .or_else(|| Some(root().join("build/onnxruntime/libonnxruntime.so.1.32.0"))),
        ort_threads: 1,
        stage_limits_cap: None,
        max_batch: 0,
    })?)
}

/// The example digits kit, built here (its stage, model and golden samples).
pub fn digits_kit(key: &SecretKey) -> anyhow::Result<KitArchive> {
    let rt = runtime()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Ok(
        algobay_runtime::kitfile::Packager::new(&rt, cargo.into()).build(
            &root().join("examples/kits/digits"),
            key,
            &|_| {},
        )?,
    )
}

/// Every target, seeded.
pub fn all() -> anyhow::Result<Vec<Target>> {
    let key = SecretKey::generate();
    let kit = digits_kit(&key)?;
    Ok(vec![
        kit_archive(&kit, &key)?,
        manifest(&kit),
        kitfile()?,
        oip_http(),
        image()?,
        wav()?,
    ])
}

/// Recomputes the checksum of every ustar header, so mutations reach past it.
fn fix_tar_checksums(v: &mut Vec<u8>) {
    let mut at = 0;
    while at + 512 <= v.len() {
        let block = &mut v[at..at + 512];
        if &block[257..262] == b"ustar" {
            block[148..156].copy_from_slice(b"        ");
            let sum: u32 = block.iter().map(|b| *b as u32).sum();
            let text = format!("{sum:06o}\0 ");
            block[148..156].copy_from_slice(text.as_bytes());
            let size = std::str::from_utf8(&block[124..135])
                .ok()
                .and_then(|s| {
                    u64::from_str_radix(s.trim_matches(|c| c == '\0' || c == ' '), 8).ok()
                })
                .unwrap_or(0);
            at += 512 + (size.div_ceil(512) * 512).min(v.len() as u64) as usize;
        } else {
            at += 512;
        }
    }
}

/// The kit archive reader, then verification against the key that signed the seed.
pub fn kit_archive(kit: &KitArchive, key: &SecretKey) -> anyhow::Result<Target> {
    let mut bytes = Vec::new();
    kit.write(&mut bytes)?;
    let mut roots = TrustRoots::new();
    roots.trust(key.public());
    Ok(Target {
        name: "kit-archive",
        seeds: vec![bytes],
        run: Box::new(move |data| {
            let a = KitArchive::read(std::io::Cursor::new(data), ReadLimits::default())
                .map_err(|e| e.to_string())?;
            a.verify(&roots).map(|_| ()).map_err(|e| e.to_string())
        }),
        fixup: Some(fix_tar_checksums),
    })
}

/// The manifest parser and its validation; what parses must survive its canonical round trip.
pub fn manifest(kit: &KitArchive) -> Target {
    Target {
        name: "manifest",
        seeds: vec![kit.manifest_bytes.clone()],
        run: Box::new(|data| {
            let m = Manifest::from_json(data).map_err(|e| e.to_string())?;
            let again = Manifest::from_json(&m.canonical_json())
                .map_err(|e| format!("canonical form does not parse: {e}"))
                .expect("a parsed manifest's canonical form parses");
            assert_eq!(
                again.canonical_json(),
                m.canonical_json(),
                "canonical form is stable"
            );
            Ok(())
        }),
        fixup: None,
    }
}

/// The Kitfile parser, seeded with every example Kitfile.
pub fn kitfile() -> anyhow::Result<Target> {
    let mut seeds = Vec::new();
    for entry in std::fs::read_dir(root().join("examples/kits"))? {
        let path = entry?.path().join("Kitfile");
        if path.exists() {
            seeds.push(std::fs::read(path)?);
        }
    }
    Ok(Target {
        name: "kitfile",
        seeds,
        run: Box::new(|data| {
            let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
            Kitfile::parse(text).map(|_| ()).map_err(|e| e.to_string())
        }),
        fixup: None,
    })
}

/// The Open Inference Protocol's HTTP form (JSON, and the binary extension),
/// then each tensor against a few kinds of port. The first two bytes say where
/// the JSON ends (little endian; past the end: all JSON).
pub fn oip_http() -> Target {
    let framed = |json: &str, tail: &[u8]| {
        let mut v = (json.len() as u16).to_le_bytes().to_vec();
        v.extend_from_slice(json.as_bytes());
        v.extend_from_slice(tail);
        v
    };
    let pixels: Vec<String> = (0..64).map(|i| format!("{}.0", i % 17)).collect();
    let seeds = vec![
        framed(
            &format!(
                r#"{{"id":"r1","inputs":[{{"name":"pixels","datatype":"FP32","shape":[1,64],"data":[{}]}}],"outputs":[{{"name":"result"}}]}}"#,
                pixels.join(",")
            ),
            b"",
        ),
        framed(
            r#"{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":9}}],"parameters":{"binary_data_output":true}}"#,
            &[5, 0, 0, 0, b'h', b'e', b'l', b'l', b'o'],
        ),
        framed(
            r#"{"inputs":[{"name":"text","datatype":"BYTES","shape":[2],"data":["ab","cd"]},{"name":"x","datatype":"INT64","shape":[2,2],"data":[[1,2],[3,4]]}]}"#,
            b"",
        ),
    ];
    let ports: Vec<PortType> = [
        "f32[1,64]",
        "bytes",
        "text",
        "json",
        "i64[?,?]",
        "u8[?,?,3]",
    ]
    .iter()
    .map(|t| t.parse().expect("port types parse"))
    .collect();
    Target {
        name: "oip-http",
        seeds,
        run: Box::new(move |data| {
            if data.len() < 2 {
                return Err("too short".into());
            }
            let body = &data[2..];
            let json_len = (u16::from_le_bytes([data[0], data[1]]) as usize).min(body.len());
            let req = parse_http_infer(body, json_len).map_err(|e| e.to_string())?;
            let mut last = Ok(());
            for t in &req.tensors {
                for ty in &ports {
                    last = to_value(ty, t).map(|_| ()).map_err(|e| e.to_string());
                }
            }
            last
        }),
        fixup: None,
    }
}

/// The OCR kit's image reader (PNG and JPEG), as its pre-processing stage runs it,
/// with small sizes so that each run is quick.
pub fn image() -> anyhow::Result<Target> {
    let mut seeds = Vec::new();
    let img = image::RgbImage::from_fn(24, 16, |x, y| {
        image::Rgb([(x * 10) as u8, (y * 15) as u8, 128])
    });
    for format in [image::ImageFormat::Png, image::ImageFormat::Jpeg] {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format)?;
        seeds.push(out.into_inner());
    }
    let cfg = ocr_common::PreConfig {
        limit_side_len: 32,
        max_side_len: 64,
        ..Default::default()
    };
    Ok(Target {
        name: "image",
        seeds,
        run: Box::new(move |data| ocr_common::preprocess(&cfg, data).map(|_| ())),
        fixup: None,
    })
}

/// The VAD kit's WAV reader: its pre-processing stage, compiled to WASM and
/// run in the stage sandbox as a kit runs it. A panic inside the stage is a
/// finding too.
pub fn wav() -> anyhow::Result<Target> {
    let path = target_dir().join("wasm32-wasip2/release/stage_vad_pre.wasm");
    let wasm = std::fs::read(&path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} (build it: cargo build --release --target wasm32-wasip2 -p stage-vad-pre)",
            path.display()
        )
    })?;
    let rt = Arc::new(runtime()?);
    let runner = rt.stages().prepare(
        "vad-pre",
        &wasm,
        &serde_json::json!({}),
        Vec::new(),
        algobay_runtime::manifest::Limits {
            memory_mb: 64,
            time_ms: 2000,
        },
    )?;
    // A short real recording's head, and a tiny WAV made here.
    let speech = std::fs::read(root().join("examples/kits/vad/samples/speech.wav"))?;
    let mut tiny = Vec::new();
    let samples: Vec<i16> = (0..1600)
        .map(|i| ((i as f32 * 0.05).sin() * 8000.0) as i16)
        .collect();
    let data_len = (samples.len() * 2) as u32;
    tiny.extend_from_slice(b"RIFF");
    tiny.extend_from_slice(&(36 + data_len).to_le_bytes());
    tiny.extend_from_slice(b"WAVEfmt ");
    tiny.extend_from_slice(&16u32.to_le_bytes());
    tiny.extend_from_slice(&1u16.to_le_bytes());
    tiny.extend_from_slice(&1u16.to_le_bytes());
    tiny.extend_from_slice(&16000u32.to_le_bytes());
    tiny.extend_from_slice(&32000u32.to_le_bytes());
    tiny.extend_from_slice(&2u16.to_le_bytes());
    tiny.extend_from_slice(&16u16.to_le_bytes());
    tiny.extend_from_slice(b"data");
    tiny.extend_from_slice(&data_len.to_le_bytes());
    samples
        .iter()
        .for_each(|s| tiny.extend_from_slice(&s.to_le_bytes()));
    let head = speech[..speech.len().min(16_044)].to_vec();
    Ok(Target {
        name: "wav",
        seeds: vec![tiny, head],
        run: Box::new(move |data| {
            let _keep = &rt;
            let inputs = algobay_runtime::Values::from([(
                "audio".to_string(),
                algobay_runtime::Value::Bytes(data.to_vec()),
            )]);
            match runner.process(&inputs) {
                Ok(_) => Ok(()),
                Err(e) => {
                    let m = e.to_string();
                    assert!(!m.contains("panicked"), "the stage panicked: {m}");
                    Err(m)
                }
            }
        }),
        fixup: None,
    })
}
