//! Audio kits: the tools from a WAV file to the model's row, the same
//! features for training (`algobay-audio`), and golden recordings.

use base64::Engine as _;
use serde_json::{json, Value as J};

use super::data::{Column, Prepared};
use super::recipe::{AudioFeatures, AudioSpec};

/// Every tool an audio kit uses, in pipeline order.
pub(super) const TOOLS: [&str; 10] = [
    "wav-decode",
    "resample",
    "gain-normalize",
    "trim-silence",
    "pre-emphasis",
    "frame",
    "log-mel",
    "mfcc",
    "delta",
    "pool",
];

/// Loudness every recording is brought to, and the most gain allowed.
const TARGET_DBFS: f32 = -20.0;
const MAX_GAIN_DB: f32 = 40.0;
/// Pre-emphasis coefficient, and the delta's half width in frames.
const EMPHASIS: f32 = 0.97;
const DELTA_WIDTH: usize = 2;

/// Loudness under which leading and trailing stretches are cut, and the pad kept.
const TRIM_DB: f32 = -35.0;
const PAD_MS: u32 = 50;

/// Frame length and hop (25 ms every 10 ms), FFT size, mel band.
fn framing(spec: &AudioSpec) -> (usize, usize, algobay_audio::MelSpec) {
    let length = spec.rate as usize * 25 / 1000;
    let hop = spec.rate as usize / 100;
    let mel = algobay_audio::MelSpec {
        rate: spec.rate,
        n_fft: length.next_power_of_two(),
        mels: spec.mels,
        fmin: 20.0,
        fmax: spec.rate as f64 / 2.0,
    };
    (length, hop, mel)
}

/// A recording's features, as the kit's tools compute them.
pub(super) fn features(wav: &[u8], spec: &AudioSpec) -> Result<Vec<f32>, String> {
    let w = algobay_audio::decode_wav(wav).map_err(|e| e.to_string())?;
    let x = algobay_audio::resample(&w.samples, w.rate, spec.rate);
    let x = algobay_audio::normalize_gain(&x, TARGET_DBFS, MAX_GAIN_DB);
    let x = algobay_audio::trim_silence(&x, spec.rate, TRIM_DB, PAD_MS);
    let x = algobay_audio::pre_emphasis(&x, EMPHASIS);
    let (length, hop, mel) = framing(spec);
    let m = algobay_audio::log_mel(&algobay_audio::frames(&x, length, hop, true), &mel);
    Ok(match spec.features {
        AudioFeatures::Logmel => algobay_audio::pool(&m),
        AudioFeatures::Mfcc => {
            let c = algobay_audio::mfcc(&m, spec.coefficients);
            algobay_audio::pool(&algobay_audio::deltas(&c, DELTA_WIDTH))
        }
    })
}

/// The WAV bytes of a row's cell (base64).
pub(super) fn wav_of(cell: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(cell.trim())
        .map_err(|e| format!("audio cell is not base64: {e}"))
}

/// An audio recipe's rows as numbers: each recording's pooled features.
pub(super) fn audio_features(
    mut p: Prepared,
    spec: &AudioSpec,
) -> Result<Prepared, super::data::Refusal> {
    for (k, (x, cells)) in p.x.iter_mut().zip(&p.cells).enumerate() {
        *x = wav_of(&cells[0])
            .and_then(|w| features(&w, spec))
            .map_err(|e| super::data::Refusal(format!("row {}: {e}", k + 1)))?;
    }
    let width = p.x.first().map_or(0, Vec::len);
    let name = match spec.features {
        AudioFeatures::Logmel => "mel",
        AudioFeatures::Mfcc => "mfcc",
    };
    p.columns = (0..width)
        .map(|j| Column {
            name: format!(
                "{}_{}{}",
                if j < width / 2 { "mean" } else { "std" },
                name,
                j % (width / 2).max(1)
            ),
            categories: Vec::new(),
            date: false,
        })
        .collect();
    Ok(p)
}

