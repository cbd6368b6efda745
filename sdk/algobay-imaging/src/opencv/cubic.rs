//! Cubic: single precision over double weights, rows of three channels
//! four lanes a pixel.

use super::{round_to_u8, Image, Rows};

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
pub(super) fn cubic(img: &Image, width: usize, height: usize, sx: f64, sy: f64) -> Image {
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
    super::wasm::cubic_cols3(s, taps, out);
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
