//! Pixel-exact edits that keep values 8-bit: cropping, turning, inverting
//! and histogram equalisation, with Pillow's conventions (angles counter-
//! clockwise, `ImageOps.invert`, `ImageOps.equalize`).

use crate::{Image, ImagingError};

/// The `width` × `height` box whose top-left corner is at (`x`, `y`); the
/// box must lie inside the image.
pub fn crop(
    img: &Image,
    x: usize,
    y: usize,
    width: usize,
    height: usize,
) -> Result<Image, ImagingError> {
    let fits = |at: usize, len: usize, side: usize| at.checked_add(len).is_some_and(|e| e <= side);
    if width == 0 || height == 0 || !fits(x, width, img.width) || !fits(y, height, img.height) {
        return Err(ImagingError::Crop {
            x,
            y,
            width,
            height,
            image_width: img.width,
            image_height: img.height,
        });
    }
    let c = img.channels;
    let mut data = Vec::with_capacity(width * height * c);
    for row in y..y + height {
        data.extend_from_slice(&img.row(row)[x * c..(x + width) * c]);
    }
    Image::new(width, height, c, data)
}

/// Every value v becomes 255 − v (dark ink on white paper ↔ white on black).
pub fn invert(img: &Image) -> Image {
    Image {
        data: img.data.iter().map(|v| 255 - v).collect(),
        ..img.clone()
    }
}

