//! The image-prep tool, compiled to WASM and run in the stage sandbox, gives
//! the same floats as the imaging library natively (which the library's own
//! tests hold to Pillow's and OpenCV's bytes): the filters' sines and cosines
//! come from another math library in WASM, and must not change a pixel.

use algobay_imaging::{self as imaging, Image, Layout};
use algobay_runtime::manifest::Limits;
use algobay_runtime::{DType, Tensor, Value, Values};

use crate::common::{root, runtime};

fn wasm() -> Vec<u8> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    std::fs::read(target.join("wasm32-wasip2/release/stage_image_prep.wasm"))
        .expect("build the stages first (scripts/test.sh does)")
}

/// A deterministic photograph-like image: gradients, edges and noise.
fn picture(w: usize, h: usize) -> Image {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut data = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let edge = if (x / 17 + y / 11) % 2 == 0 { 60 } else { 0 };
                let v = (x * 255 / w + y * 97 / h + c * 40 + edge) as u64 + seed % 23;
                data.push((v % 256) as u8);
            }
        }
    }
    Image::new(w, h, 3, data).unwrap()
}

#[test]
fn the_image_prep_tool_in_wasm_gives_the_native_librarys_floats_for_every_filter() {
    let wasm = wasm();
    let img = picture(97, 61);
    let input: Values = [(
        "image".to_owned(),
        Value::Tensor(Tensor::new(DType::U8, vec![61, 97, 3], img.data.clone()).unwrap()),
    )]
    .into_iter()
    .collect();
    let cases = [
        "pillow:bilinear",
        "pillow:hamming",
        "pillow:bicubic",
        "pillow:lanczos",
        "opencv:linear",
        "opencv:cubic",
        "opencv:area",
        "opencv:lanczos4",
    ];
    for resize in cases {
        for (w, h) in [(40, 30), (150, 100)] {
            let config = serde_json::json!({
                "width": w, "height": h, "resize": resize,
                "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
            });
            let stage = runtime()
                .stages()
                .prepare("prep", &wasm, &config, Vec::new(), Limits::default())
                .unwrap();
            let out = stage.process(&input).unwrap();
            let Some(Value::Tensor(t)) = out.get("input") else {
                panic!("no tensor out for {resize}")
            };
            let (lib, mode) = resize.split_once(':').unwrap();
            let small = match lib {
                "pillow" => imaging::resize_pillow(&img, w, h, mode.parse().unwrap()),
                _ => imaging::resize_opencv(&img, w, h, mode.parse().unwrap()),
            }
            .unwrap();
            let want = imaging::to_tensor(
                &small,
                Layout::Chw,
                1.0 / 255.0,
                &[0.485, 0.456, 0.406],
                &[0.229, 0.224, 0.225],
            )
            .unwrap();
            assert_eq!(t.shape, vec![1, 3, h, w], "{resize}");
            assert_eq!(t.to_f32().unwrap(), want, "{resize} to {w}x{h}");
        }
    }
    // A tensor that is not an image is refused by name.
    let bad: Values = [(
        "image".to_owned(),
        Value::Tensor(Tensor::new(DType::U8, vec![4, 4], vec![0; 16]).unwrap()),
    )]
    .into_iter()
    .collect();
    let stage = runtime()
        .stages()
        .prepare(
            "prep",
            &wasm,
            &serde_json::json!({}),
            Vec::new(),
            Limits::default(),
        )
        .unwrap();
    let e = stage.process(&bad).unwrap_err().to_string();
    assert!(
        e.contains("input `image`") || e.contains("u8[?,?,?]"),
        "{e}"
    );
}
