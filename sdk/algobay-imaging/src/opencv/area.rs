//! Area: whole scale factors average blocks; others sum cell overlaps.

use super::{f32_to_u8, Image};

/// Area with whole scale factors: the mean of each block.
pub(super) fn area_whole(img: &Image, width: usize, height: usize, ix: usize, iy: usize) -> Image {
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
pub(super) fn area_cells(img: &Image, width: usize, height: usize, sx: f64, sy: f64) -> Image {
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
