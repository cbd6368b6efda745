//! OpenCV's `cv2.resize` and `cv2.cvtColor(…, COLOR_RGB2GRAY)` on 8-bit images.
//!
//! Linear, cubic and Lanczos-4 are separable: per output column a source
//! offset and weights rounded to 11-bit integers; rows are filtered into
//! 32-bit sums, then combined vertically. The vertical step rounds the way
//! OpenCV's own code does on 8-bit data: linear with its 16-bit high
//! multiplies; Lanczos-4 in integers. Cubic runs in single precision over
//! weights worked out in double, which comes closest to OpenCV 4.13 on
//! 8-bit images (about one value in 100 000 still lands one level apart).
//! Area with whole scale factors averages blocks (2×2 blocks rounding with
//! a shift); with other factors it sums cell overlaps in floats.

use crate::{check_target, Image, ImagingError};

mod area;
mod cubic;
mod kernels;
#[cfg(target_arch = "wasm32")]
mod wasm;

use area::{area_cells, area_whole};
use cubic::cubic;
use kernels::{lanczos_cols3, linear_cols3, linear_rows, taps_rows, Pairs3};

/// OpenCV's interpolation flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    Nearest,
    Linear,
    Cubic,
    Area,
    Lanczos4,
}

impl std::str::FromStr for Interpolation {
    type Err = ImagingError;
    fn from_str(s: &str) -> Result<Interpolation, ImagingError> {
        let s = s.to_ascii_lowercase();
        Ok(match s.trim_start_matches("inter_") {
            "nearest" => Interpolation::Nearest,
            "linear" | "bilinear" => Interpolation::Linear,
            "cubic" | "bicubic" => Interpolation::Cubic,
            "area" => Interpolation::Area,
            "lanczos4" | "lanczos" => Interpolation::Lanczos4,
            _ => {
                return Err(ImagingError::Name {
                    what: "opencv interpolation",
                    value: s,
                })
            }
        })
    }
}

const COEF_BITS: u32 = 11;
const COEF_SCALE: f32 = (1 << COEF_BITS) as f32;

/// OpenCV's `saturate_cast<short>(float)`: round half to even, then clamp.
fn to_i16(v: f32) -> i32 {
    (v.round_ties_even() as i32).clamp(i16::MIN as i32, i16::MAX as i32)
}

/// Half to even, then clamped to a byte, for |v| < 2^22 (a filter's sum of
/// bytes): adding 1.5 * 2^23 leaves the rounded integer in the low bits of
/// the sum, the hardware rounding half to even. Unlike a float-to-integer
/// conversion, which must saturate and pass NaN, this vectorises.
#[inline(always)]
fn round_to_u8(v: f32) -> u8 {
    const MAGIC: f32 = 12_582_912.0;
    (((v + MAGIC).to_bits() as i32) - MAGIC.to_bits() as i32).clamp(0, 255) as u8
}

/// OpenCV's `saturate_cast<uchar>` of a float.
fn f32_to_u8(v: f32) -> u8 {
    (v.round_ties_even() as i32).clamp(0, 255) as u8
}

fn lanczos4_coeffs(x: f32) -> [f32; 8] {
    const S45: f64 = std::f64::consts::FRAC_1_SQRT_2;
    const CS: [[f64; 2]; 8] = [
        [1.0, 0.0],
        [-S45, -S45],
        [0.0, 1.0],
        [S45, -S45],
        [-1.0, 0.0],
        [S45, S45],
        [0.0, -1.0],
        [-S45, S45],
    ];
    let y0 = -((x + 3.0) as f64) * std::f64::consts::PI * 0.25;
    let (s0, c0) = (y0.sin(), y0.cos());
    let mut k = [0f32; 8];
    let mut sum = 0f32;
    for (i, ki) in k.iter_mut().enumerate() {
        let y0i = x + 3.0 - i as f32;
        *ki = if y0i.abs() >= f32::EPSILON {
            let y = -(y0i as f64) * std::f64::consts::PI * 0.25;
            ((CS[i][0] * s0 + CS[i][1] * c0) / (y * y)) as f32
        } else {
            1e30
        };
        sum += *ki;
    }
    let inv = 1.0 / sum;
    for ki in &mut k {
        *ki *= inv;
    }
    k
}

/// Per output position along one axis: source index and integer weights.
struct Axis {
    ofs: Vec<i64>,
    k: Vec<i32>,
    ksize: usize,
    /// Output positions before `min` or from `max` on read past an edge.
    min: usize,
    max: usize,
}

