//! Frames to a log-mel spectrogram: each frame's power spectrum (FFT of
//! `n_fft`, default 512) through `mels` (default 40) triangular HTK mel
//! filters between `fmin` (20 Hz) and `fmax` (half the `rate`), natural log
//! (`algobay_stage::audio::log_mel`). Config: `rate` (Hz), `n_fft`, `mels`,
//! `fmin`, `fmax`.
use algobay_stage::{audio, Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct LogMel {
    spec: audio::MelSpec,
}

impl Stage for LogMel {
    fn contract() -> Contract {
        Contract::new()
            .input("frames", "f32[?,?]")
            .output("mel", "f32[?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let rate = config.usize_or("rate", 16_000)?;
        if !(1000..=192_000).contains(&rate) {
            return Err(format!(
                "config field `rate` is {rate}; it must be 1000 to 192000 Hz"
            ));
        }
        let spec = audio::MelSpec {
            rate: rate as u32,
            n_fft: config.usize_or("n_fft", 512)?,
            mels: config.usize_or("mels", 40)?,
            fmin: config.f64_or("fmin", 20.0)?,
            fmax: config.f64_or("fmax", rate as f64 / 2.0)?,
        };
        spec.check(1).map_err(|e| format!("config: {e}"))?;
        Ok(LogMel { spec })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let t = inputs.tensor("frames")?;
        let [n, len] = t.shape[..] else {
            return Err(format!(
                "input `frames`: shape {:?}, expected [frames, length]",
                t.shape
            ));
        };
        self.spec
            .check(len as usize)
            .map_err(|e| format!("input `frames` of length {len}: {e}"))?;
        let x = t.to_f32()?;
        let frames: Vec<Vec<f32>> = x
            .chunks_exact(len.max(1) as usize)
            .map(<[f32]>::to_vec)
            .collect();
        let mel = audio::log_mel(&frames, &self.spec).concat();
        Ok(Outputs::new().tensor(
            "mel",
            Tensor::from_f32(vec![n, self.spec.mels as u64], &mel),
        ))
    }
}

algobay_stage::stage!(LogMel);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_longer_than_the_fft_or_a_band_past_nyquist_is_refused() {
        let cfg = Config::parse(r#"{"rate": 8000, "fmax": 6000}"#, Vec::new()).unwrap();
        assert!(LogMel::new(&cfg).unwrap_err().contains("fmin/fmax"));
        let m = LogMel::new(&Config::parse(r#"{"n_fft": 256}"#, Vec::new()).unwrap()).unwrap();
        assert!(m
            .spec
            .check(400)
            .unwrap_err()
            .to_string()
            .contains("n_fft is 256"));
        let silence = audio::log_mel(
            &[vec![0.0; 400]],
            &audio::MelSpec {
                n_fft: 512,
                ..m.spec
            },
        );
        assert!(silence[0].iter().all(|v| (*v - 1e-10f32.ln()).abs() < 1e-3));
    }
}
