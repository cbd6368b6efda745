//! Box decoding for DB (differentiable binarisation) text detectors:
//! threshold and dilate the probability map, take each connected region's
//! minimum-area box, score it on the map, grow it by the unclip distance,
//! map it onto the detector's input image, and order the boxes
//! top-to-bottom and left-to-right. Out: `quads`, each `points` (four
//! corners, clockwise from top-left) and `score`.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage};
use ocr_common::{min_area_rect, round_half_even, Pt};

struct BoxDecode {
    thresh: f32,
    box_thresh: f64,
    unclip_ratio: f64,
    max_candidates: usize,
    use_dilation: bool,
}

/// Corner points ordered as PP-OCR's `get_mini_boxes` does, and the short side.
fn mini_box(points: Vec<Pt>) -> ([Pt; 4], f64) {
    let r = min_area_rect(points);
    let mut p = r.corners();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (i1, i4) = if p[1].1 > p[0].1 { (0, 1) } else { (1, 0) };
    let (i2, i3) = if p[3].1 > p[2].1 { (2, 3) } else { (3, 2) };
    ([p[i1], p[i2], p[i3], p[i4]], r.min_side())
}

/// Mean of the map inside the (integer-truncated) quadrilateral, as `box_score_fast`.
fn box_score(pred: &[f32], w: usize, h: usize, b: &[Pt; 4]) -> f64 {
    let clampi = |v: f64, hi: usize| (v as i64).clamp(0, hi as i64 - 1) as usize;
    let xmin = clampi(b.iter().map(|p| p.0).fold(f64::MAX, f64::min).floor(), w);
    let xmax = clampi(b.iter().map(|p| p.0).fold(f64::MIN, f64::max).ceil(), w);
    let ymin = clampi(b.iter().map(|p| p.1).fold(f64::MAX, f64::min).floor(), h);
    let ymax = clampi(b.iter().map(|p| p.1).fold(f64::MIN, f64::max).ceil(), h);
    let q: Vec<(i64, i64)> = b
        .iter()
        .map(|p| ((p.0 - xmin as f64) as i64, (p.1 - ymin as f64) as i64))
        .collect();
    let inside = |x: i64, y: i64| {
        let mut sign = 0i64;
        for i in 0..4 {
            let (a, c) = (q[i], q[(i + 1) % 4]);
            let cr = (c.0 - a.0) * (y - a.1) - (c.1 - a.1) * (x - a.0);
            if cr != 0 {
                if sign != 0 && cr.signum() != sign {
                    return false;
                }
                sign = cr.signum();
            }
        }
        true
    };
    let (mut sum, mut n) = (0f64, 0usize);
    for y in ymin..=ymax {
        for x in xmin..=xmax {
            if inside((x - xmin) as i64, (y - ymin) as i64) {
                sum += pred[y * w + x] as f64;
                n += 1;
            }
        }
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// Boundary pixels of every 8-connected region of `mask`.
fn regions(mask: &[u8], w: usize, h: usize) -> Vec<Vec<Pt>> {
    let mut label = vec![0u32; w * h];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if mask[start] == 0 || label[start] != 0 {
            continue;
        }
        let id = out.len() as u32 + 1;
        label[start] = id;
        stack.push(start);
        let mut edge = Vec::new();
        while let Some(i) = stack.pop() {
            let (x, y) = ((i % w) as i64, (i / w) as i64);
            let mut boundary = false;
            for dy in -1..=1i64 {
                for dx in -1..=1i64 {
                    if dx == 0 && dy == 0 {
                        continue;
                    }
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        boundary = true;
                        continue;
                    }
                    let j = ny as usize * w + nx as usize;
                    if mask[j] == 0 {
                        boundary = true;
                    } else if label[j] == 0 {
                        label[j] = id;
                        stack.push(j);
                    }
                }
            }
            if boundary {
                edge.push((x as f64, y as f64));
            }
        }
        out.push(edge);
    }
    out
}

fn dist(a: Pt, b: Pt) -> f64 {
    ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
}

impl Stage for BoxDecode {
    fn contract() -> Contract {
        Contract::new()
            .input("prob", "f32[1,1,?,?]")
            .input("image_bgr", "u8[?,?,3]")
            .output("quads", "json")
    }