/// `columns`: the horizontal axis, whose weights OpenCV pins at the edges
/// for linear and area; rows keep their weights and only their index is clamped.
fn axis(
    in_size: usize,
    out_size: usize,
    scale: f64,
    inv_scale: f64,
    interp: Interpolation,
    columns: bool,
) -> Axis {
    let ksize = if interp == Interpolation::Lanczos4 {
        8
    } else {
        2
    };
    let half = ksize as i64 / 2;
    let area = interp == Interpolation::Area;
    let mut a = Axis {
        ofs: Vec::with_capacity(out_size),
        k: Vec::with_capacity(out_size * ksize),
        ksize,
        min: 0,
        max: out_size,
    };
    for d in 0..out_size {
        let (mut s, mut f) = if area {
            let s = (d as f64 * scale).floor() as i64;
            let f = ((d + 1) as f64 - (s + 1) as f64 * inv_scale) as f32;
            (s, if f <= 0.0 { 0.0 } else { f - f.floor() })
        } else {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let s = f.floor() as i64;
            (s, f - s as f32)
        };
        let edge_fixed = columns && interp != Interpolation::Lanczos4;
        if s < half - 1 {
            a.min = d + 1;
            if s < 0 && edge_fixed {
                s = 0;
                f = 0.0;
            }
        }
        if s + half >= in_size as i64 {
            a.max = a.max.min(d);
            if s >= in_size as i64 - 1 && edge_fixed {
                s = in_size as i64 - 1;
                f = 0.0;
            }
        }
        a.ofs.push(s);
        match interp {
            Interpolation::Lanczos4 => {
                a.k.extend(lanczos4_coeffs(f).map(|c| to_i16(c * COEF_SCALE)))
            }
            _ => {
                a.k.extend([to_i16((1.0 - f) * COEF_SCALE), to_i16(f * COEF_SCALE)])
            }
        }
    }
    a
}

/// `cv2.resize(img, (width, height), interpolation=interp)` of a 1-, 3- or 4-channel image.
pub fn resize_opencv(
    img: &Image,
    width: usize,
    height: usize,
    interp: Interpolation,
) -> Result<Image, ImagingError> {
    check_target(width, height)?;
    if img.width == width && img.height == height {
        return Ok(img.clone());
    }
    let inv_x = width as f64 / img.width as f64;
    let inv_y = height as f64 / img.height as f64;
    let (sx, sy) = (1.0 / inv_x, 1.0 / inv_y);
    if interp == Interpolation::Nearest {
        return Ok(nearest(img, width, height, sx, sy));
    }
    let (ix, iy) = (sx.round() as i64, sy.round() as i64);
    let area_fast = (sx - ix as f64).abs() < f64::EPSILON && (sy - iy as f64).abs() < f64::EPSILON;
    let mut interp = interp;
    if interp == Interpolation::Linear && area_fast && ix == 2 && iy == 2 {
        interp = Interpolation::Area;
    }
    if interp == Interpolation::Area && sx >= 1.0 && sy >= 1.0 {
        return Ok(if area_fast {
            area_whole(img, width, height, ix as usize, iy as usize)
        } else {
            area_cells(img, width, height, sx, sy)
        });
    }
    if interp == Interpolation::Cubic {
        return Ok(cubic(img, width, height, sx, sy));
    }
    let c = img.channels;
    let xa = axis(img.width, width, sx, inv_x, interp, true);
    let ya = axis(img.height, height, sy, inv_y, interp, false);
    let (ks, half) = (xa.ksize, xa.ksize as i64 / 2);
    let sw = (img.width * c) as i64;
    let dw = width * c;
    // One horizontally filtered row per source row, made when first needed.
    let pairs3 = (ks == 2 && c == 3).then(|| Pairs3::new(&xa, img.width * 3));
    // Lanczos-4 on three channels: the pixels whose taps (and the two bytes
    // after them, read with the last pair) lie inside the row.
    let fast3 = (ks == 8 && c == 3).then(|| {
        let hi = (xa.min..xa.max)
            .find(|&dx| (xa.ofs[dx] - 3) as usize * 3 + 26 > img.width * 3)
            .unwrap_or(xa.max);
        (xa.min, hi.max(xa.min))
    });
    let mut hrow = |y: usize, out: &mut [i32]| {
        let s = img.row(y);
        if let Some(p) = &pairs3 {
            linear_cols3(s, p, out);
            return;
        }
        if ks == 2 {
            // Two taps: the weights are pinned at the edges, so no index leaves the row.
            let cn = c as i64;
            for dx in 0..width {
                let (k0, k1) = (xa.k[dx * 2], xa.k[dx * 2 + 1]);
                let base = (xa.ofs[dx] * cn) as usize;
                let o = &mut out[dx * c..(dx + 1) * c];
                if dx >= xa.max || base + c >= s.len() {
                    for (ch, v) in o.iter_mut().enumerate() {
                        *v = s[base + ch] as i32 * (1 << COEF_BITS);
                    }
                } else {
                    let (a, b) = (&s[base..base + c], &s[base + c..base + 2 * c]);
                    for ch in 0..c {
                        o[ch] = a[ch] as i32 * k0 + b[ch] as i32 * k1;
                    }
                }
            }
            return;
        }
        let pixel = |dx: usize, out: &mut [i32]| {
            let k = &xa.k[dx * ks..(dx + 1) * ks];
            let base = xa.ofs[dx] * c as i64;
            let inside = dx >= xa.min && dx < xa.max;
            for ch in 0..c {
                let o = &mut out[dx * c + ch];
                if ks == 2 && !inside && dx >= xa.max {
                    *o = s[(base + ch as i64) as usize] as i32 * (1 << COEF_BITS);
                    continue;
                }
                let mut v = 0i32;
                for (j, &kj) in k.iter().enumerate() {
                    let mut i = base + ch as i64 + (j as i64 - (half - 1)) * c as i64;
                    if !inside {
                        while i < 0 {
                            i += c as i64;
                        }
                        while i >= sw {
                            i -= c as i64;
                        }
                    }
                    v = v.wrapping_add(s[i as usize] as i32 * kj);
                }
                *o = v;
            }
        };
        // In order: a fast pixel's spare lane is the next pixel's first value.
        let (lo, hi) = fast3.unwrap_or((0, 0));
        (0..lo).for_each(|dx| pixel(dx, out));
        if hi > lo {
            lanczos_cols3(
                s,
                &xa.ofs[lo..hi],
                &xa.k[lo * 8..hi * 8],
                &mut out[lo * 3..],
            );
        }
        (hi.max(lo)..width).for_each(|dx| pixel(dx, out));
    };
    let mut out = vec![0u8; height * dw];
    let mut acc = vec![0i32; dw];
    // A value to spare for the three-channel rows' four-lane writes.
    let mut rows = Rows::new(ks, dw + 1);
    let mut src = vec![0usize; ks];
    for dy in 0..height {
        let b = &ya.k[dy * ks..(dy + 1) * ks];
        for (k, y) in src.iter_mut().enumerate() {
            *y = (ya.ofs[dy] - half + 1 + k as i64).clamp(0, img.height as i64 - 1) as usize;
        }
        let r = rows.ensure(&src, &mut hrow);
        let o = &mut out[dy * dw..(dy + 1) * dw];
        match interp {
            Interpolation::Linear | Interpolation::Area => linear_rows(r[0], r[1], b[0], b[1], o),
            _ => taps_rows(&r, b, &mut acc, o),
        }
    }
    Ok(Image {
        width,
        height,
        channels: c,
        data: out,
    })
}

