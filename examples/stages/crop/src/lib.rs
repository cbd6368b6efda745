//! Cuts a fixed box out of an 8-bit image (height, width, channels): the
//! field of a form, the region of interest of a fixed camera. Config: `x`,
//! `y` (top-left corner) and `width`, `height`, in pixels; an image the box
//! does not fit in is refused with both sizes.
use algobay_stage::imaging::{self, Image};
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct Crop {
    x: usize,
    y: usize,
    width: usize,
    height: usize,
}

impl Crop {
    fn apply(&self, img: &Image) -> Result<Image, String> {
        imaging::crop(img, self.x, self.y, self.width, self.height).map_err(|e| e.to_string())
    }
}

impl Stage for Crop {
    fn contract() -> Contract {
        Contract::new()
            .input("pixels", "u8[?,?,?]")
            .output("cropped", "u8[?,?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let need = |k: &str| -> Result<usize, String> {
            match config.get(k) {
                None => Err(format!("config field `{k}` is required (pixels)")),
                Some(_) => config.usize_or(k, 0),
            }
        };
        let c = Crop {
            x: need("x")?,
            y: need("y")?,
            width: need("width")?,
            height: need("height")?,
        };
        if c.width == 0 || c.height == 0 {
            return Err(format!(
                "config fields `width` ({}) and `height` ({}) must be at least 1",
                c.width, c.height
            ));
        }
        Ok(c)
    }

    fn process(&mut self, mut inputs: Inputs) -> Result<Outputs, String> {
        let img = self.apply(&inputs.take_image("pixels")?)?;
        Ok(Outputs::new().tensor("cropped", Tensor::from_image(img)))
    }
}

algobay_stage::stage!(Crop);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_box_is_cut_from_every_channel() {
        let img = Image::new(3, 2, 2, (0..12).collect()).unwrap();
        let c = Crop {
            x: 1,
            y: 1,
            width: 2,
            height: 1,
        };
        assert_eq!(c.apply(&img).unwrap().data, vec![8, 9, 10, 11]);
    }

    #[test]
    fn a_box_past_the_image_or_a_missing_field_is_refused_by_name() {
        let img = Image::new(4, 4, 1, vec![0; 16]).unwrap();
        let c = Crop {
            x: 2,
            y: 0,
            width: 4,
            height: 4,
        };
        assert!(c.apply(&img).unwrap_err().contains("4x4 image"));
        let cfg = Config::parse(r#"{"x": 0, "y": 0, "width": 4}"#, Vec::new()).unwrap();
        assert!(Crop::new(&cfg)
            .unwrap_err()
            .contains("`height` is required"));
        let cfg =
            Config::parse(r#"{"x": 0, "y": 0, "width": 4, "height": 0}"#, Vec::new()).unwrap();
        assert!(Crop::new(&cfg).unwrap_err().contains("at least 1"));
    }
}
