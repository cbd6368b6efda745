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

/// Cubic weights (OpenCV's A = -0.75), worked out in double precision and
/// rounded to single.
fn cubic_coeffs(x: f64) -> [f32; 4] {
    const A: f64 = -0.75;
    let c0 = ((A * (x + 1.0) - 5.0 * A) * (x + 1.0) + 8.0 * A) * (x + 1.0) - 4.0 * A;
    let c1 = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let c2 = ((A + 2.0) * (1.0 - x) - (A + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
    [c0, c1, c2, 1.0 - c0 - c1 - c2].map(|c| c as f32)
}

/// Per output position: the source index and the four weights.
fn cubic_axis(out_size: usize, scale: f64) -> Vec<(i64, [f32; 4])> {
    (0..out_size)
        .map(|d| {
            let f = (d as f64 + 0.5) * scale - 0.5;
            let s = f.floor();
            (s as i64, cubic_coeffs(f - s))
        })
        .collect()
}

/// Cubic on 8-bit images, as near OpenCV 4.13 as we found: positions and
/// weights in double precision, both passes in single (nearer its bytes
/// than double throughout, and twice as wide a vector), each pass summing
/// its four taps in order, rounded half to even at the end; taps past an
/// edge repeat it.
fn cubic(img: &Image, width: usize, height: usize, sx: f64, sy: f64) -> Image {
    let c = img.channels;
    let dw = width * c;
    let sw = (img.width * c) as i64;
    let xa = cubic_axis(width, sx);
    let ya = cubic_axis(height, sy);
    // Per output value and tap, the source byte (clamped at the edges) and
    // its weight, so a row is filtered by one branch-free loop.
    let mut idx = [const { Vec::new() }; 4];
    let mut w = [const { Vec::new() }; 4];
    for (ofs, k) in &xa {
        for ch in 0..c {
            for j in 0..4 {
                let px = (ofs - 1 + j as i64).clamp(0, sw / c as i64 - 1);
                idx[j].push((px * c as i64) as u32 + ch as u32);
                w[j].push(k[j]);
            }
        }
    }
    // One value past the row for the four-lane reads of its last pixel.
    let mut s = vec![0f32; img.width * c + 1];
    // Three channels: per output pixel its four source pixels and weights.
    let taps3: Vec<([u32; 4], [f32; 4])> = if c == 3 {
        (0..width)
            .map(|dx| (std::array::from_fn(|j| idx[j][dx * 3]), xa[dx].1))
            .collect()
    } else {
        Vec::new()
    };
    let mut hrow = |y: usize, out: &mut [f32]| {
        for (d, &v) in s.iter_mut().zip(img.row(y)) {
            *d = v as f32;
        }
        if c == 3 {
            cubic_cols3(&s, &taps3, out);
        } else {
            cubic_cols(&s, &idx, &w, out);
        }
    };
    let mut rows = Rows::new(4, dw + 1);
    let mut out = vec![0u8; height * dw];
    let mut src = [0usize; 4];
    for (dy, (ofs, b)) in ya.iter().enumerate() {
        for (k, y) in src.iter_mut().enumerate() {
            *y = (ofs - 1 + k as i64).clamp(0, img.height as i64 - 1) as usize;
        }
        let r = rows.ensure(&src, &mut hrow);
        cubic_rows(
            [r[0], r[1], r[2], r[3]],
            *b,
            &mut out[dy * dw..(dy + 1) * dw],
        );
    }
    Image {
        width,
        height,
        channels: c,
        data: out,
    }
}

/// Linear's horizontal taps on three-channel rows, worked out once per
/// resize: per output pixel the byte offset of its first source pixel and
/// the two weights, and where the row's edge changes how a pixel is read.
struct Pairs3 {
    taps: Vec<(u32, i32, i32)>,
    /// Pixels before `wide` read eight bytes (two pixels and two lanes) inside the row.
    wide: usize,
    /// Pixels from `edge` on are their source pixel itself, as OpenCV pins
    /// the weights past `max` (or the row's last pixel).
    edge: usize,
}

impl Pairs3 {
    fn new(xa: &Axis, row_len: usize) -> Pairs3 {
        let width = xa.ofs.len();
        let edge = xa
            .ofs
            .iter()
            .position(|&o| o as usize * 3 + 3 >= row_len)
            .unwrap_or(width)
            .min(xa.max);
        let wide = xa
            .ofs
            .iter()
            .position(|&o| o as usize * 3 + 8 > row_len)
            .unwrap_or(width)
            .min(edge);
        let taps = xa
            .ofs
            .iter()
            .zip(xa.k.chunks_exact(2))
            .map(|(&o, k)| ((o * 3) as u32, k[0], k[1]))
            .collect();
        Pairs3 { taps, wide, edge }
    }
}

multiversion! {
/// Linear's horizontal step on three-channel rows: each output pixel two
/// source pixels weighted, in 32-bit sums. Pixels are worked four lanes at
/// a time, the fourth lane's value overwritten by the next pixel, so `out`
/// has one value to spare.
fn linear_cols3(s: &[u8], p: &Pairs3, out: &mut [i32]) {
    let (wide, edge) = (p.wide, p.edge);
    #[cfg(target_arch = "wasm32")]
    wasm::linear_pairs3(s, &p.taps[..wide], out);
    #[cfg(not(target_arch = "wasm32"))]
    for (x, &(b, k0, k1)) in p.taps[..wide].iter().enumerate() {
        let Some(px) = s.get(b as usize..b as usize + 8) else {
            continue;
        };
        // The two pixels' bytes interleaved against the interleaved weights:
        // sums of adjacent 16-bit products (one multiply-add instruction).
        // The spare lane reads the eighth byte, so the eight are one load.
        const LANES: [usize; 8] = [0, 3, 1, 4, 2, 5, 6, 7];
        let a: [i16; 8] = std::array::from_fn(|j| px[LANES[j]] as i16);
        let w: [i16; 8] = std::array::from_fn(|j| if j % 2 == 0 { k0 as i16 } else { k1 as i16 });
        let v: [i32; 4] = std::array::from_fn(|i| {
            a[2 * i] as i32 * w[2 * i] as i32 + a[2 * i + 1] as i32 * w[2 * i + 1] as i32
        });
        if let Some(d) = out.get_mut(x * 3..x * 3 + 4) {
            d.copy_from_slice(&v);
        }
    }
    for (o, &(b, k0, k1)) in out[wide * 3..].chunks_exact_mut(3).zip(&p.taps[wide..edge]) {
        let Some(px) = s.get(b as usize..b as usize + 6) else {
            continue;
        };
        o[0] = px[0] as i32 * k0 + px[3] as i32 * k1;
        o[1] = px[1] as i32 * k0 + px[4] as i32 * k1;
        o[2] = px[2] as i32 * k0 + px[5] as i32 * k1;
    }
    for (o, &(b, _, _)) in out[edge * 3..].chunks_exact_mut(3).zip(&p.taps[edge..]) {
        let b = b as usize;
        for ch in 0..3 {
            o[ch] = s[b + ch] as i32 * (1 << COEF_BITS);
        }
    }
}
}

multiversion! {
/// Lanczos-4's horizontal step on three-channel rows, for pixels whose eight
/// taps lie inside the row with two bytes to spare: the taps in pairs, each
/// pair's bytes interleaved against its two weights and summed in 16-bit
/// multiply-adds (integer sums, so the order does not change them). Four
/// lanes a pixel, the fourth overwritten by the next pixel.
fn lanczos_cols3(s: &[u8], ofs: &[i64], k: &[i32], out: &mut [i32]) {
    #[cfg(target_arch = "wasm32")]
    wasm::lanczos_cols3(s, ofs, k, out);
    #[cfg(not(target_arch = "wasm32"))]
    for (x, (&o, w)) in ofs.iter().zip(k.chunks_exact(8)).enumerate() {
        let b = (o - 3) as usize * 3;
        let Some(px) = s.get(b..b + 26) else { continue };
        const LANES: [usize; 8] = [0, 3, 1, 4, 2, 5, 6, 7];
        let mut v = [0i32; 4];
        for m in 0..4 {
            let a: [i16; 8] = std::array::from_fn(|j| px[6 * m + LANES[j]] as i16);
            let (k0, k1) = (w[2 * m], w[2 * m + 1]);
            for i in 0..4 {
                v[i] = v[i].wrapping_add(a[2 * i] as i32 * k0 + a[2 * i + 1] as i32 * k1);
            }
        }
        if let Some(d) = out.get_mut(x * 3..x * 3 + 4) {
            d.copy_from_slice(&v);
        }
    }
}
}

multiversion! {
/// Cubic's horizontal step: each value four source values weighted, summed
/// in OpenCV's order from zero.
fn cubic_cols(s: &[f32], idx: &[Vec<u32>; 4], w: &[Vec<f32>; 4], out: &mut [f32]) {
    let n = idx[0].len().min(out.len());
    let (i0, i1, i2, i3) = (&idx[0][..n], &idx[1][..n], &idx[2][..n], &idx[3][..n]);
    let (w0, w1, w2, w3) = (&w[0][..n], &w[1][..n], &w[2][..n], &w[3][..n]);
    for x in 0..n {
        let mut v = 0f32;
        v += s[i0[x] as usize] * w0[x];
        v += s[i1[x] as usize] * w1[x];
        v += s[i2[x] as usize] * w2[x];
        v += s[i3[x] as usize] * w3[x];
        out[x] = v;
    }
}
}

multiversion! {
/// Cubic's horizontal step on three-channel rows: per output pixel, its four
/// taps summed from zero in order, four lanes at a time (the source row has
/// a value to spare past its end, and `out` one too: the fourth lane is
/// overwritten by the next pixel).
fn cubic_cols3(s: &[f32], taps: &[([u32; 4], [f32; 4])], out: &mut [f32]) {
    #[cfg(target_arch = "wasm32")]
    wasm::cubic_cols3(s, taps, out);
    #[cfg(not(target_arch = "wasm32"))]
    for (x, (t, k)) in taps.iter().enumerate() {
        let mut v = [0f32; 4];
        for j in 0..4 {
            let i = t[j] as usize;
            let Some(p) = s.get(i..i + 4) else { continue };
            for l in 0..4 {
                v[l] += p[l] * k[j];
            }
        }
        if let Some(d) = out.get_mut(x * 3..x * 3 + 4) {
            d.copy_from_slice(&v);
        }
    }
}
}

multiversion! {
/// Cubic's vertical step: four filtered rows weighted, rounded to bytes.
fn cubic_rows(r: [&[f32]; 4], b: [f32; 4], o: &mut [u8]) {
    let n = o.len();
    let (r0, r1, r2, r3) = (&r[0][..n], &r[1][..n], &r[2][..n], &r[3][..n]);
    for x in 0..n {
        let v = r0[x] * b[0] + r1[x] * b[1] + r2[x] * b[2] + r3[x] * b[3];
        o[x] = round_to_u8(v);
    }
}
}

multiversion! {
/// Linear's (and area's) vertical step, with OpenCV's 16-bit high multiplies.
fn linear_rows(r0: &[i32], r1: &[i32], b0: i32, b1: i32, o: &mut [u8]) {
    let n = o.len();
    let (r0, r1) = (&r0[..n], &r1[..n]);
    for x in 0..n {
        let v = ((b0 * (r0[x] >> 4)) >> 16) + ((b1 * (r1[x] >> 4)) >> 16) + 2;
        o[x] = (v >> 2).clamp(0, 255) as u8;
    }
}
}

multiversion! {
/// Lanczos-4's vertical step: eight rows in 32-bit integers.
fn taps_rows(r: &[&[i32]], b: &[i32], acc: &mut [i32], o: &mut [u8]) {
    let n = o.len();
    let acc = &mut acc[..n];
    acc.iter_mut().for_each(|a| *a = 0);
    for (row, &bk) in r.iter().zip(b) {
        let row = &row[..n];
        for x in 0..n {
            acc[x] = acc[x].wrapping_add(row[x].wrapping_mul(bk));
        }
    }
    for x in 0..n {
        o[x] = (acc[x].wrapping_add(1 << 21) >> 22).clamp(0, 255) as u8;
    }
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

/// Area with whole scale factors: the mean of each block.
fn area_whole(img: &Image, width: usize, height: usize, ix: usize, iy: usize) -> Image {
    let c = img.channels;
    let dw = width * c;
    let area = ix * iy;
    let scale = 1.0f32 / area as f32;
    let full = (img.width / ix) * c;
    let mut out = vec![0u8; height * dw];
    for dy in 0..height {
        let sy0 = dy * iy;
        let o = &mut out[dy * dw..(dy + 1) * dw];
        if sy0 >= img.height {
            continue;
        }
        let w = if sy0 + iy <= img.height { full } else { 0 };
        for dx in 0..dw {
            let (px, ch) = (dx / c, dx % c);
            let sx0 = px * ix * c + ch;
            if dx < w {
                let mut sum = 0i32;
                for y in 0..iy {
                    let row = img.row(sy0 + y);
                    for x in 0..ix {
                        sum += row[sx0 + x * c] as i32;
                    }
                }
                // 2x2 blocks round with a shift (OpenCV's kernel for them); others by the float mean.
                o[dx] = if ix == 2 && iy == 2 {
                    ((sum + 2) >> 2) as u8
                } else {
                    f32_to_u8(sum as f32 * scale)
                };
            } else {
                let (mut sum, mut count) = (0i32, 0i32);
                for y in 0..iy {
                    if sy0 + y >= img.height {
                        break;
                    }
                    let row = img.row(sy0 + y);
                    for x in 0..ix {
                        if sx0 + x * c >= img.width * c {
                            break;
                        }
                        sum += row[sx0 + x * c] as i32;
                        count += 1;
                    }
                }
                o[dx] = if count == 0 {
                    0
                } else {
                    f32_to_u8(sum as f32 / count as f32)
                };
            }
        }
    }
    Image {
        width,
        height,
        channels: c,
        data: out,
    }
}

/// One source cell's share of an output cell along an axis.
struct Share {
    d: usize,
    s: usize,
    alpha: f32,
}

fn shares(in_size: usize, out_size: usize, scale: f64) -> Vec<Share> {
    let mut tab = Vec::new();
    for d in 0..out_size {
        let f1 = d as f64 * scale;
        let f2 = f1 + scale;
        let cell = scale.min(in_size as f64 - f1);
        let mut s2 = f2.floor() as i64;
        let mut s1 = f1.ceil() as i64;
        s2 = s2.min(in_size as i64 - 1);
        s1 = s1.min(s2);
        if s1 as f64 - f1 > 1e-3 {
            tab.push(Share {
                d,
                s: (s1 - 1) as usize,
                alpha: ((s1 as f64 - f1) / cell) as f32,
            });
        }
        for s in s1..s2 {
            tab.push(Share {
                d,
                s: s as usize,
                alpha: (1.0 / cell) as f32,
            });
        }
        if f2 - s2 as f64 > 1e-3 {
            tab.push(Share {
                d,
                s: s2 as usize,
                alpha: ((f2 - s2 as f64).min(1.0).min(cell) / cell) as f32,
            });
        }
    }
    tab
}

multiversion! {
/// Area's horizontal step: each source pixel's share added to its output
/// pixel, in the order of the shares.
fn area_cols(row: &[u8], cols: &[(u32, u32, f32)], c: usize, buf: &mut [f32]) {
    buf.iter_mut().for_each(|b| *b = 0.0);
    if c == 3 {
        for &(s, d, a) in cols {
            let (s, d) = (s as usize, d as usize);
            let (p, b) = (&row[s..s + 3], &mut buf[d..d + 3]);
            b[0] += p[0] as f32 * a;
            b[1] += p[1] as f32 * a;
            b[2] += p[2] as f32 * a;
        }
        return;
    }
    for &(s, d, a) in cols {
        let (s, d) = (s as usize, d as usize);
        for ch in 0..c {
            buf[d + ch] += row[s + ch] as f32 * a;
        }
    }
}
}

multiversion! {
/// Area's vertical step at a new output row: the finished row written, the
/// new one started with this source row's share.
fn area_emit(sum: &mut [f32], buf: &[f32], alpha: f32, out: &mut [u8]) {
    let n = out.len();
    let (sum, buf) = (&mut sum[..n], &buf[..n]);
    for x in 0..n {
        out[x] = f32_to_u8(sum[x]);
        sum[x] = alpha * buf[x];
    }
}
}

multiversion! {
/// Area's vertical step within an output row: a source row's share added.
fn area_add(sum: &mut [f32], buf: &[f32], alpha: f32) {
    let n = sum.len();
    let buf = &buf[..n];
    for x in 0..n {
        sum[x] += alpha * buf[x];
    }
}
}

/// Area with other factors: each output the overlap-weighted sum of the cells it covers.
fn area_cells(img: &Image, width: usize, height: usize, sx: f64, sy: f64) -> Image {
    let c = img.channels;
    let dw = width * c;
    let xt = shares(img.width, width, sx);
    let yt = shares(img.height, height, sy);
    let mut out = vec![0u8; height * dw];
    let mut buf = vec![0f32; dw];
    let mut sum = vec![0f32; dw];
    // The horizontal shares as byte offsets, for a loop without lookups.
    let cols: Vec<(u32, u32, f32)> = xt
        .iter()
        .map(|t| ((t.s * c) as u32, (t.d * c) as u32, t.alpha))
        .collect();
    let mut prev = yt.first().map(|s| s.d).unwrap_or(0);
    // A source row shared by two output rows is filtered once.
    let mut filtered = usize::MAX;
    for share in &yt {
        if share.s != filtered {
            area_cols(img.row(share.s), &cols, c, &mut buf);
            filtered = share.s;
        }
        if share.d != prev {
            area_emit(
                &mut sum,
                &buf,
                share.alpha,
                &mut out[prev * dw..(prev + 1) * dw],
            );
            prev = share.d;
        } else {
            area_add(&mut sum, &buf, share.alpha);
        }
    }
    for x in 0..dw {
        out[prev * dw + x] = f32_to_u8(sum[x]);
    }
    Image {
        width,
        height,
        channels: c,
        data: out,
    }
}

/// The hot loops for stages (wasm32 with simd128), where the compiler
/// leaves them scalar: the same arithmetic, so the same bytes, in explicit
/// 128-bit vectors. Values go in and out through lanes, not pointers.
#[cfg(target_arch = "wasm32")]
mod wasm {
    use core::arch::wasm32::*;

    /// [`super::linear_cols3`]'s pairs that read eight bytes inside the row.
    pub(super) fn linear_pairs3(s: &[u8], taps: &[(u32, i32, i32)], out: &mut [i32]) {
        for (x, &(b, k0, k1)) in taps.iter().enumerate() {
            let Some(px) = s.get(b as usize..b as usize + 8) else {
                continue;
            };
            let q = i64::from_le_bytes(px.try_into().unwrap_or([0; 8]));
            // The pair's bytes widened to 16 bits, and the same three bytes on.
            let a = u16x8_extend_low_u8x16(i64x2_splat(q));
            let c = u16x8_extend_low_u8x16(i64x2_splat(q >> 24));
            let v = i32x4_add(
                i32x4_extmul_low_i16x8(a, i16x8_splat(k0 as i16)),
                i32x4_extmul_low_i16x8(c, i16x8_splat(k1 as i16)),
            );
            if let Some(d) = out.get_mut(x * 3..x * 3 + 4) {
                d[0] = i32x4_extract_lane::<0>(v);
                d[1] = i32x4_extract_lane::<1>(v);
                d[2] = i32x4_extract_lane::<2>(v);
                d[3] = i32x4_extract_lane::<3>(v);
            }
        }
    }

    /// [`super::lanczos_cols3`]: four pairs of taps a pixel.
    pub(super) fn lanczos_cols3(s: &[u8], ofs: &[i64], k: &[i32], out: &mut [i32]) {
        let spread = i8x16(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, 6, -1, 7, -1);
        for (x, (&o, w)) in ofs.iter().zip(k.chunks_exact(8)).enumerate() {
            let b = (o - 3) as usize * 3;
            let Some(px) = s.get(b..b + 26) else { continue };
            let mut v = i32x4_splat(0);
            for m in 0..4 {
                let p = &px[6 * m..6 * m + 8];
                let q = i64::from_le_bytes(p.try_into().unwrap_or([0; 8]));
                let a = i8x16_swizzle(i64x2(q, 0), spread);
                let kw = i32x4_splat((w[2 * m] & 0xffff) | (w[2 * m + 1] << 16));
                v = i32x4_add(v, i32x4_dot_i16x8(a, kw));
            }
            if let Some(d) = out.get_mut(x * 3..x * 3 + 4) {
                d[0] = i32x4_extract_lane::<0>(v);
                d[1] = i32x4_extract_lane::<1>(v);
                d[2] = i32x4_extract_lane::<2>(v);
                d[3] = i32x4_extract_lane::<3>(v);
            }
        }
    }

    /// [`super::cubic_cols3`]: four lanes a pixel, its taps in order.
    pub(super) fn cubic_cols3(s: &[f32], taps: &[([u32; 4], [f32; 4])], out: &mut [f32]) {
        let load = |i: u32| match s.get(i as usize..i as usize + 4) {
            Some(p) => f32x4(p[0], p[1], p[2], p[3]),
            None => f32x4_splat(0.0),
        };
        for (x, (t, k)) in taps.iter().enumerate() {
            let mut v = f32x4_splat(0.0);
            v = f32x4_add(v, f32x4_mul(load(t[0]), f32x4_splat(k[0])));
            v = f32x4_add(v, f32x4_mul(load(t[1]), f32x4_splat(k[1])));
            v = f32x4_add(v, f32x4_mul(load(t[2]), f32x4_splat(k[2])));
            v = f32x4_add(v, f32x4_mul(load(t[3]), f32x4_splat(k[3])));
            if let Some(d) = out.get_mut(x * 3..x * 3 + 4) {
                d[0] = f32x4_extract_lane::<0>(v);
                d[1] = f32x4_extract_lane::<1>(v);
                d[2] = f32x4_extract_lane::<2>(v);
                d[3] = f32x4_extract_lane::<3>(v);
            }
        }
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
