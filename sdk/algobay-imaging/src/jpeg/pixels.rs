//! From coefficients to pixels: libjpeg-turbo's islow IDCT, its fancy
//! upsampling and its YCbCr → RGB tables.

use super::{Component, Frame};

// jidctint.c's constants: round(x * 2^13).
const FIX_0_298631336: i64 = 2446;
const FIX_0_390180644: i64 = 3196;
const FIX_0_541196100: i64 = 4433;
const FIX_0_765366865: i64 = 6270;
const FIX_0_899976223: i64 = 7373;
const FIX_1_175875602: i64 = 9633;
const FIX_1_501321110: i64 = 12299;
const FIX_1_847759065: i64 = 15137;
const FIX_1_961570560: i64 = 16069;
const FIX_2_053119869: i64 = 16819;
const FIX_2_562915447: i64 = 20995;
const FIX_3_072711026: i64 = 25172;
const CONST_BITS: u32 = 13;
const PASS1_BITS: u32 = 2;

fn descale(x: i64, n: u32) -> i64 {
    (x + (1 << (n - 1))) >> n
}

/// One 1-D pass of the islow IDCT over eight values, before descaling:
/// the eight outputs' sums in the order 0..7.
fn idct_1d(v: [i64; 8]) -> [i64; 8] {
    // Even part.
    let (z2, z3) = (v[2], v[6]);
    let z1 = (z2 + z3) * FIX_0_541196100;
    let tmp2 = z1 + z3 * -FIX_1_847759065;
    let tmp3 = z1 + z2 * FIX_0_765366865;
    let tmp0 = (v[0] + v[4]) << CONST_BITS;
    let tmp1 = (v[0] - v[4]) << CONST_BITS;
    let (tmp10, tmp13) = (tmp0 + tmp3, tmp0 - tmp3);
    let (tmp11, tmp12) = (tmp1 + tmp2, tmp1 - tmp2);
    // Odd part.
    let (t0, t1, t2, t3) = (v[7], v[5], v[3], v[1]);
    let z1 = t0 + t3;
    let z2 = t1 + t2;
    let z3 = t0 + t2;
    let z4 = t1 + t3;
    let z5 = (z3 + z4) * FIX_1_175875602;
    let t0 = t0 * FIX_0_298631336;
    let t1 = t1 * FIX_2_053119869;
    let t2 = t2 * FIX_3_072711026;
    let t3 = t3 * FIX_1_501321110;
    let z1 = z1 * -FIX_0_899976223;
    let z2 = z2 * -FIX_2_562915447;
    let z3 = z3 * -FIX_1_961570560 + z5;
    let z4 = z4 * -FIX_0_390180644 + z5;
    let t0 = t0 + z1 + z3;
    let t1 = t1 + z2 + z4;
    let t2 = t2 + z2 + z3;
    let t3 = t3 + z1 + z4;
    [
        tmp10 + t3,
        tmp11 + t2,
        tmp12 + t1,
        tmp13 + t0,
        tmp13 - t0,
        tmp12 - t1,
        tmp11 - t2,
        tmp10 - t3,
    ]
}

/// libjpeg's post-IDCT range limit: the value is masked to 10 bits and
/// looked up, so that what lies in -512..511 is clamped to 0..255 after
/// adding 128.
fn range_limit(v: i64) -> u8 {
    let i = (v & 1023) as usize;
    match i {
        0..=127 => (i + 128) as u8,
        128..=511 => 255,
        512..=895 => 0,
        _ => (i - 896) as u8,
    }
}

/// jidctint.c's `jpeg_idct_islow`: dequantize, columns, then rows.
pub(crate) fn idct_islow(coefs: &[i16], quant: &[u16; 64], out: &mut [u8], stride: usize) {
    let mut ws = [0i64; 64];
    for col in 0..8 {
        let v: [i64; 8] =
            std::array::from_fn(|r| i64::from(coefs[r * 8 + col]) * i64::from(quant[r * 8 + col]));
        let o = idct_1d(v);
        for r in 0..8 {
            // Stored as C's `int` workspace.
            ws[r * 8 + col] = i64::from(descale(o[r], CONST_BITS - PASS1_BITS) as i32);
        }
    }
    for row in 0..8 {
        let v: [i64; 8] = std::array::from_fn(|c| ws[row * 8 + c]);
        let o = idct_1d(v);
        let line = &mut out[row * stride..row * stride + 8];
        for (c, px) in line.iter_mut().enumerate() {
            *px = range_limit(descale(o[c], CONST_BITS + PASS1_BITS + 3));
        }
    }
}

/// A component's plane brought to the image's size, as libjpeg-turbo's
/// default upsampler does (fancy for 2:1 ratios, replication otherwise).
pub(crate) fn upsample(frame: &Frame, c: &Component, plane: &[u8]) -> Vec<u8> {
    let (w, h) = (frame.width, frame.height);
    let stride = c.bw * 8;
    let (hr, vr) = (frame.max_h / c.h, frame.max_v / c.v);
    // The samples that hold image data, as libjpeg counts them.
    let dw = (w * c.h).div_ceil(frame.max_h);
    let dh = (h * c.v).div_ceil(frame.max_v);
    let row = |y: usize| &plane[y * stride..y * stride + dw];
    let fancy = dw > 2;
    let mut out = vec![0u8; w * h];
    let mut line = vec![0u8; dw * hr];
    for oy in 0..h {
        let line = &mut line[..];
        match (hr, vr) {
            (1, 1) => line[..dw].copy_from_slice(row(oy)),
            (2, 1) if fancy => h2v1(row(oy), line),
            (2, 2) if fancy => {
                let near = oy / 2;
                let far = if oy % 2 == 0 {
                    near.saturating_sub(1)
                } else {
                    (near + 1).min(dh - 1)
                };
                h2v2(row(near), row(far), line);
            }
            (1, 2) if fancy => {
                let near = oy / 2;
                let (far, bias) = if oy % 2 == 0 {
                    (near.saturating_sub(1), 1)
                } else {
                    ((near + 1).min(dh - 1), 2)
                };
                for ((o, &a), &b) in line.iter_mut().zip(row(near)).zip(row(far)) {
                    *o = ((u32::from(a) * 3 + u32::from(b) + bias) >> 2) as u8;
                }
            }
            _ => {
                for (x, o) in line.iter_mut().enumerate() {
                    *o = row(oy / vr)[x / hr];
                }
            }
        }
        out[oy * w..(oy + 1) * w].copy_from_slice(&line[..w]);
    }
    out
}

