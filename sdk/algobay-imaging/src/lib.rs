//! Image pre-processing that gives the same bytes as Pillow and OpenCV.
//!
//! A model is trained on images prepared by one library; serving it with a
//! resize that differs by one grey level here and there costs accuracy that
//! nobody can explain. This crate reproduces, on 8-bit images, the arithmetic
//! of the two libraries most models were prepared with:
//!
//! - [`resize_pillow`]: `Image.resize` with `NEAREST`, `BOX`, `BILINEAR`,
//!   `HAMMING`, `BICUBIC` and `LANCZOS` (Pillow's separable filters in 22-bit
//!   fixed point, horizontal pass first; nearest by its affine scan);
//! - [`resize_opencv`]: `cv2.resize` with `INTER_NEAREST`, `INTER_LINEAR`,
//!   `INTER_CUBIC`, `INTER_AREA` and `INTER_LANCZOS4` (OpenCV's 11-bit fixed
//!   point coefficients and the rounding of its SIMD kernels; cubic in double
//!   precision, as OpenCV 4.13 runs it on 8-bit images);
//! - [`gray_pillow`] (`convert("L")`) and [`gray_opencv`] (`cvtColor` to gray);
//! - [`crop`], [`rotate`], [`invert`] and [`equalize`] (`ImageOps.equalize`);
//! - [`decode_jpeg`]: JPEG files decoded to the same pixels as
//!   libjpeg-turbo gives OpenCV's `imread` and Pillow (islow IDCT, fancy
//!   upsampling, its fixed-point YCbCr conversion);
//! - [`swap_rb`] (RGB ↔ BGR) and [`to_tensor`] (HWC or CHW floats, scaled,
//!   with per-channel mean and standard deviation).
//!
//! Images are interleaved rows of `channels` bytes per pixel (HWC), as both
//! libraries hold them. No dependencies, and one `unsafe` call (the switch
//! to loops built for AVX2 once the processor is found to have it, in
//! `simd`): it builds for `wasm32-wasip2` stages and native code alike. The filters use `sin` and
//! `cos` from the platform's math library, as the reference libraries do.

#![deny(unsafe_code)]

mod geometry;
#[macro_use]
mod simd;
mod jpeg;
mod opencv;
mod pillow;

pub use geometry::{crop, equalize, invert, rotate};
pub use jpeg::{decode_jpeg, jpeg_dimensions};

pub use opencv::{gray_opencv, resize_opencv, Interpolation};
pub use pillow::{gray_pillow, resize_pillow, Filter};

use std::fmt;

/// What can go wrong; each names the value at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImagingError {
    /// The buffer's length is not width × height × channels.
    Size {
        width: usize,
        height: usize,
        channels: usize,
        len: usize,
    },
    /// A channel count the operation does not take.
    Channels { op: &'static str, channels: usize },
    /// A zero or too large output size.
    Target { width: usize, height: usize },
    /// A layout, filter or channel order name that is not known.
    Name { what: &'static str, value: String },
    /// Mean or standard deviation lists of the wrong length, or a zero deviation.
    Normalize(String),
    /// A JPEG file that is malformed, or of a kind not decoded.
    Jpeg(String),
    /// A crop box that does not lie inside the image.
    Crop {
        x: usize,
        y: usize,
        width: usize,
        height: usize,
        image_width: usize,
        image_height: usize,
    },
}

impl fmt::Display for ImagingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImagingError::Size {
                width,
                height,
                channels,
                len,
            } => write!(
                f,
                "image data: {len} bytes, but {width}x{height} with {channels} channels needs {}",
                width * height * channels
            ),
            ImagingError::Channels { op, channels } => {
                write!(
                    f,
                    "{op}: takes 1 or 3 channels (4 for opencv resize), not {channels}"
                )
            }
            ImagingError::Target { width, height } => write!(
                f,
                "target size {width}x{height}: each side must be 1 to {MAX_SIDE}"
            ),
            ImagingError::Name { what, value } => {
                write!(f, "{what}: `{value}` is not one this library knows")
            }
            ImagingError::Normalize(m) => write!(f, "normalize: {m}"),
            ImagingError::Jpeg(m) => write!(f, "jpeg: {m}"),
            ImagingError::Crop {
                x,
                y,
                width,
                height,
                image_width,
                image_height,
            } => write!(
                f,
                "crop box x {x} + width {width}, y {y} + height {height} does not lie inside the \
                 {image_width}x{image_height} image (and each side must be at least 1)"
            ),
        }
    }
}

