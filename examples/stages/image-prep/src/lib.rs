//! A pre-processing tool for vision kits: an 8-bit image tensor (height,
//! width, channels) in, the model's input tensor out, prepared exactly as
//! Pillow or OpenCV would (`algobay_stage::imaging`): resized, made gray or
//! put in BGR order if asked, laid out HWC or CHW, scaled and normalised.
//!
//! Config: `width`, `height` (the model's input size), `resize`
//! (`pillow:<nearest|box|bilinear|hamming|bicubic|lanczos>` or
//! `opencv:<nearest|linear|cubic|area|lanczos4>`, default `pillow:bilinear`),
//! `gray` (`pillow` for `convert("L")`, `opencv` for `cvtColor`), `bgr`
//! (swap to BGR after resizing), `layout` (`chw`, the default, or `hwc`),
//! `scale` (1/255), `mean`, `std` (one value or one per channel).

use algobay_stage::imaging::{self, Image, ImagingError, Layout};
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

enum Resize {
    Pillow(imaging::Filter),
    OpenCv(imaging::Interpolation),
}

struct Prep {
    width: usize,
    height: usize,
    resize: Resize,
    gray: Option<String>,
    bgr: bool,
    layout: Layout,
    scale: f32,
    mean: Vec<f32>,
    std: Vec<f32>,
}

fn err(e: ImagingError) -> String {
    e.to_string()
}

impl Stage for Prep {
    fn contract() -> Contract {
        Contract::new()
            .input("image", "u8[?,?,?]")
            .output("input", "f32[1,?,?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let text = |k: &str| config.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let resize = text("resize").unwrap_or_else(|| "pillow:bilinear".into());
        let resize = match resize.split_once(':') {
            Some(("pillow", f)) => Resize::Pillow(f.parse().map_err(err)?),
            Some(("opencv", f)) => Resize::OpenCv(f.parse().map_err(err)?),
            _ => {
                return Err(format!(
                    "config resize: `{resize}` must be pillow:<filter> or opencv:<interpolation>"
                ))
            }
        };
        let gray = text("gray");
        if let Some(g) = &gray {
            if g != "pillow" && g != "opencv" {
                return Err(format!("config gray: `{g}` must be pillow or opencv"));
            }
        }
        let width = config.usize_or("width", 224)?;
        let height = config.usize_or("height", 224)?;
        if width == 0 || height == 0 || width > 8192 || height > 8192 {
            return Err(format!(
                "config width/height: {width}x{height}, each must be 1 to 8192"
            ));
        }
        Ok(Prep {
            width,
            height,
            resize,
            gray,
            bgr: config.bool_or("bgr", false)?,
            layout: text("layout")
                .as_deref()
                .unwrap_or("chw")
                .parse()
                .map_err(err)?,
            scale: config.f32_or("scale", 1.0 / 255.0)?,
            mean: config.f32s("mean")?.unwrap_or_default(),
            std: config.f32s("std")?.unwrap_or_default(),
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let t = inputs.tensor("image")?;
        let [h, w, c] = t.shape[..] else {
            return Err(format!(
                "input `image`: shape {:?}, expected [height, width, channels]",
                t.shape
            ));
        };
        let img =
            Image::new(w as usize, h as usize, c as usize, t.as_u8()?.to_vec()).map_err(err)?;
        let mut img = match self.resize {
            Resize::Pillow(f) => imaging::resize_pillow(&img, self.width, self.height, f),
            Resize::OpenCv(i) => imaging::resize_opencv(&img, self.width, self.height, i),
        }
        .map_err(err)?;
        match self.gray.as_deref() {
            Some("pillow") => img = imaging::gray_pillow(&img).map_err(err)?,
            Some(_) => img = imaging::gray_opencv(&img, false).map_err(err)?,
            None if self.bgr => img = imaging::swap_rb(&img).map_err(err)?,
            None => {}
        }
        let data = imaging::to_tensor(&img, self.layout, self.scale, &self.mean, &self.std)
            .map_err(err)?;
        let (c, h, w) = (img.channels as u64, img.height as u64, img.width as u64);
        let shape = match self.layout {
            Layout::Chw => vec![1, c, h, w],
            Layout::Hwc => vec![1, h, w, c],
        };
        Ok(Outputs::new().tensor("input", Tensor::from_f32(shape, &data)))
    }
}

algobay_stage::stage!(Prep);
