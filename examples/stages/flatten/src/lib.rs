//! An image's floats (height, width, channels) as one row of
//! height·width·channels values, pixel by pixel along each row (the order
//! of a flattened HWC array), with a batch axis of one: the input of a dense
//! model of small images, such as the 8x8 digits classifiers. `expect`
//! (optional) is the length the model takes; an image of another size is
//! refused with both sizes named instead of reaching the model.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct Flatten {
    expect: Option<usize>,
}

impl Flatten {
    fn flatten(&self, shape: &[u64], v: &[f32]) -> Result<(Vec<u64>, Vec<f32>), String> {
        let [h, w, c] = shape[..] else {
            return Err(format!(
                "input `values`: shape {shape:?}, expected [height, width, channels]"
            ));
        };
        let n = (h * w * c) as usize;
        if let Some(want) = self.expect {
            if n != want {
                return Err(format!(
                    "input `values` is {h}x{w}x{c} = {n} values; the model takes {want}"
                ));
            }
        }
        Ok((vec![1, n as u64], v.to_vec()))
    }
}

impl Stage for Flatten {
    fn contract() -> Contract {
        Contract::new()
            .input("values", "f32[?,?,?]")
            .output("row", "f32[1,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let expect = match config.get("expect") {
            None => None,
            Some(_) => Some(config.usize_or("expect", 0)?),
        };
        if expect == Some(0) {
            return Err("config field `expect` must be at least 1".into());
        }
        Ok(Flatten { expect })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let t = inputs.tensor("values")?;
        let (shape, v) = self.flatten(&t.shape, &t.as_f32()?)?;
        Ok(Outputs::new().tensor("row", Tensor::from_f32(shape, &v)))
    }
}

algobay_stage::stage!(Flatten);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_becomes_one_row_in_pixel_order() {
        let f = Flatten { expect: Some(6) };
        let (shape, v) = f
            .flatten(&[1, 2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
            .unwrap();
        assert_eq!(shape, vec![1, 6]);
        assert_eq!(v, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn an_image_of_the_wrong_size_is_refused_with_both_sizes() {
        let err = Flatten { expect: Some(64) }
            .flatten(&[7, 7, 1], &[0.0; 49])
            .unwrap_err();
        assert!(
            err.contains("7x7x1 = 49 values; the model takes 64"),
            "{err}"
        );
        let err = Flatten { expect: None }
            .flatten(&[4, 4], &[0.0; 16])
            .unwrap_err();
        assert!(err.contains("expected [height, width, channels]"), "{err}");
    }
}
