//! Image geometry for the OCR stages, following the conventions of OpenCV that
//! PP-OCR's reference pre/post-processing relies on (pixel-centre bilinear
//! resize, perspective crops with replicated borders, minimum-area rectangles).

/// An interleaved 3-channel 8-bit image (BGR, as the PP-OCR models expect).
#[derive(Clone, Debug, PartialEq)]
pub struct Img {
    pub w: usize,
    pub h: usize,
    pub data: Vec<u8>,
}

impl Img {
    pub fn new(w: usize, h: usize) -> Img {
        Img {
            w,
            h,
            data: vec![0; w * h * 3],
        }
    }

    #[inline]
    pub fn px(&self, x: usize, y: usize, c: usize) -> u8 {
        self.data[(y * self.w + x) * 3 + c]
    }
}

/// Python's `round` (half to even), which the reference code uses for sizes.
pub fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

fn axis_map(src: usize, dst: usize) -> Vec<(usize, usize, f32)> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            let f = (d as f64 + 0.5) * scale - 0.5;
            let mut i0 = f.floor();
            let mut a = f - i0;
            if i0 < 0.0 {
                i0 = 0.0;
                a = 0.0;
            }
            let i0 = i0 as usize;
            if i0 >= src - 1 {
                (src - 1, src - 1, 0.0)
            } else {
                (i0, i0 + 1, a as f32)
            }
        })
        .collect()
}

/// Bilinear resize with OpenCV's pixel-centre convention (`cv2.resize`, INTER_LINEAR).
pub fn resize_bilinear(src: &Img, nw: usize, nh: usize) -> Img {
    let mut out = Img::new(nw, nh);
    if src.w == 0 || src.h == 0 || nw == 0 || nh == 0 {
        return out;
    }
    let xs = axis_map(src.w, nw);
    let ys = axis_map(src.h, nh);
    // Horizontal pass into f32 rows, then vertical.
    let mut rows = vec![0f32; src.h * nw * 3];
    for y in 0..src.h {
        let row = &src.data[y * src.w * 3..(y + 1) * src.w * 3];
        let dst = &mut rows[y * nw * 3..(y + 1) * nw * 3];
        for (x, &(x0, x1, a)) in xs.iter().enumerate() {
            for c in 0..3 {
                let p0 = row[x0 * 3 + c] as f32;
                let p1 = row[x1 * 3 + c] as f32;
                dst[x * 3 + c] = p0 + (p1 - p0) * a;
            }
        }
    }
    for (y, &(y0, y1, b)) in ys.iter().enumerate() {
        let r0 = &rows[y0 * nw * 3..(y0 + 1) * nw * 3];
        let r1 = &rows[y1 * nw * 3..(y1 + 1) * nw * 3];
        let dst = &mut out.data[y * nw * 3..(y + 1) * nw * 3];
        for i in 0..nw * 3 {
            let v = r0[i] + (r1[i] - r0[i]) * b;
            // Round half up; v is within [0, 255], so this equals `round` and vectorises.
            dst[i] = (v.clamp(0.0, 255.0) + 0.5) as u8;
        }
    }
    out
}

/// Normalises to `(v / 255 - 0.5) / 0.5` in CHW order into `out` (3 × h × out_w),
/// leaving columns past the image's width untouched (zero padding).
pub fn normalize_chw_into(img: &Img, out: &mut [f32], out_w: usize) {
    let plane = img.h * out_w;
    for y in 0..img.h {
        let row = &img.data[y * img.w * 3..(y + 1) * img.w * 3];
        for c in 0..3 {
            let dst = &mut out[c * plane + y * out_w..c * plane + y * out_w + img.w];
            for (x, d) in dst.iter_mut().enumerate() {
                *d = row[x * 3 + c] as f32 * (2.0 / 255.0) - 1.0;
            }
        }
    }
}

pub type Pt = (f64, f64);