impl std::error::Error for ImagingError {}

/// The largest side an output may have.
pub const MAX_SIDE: usize = 1 << 15;

/// An 8-bit image: interleaved rows (HWC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

impl Image {
    /// An image over `data`, checked for its size.
    pub fn new(
        width: usize,
        height: usize,
        channels: usize,
        data: Vec<u8>,
    ) -> Result<Image, ImagingError> {
        if channels == 0
            || channels > 4
            || width
                .checked_mul(height)
                .and_then(|n| n.checked_mul(channels))
                != Some(data.len())
            || width == 0
            || height == 0
        {
            return Err(ImagingError::Size {
                width,
                height,
                channels,
                len: data.len(),
            });
        }
        Ok(Image {
            width,
            height,
            channels,
            data,
        })
    }

    fn row(&self, y: usize) -> &[u8] {
        let w = self.width * self.channels;
        &self.data[y * w..(y + 1) * w]
    }
}

/// A nearest-neighbour resize's pixels: output pixel (x, y) is the source
/// pixel (`xs[x]`, `ys[y]`); a `None` leaves it black. A row that reads the
/// same source row as the one before is copied whole, and pixels are copied
/// at their channel count's fixed size.
fn gather(img: &Image, xs: &[Option<usize>], ys: &[Option<usize>]) -> Vec<u8> {
    let c = img.channels;
    let dw = xs.len() * c;
    let offsets: Vec<Option<usize>> = xs.iter().map(|x| x.map(|x| x * c)).collect();
    let mut out = vec![0u8; dw * ys.len()];
    let mut last: Option<(usize, usize)> = None;
    for (y, sy) in ys.iter().enumerate() {
        let Some(sy) = *sy else { continue };
        let (done, rest) = out.split_at_mut(y * dw);
        let o = &mut rest[..dw];
        if let Some((ly, ldy)) = last {
            if ly == sy {
                o.copy_from_slice(&done[ldy * dw..(ldy + 1) * dw]);
                last = Some((sy, y));
                continue;
            }
        }
        let row = img.row(sy);
        match c {
            1 => gather_pixels::<1>(row, &offsets, o),
            3 => gather_pixels::<3>(row, &offsets, o),
            4 => gather_pixels::<4>(row, &offsets, o),
            _ => {
                for (p, off) in o.chunks_exact_mut(c).zip(&offsets) {
                    if let Some(x) = *off {
                        p.copy_from_slice(&row[x..x + c]);
                    }
                }
            }
        }
        last = Some((sy, y));
    }
    out
}

fn gather_pixels<const C: usize>(row: &[u8], offsets: &[Option<usize>], out: &mut [u8]) {
    for (p, off) in out.chunks_exact_mut(C).zip(offsets) {
        if let Some(x) = *off {
            if let Some(px) = row.get(x..x + C) {
                p.copy_from_slice(px);
            }
        }
    }
}

/// Luma of 3- or 4-channel pixels in fixed point: `(r·kr + g·kg + b·kb +
/// round) >> shift`, the channels of red and blue given.
fn luma(img: &Image, channels: (usize, usize), k: [u32; 3], shift: u32) -> Vec<u8> {
    let mut out = vec![0u8; img.width * img.height];
    luma_into(&img.data, img.channels, channels, k, shift, &mut out);
    out
}

multiversion! {
fn luma_into(
    data: &[u8],
    c: usize,
    channels: (usize, usize),
    k: [u32; 3],
    shift: u32,
    out: &mut [u8],
) {
    let (ri, bi) = channels;
    let round = 1u32 << (shift - 1);
    let one = |p: &[u8]| {
        ((p[ri] as u32 * k[0] + p[1] as u32 * k[1] + p[bi] as u32 * k[2] + round) >> shift) as u8
    };
    match (c, ri) {
        // Fixed strides and channel places, so the loop vectorises.
        (3, 0) => {
            for (o, p) in out.iter_mut().zip(data.chunks_exact(3)) {
                *o = ((p[0] as u32 * k[0] + p[1] as u32 * k[1] + p[2] as u32 * k[2] + round)
                    >> shift) as u8;
            }
        }
        (3, _) => {
            for (o, p) in out.iter_mut().zip(data.chunks_exact(3)) {
                *o = ((p[2] as u32 * k[0] + p[1] as u32 * k[1] + p[0] as u32 * k[2] + round)
                    >> shift) as u8;
            }
        }
        _ => {
            for (o, p) in out.iter_mut().zip(data.chunks_exact(c)) {
                *o = one(p);
            }
        }
    }
}
}