/// Turns the image `degrees` counter-clockwise about its centre. Quarter
/// turns are exact and swap the sides for 90 and 270; other angles keep the
/// canvas, sample bilinearly, and fill uncovered pixels with `fill`.
pub fn rotate(img: &Image, degrees: f64, fill: u8) -> Result<Image, ImagingError> {
    if !degrees.is_finite() {
        return Err(ImagingError::Name {
            what: "rotation angle",
            value: degrees.to_string(),
        });
    }
    let turn = degrees.rem_euclid(360.0);
    let (w, h, c) = (img.width, img.height, img.channels);
    let at = |x: usize, y: usize| &img.data[(y * w + x) * c..(y * w + x + 1) * c];
    let quarter = (turn / 90.0).round();
    if (turn - quarter * 90.0).abs() < 1e-9 {
        let q = quarter as u32 % 4;
        let (ow, oh) = if q % 2 == 1 { (h, w) } else { (w, h) };
        let mut data = Vec::with_capacity(img.data.len());
        for oy in 0..oh {
            for ox in 0..ow {
                // Where each output pixel comes from, for a counter-clockwise turn.
                let (sx, sy) = match q {
                    0 => (ox, oy),
                    1 => (w - 1 - oy, ox),
                    2 => (w - 1 - ox, h - 1 - oy),
                    _ => (oy, h - 1 - ox),
                };
                data.extend_from_slice(at(sx, sy));
            }
        }
        return Image::new(ow, oh, c, data);
    }
    let (sin, cos) = turn.to_radians().sin_cos();
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    let mut data = Vec::with_capacity(img.data.len());
    for oy in 0..h {
        for ox in 0..w {
            // The inverse turn (clockwise, y down) of the pixel's centre.
            let (dx, dy) = (ox as f64 + 0.5 - cx, oy as f64 + 0.5 - cy);
            let sx = cos * dx - sin * dy + cx - 0.5;
            let sy = sin * dx + cos * dy + cy - 0.5;
            if sx < -0.5 || sy < -0.5 || sx > w as f64 - 0.5 || sy > h as f64 - 0.5 {
                data.extend(std::iter::repeat_n(fill, c));
                continue;
            }
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let clampx = |v: f64| v.clamp(0.0, (w - 1) as f64) as usize;
            let clampy = |v: f64| v.clamp(0.0, (h - 1) as f64) as usize;
            let (xa, xb, ya, yb) = (clampx(x0), clampx(x0 + 1.0), clampy(y0), clampy(y0 + 1.0));
            for ch in 0..c {
                let v = |x: usize, y: usize| at(x, y)[ch] as f64;
                let top = v(xa, ya) * (1.0 - fx) + v(xb, ya) * fx;
                let bottom = v(xa, yb) * (1.0 - fx) + v(xb, yb) * fx;
                data.push((top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    Image::new(w, h, c, data)
}

/// Histogram equalisation per channel, as Pillow's `ImageOps.equalize`: the
/// lookup table spreads the cumulative histogram (less its last level's
/// count) over 0–255; a channel of one level is left as it is.
pub fn equalize(img: &Image) -> Image {
    let c = img.channels;
    let mut data = img.data.clone();
    for ch in 0..c {
        let mut hist = [0usize; 256];
        for px in img.data.chunks_exact(c) {
            hist[px[ch] as usize] += 1;
        }
        let used: Vec<usize> = hist.iter().copied().filter(|&n| n > 0).collect();
        if used.len() <= 1 {
            continue;
        }
        let step = (used.iter().sum::<usize>() - used[used.len() - 1]) / 255;
        if step == 0 {
            continue;
        }
        let mut lut = [0u8; 256];
        let mut n = step / 2;
        for (level, slot) in lut.iter_mut().enumerate() {
            *slot = (n / step).min(255) as u8;
            n += hist[level];
        }
        for px in data.chunks_exact_mut(c) {
            px[ch] = lut[px[ch] as usize];
        }
    }
    Image {
        data,
        ..img.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(w: usize, h: usize, data: Vec<u8>) -> Image {
        Image::new(w, h, 1, data).unwrap()
    }

    #[test]
    fn crop_takes_the_box_and_refuses_one_outside_by_its_numbers() {
        let img = gray(3, 2, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(
            crop(&img, 1, 0, 2, 2).unwrap(),
            gray(2, 2, vec![2, 3, 5, 6])
        );
        let err = crop(&img, 2, 0, 2, 1).unwrap_err().to_string();
        assert!(
            err.contains("x 2 + width 2") && err.contains("3x2"),
            "{err}"
        );
    }

    #[test]
    fn quarter_turns_are_exact_and_four_make_a_whole() {
        // 1 2 3      3 6
        // 4 5 6  ->  2 5   (90° counter-clockwise)
        //            1 4
        let img = gray(3, 2, vec![1, 2, 3, 4, 5, 6]);
        let r = rotate(&img, 90.0, 0).unwrap();
        assert_eq!(r, gray(2, 3, vec![3, 6, 2, 5, 1, 4]));
        assert_eq!(
            rotate(&img, -90.0, 0).unwrap(),
            gray(2, 3, vec![4, 1, 5, 2, 6, 3])
        );
        assert_eq!(
            rotate(&img, 180.0, 0).unwrap(),
            gray(3, 2, vec![6, 5, 4, 3, 2, 1])
        );
        let mut back = img.clone();
        for _ in 0..4 {
            back = rotate(&back, 90.0, 0).unwrap();
        }
        assert_eq!(back, img);
    }

    #[test]
    fn other_angles_keep_the_canvas_and_fill_the_corners() {
        let img = gray(4, 4, vec![200; 16]);
        let r = rotate(&img, 45.0, 7).unwrap();
        assert_eq!((r.width, r.height), (4, 4));
        assert_eq!(r.data[0], 7, "a corner leaves the turned square");
        assert_eq!(r.data[5], 200, "the centre stays");
        assert!(rotate(&img, f64::NAN, 0).is_err());
    }

    #[test]
    fn invert_and_equalize_match_pillow() {
        assert_eq!(invert(&gray(2, 1, vec![0, 200])).data, vec![255, 55]);
        // Pillow: ImageOps.equalize on [10, 10, 20, 30] gives [0, 0, 128, 255]...
        // with step = (4 - 1) // 255 = 0 it leaves the image; a larger case:
        let mut px = vec![50u8; 300];
        px.extend(vec![100u8; 300]);
        px.extend(vec![150u8; 400]);
        let e = equalize(&gray(1000, 1, px));
        // step = (1000 - 400) // 255 = 2; lut[50] = 1 // 2 = 0,
        // lut[100] = (1 + 300) // 2 = 150, lut[150] = (1 + 600) // 2 = 300 → 255.
        assert_eq!((e.data[0], e.data[300], e.data[999]), (0, 150, 255));
        let flat = gray(2, 1, vec![9, 9]);
        assert_eq!(equalize(&flat), flat);
    }
}
