//! OCR pre-processing, as PP-OCR's reference pipeline does it: decode the image
//! (PNG or JPEG) to BGR, bound its sides (≤ 2000, ≥ 30), letterbox very flat
//! images, resize so the short side is `limit_side_len` rounded to multiples
//! of 32, normalise to [-1, 1] in CHW.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};
use ocr_common::{normalize_chw_into, resize_bilinear, round_half_even, Img};

struct OcrPre {
    limit_side_len: usize,
    max_side_len: usize,
    min_side_len: usize,
    min_height: usize,
    width_height_ratio: f64,
}

/// Resize so that sides are multiples of 32, as `reduce_max_side`/`increase_min_side` do.
fn resize_to_32(img: &Img, ratio: f64) -> Result<Img, String> {
    let rh = round_half_even((img.h as f64 * ratio).trunc() / 32.0) as usize * 32;
    let rw = round_half_even((img.w as f64 * ratio).trunc() / 32.0) as usize * 32;
    if rh == 0 || rw == 0 {
        return Err(format!(
            "image of {}x{} is too small to resize",
            img.w, img.h
        ));
    }
    Ok(resize_bilinear(img, rw, rh))
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
        Ok(OcrPre {
            limit_side_len: config.usize_or("limit_side_len", 736)?,
            max_side_len: config.usize_or("max_side_len", 2000)?,
            min_side_len: config.usize_or("min_side_len", 30)?,
            min_height: config.usize_or("min_height", 30)?,
            width_height_ratio: config.f64_or("width_height_ratio", 8.0)?,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let bytes = inputs.bytes("image")?;
        let decoded = image::load_from_memory(bytes)
            .map_err(|e| format!("input `image` is not a readable PNG or JPEG: {e}"))?;
        let rgb = decoded.to_rgb8();
        let (raw_w, raw_h) = (rgb.width() as usize, rgb.height() as usize);
        if raw_w == 0 || raw_h == 0 {
            return Err("input `image` has no pixels".into());
        }
        if raw_w * raw_h > 64 << 20 {
            return Err(format!(
                "input `image` is {raw_w}x{raw_h}, over 64 megapixels"
            ));
        }
        let mut data = rgb.into_raw();
        for px in data.chunks_exact_mut(3) {
            px.swap(0, 2);
        }
        let mut img = Img {
            w: raw_w,
            h: raw_h,
            data,
        };
        let (mut ratio_h, mut ratio_w) = (1.0f64, 1.0f64);
        if img.w.max(img.h) > self.max_side_len {
            let r = self.max_side_len as f64 / img.w.max(img.h) as f64;
            let (h0, w0) = (img.h, img.w);
            img = resize_to_32(&img, r)?;
            ratio_h = h0 as f64 / img.h as f64;
            ratio_w = w0 as f64 / img.w as f64;
        }
        if img.w.min(img.h) < self.min_side_len {
            let r = self.min_side_len as f64 / img.w.min(img.h) as f64;
            let (h0, w0) = (img.h, img.w);
            img = resize_to_32(&img, r)?;
            ratio_h = h0 as f64 / img.h as f64;
            ratio_w = w0 as f64 / img.w as f64;
        }
        // Letterbox images that are too flat for the detector.
        let mut pad_top = 0usize;
        if img.h <= self.min_height || img.w as f64 / img.h as f64 > self.width_height_ratio {
            let new_h =
                ((img.w as f64 / self.width_height_ratio) as usize).max(self.min_height) * 2;
            pad_top = new_h.abs_diff(img.h) / 2;
            let mut padded = Img::new(img.w, img.h + 2 * pad_top);
            padded.data[pad_top * img.w * 3..(pad_top + img.h) * img.w * 3]
                .copy_from_slice(&img.data);
            img = padded;
        }
        // Detector input: short side to limit_side_len, multiples of 32.
        let (h, w) = (img.h, img.w);
        let ratio = if h.min(w) < self.limit_side_len {
            self.limit_side_len as f64 / h.min(w) as f64
        } else {
            1.0
        };
        let rh = round_half_even((h as f64 * ratio).trunc() / 32.0) as usize * 32;
        let rw = round_half_even((w as f64 * ratio).trunc() / 32.0) as usize * 32;
        if rh == 0 || rw == 0 {
            return Err(format!("image of {w}x{h} is too small for the detector"));
        }
        let resized = resize_bilinear(&img, rw, rh);
        let mut x = vec![0f32; 3 * rh * rw];
        normalize_chw_into(&resized, &mut x, rw);
        let geom = serde_json::json!({
            "ratio_h": ratio_h, "ratio_w": ratio_w, "pad_top": pad_top,
            "raw_h": raw_h, "raw_w": raw_w,
        });
        Ok(Outputs::new()
            .tensor(
                "det_x",
                Tensor::from_f32(vec![1, 3, rh as u64, rw as u64], &x),
            )
            .tensor(
                "image_bgr",
                Tensor::from_u8(vec![img.h as u64, img.w as u64, 3], img.data),
            )
            .json("geom", &geom))
    }
}

algobay_stage::stage!(OcrPre);