/// The horizontally filtered source rows the current output row reads, in
/// as many reused buffers as it has taps: output rows read source rows in
/// order, so each is filtered once and nothing grows with the image.
struct Rows<T> {
    keys: Vec<usize>,
    bufs: Vec<Vec<T>>,
}

impl<T: Copy + Default> Rows<T> {
    fn new(slots: usize, len: usize) -> Rows<T> {
        Rows {
            keys: vec![usize::MAX; slots],
            bufs: (0..slots).map(|_| vec![T::default(); len]).collect(),
        }
    }

    /// Each row of `need` filtered (by `fill`, into a slot no needed row
    /// holds) and returned in `need`'s order.
    fn ensure(&mut self, need: &[usize], fill: &mut dyn FnMut(usize, &mut [T])) -> Vec<&[T]> {
        for &y in need {
            if self.keys.contains(&y) {
                continue;
            }
            // At most need.len() - 1 slots hold needed rows: one is free.
            let slot = (0..self.keys.len())
                .find(|&i| !need.contains(&self.keys[i]))
                .expect("as many slots as taps");
            fill(y, &mut self.bufs[slot]);
            self.keys[slot] = y;
        }
        need.iter()
            .map(|y| {
                let slot = self.keys.iter().position(|k| k == y).unwrap_or(0);
                self.bufs[slot].as_slice()
            })
            .collect()
    }
}

fn nearest(img: &Image, width: usize, height: usize, sx: f64, sy: f64) -> Image {
    // OpenCV passes the inverse of the inverse scale.
    let (ifx, ify) = (1.0 / (1.0 / sx), 1.0 / (1.0 / sy));
    let table = |out: usize, f: f64, size: usize| -> Vec<Option<usize>> {
        (0..out)
            .map(|i| Some(((i as f64 * f).floor() as usize).min(size - 1)))
            .collect()
    };
    let xs = table(width, ifx, img.width);
    let ys = table(height, ify, img.height);
    Image {
        width,
        height,
        channels: img.channels,
        data: crate::gather(img, &xs, &ys),
    }
}

/// `cv2.cvtColor(img, COLOR_RGB2GRAY)` (or `COLOR_BGR2GRAY` with `bgr`): 15-bit fixed point.
pub fn gray_opencv(img: &Image, bgr: bool) -> Result<Image, ImagingError> {
    if img.channels != 3 && img.channels != 4 {
        return Err(ImagingError::Channels {
            op: "opencv gray",
            channels: img.channels,
        });
    }
    let channels = if bgr { (2, 0) } else { (0, 2) };
    let data = crate::luma(img, channels, [9798, 19235, 3735], 15);
    Ok(Image {
        width: img.width,
        height: img.height,
        channels: 1,
        data,
    })
}
