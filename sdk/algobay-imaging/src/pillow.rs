//! Pillow's `Image.resize` and `convert("L")` on 8-bit `L` and `RGB` images.
//!
//! Resampling is separable: for each output pixel a window of input pixels
//! weighted by the filter (stretched by the scale when shrinking), weights
//! normalised to sum to one, then turned into 22-bit fixed point. The
//! horizontal pass runs first over just the rows the vertical pass reads; each
//! pass rounds to 8 bits. `NEAREST` is not a filter in Pillow: it scans the
//! output with an affine map, accumulating the source position in doubles.

use crate::{check_target, Image, ImagingError};

/// Pillow's resampling filters (`Image.Resampling`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    Nearest,
    Box,
    Bilinear,
    Hamming,
    Bicubic,
    Lanczos,
}

impl std::str::FromStr for Filter {
    type Err = ImagingError;
    fn from_str(s: &str) -> Result<Filter, ImagingError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "nearest" => Filter::Nearest,
            "box" => Filter::Box,
            "bilinear" | "linear" => Filter::Bilinear,
            "hamming" => Filter::Hamming,
            "bicubic" | "cubic" => Filter::Bicubic,
            "lanczos" | "antialias" => Filter::Lanczos,
            _ => {
                return Err(ImagingError::Name {
                    what: "pillow filter",
                    value: s.to_owned(),
                })
            }
        })
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let x = x * std::f64::consts::PI;
    x.sin() / x
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Nearest | Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Nearest | Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * std::f64::consts::PI;
                    // Pillow writes the constants as floats.
                    x.sin() / x * (0.54f32 as f64 + 0.46f32 as f64 * x.cos())
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// For each output position: the first input index and the fixed-point weights.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    k: Vec<i32>,
}

fn coeffs(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut k = vec![0i32; out_size * ksize];
    let mut w = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(xmax) {
            *wx = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            ww += *wx;
        }
        for x in 0..xmax {
            let v = if ww != 0.0 { w[x] / ww } else { w[x] };
            let f = v * (1u32 << PRECISION_BITS) as f64;
            k[xx * ksize + x] = if v < 0.0 {
                (f - 0.5) as i32
            } else {
                (f + 0.5) as i32
            };
        }
        bounds.push((xmin, xmax));
    }
    Coeffs { bounds, ksize, k }
}

fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `Image.resize((width, height), filter)` of an `L` (1 channel) or `RGB` (3) image.
pub fn resize_pillow(
    img: &Image,
    width: usize,
    height: usize,
    filter: Filter,
) -> Result<Image, ImagingError> {
    check_target(width, height)?;
    if img.channels != 1 && img.channels != 3 {
        return Err(ImagingError::Channels {
            op: "pillow resize",
            channels: img.channels,
        });
    }
    if width == img.width && height == img.height {
        return Ok(img.clone());
    }
    if filter == Filter::Nearest {
        return Ok(nearest(img, width, height));
    }
    let c = img.channels;
    let vert = coeffs(img.height, height, filter);
    let first = vert.bounds[0].0;
    let last = vert.bounds[height - 1].0 + vert.bounds[height - 1].1;
    // Horizontal pass over the rows the vertical pass reads.
    let (src, src_first) = if width != img.width {
        let h = coeffs(img.width, width, filter);
        let rows = last - first;
        let mut tmp = vec![0u8; rows * width * c];
        for y in 0..rows {
            let row = img.row(y + first);
            let out = &mut tmp[y * width * c..(y + 1) * width * c];
            horizontal(row, &h, c, out);
        }
        (
            Image {
                width,
                height: rows,
                channels: c,
                data: tmp,
            },
            first,
        )
    } else {
        (img.clone(), 0)
    };
    if height == img.height {
        return Ok(Image {
            width,
            height,
            channels: c,
            data: src.data,
        });
    }
    let stride = width * c;
    let mut out = vec![0u8; height * stride];
    let mut acc = vec![0i32; stride];
    for yy in 0..height {
        let (ymin, n) = vert.bounds[yy];
        let ymin = ymin - src_first;
        let k = &vert.k[yy * vert.ksize..yy * vert.ksize + n];
        let rows = &src.data[ymin * stride..(ymin + n) * stride];
        vertical(rows, k, &mut acc, &mut out[yy * stride..(yy + 1) * stride]);
    }
    Ok(Image {
        width,
        height,
        channels: c,
        data: out,
    })
}

