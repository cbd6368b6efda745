//! Cuts each text line's quadrilateral out of the image the detector saw
//! (perspective warp, turned upright when taller than wide) as the
//! recogniser's input batch: height 48, each line resized to it, the batch
//! padded to the widest line (at least `rec_width`, default 320), normalised
//! to −1…1 in CHW. The boxes go out in the original image's coordinates
//! (`geom`: the pre-processing's ratios and padding), each with its `det_score`.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};
use ocr_common::{normalize_chw_into, resize_bilinear, rot90, warp_crop, Img, Pt};

struct LineCrop {
    rec_height: usize,
    rec_width: usize,
}

fn dist(a: Pt, b: Pt) -> f64 {
    ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
}

/// A quad's four corners from `{"points": [[x, y] × 4], "score": s}`.
fn quad(v: &serde_json::Value, i: usize) -> Result<([Pt; 4], f64), String> {
    let bad =
        || format!("input `quads`: item {i} must be {{\"points\": [[x, y] x 4], \"score\": n}}");
    let pts = v.get("points").and_then(|p| p.as_array()).ok_or_else(bad)?;
    if pts.len() != 4 {
        return Err(bad());
    }
    let mut q = [(0.0, 0.0); 4];
    for (o, p) in q.iter_mut().zip(pts) {
        let xy = p.as_array().filter(|a| a.len() == 2).ok_or_else(bad)?;
        *o = (
            xy[0].as_f64().ok_or_else(bad)?,
            xy[1].as_f64().ok_or_else(bad)?,
        );
    }
    Ok((q, v.get("score").and_then(|s| s.as_f64()).ok_or_else(bad)?))
}

impl Stage for LineCrop {
    fn contract() -> Contract {
        Contract::new()
            .input("image_bgr", "u8[?,?,3]")
            .input("quads", "json")
            .input("geom", "json")
            .output("rec_x", "f32[?,3,48,?]")
            .output("boxes", "json")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let rec_height = config.usize_or("rec_height", 48)?;
        if rec_height != 48 {
            return Err("config field `rec_height` must be 48 for PP-OCR recognisers".into());
        }
        let rec_width = config.usize_or("rec_width", 320)?;
        if !(16..=4096).contains(&rec_width) {
            return Err(format!(
                "config field `rec_width` is {rec_width}; it must be 16 to 4096"
            ));
        }
        Ok(LineCrop {
            rec_height,
            rec_width,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let img_t = inputs.tensor("image_bgr")?;
        let img = Img {
            h: img_t.shape[0] as usize,
            w: img_t.shape[1] as usize,
            data: img_t.as_u8()?.to_vec(),
        };
        let quads = inputs.json("quads")?;
        let kept = quads
            .as_array()
            .ok_or("input `quads` must be a json list")?
            .iter()
            .enumerate()
            .map(|(i, q)| quad(q, i))
            .collect::<Result<Vec<_>, String>>()?;
        let geom = inputs.json("geom")?;
        let g = |k: &str| {
            geom.get(k)
                .and_then(|v| v.as_f64())
                .ok_or_else(|| format!("input `geom` lacks `{k}`"))
        };
        let (ratio_h, ratio_w, pad_top, raw_h, raw_w) = (
            g("ratio_h")?,
            g("ratio_w")?,
            g("pad_top")?,
            g("raw_h")?,
            g("raw_w")?,
        );
        let mut crops = Vec::with_capacity(kept.len());
        for (q, _) in &kept {
            let cw = dist(q[0], q[1]).max(dist(q[2], q[3])) as usize;
            let ch = dist(q[0], q[3]).max(dist(q[1], q[2])) as usize;
            let mut crop = warp_crop(&img, q, cw.max(1), ch.max(1)).ok_or("degenerate text box")?;
            if crop.h as f64 / crop.w as f64 >= 1.5 {
                crop = rot90(&crop);
            }
            crops.push(crop);
        }
        let hgt = self.rec_height;
        let mut max_ratio = self.rec_width as f64 / hgt as f64;
        for c in &crops {
            max_ratio = max_ratio.max(c.w as f64 / c.h as f64);
        }
        let width = (hgt as f64 * max_ratio) as usize;
        let n = crops.len().max(1);
        let mut x = vec![0f32; n * 3 * hgt * width];
        for (i, c) in crops.iter().enumerate() {
            let ratio = c.w as f64 / c.h as f64;
            let rw = ((hgt as f64 * ratio).ceil() as usize).min(width).max(1);
            let resized = resize_bilinear(c, rw, hgt);
            normalize_chw_into(
                &resized,
                &mut x[i * 3 * hgt * width..(i + 1) * 3 * hgt * width],
                width,
            );
        }
        // Boxes back in the original image's coordinates.
        let boxes: Vec<serde_json::Value> = kept
            .iter()
            .map(|(q, score)| {
                let pts: Vec<[f64; 2]> = q
                    .iter()
                    .map(|p| {
                        [
                            (p.0 * ratio_w).clamp(0.0, raw_w).trunc(),
                            ((p.1 - pad_top) * ratio_h).clamp(0.0, raw_h).trunc(),
                        ]
                    })
                    .collect();
                serde_json::json!({"points": pts, "det_score": score})
            })
            .collect();
        Ok(Outputs::new()
            .tensor(
                "rec_x",
                Tensor::from_f32(vec![n as u64, 3, hgt as u64, width as u64], &x),
            )
            .json("boxes", &serde_json::Value::Array(boxes)))
    }
}

algobay_stage::stage!(LineCrop);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_quad_reads_back_and_a_malformed_one_is_named() {
        let (q, s) = quad(
            &json!({"points": [[1, 2], [9, 2], [9, 6], [1, 6]], "score": 0.8}),
            0,
        )
        .unwrap();
        assert_eq!((q[2], s), ((9.0, 6.0), 0.8));
        let err = quad(&json!({"points": [[1, 2]], "score": 1}), 3).unwrap_err();
        assert!(err.contains("item 3"), "{err}");
    }
}
