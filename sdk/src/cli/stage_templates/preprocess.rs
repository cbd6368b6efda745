//! A pre-processing stage: a JPEG, PGM (gray) or PPM (RGB) image in, the
//! model's input tensor out, decoded, resized and normalised exactly as Pillow
//! or OpenCV would (see `algobay_stage::imaging`). Change it to what your model needs;
//! the unit test at the bottom runs natively with `cargo test`.

use algobay_stage::imaging::{self, Image, Layout};
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

struct Prepare {
    width: usize,
    height: usize,
    /// `pillow:<filter>` or `opencv:<interpolation>`.
    resize: String,
    gray: bool,
    layout: Layout,
    scale: f32,
    mean: Vec<f32>,
    std: Vec<f32>,
}

/// Reads a JPEG (to the pixels OpenCV's `imread` and Pillow get), or a
/// binary PGM (P5) or PPM (P6) with 8-bit samples.
fn read_image(bytes: &[u8]) -> Result<Image, String> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        return imaging::decode_jpeg(bytes).map_err(|e| format!("image: {e}"));
    }
    if !(bytes.starts_with(b"P5") || bytes.starts_with(b"P6")) {
        return Err("image: not a binary PGM (P5) or PPM (P6), nor a JPEG".into());
    }
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'#') {
            if bytes[i] == b'#' {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            } else {
                i += 1;
            }
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if start == i {
            return Err("image: the PGM/PPM header is cut short".into());
        }
        fields.push(std::str::from_utf8(&bytes[start..i]).map_err(|_| "image: the header is not text")?);
    }
    let channels = match fields[0] {
        "P5" => 1,
        "P6" => 3,
        other => return Err(format!("image: `{other}` is not a binary PGM (P5) or PPM (P6)")),
    };
    let num = |s: &str, what: &str| s.parse::<usize>().map_err(|_| format!("image: {what} `{s}` is not a number"));
    let (w, h, max) = (num(fields[1], "width")?, num(fields[2], "height")?, num(fields[3], "maxval")?);
    if max != 255 {
        return Err(format!("image: maxval {max}; only 8-bit images (255) are read"));
    }
    let data = bytes.get(i + 1..).ok_or("image: no pixel data")?.to_vec();
    Image::new(w, h, channels, data).map_err(|e| e.to_string())
}

impl Stage for Prepare {
    fn contract() -> Contract {
        Contract::new().input("image", "bytes").output("input", "f32[1,?,?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let layout = match config.get("layout").and_then(|v| v.as_str()) {
            Some(l) => l.parse().map_err(|e: imaging::ImagingError| e.to_string())?,
            None => Layout::Chw,
        };
        Ok(Prepare {
            width: config.usize_or("width", 224)?,
            height: config.usize_or("height", 224)?,
            resize: config
                .get("resize")
                .and_then(|v| v.as_str())
                .unwrap_or("pillow:bilinear")
                .to_owned(),
            gray: config.bool_or("gray", false)?,
            layout,
            scale: config.f32_or("scale", 1.0 / 255.0)?,
            mean: config.f32s("mean")?.unwrap_or_default(),
            std: config.f32s("std")?.unwrap_or_default(),
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let mut img = read_image(inputs.bytes("image")?)?;
        let (lib, mode) = self.resize.split_once(':').unwrap_or(("pillow", self.resize.as_str()));
        img = match lib {
            "pillow" => imaging::resize_pillow(&img, self.width, self.height, mode.parse().map_err(|e: imaging::ImagingError| e.to_string())?),
            "opencv" => imaging::resize_opencv(&img, self.width, self.height, mode.parse().map_err(|e: imaging::ImagingError| e.to_string())?),
            other => return Err(format!("config resize: `{other}` is not pillow or opencv")),
        }
        .map_err(|e| e.to_string())?;
        if self.gray && img.channels == 3 {
            img = imaging::gray_pillow(&img).map_err(|e| e.to_string())?;
        }
        let data = imaging::to_tensor(&img, self.layout, self.scale, &self.mean, &self.std).map_err(|e| e.to_string())?;
        let (c, h, w) = (img.channels as u64, img.height as u64, img.width as u64);
        let shape = match self.layout {
            Layout::Chw => vec![1, c, h, w],
            Layout::Hwc => vec![1, h, w, c],
        };
        Ok(Outputs::new().tensor("input", Tensor::from_f32(shape, &data)))
    }
}

algobay_stage::stage!(Prepare);

#[cfg(test)]
mod tests {
    use super::*;
    use algobay_stage::{Named, Value};

    #[test]
    fn a_gray_image_becomes_a_resized_normalised_tensor() {
        let mut pgm = b"P5\n4 2\n255\n".to_vec();
        pgm.extend([0, 64, 128, 255, 255, 128, 64, 0]);
        let config = Config::parse(r#"{"width": 2, "height": 1, "resize": "pillow:box"}"#, vec![]).unwrap();
        let mut stage = Prepare::new(&config).unwrap();
        let out = stage
            .process(Inputs::new(vec![Named { name: "image".into(), value: Value::Bytes(pgm) }]))
            .unwrap()
            .into_vec();
        let Value::Tensor(t) = &out[0].value else { panic!("not a tensor") };
        assert_eq!(t.shape, [1, 1, 1, 2]);
        // Pillow's box filter: pairs of columns (32, 192 / 192, 32), then the two rows.
        let v = t.to_f32().unwrap();
        assert!(v.iter().all(|x| (x - 112.0 / 255.0).abs() < 1e-6), "{v:?}");
    }

    #[test]
    fn a_file_that_is_not_pgm_or_ppm_is_refused_by_name() {
        let err = read_image(b"\x89PNG\r\n").unwrap_err();
        assert!(err.contains("not a binary PGM"), "{err}");
    }
}