/// Convex hull (Andrew's monotone chain), counter-clockwise, no collinear points.
pub fn convex_hull(mut pts: Vec<Pt>) -> Vec<Pt> {
    pts.sort_by(|a, b| a.partial_cmp(b).expect("finite points"));
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let cross = |o: Pt, a: Pt, b: Pt| (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0);
    let mut hull: Vec<Pt> = Vec::with_capacity(pts.len() * 2);
    for &p in &pts {
        while hull.len() >= 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
            hull.pop();
        }
        hull.push(p);
    }
    let lower = hull.len() + 1;
    for &p in pts.iter().rev().skip(1) {
        while hull.len() >= lower && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
            hull.pop();
        }
        hull.push(p);
    }
    hull.pop();
    hull
}

/// A rotated rectangle: centre, unit axis `u`, half extents along `u` and its normal.
#[derive(Clone, Copy, Debug)]
pub struct RotRect {
    pub c: Pt,
    pub u: Pt,
    pub half: (f64, f64),
}

impl RotRect {
    pub fn min_side(&self) -> f64 {
        2.0 * self.half.0.min(self.half.1)
    }
    pub fn corners(&self) -> [Pt; 4] {
        let v = (-self.u.1, self.u.0);
        let (a, b) = self.half;
        let p = |s: f64, t: f64| {
            (
                self.c.0 + s * a * self.u.0 + t * b * v.0,
                self.c.1 + s * a * self.u.1 + t * b * v.1,
            )
        };
        [p(-1.0, -1.0), p(1.0, -1.0), p(1.0, 1.0), p(-1.0, 1.0)]
    }
    /// The same rectangle grown by `d` on every side.
    pub fn grow(&self, d: f64) -> RotRect {
        RotRect {
            half: (self.half.0 + d, self.half.1 + d),
            ..*self
        }
    }
}

