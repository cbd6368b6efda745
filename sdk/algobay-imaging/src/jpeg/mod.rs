//! JPEG decoding with libjpeg-turbo's default arithmetic, the decoder behind
//! OpenCV's `imread` and Pillow's `Image.open` in their wheels.
//!
//! Two decoders that both follow the standard can still differ by a few grey
//! levels: the standard leaves the inverse DCT's rounding, chroma upsampling
//! and the YCbCr → RGB conversion to the implementation. This one does what
//! libjpeg-turbo does by default, so that a model served on JPEG sees the
//! pixels it was prepared on:
//!
//! - the "islow" inverse DCT (`jidctint.c`: Loeffler, Ligtenberg and
//!   Moschytz, 13-bit constants, 2 extra bits between the passes);
//! - "fancy" upsampling of subsampled chroma (`jdsample.c`: triangular
//!   weights 3/4 and 1/4 with alternating rounding; the first and last rows
//!   repeated as context, no fancy filter on planes under three samples wide);
//! - the fixed-point YCbCr → RGB tables of `jdcolor.c` (16 fraction bits).
//!
//! It reads baseline and progressive Huffman-coded files with 8-bit samples,
//! one component (grey) or three (YCbCr, or RGB when an Adobe marker or the
//! component ids say so), any integral sampling factors, and restart
//! intervals. Arithmetic coding, 12-bit samples, lossless and CMYK files are
//! refused by name. EXIF orientation is not applied (Pillow does not apply
//! it; OpenCV's `imread` does unless told `IMREAD_IGNORE_ORIENTATION`).

use crate::{Image, ImagingError};

mod entropy;
mod pixels;

use entropy::{Bits, Huffman};
use pixels::{idct_islow, upsample, ycc_to_rgb};

/// The most pixels a file may declare (the caller checks its own bound first).
const MAX_PIXELS: u64 = 1 << 28;

pub(crate) fn err(message: impl Into<String>) -> ImagingError {
    ImagingError::Jpeg(message.into())
}

/// The natural order of the coefficients of a block, by zigzag position
/// (with 16 extra entries so that a corrupt run cannot index past it).
pub(crate) const ZIGZAG: [usize; 80] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63,
];
#[derive(Clone, Default)]
struct Component {
    id: u8,
    h: usize,
    v: usize,
    quant: usize,
    /// Blocks across and down, padded to whole MCUs.
    bw: usize,
    bh: usize,
    /// Coefficients of every block, in natural order.
    coefs: Vec<i16>,
    dc_pred: i32,
    dc_table: usize,
    ac_table: usize,
}

#[derive(Default)]
struct Frame {
    width: usize,
    height: usize,
    progressive: bool,
    components: Vec<Component>,
    max_h: usize,
    max_v: usize,
    mcus_x: usize,
    mcus_y: usize,
}

struct Scan {
    comps: Vec<usize>,
    ss: usize,
    se: usize,
    ah: u32,
    al: u32,
}

/// Decodes a JPEG file exactly as libjpeg-turbo does with its defaults:
/// three channels (RGB) for a colour file, one for a grey one.
pub fn decode_jpeg(bytes: &[u8]) -> Result<Image, ImagingError> {
    let mut d = Decoder::default();
    d.read(bytes)?;
    d.finish()
}

/// Width and height of a JPEG file, read from its frame header only.
pub fn jpeg_dimensions(bytes: &[u8]) -> Result<(usize, usize), ImagingError> {
    let mut pos = start(bytes)?;
    loop {
        let (marker, seg, next) = segment(bytes, pos)?;
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            if seg.len() < 5 {
                return Err(err("frame header is too short"));
            }
            let h = usize::from(u16::from_be_bytes([seg[1], seg[2]]));
            let w = usize::from(u16::from_be_bytes([seg[3], seg[4]]));
            return Ok((w, h));
        }
        pos = next;
    }
}

fn start(bytes: &[u8]) -> Result<usize, ImagingError> {
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return Err(err("not a JPEG file (no start-of-image marker)"));
    }
    Ok(2)
}

