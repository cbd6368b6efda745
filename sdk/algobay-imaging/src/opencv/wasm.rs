//! The hot loops for stages (wasm32 with simd128), where the compiler
//! leaves them scalar: the same arithmetic, so the same bytes, in explicit
//! 128-bit vectors. Values go in and out through lanes, not pointers.

use core::arch::wasm32::*;

/// [`super::kernels::linear_cols3`]'s pairs that read eight bytes inside the row.
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

/// [`super::kernels::lanczos_cols3`]: four pairs of taps a pixel.
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
