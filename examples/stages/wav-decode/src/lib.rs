//! Reads a WAV recording (PCM 8/16/24/32-bit or 32-bit float, any channel
//! count, mixed to mono) into samples in −1…1 and its sample rate
//! (`algobay_stage::audio::decode_wav`). Config: `max_seconds` (default
//! 600) refuses longer recordings by name.
use algobay_stage::{audio, Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct WavDecode {
    max_seconds: f64,
}

impl WavDecode {
    fn decode(&self, bytes: &[u8]) -> Result<audio::Wav, String> {
        let wav = audio::decode_wav(bytes).map_err(|e| format!("input `audio`: {e}"))?;
        let seconds = wav.samples.len() as f64 / wav.rate as f64;
        if seconds > self.max_seconds {
            return Err(format!(
                "input `audio` lasts {seconds:.1} s, over the limit of {} s",
                self.max_seconds
            ));
        }
        Ok(wav)
    }
}

impl Stage for WavDecode {
    fn contract() -> Contract {
        Contract::new()
            .input("audio", "bytes")
            .output("samples", "f32[?]")
            .output("rate", "i64[]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let max_seconds = config.f64_or("max_seconds", 600.0)?;
        if !(max_seconds > 0.0 && max_seconds.is_finite()) {
            return Err(format!(
                "config field `max_seconds` is {max_seconds}; it must be positive"
            ));
        }
        Ok(WavDecode { max_seconds })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let wav = self.decode(inputs.bytes("audio")?)?;
        Ok(Outputs::new()
            .tensor(
                "samples",
                Tensor::from_f32(vec![wav.samples.len() as u64], &wav.samples),
            )
            .tensor("rate", Tensor::from_i64(vec![], &[i64::from(wav.rate)])))
    }
}

algobay_stage::stage!(WavDecode);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_decodes_and_a_long_one_is_refused_with_its_length() {
        let bytes = audio::encode_wav(&[0.5; 16000], 8000);
        let w = WavDecode { max_seconds: 10.0 }.decode(&bytes).unwrap();
        assert_eq!((w.rate, w.samples.len()), (8000, 16000));
        let err = WavDecode { max_seconds: 1.0 }.decode(&bytes).unwrap_err();
        assert!(err.contains("lasts 2.0 s"), "{err}");
        let err = WavDecode { max_seconds: 1.0 }
            .decode(b"not a wav")
            .unwrap_err();
        assert!(
            err.contains("input `audio`: not a usable WAV file"),
            "{err}"
        );
    }
}
