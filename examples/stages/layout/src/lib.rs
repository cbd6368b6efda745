//! Lays pixel values out the way a model takes them: rows of `height` ×
//! `width` × `channels` values in HWC order (as `flatten` and the scalers
//! give them) become an NCHW batch (`to = "nchw"`, the
//! default: PyTorch, ONNX vision models, candle CNNs) or an NHWC batch
//! (`"nhwc"`: TensorFlow). Config: `channels`, `height`, `width`, `to`.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct Layout {
    c: usize,
    h: usize,
    w: usize,
    nchw: bool,
}

impl Layout {
    fn arrange(&self, shape: &[u64], x: &[f32]) -> Result<(Vec<u64>, Vec<f32>), String> {
        let per = self.c * self.h * self.w;
        let n = match shape {
            [n, k] if *k as usize == per => *n as usize,
            _ => {
                return Err(format!(
                    "input `x`: shape {shape:?}, expected rows of {per} values ({}x{}x{} HWC)",
                    self.h, self.w, self.c
                ))
            }
        };
        let (c, h, w) = (self.c as u64, self.h as u64, self.w as u64);
        if !self.nchw {
            return Ok((vec![n as u64, h, w, c], x.to_vec()));
        }
        let mut y = vec![0f32; x.len()];
        for (img, out) in x.chunks_exact(per).zip(y.chunks_exact_mut(per)) {
            for (i, &v) in img.iter().enumerate() {
                let (pix, ch) = (i / self.c, i % self.c);
                out[ch * self.h * self.w + pix] = v;
            }
        }
        Ok((vec![n as u64, c, h, w], y))
    }
}

impl Stage for Layout {
    fn contract() -> Contract {
        Contract::new()
            .input("x", "f32[?,?]")
            .output("y", "f32[?,?,?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let dim = |k: &str| -> Result<usize, String> {
            match config.get(k) {
                None => Err(format!("config field `{k}` is required")),
                Some(_) => match config.usize_or(k, 0)? {
                    0 => Err(format!("config field `{k}` must be at least 1")),
                    v => Ok(v),
                },
            }
        };
        let nchw = match config.get("to").map(|v| v.as_str()) {
            None | Some(Some("nchw")) => true,
            Some(Some("nhwc")) => false,
            Some(other) => {
                return Err(format!(
                    "config field `to` is {other:?}; it must be \"nchw\" or \"nhwc\""
                ))
            }
        };
        Ok(Layout {
            c: dim("channels")?,
            h: dim("height")?,
            w: dim("width")?,
            nchw,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let x = inputs.tensor("x")?;
        let (shape, y) = self.arrange(&x.shape, &x.as_f32()?)?;
        Ok(Outputs::new().tensor("y", Tensor::from_f32(shape, &y)))
    }
}

algobay_stage::stage!(Layout);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hwc_rows_become_channel_planes() {
        // One 1x2 RGB row: pixels (1,2,3) and (4,5,6) → planes R [1,4], G [2,5], B [3,6].
        let l = Layout {
            c: 3,
            h: 1,
            w: 2,
            nchw: true,
        };
        let (shape, y) = l.arrange(&[1, 6], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!(
            (shape, y),
            (vec![1, 3, 1, 2], vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0])
        );
        let nhwc = Layout { nchw: false, ..l };
        assert_eq!(
            nhwc.arrange(&[1, 6], &[0.0; 6]).unwrap().0,
            vec![1, 1, 2, 3]
        );
    }

    #[test]
    fn a_row_of_the_wrong_width_or_a_missing_size_is_refused_by_name() {
        let l = Layout {
            c: 1,
            h: 8,
            w: 8,
            nchw: true,
        };
        assert!(l
            .arrange(&[2, 63], &[0.0; 126])
            .unwrap_err()
            .contains("rows of 64 values"));
        let cfg = Config::parse(r#"{"channels": 1, "height": 8}"#, Vec::new()).unwrap();
        assert!(Layout::new(&cfg)
            .unwrap_err()
            .contains("`width` is required"));
    }
}