/// The marker at `pos`, its segment's payload and where the next marker is.
fn segment(bytes: &[u8], mut pos: usize) -> Result<(u8, &[u8], usize), ImagingError> {
    // Fill bytes (0xFF) may precede a marker.
    while bytes.get(pos) == Some(&0xFF) && bytes.get(pos + 1) == Some(&0xFF) {
        pos += 1;
    }
    match bytes.get(pos..pos + 2) {
        Some([0xFF, m]) => {
            let m = *m;
            if m == 0xD8 || m == 0xD9 || (0xD0..=0xD7).contains(&m) || m == 0x01 {
                return Ok((m, &[], pos + 2));
            }
            let len = bytes
                .get(pos + 2..pos + 4)
                .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
                .ok_or_else(|| err("file ends inside a marker"))?;
            if len < 2 || pos + 2 + len > bytes.len() {
                return Err(err(format!(
                    "marker 0x{m:02X}: its length {len} runs past the end of the file"
                )));
            }
            Ok((m, &bytes[pos + 4..pos + 2 + len], pos + 2 + len))
        }
        _ => Err(err(format!("expected a marker at byte {pos}"))),
    }
}

struct Decoder {
    quant: [[u16; 64]; 4],
    quant_set: [bool; 4],
    dc: [Option<Huffman>; 4],
    ac: [Option<Huffman>; 4],
    frame: Option<Frame>,
    restart: usize,
    adobe: Option<u8>,
    jfif: bool,
    eobrun: u32,
    done: bool,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder {
            quant: [[0; 64]; 4],
            quant_set: [false; 4],
            dc: Default::default(),
            ac: Default::default(),
            frame: None,
            restart: 0,
            adobe: None,
            jfif: false,
            eobrun: 0,
            done: false,
        }
    }
}

impl Decoder {
    fn read(&mut self, bytes: &[u8]) -> Result<(), ImagingError> {
        let mut pos = start(bytes)?;
        loop {
            let (marker, seg, next) = segment(bytes, pos)?;
            pos = next;
            match marker {
                0xD9 => break,
                0xDB => self.quant_tables(seg)?,
                0xC4 => self.huffman_tables(seg)?,
                0xDD => {
                    if seg.len() < 2 {
                        return Err(err("restart interval segment is too short"));
                    }
                    self.restart = usize::from(u16::from_be_bytes([seg[0], seg[1]]));
                }
                0xC0 | 0xC1 | 0xC2 => self.frame_header(seg, marker == 0xC2)?,
                0xC3 | 0xC5..=0xC7 | 0xCB | 0xCD..=0xCF => {
                    return Err(err(
                        "lossless and hierarchical JPEG files are not supported",
                    ))
                }
                0xC9..=0xCA | 0xCC => {
                    return Err(err("arithmetic-coded JPEG files are not supported"))
                }
                0xDA => pos = self.scan(bytes, seg, pos)?,
                0xE0 if seg.starts_with(b"JFIF\0") => self.jfif = true,
                0xEE if seg.starts_with(b"Adobe") && seg.len() >= 12 => {
                    self.adobe = Some(seg[11]);
                }
                0xDC => return Err(err("DNL markers are not supported")),
                _ => {}
            }
            if pos >= bytes.len() {
                break;
            }
        }
        if self.frame.is_none() || !self.done {
            return Err(err("the file has no image data (no frame or no scan)"));
        }
        Ok(())
    }

    fn quant_tables(&mut self, mut seg: &[u8]) -> Result<(), ImagingError> {
        while !seg.is_empty() {
            let precision = seg[0] >> 4;
            let id = usize::from(seg[0] & 15);
            if id > 3 {
                return Err(err(format!("quantization table id {id} is above 3")));
            }
            let size = if precision == 0 { 64 } else { 128 };
            let body = seg
                .get(1..1 + size)
                .ok_or_else(|| err("quantization table is cut short"))?;
            for i in 0..64 {
                let q = if precision == 0 {
                    u16::from(body[i])
                } else {
                    u16::from_be_bytes([body[2 * i], body[2 * i + 1]])
                };
                self.quant[id][ZIGZAG[i]] = q;
            }
            self.quant_set[id] = true;
            seg = &seg[1 + size..];
        }
        Ok(())
    }

    fn huffman_tables(&mut self, mut seg: &[u8]) -> Result<(), ImagingError> {
        while !seg.is_empty() {
            if seg.len() < 17 {
                return Err(err("huffman table is cut short"));
            }
            let class = seg[0] >> 4;
            let id = usize::from(seg[0] & 15);
            if class > 1 || id > 3 {
                return Err(err(format!(
                    "huffman table class {class} id {id} is not one JPEG has"
                )));
            }
            let mut counts = [0u8; 16];
            counts.copy_from_slice(&seg[1..17]);
            let n: usize = counts.iter().map(|&c| c as usize).sum();
            let values = seg
                .get(17..17 + n)
                .ok_or_else(|| err("huffman table is cut short"))?
                .to_vec();
            let table = Huffman::new(&counts, values)?;
            if class == 0 {
                self.dc[id] = Some(table);
            } else {
                self.ac[id] = Some(table);
            }
            seg = &seg[17 + n..];
        }
        Ok(())
    }

