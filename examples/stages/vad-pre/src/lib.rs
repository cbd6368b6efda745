//! Voice-activity pre-processing for silero VAD: read a WAV file (PCM 8/16/24/32-bit
//! or float, any channel count, mixed to mono) at 16 or 8 kHz, cut it into windows
//! of 512 (256) samples each prefixed by the previous 64 (32) samples of context,
//! and set up the model's initial state.
use algobay_stage::{audio, Config, Contract, Inputs, Outputs, Stage, Tensor};

struct VadPre {
    max_seconds: f64,
}

impl Stage for VadPre {
    fn contract() -> Contract {
        Contract::new()
            .input("audio", "bytes")
            .output("frames", "f32[?,1,?]")
            .output("state", "f32[2,1,128]")
            .output("sr", "i64[]")
            .output("audio_info", "json")
    }

    fn new(config: &Config) -> Result<Self, String> {
        Ok(VadPre {
            max_seconds: config.f64_or("max_seconds", 3600.0)?,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let wav = audio::decode_wav(inputs.bytes("audio")?)
            .map_err(|e| format!("input `audio` is {e}"))?;
        let (window, context) = match wav.rate {
            16000 => (512usize, 64usize),
            8000 => (256, 32),
            r => return Err(format!("input `audio` is sampled at {r} Hz; silero VAD takes 16000 or 8000 Hz (sox in.wav -r 16000 out.wav)")),
        };
        let seconds = wav.samples.len() as f64 / wav.rate as f64;
        if seconds > self.max_seconds {
            return Err(format!(
                "input `audio` lasts {seconds:.0} s, over the limit of {} s",
                self.max_seconds
            ));
        }
        let n = wav.samples.len().div_ceil(window);
        let width = window + context;
        let mut frames = vec![0f32; n * width];
        for i in 0..n {
            let dst = &mut frames[i * width..(i + 1) * width];
            // Context: the last `context` samples of the previous window (zeros at first).
            if i > 0 {
                let start = i * window - context;
                for (k, d) in dst[..context].iter_mut().enumerate() {
                    *d = wav.samples.get(start + k).copied().unwrap_or(0.0);
                }
            }
            for k in 0..window {
                dst[context + k] = wav.samples.get(i * window + k).copied().unwrap_or(0.0);
            }
        }
        let info = serde_json::json!({"sample_rate": wav.rate, "samples": wav.samples.len(), "window": window});
        Ok(Outputs::new()
            .tensor(
                "frames",
                Tensor::from_f32(vec![n as u64, 1, width as u64], &frames),
            )
            .tensor("state", Tensor::from_f32(vec![2, 1, 128], &[0.0; 256]))
            .tensor("sr", Tensor::from_i64(vec![], &[wav.rate as i64]))
            .json("audio_info", &info))
    }
}

algobay_stage::stage!(VadPre);