fn check_target(width: usize, height: usize) -> Result<(), ImagingError> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(ImagingError::Target { width, height });
    }
    Ok(())
}

/// RGB ↔ BGR (and RGBA ↔ BGRA): the first and third channels change places.
pub fn swap_rb(img: &Image) -> Result<Image, ImagingError> {
    if img.channels < 3 {
        return Err(ImagingError::Channels {
            op: "swap_rb",
            channels: img.channels,
        });
    }
    let mut out = img.clone();
    for px in out.data.chunks_exact_mut(img.channels) {
        px.swap(0, 2);
    }
    Ok(out)
}

/// How a tensor lays out an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// height, width, channels (TensorFlow, OpenCV).
    Hwc,
    /// channels, height, width (PyTorch, most ONNX vision models).
    Chw,
}

impl std::str::FromStr for Layout {
    type Err = ImagingError;
    fn from_str(s: &str) -> Result<Layout, ImagingError> {
        match s.to_ascii_lowercase().as_str() {
            "hwc" | "nhwc" => Ok(Layout::Hwc),
            "chw" | "nchw" => Ok(Layout::Chw),
            _ => Err(ImagingError::Name {
                what: "layout",
                value: s.to_owned(),
            }),
        }
    }
}

/// Floats in the given layout: `(v * scale - mean[c]) / std[c]` for each
/// byte `v` of channel `c` (torchvision's `ToTensor` + `Normalize` is
/// `scale = 1/255`). Empty `mean`/`std` mean 0 and 1.
pub fn to_tensor(
    img: &Image,
    layout: Layout,
    scale: f32,
    mean: &[f32],
    std: &[f32],
) -> Result<Vec<f32>, ImagingError> {
    let c = img.channels;
    let pick = |v: &[f32], what: &str, default: f32| -> Result<Vec<f32>, ImagingError> {
        match v.len() {
            0 => Ok(vec![default; c]),
            1 => Ok(vec![v[0]; c]),
            n if n == c => Ok(v.to_vec()),
            n => Err(ImagingError::Normalize(format!(
                "{what} has {n} values for {c} channels"
            ))),
        }
    };
    let mean = pick(mean, "mean", 0.0)?;
    let std = pick(std, "std", 1.0)?;
    if std.iter().any(|&s| s == 0.0) {
        return Err(ImagingError::Normalize("std has a zero".into()));
    }
    let plane = img.width * img.height;
    let mut out = vec![0f32; plane * c];
    for (i, px) in img.data.chunks_exact(c).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            let x = (v as f32 * scale - mean[ch]) / std[ch];
            match layout {
                Layout::Hwc => out[i * c + ch] = x,
                Layout::Chw => out[ch * plane + i] = x,
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_channels_and_names_are_checked_and_named() {
        let e = Image::new(2, 2, 3, vec![0; 11]).unwrap_err().to_string();
        assert!(e.contains("11 bytes") && e.contains("needs 12"), "{e}");
        let img = Image::new(2, 1, 1, vec![1, 2]).unwrap();
        assert!(swap_rb(&img).unwrap_err().to_string().contains("swap_rb"));
        let e = resize_pillow(&img, 0, 4, Filter::Bilinear)
            .unwrap_err()
            .to_string();
        assert!(e.contains("target size 0x4"), "{e}");
        assert!("nhwc".parse::<Layout>().is_ok());
        assert!("whc"
            .parse::<Layout>()
            .unwrap_err()
            .to_string()
            .contains("`whc`"));
    }

    #[test]
    fn tensors_are_laid_out_and_normalized() {
        let img = Image::new(2, 1, 3, vec![0, 255, 51, 255, 0, 102]).unwrap();
        let hwc = to_tensor(&img, Layout::Hwc, 1.0 / 255.0, &[], &[]).unwrap();
        let want = [0.0, 1.0, 0.2, 1.0, 0.0, 0.4];
        assert!(
            hwc.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{hwc:?}"
        );
        let chw = to_tensor(
            &img,
            Layout::Chw,
            1.0,
            &[0.0, 255.0, 0.0],
            &[1.0, 255.0, 51.0],
        )
        .unwrap();
        assert_eq!(chw, [0.0, 255.0, 0.0, -1.0, 1.0, 2.0]);
        assert!(to_tensor(&img, Layout::Chw, 1.0, &[1.0, 2.0], &[]).is_err());
        let bgr = swap_rb(&img).unwrap();
        assert_eq!(bgr.data, [51, 255, 0, 102, 0, 255]);
    }
}
