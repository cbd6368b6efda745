//! An 8-bit RGB image (height, width, 3) to one gray channel (height,
//! width, 1), with the same bytes as Pillow's `convert("L")` (`method =
//! "pillow"`, the default) or OpenCV's `cvtColor(…, COLOR_RGB2GRAY)`
//! (`"opencv"`); a gray image passes through.
use algobay_stage::imaging::{self, Image};
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct Grayscale {
    opencv: bool,
}

impl Grayscale {
    fn convert(&self, img: &Image) -> Result<Image, String> {
        if img.channels == 1 {
            return Ok(img.clone());
        }
        if self.opencv {
            imaging::gray_opencv(img, false)
        } else {
            imaging::gray_pillow(img)
        }
        .map_err(|e| e.to_string())
    }
}

impl Stage for Grayscale {
    fn contract() -> Contract {
        Contract::new()
            .input("pixels", "u8[?,?,?]")
            .output("gray", "u8[?,?,1]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        match config.get("method").map(|v| v.as_str()) {
            None | Some(Some("pillow")) => Ok(Grayscale { opencv: false }),
            Some(Some("opencv")) => Ok(Grayscale { opencv: true }),
            Some(other) => Err(format!(
                "config field `method` is {other:?}; it must be \"pillow\" or \"opencv\""
            )),
        }
    }

    fn process(&mut self, mut inputs: Inputs) -> Result<Outputs, String> {
        let img = self.convert(&inputs.take_image("pixels")?)?;
        Ok(Outputs::new().tensor("gray", Tensor::from_image(img)))
    }
}

algobay_stage::stage!(Grayscale);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb_becomes_one_channel_with_pillows_weights() {
        // Pillow: L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16
        let img = Image::new(2, 1, 3, vec![255, 0, 0, 0, 0, 255]).unwrap();
        let g = Grayscale { opencv: false }.convert(&img).unwrap();
        assert_eq!((g.channels, g.data.clone()), (1, vec![76, 29]));
        let gray = Image::new(1, 1, 1, vec![9]).unwrap();
        assert_eq!(Grayscale { opencv: true }.convert(&gray).unwrap(), gray);
    }

    #[test]
    fn an_unknown_method_is_refused_by_name() {
        let cfg = Config::parse(r#"{"method": "gimp"}"#, Vec::new()).unwrap();
        let err = Grayscale::new(&cfg).unwrap_err();
        assert!(err.contains("`method`"), "{err}");
    }
}