    fn frame_header(&mut self, seg: &[u8], progressive: bool) -> Result<(), ImagingError> {
        if self.frame.is_some() {
            return Err(err("the file has more than one frame"));
        }
        if seg.len() < 6 {
            return Err(err("frame header is too short"));
        }
        if seg[0] != 8 {
            return Err(err(format!(
                "{}-bit samples are not supported (8-bit only)",
                seg[0]
            )));
        }
        let height = usize::from(u16::from_be_bytes([seg[1], seg[2]]));
        let width = usize::from(u16::from_be_bytes([seg[3], seg[4]]));
        let n = usize::from(seg[5]);
        if width == 0 || height == 0 {
            return Err(err(format!("image size {width}x{height} is empty")));
        }
        if (width as u64) * (height as u64) > MAX_PIXELS {
            return Err(err(format!("image size {width}x{height} is too large")));
        }
        if n != 1 && n != 3 {
            return Err(err(format!(
                "{n} components: only grey (1) and colour (3) files are supported"
            )));
        }
        if seg.len() < 6 + 3 * n {
            return Err(err("frame header is too short for its components"));
        }
        let mut components = Vec::with_capacity(n);
        for i in 0..n {
            let c = &seg[6 + 3 * i..9 + 3 * i];
            let (h, v) = (usize::from(c[1] >> 4), usize::from(c[1] & 15));
            if !(1..=4).contains(&h) || !(1..=4).contains(&v) {
                return Err(err(format!("component {i}: sampling factors {h}x{v}")));
            }
            if c[2] > 3 {
                return Err(err(format!("component {i}: quantization table {}", c[2])));
            }
            components.push(Component {
                id: c[0],
                h,
                v,
                quant: usize::from(c[2]),
                ..Component::default()
            });
        }
        let max_h = components.iter().map(|c| c.h).max().unwrap_or(1);
        let max_v = components.iter().map(|c| c.v).max().unwrap_or(1);
        for c in &components {
            if max_h % c.h != 0 || max_v % c.v != 0 {
                return Err(err("fractional sampling factors are not supported"));
            }
        }
        let mcus_x = width.div_ceil(8 * max_h);
        let mcus_y = height.div_ceil(8 * max_v);
        for c in &mut components {
            c.bw = mcus_x * c.h;
            c.bh = mcus_y * c.v;
            c.coefs = vec![0; c.bw * c.bh * 64];
        }
        self.frame = Some(Frame {
            width,
            height,
            progressive,
            components,
            max_h,
            max_v,
            mcus_x,
            mcus_y,
        });
        Ok(())
    }

    /// Decodes one scan; returns where the data after it begins.
    fn scan(&mut self, bytes: &[u8], seg: &[u8], pos: usize) -> Result<usize, ImagingError> {
        let mut frame = self
            .frame
            .take()
            .ok_or_else(|| err("a scan comes before the frame header"))?;
        let end = self.scan_frame(&mut frame, bytes, seg, pos);
        self.frame = Some(frame);
        end
    }

