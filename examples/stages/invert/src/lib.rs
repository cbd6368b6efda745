//! Turns an 8-bit image's values over (v → 255 − v, Pillow's
//! `ImageOps.invert`): dark ink on white paper becomes the white-on-black a
//! model trained on scans of that kind expects. No config.
use algobay_stage::imaging;
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct Invert;

impl Stage for Invert {
    fn contract() -> Contract {
        Contract::new()
            .input("pixels", "u8[?,?,?]")
            .output("inverted", "u8[?,?,?]")
    }

    fn new(_config: &Config) -> Result<Self, String> {
        Ok(Invert)
    }

    fn process(&mut self, mut inputs: Inputs) -> Result<Outputs, String> {
        let img = inputs.take_image("pixels")?;
        Ok(Outputs::new().tensor("inverted", Tensor::from_image(imaging::invert(&img))))
    }
}

algobay_stage::stage!(Invert);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_turn_over_and_twice_is_the_same_image() {
        let img = imaging::Image::new(2, 1, 3, vec![0, 10, 255, 128, 1, 254]).unwrap();
        let once = imaging::invert(&img);
        assert_eq!(once.data, vec![255, 245, 0, 127, 254, 1]);
        assert_eq!(imaging::invert(&once), img);
    }

    #[test]
    fn a_tensor_that_is_not_an_image_is_refused_with_its_shape() {
        let t = Tensor::from_u8(vec![4], vec![0; 4]);
        assert!(t.to_image("pixels").unwrap_err().contains("shape [4]"));
    }
}