/// jdsample.c's `h2v1_fancy_upsample` on one row.
fn h2v1(input: &[u8], out: &mut [u8]) {
    let n = input.len();
    let v = |i: usize| u32::from(input[i]);
    out[0] = input[0];
    out[1] = ((v(0) * 3 + v(1) + 2) >> 2) as u8;
    for i in 1..n - 1 {
        let c = v(i) * 3;
        out[2 * i] = ((c + v(i - 1) + 1) >> 2) as u8;
        out[2 * i + 1] = ((c + v(i + 1) + 2) >> 2) as u8;
    }
    out[2 * n - 2] = ((v(n - 1) * 3 + v(n - 2) + 1) >> 2) as u8;
    out[2 * n - 1] = input[n - 1];
}

/// jdsample.c's `h2v2_fancy_upsample` on one output row: `near` is the input
/// row it lies in, `far` the next nearest (above for the upper output row,
/// below for the lower). Even and odd columns round differently.
fn h2v2(near: &[u8], far: &[u8], out: &mut [u8]) {
    let n = near.len();
    let sum = |i: usize| u32::from(near[i]) * 3 + u32::from(far[i]);
    let mut this = sum(0);
    let mut next = sum(1);
    out[0] = ((this * 4 + 8) >> 4) as u8;
    out[1] = ((this * 3 + next + 7) >> 4) as u8;
    let mut last = this;
    this = next;
    for i in 1..n - 1 {
        next = sum(i + 1);
        out[2 * i] = ((this * 3 + last + 8) >> 4) as u8;
        out[2 * i + 1] = ((this * 3 + next + 7) >> 4) as u8;
        last = this;
        this = next;
    }
    out[2 * n - 2] = ((this * 3 + last + 8) >> 4) as u8;
    out[2 * n - 1] = ((this * 4 + 7) >> 4) as u8;
}

/// jdcolor.c's `ycc_rgb_convert` with its tables (16 fraction bits).
pub(crate) fn ycc_to_rgb(y: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
    const SCALE: u32 = 16;
    const HALF: i64 = 1 << (SCALE - 1);
    let fix = |x: f64| (x * f64::from(1u32 << SCALE) + 0.5) as i64;
    let mut cr_r = [0i32; 256];
    let mut cb_b = [0i32; 256];
    let mut cr_g = [0i64; 256];
    let mut cb_g = [0i64; 256];
    for i in 0..256usize {
        let x = i as i64 - 128;
        cr_r[i] = ((fix(1.40200) * x + HALF) >> SCALE) as i32;
        cb_b[i] = ((fix(1.77200) * x + HALF) >> SCALE) as i32;
        cr_g[i] = -fix(0.71414) * x;
        cb_g[i] = -fix(0.34414) * x + HALF;
    }
    let clamp = |v: i32| v.clamp(0, 255) as u8;
    for (i, px) in out.chunks_exact_mut(3).enumerate() {
        let (yy, b, r) = (i32::from(y[i]), usize::from(cb[i]), usize::from(cr[i]));
        px[0] = clamp(yy + cr_r[r]);
        px[1] = clamp(yy + ((cb_g[b] + cr_g[r]) >> SCALE) as i32);
        px[2] = clamp(yy + cb_b[b]);
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dc_only_block_decodes_to_its_flat_level() {
        let mut coefs = [0i16; 64];
        coefs[0] = 8; // times quant 8: DC 64 → 64/8 = 8 above mid grey
        let mut q = [1u16; 64];
        q[0] = 8;
        let mut out = [0u8; 64];
        idct_islow(&coefs, &q, &mut out, 8);
        assert!(out.iter().all(|&p| p == 136), "{out:?}");
    }

    #[test]
    fn the_range_limit_clamps_like_libjpeg() {
        assert_eq!(range_limit(-128), 0);
        assert_eq!(range_limit(-129), 0);
        assert_eq!(range_limit(0), 128);
        assert_eq!(range_limit(127), 255);
        assert_eq!(range_limit(400), 255);
        assert_eq!(range_limit(-400), 0);
    }

    #[test]
    fn fancy_upsampling_keeps_flat_rows_flat_and_weighs_three_to_one() {
        let mut out = [0u8; 6];
        h2v1(&[10, 10, 10], &mut out);
        assert_eq!(out, [10; 6]);
        h2v1(&[0, 100, 0], &mut out);
        assert_eq!(out, [0, 25, 75, 75, 25, 0]);
        let mut out = [0u8; 6];
        h2v2(&[40, 40, 40], &[40, 40, 40], &mut out);
        assert_eq!(out, [40; 6]);
    }

    #[test]
    fn ycc_grey_stays_grey() {
        let mut out = [0u8; 3];
        ycc_to_rgb(&[77], &[128], &[128], &mut out);
        assert_eq!(out, [77, 77, 77]);
    }
}