    fn scan_frame(
        &mut self,
        frame: &mut Frame,
        bytes: &[u8],
        seg: &[u8],
        pos: usize,
    ) -> Result<usize, ImagingError> {
        let n = usize::from(*seg.first().ok_or_else(|| err("empty scan header"))?);
        if n == 0 || n > 4 || seg.len() < 1 + 2 * n + 3 {
            return Err(err("scan header is malformed"));
        }
        let mut comps = Vec::with_capacity(n);
        for i in 0..n {
            let id = seg[1 + 2 * i];
            let tables = seg[2 + 2 * i];
            let ci = frame
                .components
                .iter()
                .position(|c| c.id == id)
                .ok_or_else(|| err(format!("scan names component id {id}, not in the frame")))?;
            frame.components[ci].dc_table = usize::from(tables >> 4) & 3;
            frame.components[ci].ac_table = usize::from(tables & 15) & 3;
            comps.push(ci);
        }
        let tail = &seg[1 + 2 * n..];
        let scan = Scan {
            comps,
            ss: usize::from(tail[0]),
            se: usize::from(tail[1]),
            ah: u32::from(tail[2] >> 4),
            al: u32::from(tail[2] & 15),
        };
        if frame.progressive {
            if scan.ss > 63 || scan.se > 63 || scan.ss > scan.se || scan.al > 13 || scan.ah > 13 {
                return Err(err("progressive scan parameters are out of range"));
            }
            if (scan.ss == 0) != (scan.se == 0) || (scan.ss > 0 && scan.comps.len() != 1) {
                return Err(err("progressive scan mixes DC and AC"));
            }
        } else if scan.ss != 0 || scan.se != 63 || scan.ah != 0 || scan.al != 0 {
            return Err(err("baseline scan parameters are not 0, 63, 0"));
        }
        for &ci in &scan.comps {
            let c = &frame.components[ci];
            if !self.quant_set[c.quant] {
                return Err(err(format!(
                    "component {ci} uses quantization table {}, never defined",
                    c.quant
                )));
            }
            let need_dc = scan.ss == 0 && scan.ah == 0;
            let need_ac = scan.se > 0;
            if (need_dc && self.dc[c.dc_table].is_none())
                || (need_ac && self.ac[c.ac_table].is_none())
            {
                return Err(err(format!(
                    "component {ci} uses a huffman table never defined"
                )));
            }
        }
        let mut bits = Bits::new(bytes, pos);
        self.eobrun = 0;
        for c in &mut frame.components {
            c.dc_pred = 0;
        }
        let single = scan.comps.len() == 1;
        let (units_x, units_y) = if single {
            // One component alone: its blocks that hold image samples, in rows.
            let c = &frame.components[scan.comps[0]];
            (
                (frame.width * c.h).div_ceil(8 * frame.max_h),
                (frame.height * c.v).div_ceil(8 * frame.max_v),
            )
        } else {
            (frame.mcus_x, frame.mcus_y)
        };
        let total = units_x * units_y;
        let mut rst = 0u8;
        for unit in 0..total {
            if self.restart > 0 && unit > 0 && unit % self.restart == 0 {
                bits.restart(rst)?;
                rst = (rst + 1) & 7;
                self.eobrun = 0;
                for c in &mut frame.components {
                    c.dc_pred = 0;
                }
            }
            let (ux, uy) = (unit % units_x, unit / units_x);
            if single {
                let ci = scan.comps[0];
                self.block(frame, &mut bits, &scan, ci, ux, uy)?;
            } else {
                for &ci in &scan.comps {
                    let (h, v) = (frame.components[ci].h, frame.components[ci].v);
                    for by in 0..v {
                        for bx in 0..h {
                            self.block(frame, &mut bits, &scan, ci, ux * h + bx, uy * v + by)?;
                        }
                    }
                }
            }
        }
        self.done = true;
        // The scan's data ends at the next marker that is not a restart.
        let mut end = bits.pos;
        while end + 1 < bytes.len() {
            if bytes[end] == 0xFF && bytes[end + 1] != 0 && !(0xD0..=0xD7).contains(&bytes[end + 1])
            {
                break;
            }
            end += 1;
        }
        if end + 1 >= bytes.len() {
            return Err(err("the file ends inside a scan (truncated?)"));
        }
        Ok(end)
    }

