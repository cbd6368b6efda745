//! 8-bit pixels (height, width, channels) to floats for a model, per
//! channel `(v * scale - mean) / std`, the shape kept: torchvision's
//! `ToTensor()` + `Normalize(mean, std)` is `scale = 1/255`. `mean` and
//! `std` are one value or one per channel; `clip` (optional `[low, high]`)
//! bounds the result.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct Normalize {
    scale: f32,
    mean: Vec<f32>,
    std: Vec<f32>,
    clip: Option<(f32, f32)>,
}

impl Normalize {
    fn apply(&self, px: &[u8], channels: usize) -> Result<Vec<f32>, String> {
        let per = |v: &[f32], name: &str| -> Result<Vec<f32>, String> {
            match v.len() {
                1 => Ok(vec![v[0]; channels]),
                n if n == channels => Ok(v.to_vec()),
                n => Err(format!(
                    "config field `{name}` has {n} values for an image of {channels} channels"
                )),
            }
        };
        let (mean, std) = (per(&self.mean, "mean")?, per(&self.std, "std")?);
        Ok(px
            .chunks_exact(channels)
            .flat_map(|p| {
                p.iter().enumerate().map(|(c, &v)| {
                    let x = (v as f32 * self.scale - mean[c]) / std[c];
                    match self.clip {
                        Some((lo, hi)) => x.clamp(lo, hi),
                        None => x,
                    }
                })
            })
            .collect())
    }
}

impl Stage for Normalize {
    fn contract() -> Contract {
        Contract::new()
            .input("pixels", "u8[?,?,?]")
            .output("values", "f32[?,?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let scale = config.f32_or("scale", 1.0 / 255.0)?;
        let mean = config.f32s("mean")?.unwrap_or_else(|| vec![0.0]);
        let std = config.f32s("std")?.unwrap_or_else(|| vec![1.0]);
        if !scale.is_finite() || mean.is_empty() || std.is_empty() {
            return Err("config fields `scale`, `mean` and `std` need finite values".into());
        }
        if let Some(s) = std.iter().find(|s| **s == 0.0 || !s.is_finite()) {
            return Err(format!(
                "config field `std` holds {s}; each must be a non-zero number"
            ));
        }
        let clip = match config.f32s("clip")? {
            None => None,
            Some(c) if c.len() == 2 && c[0] < c[1] => Some((c[0], c[1])),
            Some(c) => {
                return Err(format!(
                    "config field `clip` is {c:?}; it must be [low, high] with low < high"
                ))
            }
        };
        Ok(Normalize {
            scale,
            mean,
            std,
            clip,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let t = inputs.tensor("pixels")?;
        let [_, _, c] = t.shape[..] else {
            return Err(format!(
                "input `pixels`: shape {:?}, expected [height, width, channels]",
                t.shape
            ));
        };
        let values = self.apply(t.as_u8()?, c.max(1) as usize)?;
        Ok(Outputs::new().tensor("values", Tensor::from_f32(t.shape.clone(), &values)))
    }
}

algobay_stage::stage!(Normalize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_is_scaled_centred_and_clipped() {
        let n = Normalize {
            scale: 1.0 / 255.0,
            mean: vec![0.5, 0.0],
            std: vec![0.5, 1.0],
            clip: Some((-1.0, 0.9)),
        };
        let got = n.apply(&[255, 255, 0, 51], 2).unwrap();
        let want = [0.9, 0.9, -1.0, 0.2];
        assert!(
            got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{got:?}"
        );
        let err = n.apply(&[1, 2, 3], 3).unwrap_err();
        assert!(
            err.contains("`mean` has 2 values for an image of 3 channels"),
            "{err}"
        );
    }

    #[test]
    fn a_zero_deviation_is_refused_by_name() {
        let cfg = Config::parse(r#"{"std": [1, 0, 1]}"#, Vec::new()).unwrap();
        assert!(Normalize::new(&cfg).unwrap_err().contains("`std` holds 0"));
    }
}
