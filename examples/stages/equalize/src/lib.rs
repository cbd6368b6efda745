//! Histogram equalisation of an 8-bit image, per channel, with the bytes of
//! Pillow's `ImageOps.equalize`: faint or washed-out scans spread over the
//! whole 0–255 range before a model trained on equalised images reads them.
//! No config.
use algobay_stage::imaging;
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct Equalize;

impl Stage for Equalize {
    fn contract() -> Contract {
        Contract::new()
            .input("pixels", "u8[?,?,?]")
            .output("equalized", "u8[?,?,?]")
    }

    fn new(_config: &Config) -> Result<Self, String> {
        Ok(Equalize)
    }

    fn process(&mut self, mut inputs: Inputs) -> Result<Outputs, String> {
        let img = inputs.take_image("pixels")?;
        Ok(Outputs::new().tensor("equalized", Tensor::from_image(imaging::equalize(&img))))
    }
}

algobay_stage::stage!(Equalize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_faint_scan_spreads_over_the_whole_range() {
        // Ink at 120 and paper at 140: equalised, ink goes to 0 and paper to 255's side.
        let mut px = vec![140u8; 600];
        px.extend(vec![120u8; 400]);
        let img = imaging::Image::new(1000, 1, 1, px).unwrap();
        let e = imaging::equalize(&img);
        assert_eq!((e.data[999], e.data[0]), (0, 255));
    }
}
