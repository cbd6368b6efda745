//! Cuts samples into overlapping frames for a spectrum: `length` samples
//! every `hop` (defaults 400 and 160: 25 ms every 10 ms at 16 kHz), each
//! times a periodic Hann window unless `window = "rect"`; the last frame is
//! zero-padded and there is always at least one (`algobay_stage::audio::frames`).
use algobay_stage::{audio, Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct Frame {
    length: usize,
    hop: usize,
    hann: bool,
}

impl Stage for Frame {
    fn contract() -> Contract {
        Contract::new()
            .input("samples", "f32[?]")
            .output("frames", "f32[?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let length = config.usize_or("length", 400)?;
        let hop = config.usize_or("hop", 160)?;
        if !(16..=65_536).contains(&length) || hop == 0 || hop > length {
            return Err(format!(
                "config fields `length` ({length}) and `hop` ({hop}): length must be 16 to 65536, hop 1 to length"
            ));
        }
        let hann = match config.get("window").map(|v| v.as_str()) {
            None | Some(Some("hann")) => true,
            Some(Some("rect")) => false,
            Some(other) => {
                return Err(format!(
                    "config field `window` is {other:?}; it must be \"hann\" or \"rect\""
                ))
            }
        };
        Ok(Frame { length, hop, hann })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let x = inputs.tensor("samples")?.to_f32()?;
        let f = audio::frames(&x, self.length, self.hop, self.hann);
        let flat: Vec<f32> = f.concat();
        Ok(Outputs::new().tensor(
            "frames",
            Tensor::from_f32(vec![f.len() as u64, self.length as u64], &flat),
        ))
    }
}

algobay_stage::stage!(Frame);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_overlap_by_the_hop_and_a_short_clip_is_one_padded_frame() {
        let f = audio::frames(&[1.0; 1000], 400, 160, false);
        assert_eq!(f.len(), 1 + (600usize).div_ceil(160));
        assert_eq!(f.last().unwrap()[399], 0.0, "padded");
        assert_eq!(audio::frames(&[1.0; 10], 400, 160, true).len(), 1);
        let cfg = Config::parse(r#"{"length": 400, "hop": 500}"#, Vec::new()).unwrap();
        assert!(Frame::new(&cfg).unwrap_err().contains("`hop` (500)"));
    }
}
