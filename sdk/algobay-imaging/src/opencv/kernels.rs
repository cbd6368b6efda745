//! The linear and Lanczos-4 loops: horizontal passes over three-channel
//! rows in 16-bit multiply-adds, and the vertical passes.

use super::{Axis, COEF_BITS};

/// Linear's horizontal taps on three-channel rows, worked out once per
/// resize: per output pixel the byte offset of its first source pixel and
/// the two weights, and where the row's edge changes how a pixel is read.
pub(super) struct Pairs3 {
    taps: Vec<(u32, i32, i32)>,
    /// Pixels before `wide` read eight bytes (two pixels and two lanes) inside the row.
    wide: usize,
    /// Pixels from `edge` on are their source pixel itself, as OpenCV pins
    /// the weights past `max` (or the row's last pixel).
    edge: usize,
}

impl Pairs3 {
    pub(super) fn new(xa: &Axis, row_len: usize) -> Pairs3 {
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

/// Two source pixels three bytes apart, weighted: `px[i] * k0 + px[i + 3] *
/// k1` in four lanes (the fourth spare). The two pixels' bytes interleaved
/// against the interleaved weights are sums of adjacent 16-bit products (one
/// multiply-add instruction); the spare lane reads the eighth byte, so the
/// eight are one load.
#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
fn pair_sums(px: &[u8], k0: i32, k1: i32) -> [i32; 4] {
    const LANES: [usize; 8] = [0, 3, 1, 4, 2, 5, 6, 7];
    let a: [i16; 8] = std::array::from_fn(|j| px[LANES[j]] as i16);
    let w: [i16; 8] = std::array::from_fn(|j| if j % 2 == 0 { k0 as i16 } else { k1 as i16 });
    std::array::from_fn(|i| {
        a[2 * i] as i32 * w[2 * i] as i32 + a[2 * i + 1] as i32 * w[2 * i + 1] as i32
    })
}

multiversion! {
/// Linear's horizontal step on three-channel rows: each output pixel two
/// source pixels weighted, in 32-bit sums. Pixels are worked four lanes at
/// a time, the fourth lane's value overwritten by the next pixel, so `out`
/// has one value to spare.
pub(super) fn linear_cols3(s: &[u8], p: &Pairs3, out: &mut [i32]) {
    let (wide, edge) = (p.wide, p.edge);
    #[cfg(target_arch = "wasm32")]
    super::wasm::linear_pairs3(s, &p.taps[..wide], out);
    #[cfg(not(target_arch = "wasm32"))]
    for (x, &(b, k0, k1)) in p.taps[..wide].iter().enumerate() {
        let Some(px) = s.get(b as usize..b as usize + 8) else {
            continue;
        };
        if let Some(d) = out.get_mut(x * 3..x * 3 + 4) {
            d.copy_from_slice(&pair_sums(px, k0, k1));
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
pub(super) fn lanczos_cols3(s: &[u8], ofs: &[i64], k: &[i32], out: &mut [i32]) {
    #[cfg(target_arch = "wasm32")]
    super::wasm::lanczos_cols3(s, ofs, k, out);
    #[cfg(not(target_arch = "wasm32"))]
    for (x, (&o, w)) in ofs.iter().zip(k.chunks_exact(8)).enumerate() {
        let b = (o - 3) as usize * 3;
        let Some(px) = s.get(b..b + 26) else { continue };
        let mut v = [0i32; 4];
        for m in 0..4 {
            let p = pair_sums(&px[6 * m..6 * m + 8], w[2 * m], w[2 * m + 1]);
            for i in 0..4 {
                v[i] = v[i].wrapping_add(p[i]);
            }
        }
        if let Some(d) = out.get_mut(x * 3..x * 3 + 4) {
            d.copy_from_slice(&v);
        }
    }
}
}

multiversion! {
/// Linear's (and area's) vertical step, with OpenCV's 16-bit high multiplies.
pub(super) fn linear_rows(r0: &[i32], r1: &[i32], b0: i32, b1: i32, o: &mut [u8]) {
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
pub(super) fn taps_rows(r: &[&[i32]], b: &[i32], acc: &mut [i32], o: &mut [u8]) {
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
