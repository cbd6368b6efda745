//! The hot loops for stages (wasm32 with simd128), where the compiler
//! leaves them scalar: the same arithmetic, so the same bytes, in explicit
//! 128-bit vectors. Values go in and out through lanes, not pointers.

use core::arch::wasm32::*;

/// Two source pixels three bytes apart in the eight bytes `q`, weighted:
/// `byte[i] * k0 + byte[i + 3] * k1` in four lanes (the fourth spare), the
/// bytes interleaved and summed in 16-bit multiply-adds.
#[inline(always)]
fn pair_sums(q: i64, k0: i32, k1: i32) -> v128 {
    let spread = i8x16(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, 6, -1, 7, -1);
    let a = i8x16_swizzle(i64x2(q, 0), spread);
    i32x4_dot_i16x8(a, i32x4_splat((k0 & 0xffff) | (k1 << 16)))
}

/// Eight bytes from the start of `p` (which has them).
#[inline(always)]
fn eight(p: &[u8]) -> i64 {
    i64::from_le_bytes(p.get(..8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]))
}

/// The four lanes written at `out[at..at + 4]`, if there is room.
#[inline(always)]
fn store4(out: &mut [i32], at: usize, v: v128) {
    if let Some(d) = out.get_mut(at..at + 4) {
        d[0] = i32x4_extract_lane::<0>(v);
        d[1] = i32x4_extract_lane::<1>(v);
        d[2] = i32x4_extract_lane::<2>(v);
        d[3] = i32x4_extract_lane::<3>(v);
    }
}

/// [`super::kernels::linear_cols3`]'s pairs that read eight bytes inside the row.
pub(super) fn linear_pairs3(s: &[u8], taps: &[(u32, i32, i32)], out: &mut [i32]) {
    for (x, &(b, k0, k1)) in taps.iter().enumerate() {
        let Some(px) = s.get(b as usize..b as usize + 8) else {
            continue;
        };
        store4(out, x * 3, pair_sums(eight(px), k0, k1));
    }
}

/// [`super::kernels::lanczos_cols3`]: four pairs of taps a pixel.
pub(super) fn lanczos_cols3(s: &[u8], ofs: &[i64], k: &[i32], out: &mut [i32]) {
    for (x, (&o, w)) in ofs.iter().zip(k.chunks_exact(8)).enumerate() {
        let b = (o - 3) as usize * 3;
        let Some(px) = s.get(b..b + 26) else { continue };
        let mut v = i32x4_splat(0);
        for m in 0..4 {
            v = i32x4_add(v, pair_sums(eight(&px[6 * m..]), w[2 * m], w[2 * m + 1]));
        }
        store4(out, x * 3, v);
    }
}

/// [`super::cubic::cubic_cols3`]: four lanes a pixel, its taps in order.
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