/// The steps from the input `audio` to the model's row, `filled`.
pub(super) fn steps(spec: &AudioSpec, tool: &dyn Fn(&str) -> String) -> Vec<J> {
    let (length, hop, mel) = framing(spec);
    let mut steps = vec![
        json!({"name": "decode", "stage": tool("wav-decode"), "config": {"max_seconds": 60}}),
        json!({
            "name": "resample",
            "stage": tool("resample"),
            "config": {"rate": spec.rate},
            "inputs": {"samples": "samples", "rate": "rate"},
        }),
        json!({
            "name": "gain",
            "stage": tool("gain-normalize"),
            "config": {"target_dbfs": TARGET_DBFS, "max_gain_db": MAX_GAIN_DB},
            "inputs": {"samples": "resampled"},
        }),
        json!({
            "name": "trim",
            "stage": tool("trim-silence"),
            "config": {"rate": spec.rate, "threshold_db": TRIM_DB, "pad_ms": PAD_MS},
            "inputs": {"samples": "normalized"},
        }),
        json!({
            "name": "emphasis",
            "stage": tool("pre-emphasis"),
            "config": {"coef": EMPHASIS},
            "inputs": {"samples": "trimmed"},
        }),
        json!({
            "name": "frame",
            "stage": tool("frame"),
            "config": {"length": length, "hop": hop},
            "inputs": {"samples": "emphasized"},
        }),
        json!({
            "name": "mel",
            "stage": tool("log-mel"),
            "config": {"rate": mel.rate, "n_fft": mel.n_fft, "mels": mel.mels, "fmin": mel.fmin, "fmax": mel.fmax},
            "inputs": {"frames": "frames"},
        }),
    ];
    let mut last = "mel";
    if spec.features == AudioFeatures::Mfcc {
        steps.push(json!({
            "name": "mfcc",
            "stage": tool("mfcc"),
            "config": {"n": spec.coefficients},
            "inputs": {"mel": "mel"},
        }));
        steps.push(json!({
            "name": "delta",
            "stage": tool("delta"),
            "config": {"width": DELTA_WIDTH},
            "inputs": {"x": "mfcc"},
        }));
        last = "with_delta";
    }
    steps.push(json!({
        "name": "pool",
        "stage": tool("pool"),
        "inputs": {"x": last},
        "outputs": {"pooled": "filled"},
    }));
    steps
}

/// What the kit's card says it reads.
pub(super) fn reads(spec: &AudioSpec) -> String {
    let what = match spec.features {
        AudioFeatures::Logmel => format!("{} log-mel bands", spec.mels),
        AudioFeatures::Mfcc => format!(
            "{} MFCCs of {} mel bands and their deltas",
            spec.coefficients, spec.mels
        ),
    };
    format!(
        "a WAV recording (up to 60 s; PCM or float, any rate and channels: mixed to mono, resampled \
         to {} Hz, brought to {TARGET_DBFS} dBFS, silence below {TRIM_DB} dB trimmed, \
         pre-emphasised; {what} per 25 ms frame, their mean and \
         deviation over the recording)",
        spec.rate
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mfcc_kits_add_their_step_and_features_have_the_pooled_width() {
        let spec: AudioSpec =
            toml::from_str("column = \"audio\"\nfeatures = \"mfcc\"\ncoefficients = 13\n").unwrap();
        let names: Vec<String> = steps(&spec, &|t: &str| t.to_owned())
            .iter()
            .map(|s| s["stage"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, TOOLS);
        let tone: Vec<f32> = (0..8000).map(|i| (i as f32 * 0.2).sin() * 0.3).collect();
        let f = features(&algobay_audio::encode_wav(&tone, 8000), &spec).unwrap();
        assert_eq!(f.len(), 52, "13 MFCCs and 13 deltas, mean and deviation");
        assert!(features(b"RIFF", &spec).unwrap_err().contains("RIFF/WAVE"));
    }
}