/// The minimum-area enclosing rectangle of a point set (rotating calipers over the hull).
pub fn min_area_rect(points: Vec<Pt>) -> RotRect {
    let hull = convex_hull(points);
    if hull.is_empty() {
        return RotRect {
            c: (0.0, 0.0),
            u: (1.0, 0.0),
            half: (0.0, 0.0),
        };
    }
    if hull.len() == 1 {
        return RotRect {
            c: hull[0],
            u: (1.0, 0.0),
            half: (0.0, 0.0),
        };
    }
    let mut best: Option<(f64, RotRect)> = None;
    for i in 0..hull.len() {
        let a = hull[i];
        let b = hull[(i + 1) % hull.len()];
        let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        if len == 0.0 {
            continue;
        }
        let u = ((b.0 - a.0) / len, (b.1 - a.1) / len);
        let v = (-u.1, u.0);
        let (mut s0, mut s1, mut t0, mut t1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for p in &hull {
            let s = p.0 * u.0 + p.1 * u.1;
            let t = p.0 * v.0 + p.1 * v.1;
            s0 = s0.min(s);
            s1 = s1.max(s);
            t0 = t0.min(t);
            t1 = t1.max(t);
        }
        let area = (s1 - s0) * (t1 - t0);
        if best.as_ref().is_none_or(|(ba, _)| area < *ba - 1e-9) {
            let (sc, tc) = ((s0 + s1) / 2.0, (t0 + t1) / 2.0);
            let c = (sc * u.0 + tc * v.0, sc * u.1 + tc * v.1);
            best = Some((
                area,
                RotRect {
                    c,
                    u,
                    half: ((s1 - s0) / 2.0, (t1 - t0) / 2.0),
                },
            ));
        }
    }
    best.map(|(_, r)| r).unwrap_or(RotRect {
        c: hull[0],
        u: (1.0, 0.0),
        half: (0.0, 0.0),
    })
}

/// Solves the 8 unknowns of the homography taking `src[i]` to `dst[i]`.
#[allow(clippy::needless_range_loop)] // row operations read one row while writing another
pub fn perspective_transform(src: &[Pt; 4], dst: &[Pt; 4]) -> Option<[f64; 9]> {
    let mut a = [[0f64; 9]; 8];
    for i in 0..4 {
        let (x, y) = src[i];
        let (u, v) = dst[i];
        a[i] = [x, y, 1.0, 0.0, 0.0, 0.0, -x * u, -y * u, u];
        a[i + 4] = [0.0, 0.0, 0.0, x, y, 1.0, -x * v, -y * v, v];
    }
    for col in 0..8 {
        let piv = (col..8).max_by(|&r, &s| a[r][col].abs().total_cmp(&a[s][col].abs()))?;
        if a[piv][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, piv);
        for r in 0..8 {
            if r != col {
                let f = a[r][col] / a[col][col];
                for k in col..9 {
                    a[r][k] -= f * a[col][k];
                }
            }
        }
    }
    let mut m = [0f64; 9];
    for i in 0..8 {
        m[i] = a[i][8] / a[i][i];
    }
    m[8] = 1.0;
    Some(m)
}

/// Crops the quadrilateral `quad` (tl, tr, br, bl) to an upright `w × h` image:
/// bilinear sampling, borders replicated.
pub fn warp_crop(img: &Img, quad: &[Pt; 4], w: usize, h: usize) -> Option<Img> {
    let rect = [
        (0.0, 0.0),
        (w as f64, 0.0),
        (w as f64, h as f64),
        (0.0, h as f64),
    ];
    // Map output pixels back into the source.
    let m = perspective_transform(&rect, quad)?;
    let mut out = Img::new(w, h);
    let (iw, ih) = (img.w as f64 - 1.0, img.h as f64 - 1.0);
    for y in 0..h {
        for x in 0..w {
            let (xf, yf) = (x as f64, y as f64);
            let den = m[6] * xf + m[7] * yf + m[8];
            let sx = ((m[0] * xf + m[1] * yf + m[2]) / den).clamp(0.0, iw);
            let sy = ((m[3] * xf + m[4] * yf + m[5]) / den).clamp(0.0, ih);
            let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(img.w - 1), (y0 + 1).min(img.h - 1));
            let (ax, ay) = (sx - x0 as f64, sy - y0 as f64);
            for c in 0..3 {
                let p = |xx: usize, yy: usize| img.px(xx, yy, c) as f64;
                let top = p(x0, y0) + (p(x1, y0) - p(x0, y0)) * ax;
                let bot = p(x0, y1) + (p(x1, y1) - p(x0, y1)) * ax;
                out.data[(y * w + x) * 3 + c] =
                    (top + (bot - top) * ay).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    Some(out)
}

/// Rotates an image 90° counter-clockwise (numpy's `rot90`).
pub fn rot90(img: &Img) -> Img {
    let mut out = Img::new(img.h, img.w);
    for y in 0..img.h {
        for x in 0..img.w {
            let (nx, ny) = (y, img.w - 1 - x);
            for c in 0..3 {
                out.data[(ny * out.w + nx) * 3 + c] = img.px(x, y, c);
            }
        }
    }
    out
}

/// Settings of [`preprocess`], as in rapidocr's configuration.
#[derive(Clone, Copy, Debug)]
pub struct PreConfig {
    pub limit_side_len: usize,
    pub max_side_len: usize,
    pub min_side_len: usize,
    pub min_height: usize,
    pub width_height_ratio: f64,
}

impl Default for PreConfig {
    fn default() -> Self {
        PreConfig {
            limit_side_len: 736,
            max_side_len: 2000,
            min_side_len: 30,
            min_height: 30,
            width_height_ratio: 8.0,
        }
    }
}

/// What [`preprocess`] produces.
#[derive(Debug)]
pub struct Preprocessed {
    /// The detector's input, 1 × 3 × h × w, normalised to [-1, 1].
    pub det_x: Vec<f32>,
    pub det_h: usize,
    pub det_w: usize,
    /// The image the detector sees (after bounding and letterboxing), BGR.
    pub image: Img,
    pub ratio_h: f64,
    pub ratio_w: f64,
    pub pad_top: usize,
    pub raw_h: usize,
    pub raw_w: usize,
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

/// PP-OCR's pre-processing: decode (PNG or JPEG) to BGR, bound the sides, letterbox
/// very flat images, resize the short side to `limit_side_len` in multiples of 32,
/// normalise in CHW order.
pub fn preprocess(cfg: &PreConfig, bytes: &[u8]) -> Result<Preprocessed, String> {
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
    if img.w.max(img.h) > cfg.max_side_len {
        let r = cfg.max_side_len as f64 / img.w.max(img.h) as f64;
        let (h0, w0) = (img.h, img.w);
        img = resize_to_32(&img, r)?;
        ratio_h = h0 as f64 / img.h as f64;
        ratio_w = w0 as f64 / img.w as f64;
    }
    if img.w.min(img.h) < cfg.min_side_len {
        let r = cfg.min_side_len as f64 / img.w.min(img.h) as f64;
        let (h0, w0) = (img.h, img.w);
        img = resize_to_32(&img, r)?;
        ratio_h = h0 as f64 / img.h as f64;
        ratio_w = w0 as f64 / img.w as f64;
    }
    // Letterbox images that are too flat for the detector.
    let mut pad_top = 0usize;
    if img.h <= cfg.min_height || img.w as f64 / img.h as f64 > cfg.width_height_ratio {
        let new_h = ((img.w as f64 / cfg.width_height_ratio) as usize).max(cfg.min_height) * 2;
        pad_top = new_h.abs_diff(img.h) / 2;
        let mut padded = Img::new(img.w, img.h + 2 * pad_top);
        padded.data[pad_top * img.w * 3..(pad_top + img.h) * img.w * 3].copy_from_slice(&img.data);
        img = padded;
    }
    // Detector input: short side to limit_side_len, multiples of 32.
    let (h, w) = (img.h, img.w);
    let ratio = if h.min(w) < cfg.limit_side_len {
        cfg.limit_side_len as f64 / h.min(w) as f64
    } else {
        1.0
    };
    let det_h = round_half_even((h as f64 * ratio).trunc() / 32.0) as usize * 32;
    let det_w = round_half_even((w as f64 * ratio).trunc() / 32.0) as usize * 32;
    if det_h == 0 || det_w == 0 {
        return Err(format!("image of {w}x{h} is too small for the detector"));
    }
    let resized = resize_bilinear(&img, det_w, det_h);
    let mut det_x = vec![0f32; 3 * det_h * det_w];
    normalize_chw_into(&resized, &mut det_x, det_w);
    Ok(Preprocessed {
        det_x,
        det_h,
        det_w,
        image: img,
        ratio_h,
        ratio_w,
        pad_top,
        raw_h,
        raw_w,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_area_rect_of_axis_aligned_block() {
        let mut pts = Vec::new();
        for y in 5..=15 {
            for x in 10..=50 {
                pts.push((x as f64, y as f64));
            }
        }
        let r = min_area_rect(pts);
        let mut sides = [r.half.0 * 2.0, r.half.1 * 2.0];
        sides.sort_by(f64::total_cmp);
        assert!(
            (sides[0] - 10.0).abs() < 1e-9 && (sides[1] - 40.0).abs() < 1e-9,
            "{sides:?}"
        );
        assert!((r.c.0 - 30.0).abs() < 1e-9 && (r.c.1 - 10.0).abs() < 1e-9);
    }

    #[test]
    fn resize_identity_keeps_pixels() {
        let img = Img {
            w: 2,
            h: 2,
            data: (0..12).collect(),
        };
        assert_eq!(resize_bilinear(&img, 2, 2), img);
    }

    #[test]
    fn round_half_even_matches_python() {
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
        assert_eq!(round_half_even(2.4), 2.0);
    }

    #[test]
    fn warp_of_integer_rect_is_a_crop() {
        let mut img = Img::new(8, 8);
        for (i, v) in img.data.iter_mut().enumerate() {
            *v = (i % 251) as u8;
        }
        let quad = [(2.0, 3.0), (6.0, 3.0), (6.0, 5.0), (2.0, 5.0)];
        let out = warp_crop(&img, &quad, 4, 2).unwrap();
        assert_eq!(out.px(0, 0, 0), img.px(2, 3, 0));
        assert_eq!(out.px(3, 1, 2), img.px(5, 4, 2));
    }
}