/// The horizontal pass over one row: per output pixel, its taps summed in
/// 32-bit fixed point from half a unit, every channel in one walk of them.
fn horizontal(row: &[u8], h: &Coeffs, c: usize, out: &mut [u8]) {
    let half: i32 = 1 << (PRECISION_BITS - 1);
    if c == 3 {
        for (xx, o) in out.chunks_exact_mut(3).enumerate() {
            let (xmin, n) = h.bounds[xx];
            let k = &h.k[xx * h.ksize..xx * h.ksize + n];
            let px = &row[xmin * 3..(xmin + n) * 3];
            let (mut s0, mut s1, mut s2) = (half, half, half);
            for (p, &kx) in px.chunks_exact(3).zip(k) {
                s0 = s0.wrapping_add(p[0] as i32 * kx);
                s1 = s1.wrapping_add(p[1] as i32 * kx);
                s2 = s2.wrapping_add(p[2] as i32 * kx);
            }
            o[0] = clip8(s0);
            o[1] = clip8(s1);
            o[2] = clip8(s2);
        }
        return;
    }
    for (xx, o) in out.iter_mut().enumerate() {
        let (xmin, n) = h.bounds[xx];
        let k = &h.k[xx * h.ksize..xx * h.ksize + n];
        let mut ss = half;
        for (&p, &kx) in row[xmin..xmin + n].iter().zip(k) {
            ss = ss.wrapping_add(p as i32 * kx);
        }
        *o = clip8(ss);
    }
}

multiversion! {
/// The vertical pass for one output row: the taps' rows weighted and summed
/// row after row (the same sums, in the same order, as tap after tap per
/// byte), then clipped.
fn vertical(rows: &[u8], k: &[i32], acc: &mut [i32], out: &mut [u8]) {
    let n = out.len();
    let acc = &mut acc[..n];
    acc.iter_mut().for_each(|a| *a = 1 << (PRECISION_BITS - 1));
    for (row, &ky) in rows.chunks_exact(n).zip(k) {
        for (a, &p) in acc.iter_mut().zip(row) {
            *a = a.wrapping_add(p as i32 * ky);
        }
    }
    for (o, &a) in out.iter_mut().zip(acc.iter()) {
        *o = clip8(a);
    }
}
}

/// Pillow's nearest: source index `floor(a/2 + x·a)` with the position summed step by step.
fn nearest(img: &Image, width: usize, height: usize) -> Image {
    let coord = |v: f64| if v < 0.0 { -1 } else { v as i64 };
    let table = |in_size: usize, out_size: usize| -> Vec<Option<usize>> {
        let a = in_size as f64 / out_size as f64;
        let mut o = a * 0.5;
        (0..out_size)
            .map(|_| {
                let i = coord(o);
                o += a;
                (i >= 0 && (i as usize) < in_size).then_some(i as usize)
            })
            .collect()
    };
    let xs = table(img.width, width);
    let ys = table(img.height, height);
    Image {
        width,
        height,
        channels: img.channels,
        data: crate::gather(img, &xs, &ys),
    }
}

/// `convert("L")` of an `RGB` image: ITU-R 601-2 luma in 16-bit fixed point.
pub fn gray_pillow(img: &Image) -> Result<Image, ImagingError> {
    if img.channels != 3 {
        return Err(ImagingError::Channels {
            op: "pillow gray",
            channels: img.channels,
        });
    }
    let data = crate::luma(img, (0, 2), [19595, 38470, 7471], 16);
    Ok(Image {
        width: img.width,
        height: img.height,
        channels: 1,
        data,
    })
}