    fn new(config: &Config) -> Result<Self, String> {
        Ok(BoxDecode {
            thresh: config.f32_or("thresh", 0.3)?,
            box_thresh: config.f64_or("box_thresh", 0.5)?,
            unclip_ratio: config.f64_or("unclip_ratio", 1.6)?,
            max_candidates: config.usize_or("max_candidates", 1000)?,
            use_dilation: config.bool_or("use_dilation", true)?,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let prob = inputs.tensor("prob")?;
        let (mh, mw) = (prob.shape[2] as usize, prob.shape[3] as usize);
        let pred = prob.as_f32()?;
        let img = inputs.tensor("image_bgr")?;
        let (dest_h, dest_w) = (img.shape[0] as f64, img.shape[1] as f64);
        if pred.len() != mh * mw {
            return Err(format!(
                "input `prob`: {} values for a {mh}x{mw} map",
                pred.len()
            ));
        }

        let mut mask: Vec<u8> = pred.iter().map(|&p| (p > self.thresh) as u8).collect();
        if self.use_dilation {
            // 2×2 kernel anchored at (1,1): each pixel takes the max of itself, left, up, up-left.
            let src = mask.clone();
            for y in 0..mh {
                for x in 0..mw {
                    let mut v = src[y * mw + x];
                    if x > 0 {
                        v |= src[y * mw + x - 1];
                    }
                    if y > 0 {
                        v |= src[(y - 1) * mw + x];
                    }
                    if x > 0 && y > 0 {
                        v |= src[(y - 1) * mw + x - 1];
                    }
                    mask[y * mw + x] = v;
                }
            }
        }
        let mut boxes: Vec<([Pt; 4], f64)> = Vec::new();
        for region in regions(&mask, mw, mh).into_iter().take(self.max_candidates) {
            let (pts, sside) = mini_box(region);
            if sside < 3.0 {
                continue;
            }
            let score = box_score(&pred, mw, mh, &pts);
            if score < self.box_thresh {
                continue;
            }
            // Unclip: offset the box outwards by area * ratio / perimeter.
            let area = dist(pts[0], pts[1]) * dist(pts[1], pts[2]);
            let perim = 2.0 * (dist(pts[0], pts[1]) + dist(pts[1], pts[2]));
            let d = area * self.unclip_ratio / perim;
            let grown = ocr_common::min_area_rect(pts.to_vec()).grow(d);
            let (b, sside) = mini_box(grown.corners().to_vec());
            if sside < 5.0 {
                continue;
            }
            let mut out = [(0.0, 0.0); 4];
            for (o, p) in out.iter_mut().zip(b.iter()) {
                *o = (
                    round_half_even(p.0 / mw as f64 * dest_w).clamp(0.0, dest_w),
                    round_half_even(p.1 / mh as f64 * dest_h).clamp(0.0, dest_h),
                );
            }
            boxes.push((out, score));
        }
        // Order each box clockwise from top-left, clip to the image, drop slivers.
        let mut kept: Vec<([Pt; 4], f64)> = Vec::new();
        for (b, score) in boxes {
            let mut xs = b.to_vec();
            xs.sort_by(|a, c| a.0.total_cmp(&c.0));
            let mut left = [xs[0], xs[1]];
            let mut right = [xs[2], xs[3]];
            left.sort_by(|a, c| a.1.total_cmp(&c.1));
            right.sort_by(|a, c| a.1.total_cmp(&c.1));
            let mut q = [left[0], right[0], right[1], left[1]];
            for p in q.iter_mut() {
                p.0 = p.0.clamp(0.0, dest_w - 1.0).trunc();
                p.1 = p.1.clamp(0.0, dest_h - 1.0).trunc();
            }
            if dist(q[0], q[1]).trunc() <= 3.0 || dist(q[0], q[3]).trunc() <= 3.0 {
                continue;
            }
            kept.push((q, score));
        }
        // Top to bottom, then left to right within a line (10 px).
        kept.sort_by(|a, b| {
            (a.0[0].1, a.0[0].0)
                .partial_cmp(&(b.0[0].1, b.0[0].0))
                .expect("finite")
        });
        for i in 0..kept.len().saturating_sub(1) {
            let mut j = i as i64;
            while j >= 0 {
                let (a, b) = (&kept[j as usize].0, &kept[j as usize + 1].0);
                if (b[0].1 - a[0].1).abs() < 10.0 && b[0].0 < a[0].0 {
                    kept.swap(j as usize, j as usize + 1);
                    j -= 1;
                } else {
                    break;
                }
            }
        }
        let quads: Vec<serde_json::Value> = kept
            .iter()
            .map(|(q, score)| {
                let pts: Vec<[f64; 2]> = q.iter().map(|p| [p.0, p.1]).collect();
                serde_json::json!({"points": pts, "score": score})
            })
            .collect();
        Ok(Outputs::new().json("quads", &serde_json::Value::Array(quads)))
    }
}

algobay_stage::stage!(BoxDecode);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bright_bar_is_one_region_with_a_full_score() {
        let (w, h) = (40, 20);
        let mut pred = vec![0f32; w * h];
        for y in 5..12 {
            for x in 4..30 {
                pred[y * w + x] = 0.9;
            }
        }
        let mask: Vec<u8> = pred.iter().map(|&p| (p > 0.3) as u8).collect();
        let r = regions(&mask, w, h);
        assert_eq!(r.len(), 1);
        let (quad, short) = mini_box(r.into_iter().next().unwrap());
        assert!((6.0..=7.0).contains(&short), "{short}");
        assert!((box_score(&pred, w, h, &quad) - 0.9).abs() < 1e-6);
        assert!(dist(quad[0], quad[1]) > 20.0, "{quad:?}");
    }
}
