//! Voice-activity post-processing: turns silero VAD's per-window speech
//! probabilities into speech segments, with the same hysteresis, minimum
//! durations and padding as silero's own `get_speech_timestamps`.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage};

struct VadPost {
    threshold: f64,
    neg_threshold: Option<f64>,
    min_speech_ms: f64,
    min_silence_ms: f64,
    speech_pad_ms: f64,
}

impl Stage for VadPost {
    fn contract() -> Contract {
        Contract::new()
            .input("probs", "f32[?,1,1]")
            .input("audio_info", "json")
            .output("segments", "json")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let threshold = config.f64_or("threshold", 0.5)?;
        if !(0.0..=1.0).contains(&threshold) {
            return Err("config field `threshold` must be between 0 and 1".into());
        }
        Ok(VadPost {
            threshold,
            neg_threshold: config.get("neg_threshold").and_then(|v| v.as_f64()),
            min_speech_ms: config.f64_or("min_speech_duration_ms", 250.0)?,
            min_silence_ms: config.f64_or("min_silence_duration_ms", 100.0)?,
            speech_pad_ms: config.f64_or("speech_pad_ms", 30.0)?,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let probs = inputs.tensor("probs")?.to_f32()?;
        let info = inputs.json("audio_info")?;
        let get = |k: &str| {
            info.get(k)
                .and_then(|v| v.as_f64())
                .ok_or_else(|| format!("input `audio_info` lacks `{k}`"))
        };
        let (sr, total, window) = (get("sample_rate")?, get("samples")?, get("window")?);
        let min_speech = sr * self.min_speech_ms / 1000.0;
        let pad = sr * self.speech_pad_ms / 1000.0;
        let min_silence = sr * self.min_silence_ms / 1000.0;
        let neg = self
            .neg_threshold
            .unwrap_or((self.threshold - 0.15).max(0.01));
        let mut speeches: Vec<(f64, f64)> = Vec::new();
        let mut triggered = false;
        let (mut start, mut temp_end) = (0f64, 0f64);
        for (i, &p) in probs.iter().enumerate() {
            let p = p as f64;
            let at = window * i as f64;
            if p >= self.threshold && temp_end != 0.0 {
                temp_end = 0.0;
            }
            if p >= self.threshold && !triggered {
                triggered = true;
                start = at;
                continue;
            }
            if p < neg && triggered {
                if temp_end == 0.0 {
                    temp_end = at;
                }
                if at - temp_end < min_silence {
                    continue;
                }
                if temp_end - start > min_speech {
                    speeches.push((start, temp_end));
                }
                temp_end = 0.0;
                triggered = false;
            }
        }
        if triggered && total - start > min_speech {
            speeches.push((start, total));
        }
        let n = speeches.len();
        for i in 0..n {
            if i == 0 {
                speeches[i].0 = (speeches[i].0 - pad).max(0.0).trunc();
            }
            if i + 1 < n {
                let silence = speeches[i + 1].0 - speeches[i].1;
                if silence < 2.0 * pad {
                    speeches[i].1 += (silence / 2.0).floor();
                    speeches[i + 1].0 = (speeches[i + 1].0 - (silence / 2.0).floor())
                        .max(0.0)
                        .trunc();
                } else {
                    speeches[i].1 = (speeches[i].1 + pad).min(total).trunc();
                    speeches[i + 1].0 = (speeches[i + 1].0 - pad).max(0.0).trunc();
                }
            } else {
                speeches[i].1 = (speeches[i].1 + pad).min(total).trunc();
            }
        }
        let segs: Vec<serde_json::Value> = speeches
            .iter()
            .map(|&(s, e)| {
                serde_json::json!({
                    "start": (s / sr * 1000.0).round() / 1000.0,
                    "end": (e / sr * 1000.0).round() / 1000.0,
                    "start_sample": s as u64,
                    "end_sample": e as u64,
                })
            })
            .collect();
        let speech: f64 = speeches.iter().map(|(s, e)| e - s).sum();
        let out = serde_json::json!({
            "segments": segs,
            "duration": total / sr,
            "speech_ratio": if total > 0.0 { speech / total } else { 0.0 },
        });
        Ok(Outputs::new().json("segments", &out))
    }
}

algobay_stage::stage!(VadPost);
