//! OCR pre-processing, as PP-OCR's reference pipeline does it (see
//! `ocr_common::preprocess`): image bytes in; the detector's input, the image it
//! sees and the geometry needed to map boxes back out.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};
use ocr_common::{preprocess, PreConfig};

struct OcrPre {
    cfg: PreConfig,
}

impl Stage for OcrPre {
    fn contract() -> Contract {
        Contract::new()
            .input("image", "bytes")
            .output("det_x", "f32[1,3,?,?]")
            .output("image_bgr", "u8[?,?,3]")
            .output("geom", "json")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let d = PreConfig::default();
        Ok(OcrPre {
            cfg: PreConfig {
                limit_side_len: config.usize_or("limit_side_len", d.limit_side_len)?,
                max_side_len: config.usize_or("max_side_len", d.max_side_len)?,
                min_side_len: config.usize_or("min_side_len", d.min_side_len)?,
                min_height: config.usize_or("min_height", d.min_height)?,
                width_height_ratio: config.f64_or("width_height_ratio", d.width_height_ratio)?,
            },
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let p = preprocess(&self.cfg, inputs.bytes("image")?)?;
        let geom = serde_json::json!({
            "ratio_h": p.ratio_h, "ratio_w": p.ratio_w, "pad_top": p.pad_top,
            "raw_h": p.raw_h, "raw_w": p.raw_w,
        });
        Ok(Outputs::new()
            .tensor(
                "det_x",
                Tensor::from_f32(vec![1, 3, p.det_h as u64, p.det_w as u64], &p.det_x),
            )
            .tensor(
                "image_bgr",
                Tensor::from_u8(vec![p.image.h as u64, p.image.w as u64, 3], p.image.data),
            )
            .json("geom", &geom))
    }
}

algobay_stage::stage!(OcrPre);
