//! Turns an 8-bit image (height, width, channels) counter-clockwise about
//! its centre, as Pillow's `Image.rotate`: for a camera mounted on its side
//! or a scanner that feeds pages turned. Config: `degrees` (quarter turns
//! are exact and swap the sides; other angles keep the canvas, sample
//! bilinearly and fill the uncovered corners with `fill`, 0 by default).
use algobay_stage::imaging;
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct Rotate {
    degrees: f64,
    fill: u8,
}

impl Stage for Rotate {
    fn contract() -> Contract {
        Contract::new()
            .input("pixels", "u8[?,?,?]")
            .output("rotated", "u8[?,?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let degrees = match config.get("degrees") {
            None => return Err("config field `degrees` is required (counter-clockwise)".into()),
            Some(_) => config.f64_or("degrees", 0.0)?,
        };
        if !degrees.is_finite() {
            return Err(format!(
                "config field `degrees` is {degrees}; it must be finite"
            ));
        }
        let fill = config.usize_or("fill", 0)?;
        let fill = u8::try_from(fill)
            .map_err(|_| format!("config field `fill` is {fill}; it must be 0 to 255"))?;
        Ok(Rotate { degrees, fill })
    }

    fn process(&mut self, mut inputs: Inputs) -> Result<Outputs, String> {
        let img = inputs.take_image("pixels")?;
        let out = imaging::rotate(&img, self.degrees, self.fill).map_err(|e| e.to_string())?;
        Ok(Outputs::new().tensor("rotated", Tensor::from_image(out)))
    }
}

algobay_stage::stage!(Rotate);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarter_turn_back_undoes_a_sideways_camera() {
        let img = imaging::Image::new(3, 2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let sideways = imaging::rotate(&img, -90.0, 0).unwrap();
        let r = Rotate::new(&Config::parse(r#"{"degrees": 90}"#, Vec::new()).unwrap()).unwrap();
        assert_eq!(imaging::rotate(&sideways, r.degrees, r.fill).unwrap(), img);
    }

    #[test]
    fn a_missing_angle_or_a_fill_past_255_is_refused_by_name() {
        let err = Rotate::new(&Config::parse("{}", Vec::new()).unwrap()).unwrap_err();
        assert!(err.contains("`degrees` is required"), "{err}");
        let cfg = Config::parse(r#"{"degrees": 10, "fill": 300}"#, Vec::new()).unwrap();
        assert!(Rotate::new(&cfg).unwrap_err().contains("`fill` is 300"));
    }
}
