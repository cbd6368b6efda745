//! Resizes an 8-bit image (height, width, channels) to `width` x `height`
//! with the same bytes as Pillow's `Image.resize` (`filter =
//! "pillow:<nearest|box|bilinear|hamming|bicubic|lanczos>"`, default
//! `pillow:box`, which averages and suits shrinking) or OpenCV's `resize`
//! (`"opencv:<nearest|linear|cubic|area|lanczos4>"`).
use algobay_stage::imaging::{self, Image};
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
enum Filter {
    Pillow(imaging::Filter),
    OpenCv(imaging::Interpolation),
}

#[derive(Debug)]
struct Resize {
    width: usize,
    height: usize,
    filter: Filter,
}

impl Resize {
    fn resize(&self, img: &Image) -> Result<Image, String> {
        match self.filter {
            Filter::Pillow(f) => imaging::resize_pillow(img, self.width, self.height, f),
            Filter::OpenCv(i) => imaging::resize_opencv(img, self.width, self.height, i),
        }
        .map_err(|e| e.to_string())
    }
}

impl Stage for Resize {
    fn contract() -> Contract {
        Contract::new()
            .input("pixels", "u8[?,?,?]")
            .output("resized", "u8[?,?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let width = config.usize_or("width", 0)?;
        let height = config.usize_or("height", 0)?;
        if !(1..=8192).contains(&width) || !(1..=8192).contains(&height) {
            return Err(format!(
                "config fields `width` and `height` are {width}x{height}; each must be 1 to 8192"
            ));
        }
        let name = config
            .get("filter")
            .and_then(|v| v.as_str())
            .unwrap_or("pillow:box");
        let filter = match name.split_once(':') {
            Some(("pillow", f)) => Filter::Pillow(f.parse().map_err(|e: imaging::ImagingError| e.to_string())?),
            Some(("opencv", f)) => Filter::OpenCv(f.parse().map_err(|e: imaging::ImagingError| e.to_string())?),
            _ => {
                return Err(format!(
                    "config field `filter` is `{name}`; it must be pillow:<filter> or opencv:<interpolation>"
                ))
            }
        };
        Ok(Resize {
            width,
            height,
            filter,
        })
    }

    fn process(&mut self, mut inputs: Inputs) -> Result<Outputs, String> {
        let img = inputs.take_image("pixels")?;
        let out = self.resize(&img)?;
        let shape = vec![out.height as u64, out.width as u64, out.channels as u64];
        Ok(Outputs::new().tensor("resized", Tensor::from_u8(shape, out.data)))
    }
}

algobay_stage::stage!(Resize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_filter_shrinks_blocks_to_their_value() {
        // 4x4 of 2x2 blocks → 2x2.
        let px = vec![
            10, 10, 200, 200, //
            10, 10, 200, 200, //
            0, 0, 90, 90, //
            0, 0, 90, 90,
        ];
        let img = Image::new(4, 4, 1, px).unwrap();
        let cfg = Config::parse(r#"{"width": 2, "height": 2}"#, Vec::new()).unwrap();
        let out = Resize::new(&cfg).unwrap().resize(&img).unwrap();
        assert_eq!(
            (out.width, out.height, out.data),
            (2, 2, vec![10, 200, 0, 90])
        );
    }

    #[test]
    fn sizes_and_filters_are_checked_by_name() {
        let cfg = Config::parse(r#"{"width": 0, "height": 8}"#, Vec::new()).unwrap();
        assert!(Resize::new(&cfg)
            .unwrap_err()
            .contains("`width` and `height` are 0x8"));
        let cfg = Config::parse(
            r#"{"width": 8, "height": 8, "filter": "gimp:cubic"}"#,
            Vec::new(),
        )
        .unwrap();
        assert!(Resize::new(&cfg)
            .unwrap_err()
            .contains("`filter` is `gimp:cubic`"));
    }
}