    fn block(
        &mut self,
        frame: &mut Frame,
        bits: &mut Bits<'_>,
        scan: &Scan,
        ci: usize,
        bx: usize,
        by: usize,
    ) -> Result<(), ImagingError> {
        let c = &mut frame.components[ci];
        let at = (by * c.bw + bx) * 64;
        let block = &mut c.coefs[at..at + 64];
        if scan.ss == 0 {
            if scan.ah == 0 {
                let table = self.dc[c.dc_table].as_ref().expect("checked");
                let s = u32::from(bits.decode(table)?);
                if s > 11 {
                    return Err(err(format!("DC difference of {s} bits")));
                }
                c.dc_pred += bits.receive_extend(s);
                block[0] = (c.dc_pred << scan.al) as i16;
            } else if bits.bit() == 1 {
                block[0] |= (1 << scan.al) as i16;
            }
            if !frame.progressive {
                let table = self.ac[c.ac_table].as_ref().expect("checked");
                let mut k = 1;
                while k < 64 {
                    let rs = bits.decode(table)?;
                    let (r, s) = (usize::from(rs >> 4), u32::from(rs & 15));
                    if s == 0 {
                        if r != 15 {
                            break;
                        }
                        k += 16;
                        continue;
                    }
                    k += r;
                    block[ZIGZAG[k.min(79)]] = bits.receive_extend(s) as i16;
                    k += 1;
                }
            }
            return Ok(());
        }
        let table = self.ac[c.ac_table].as_ref().expect("checked");
        if scan.ah == 0 {
            // First pass of a band.
            if self.eobrun > 0 {
                self.eobrun -= 1;
                return Ok(());
            }
            let mut k = scan.ss;
            while k <= scan.se {
                let rs = bits.decode(table)?;
                let (r, s) = (u32::from(rs >> 4), u32::from(rs & 15));
                if s == 0 {
                    if r < 15 {
                        self.eobrun = (1 << r) - 1;
                        if r > 0 {
                            self.eobrun += bits.bits(r);
                        }
                        break;
                    }
                    k += 16;
                    continue;
                }
                k += r as usize;
                block[ZIGZAG[k.min(79)]] = (bits.receive_extend(s) * (1 << scan.al)) as i16;
                k += 1;
            }
            return Ok(());
        }
        // Refinement of a band (jdphuff.c's decode_mcu_AC_refine).
        let p1 = 1i16 << scan.al;
        let m1 = -1i16 << scan.al;
        let mut k = scan.ss;
        if self.eobrun == 0 {
            while k <= scan.se {
                let rs = bits.decode(table)?;
                let (mut r, s) = (i32::from(rs >> 4), rs & 15);
                let mut value = 0i16;
                if s != 0 {
                    if s != 1 {
                        return Err(err("corrupt progressive refinement"));
                    }
                    value = if bits.bit() == 1 { p1 } else { m1 };
                } else if r != 15 {
                    self.eobrun = 1 << r;
                    if r > 0 {
                        self.eobrun += bits.bits(r as u32);
                    }
                    break;
                }
                // Past nonzero coefficients (each takes a correction bit)
                // and `r` zero ones, to the zero one that takes the value.
                loop {
                    let z = ZIGZAG[k];
                    if block[z] != 0 {
                        refine(&mut block[z], bits, p1, m1);
                    } else {
                        if r == 0 {
                            break;
                        }
                        r -= 1;
                    }
                    k += 1;
                    if k > scan.se {
                        break;
                    }
                }
                if value != 0 {
                    block[ZIGZAG[k.min(79)]] = value;
                }
                k += 1;
            }
        }
        if self.eobrun > 0 {
            while k <= scan.se {
                let z = ZIGZAG[k];
                if block[z] != 0 {
                    refine(&mut block[z], bits, p1, m1);
                }
                k += 1;
            }
            self.eobrun -= 1;
        }
        Ok(())
    }

    fn finish(self) -> Result<Image, ImagingError> {
        let frame = self.frame.expect("checked in read");
        // Each component's samples, a whole number of blocks wide and high.
        let planes: Vec<Vec<u8>> = frame
            .components
            .iter()
            .map(|c| {
                let q = &self.quant[c.quant];
                let stride = c.bw * 8;
                let mut plane = vec![0u8; stride * c.bh * 8];
                for by in 0..c.bh {
                    for bx in 0..c.bw {
                        let at = (by * c.bw + bx) * 64;
                        idct_islow(
                            &c.coefs[at..at + 64],
                            q,
                            &mut plane[by * 8 * stride + bx * 8..],
                            stride,
                        );
                    }
                }
                plane
            })
            .collect();
        let (w, h) = (frame.width, frame.height);
        let full: Vec<Vec<u8>> = frame
            .components
            .iter()
            .zip(&planes)
            .map(|(c, plane)| upsample(&frame, c, plane))
            .collect();
        if full.len() == 1 {
            return Image::new(w, h, 1, full.into_iter().next().unwrap_or_default());
        }
        let ids: Vec<u8> = frame.components.iter().map(|c| c.id).collect();
        let is_rgb = match self.adobe {
            Some(transform) => transform == 0,
            None => !self.jfif && ids == [b'R', b'G', b'B'],
        };
        let mut out = vec![0u8; w * h * 3];
        if is_rgb {
            for (i, px) in out.chunks_exact_mut(3).enumerate() {
                px.copy_from_slice(&[full[0][i], full[1][i], full[2][i]]);
            }
        } else {
            ycc_to_rgb(&full[0], &full[1], &full[2], &mut out);
        }
        Image::new(w, h, 3, out)
    }
}

fn refine(coef: &mut i16, bits: &mut Bits<'_>, p1: i16, m1: i16) {
    if bits.bit() == 1 && (*coef & p1) == 0 {
        *coef = if *coef >= 0 {
            coef.wrapping_add(p1)
        } else {
            coef.wrapping_add(m1)
        };
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_files_are_refused_by_name() {
        assert!(decode_jpeg(b"\x89PNG....")
            .unwrap_err()
            .to_string()
            .contains("not a JPEG"));
        let e = decode_jpeg(&[0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x40, 0, 0])
            .unwrap_err()
            .to_string();
        assert!(e.contains("runs past the end"), "{e}");
        let e = decode_jpeg(&[0xFF, 0xD8, 0xFF, 0xD9, 0, 0])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no image data"), "{e}");
    }
}
