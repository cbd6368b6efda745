//! Voice-activity pre-processing for silero VAD: read a WAV file (PCM 8/16/24/32-bit
//! or float, any channel count, mixed to mono) at 16 or 8 kHz, cut it into windows
//! of 512 (256) samples each prefixed by the previous 64 (32) samples of context,
//! and set up the model's initial state.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

struct VadPre {
    max_seconds: f64,
}

struct Wav {
    rate: u32,
    samples: Vec<f32>,
}

fn read_wav(b: &[u8]) -> Result<Wav, String> {
    let bad = |m: &str| format!("input `audio` is not a usable WAV file: {m}");
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return Err(bad("missing RIFF/WAVE header"));
    }
    let (mut fmt, mut data): (Option<&[u8]>, Option<&[u8]>) = (None, None);
    let mut pos = 12;
    while pos + 8 <= b.len() {
        let id = &b[pos..pos + 4];
        let len = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().expect("4 bytes")) as usize;
        let body_end = (pos + 8).saturating_add(len).min(b.len());
        let body = &b[pos + 8..body_end];
        match id {
            b"fmt " => fmt = Some(body),
            b"data" => data = Some(body),
            _ => {}
        }
        pos = body_end + (len & 1);
    }
    let fmt = fmt.ok_or_else(|| bad("no fmt chunk"))?;
    let data = data.ok_or_else(|| bad("no data chunk"))?;
    if fmt.len() < 16 {
        return Err(bad("fmt chunk is too short"));
    }
    let mut tag = u16::from_le_bytes([fmt[0], fmt[1]]);
    let channels = u16::from_le_bytes([fmt[2], fmt[3]]) as usize;
    let rate = u32::from_le_bytes(fmt[4..8].try_into().expect("4 bytes"));
    let bits = u16::from_le_bytes([fmt[14], fmt[15]]);
    if tag == 0xFFFE && fmt.len() >= 26 {
        tag = u16::from_le_bytes([fmt[24], fmt[25]]);
    }
    if channels == 0 {
        return Err(bad("zero channels"));
    }
    // Checked before any frame is cut: a zero-bit format would make empty frames.
    if !matches!((tag, bits), (1, 8) | (1, 16) | (1, 24) | (1, 32) | (3, 32)) {
        return Err(bad(&format!(
            "sample format {tag} with {bits} bits is not supported"
        )));
    }
    let width = (bits as usize).div_ceil(8);
    let decode = |s: &[u8]| -> Result<f32, String> {
        Ok(match (tag, bits) {
            (1, 8) => (s[0] as f32 - 128.0) / 128.0,
            (1, 16) => i16::from_le_bytes([s[0], s[1]]) as f32 / 32768.0,
            (1, 24) => (i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8) as f32 / 8_388_608.0,
            (1, 32) => i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as f32 / 2_147_483_648.0,
            (3, 32) => f32::from_le_bytes([s[0], s[1], s[2], s[3]]),
            _ => {
                return Err(bad(&format!(
                    "sample format {tag} with {bits} bits is not supported"
                )))
            }
        })
    };
    let frame = width * channels;
    let mut samples = Vec::with_capacity(data.len() / frame.max(1));
    for f in data.chunks_exact(frame) {
        let mut acc = 0f32;
        for c in 0..channels {
            acc += decode(&f[c * width..(c + 1) * width])?;
        }
        samples.push(acc / channels as f32);
    }
    Ok(Wav { rate, samples })
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
        let wav = read_wav(inputs.bytes("audio")?)?;
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
