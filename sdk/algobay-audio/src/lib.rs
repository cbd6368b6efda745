//! Audio pre-processing shared by the audio stages and the production line,
//! so that a model is trained on exactly the features its kit computes:
//!
//! - [`decode_wav`]: RIFF/WAVE, PCM 8/16/24/32-bit or 32-bit float, any
//!   channel count (mixed to mono), samples as floats in −1…1;
//! - [`resample`]: band-limited (Hann-windowed sinc) resampling to any rate;
//! - [`trim_silence`]: drops leading and trailing stretches quieter than a
//!   level below the loudest 10 ms;
//! - [`frames`]: overlapping Hann-windowed frames;
//! - [`log_mel`]: power spectra (radix-2 FFT) through an HTK mel filterbank,
//!   natural log; [`mfcc`]: their orthonormal DCT-II;
//! - [`pool`]: per coefficient mean and standard deviation over frames.
//!
//! No dependencies, no `unsafe`: it builds for `wasm32-wasip2` stages and
//! native code alike.

#![forbid(unsafe_code)]

use std::f64::consts::PI;
use std::fmt;

/// What can go wrong; each names the value at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioError {
    /// Not a WAV file this decoder reads.
    Wav(String),
    /// A setting out of its range.
    Setting {
        name: &'static str,
        value: String,
        range: &'static str,
    },
}

impl fmt::Display for AudioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudioError::Wav(m) => write!(f, "not a usable WAV file: {m}"),
            AudioError::Setting { name, value, range } => {
                write!(f, "{name} is {value}; it must be {range}")
            }
        }
    }
}

impl std::error::Error for AudioError {}

/// A decoded recording: mono samples in −1…1 at `rate` Hz.
#[derive(Debug, Clone, PartialEq)]
pub struct Wav {
    pub rate: u32,
    pub samples: Vec<f32>,
}

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Decodes a RIFF/WAVE file; channels are averaged into one.
pub fn decode_wav(b: &[u8]) -> Result<Wav, AudioError> {
    let bad = |m: &str| AudioError::Wav(m.to_owned());
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return Err(bad("missing RIFF/WAVE header"));
    }
    let (mut fmt, mut data): (Option<&[u8]>, Option<&[u8]>) = (None, None);
    let mut pos = 12;
    while pos + 8 <= b.len() {
        let len = le32(&b[pos + 4..pos + 8]) as usize;
        let end = (pos + 8).saturating_add(len).min(b.len());
        match &b[pos..pos + 4] {
            b"fmt " => fmt = Some(&b[pos + 8..end]),
            b"data" => data = Some(&b[pos + 8..end]),
            _ => {}
        }
        pos = end + (len & 1);
    }
    let fmt = fmt.ok_or_else(|| bad("no fmt chunk"))?;
    let data = data.ok_or_else(|| bad("no data chunk"))?;
    if fmt.len() < 16 {
        return Err(bad("fmt chunk is too short"));
    }
    let mut tag = le16(&fmt[0..2]);
    let channels = le16(&fmt[2..4]) as usize;
    let rate = le32(&fmt[4..8]);
    let bits = le16(&fmt[14..16]);
    if tag == 0xFFFE && fmt.len() >= 26 {
        tag = le16(&fmt[24..26]);
    }
    if channels == 0 {
        return Err(bad("zero channels"));
    }
    if !(1..=768_000).contains(&rate) {
        return Err(bad(&format!("sample rate {rate} Hz")));
    }
    let decode: fn(&[u8]) -> f32 = match (tag, bits) {
        (1, 8) => |s| (s[0] as f32 - 128.0) / 128.0,
        (1, 16) => |s| i16::from_le_bytes([s[0], s[1]]) as f32 / 32768.0,
        (1, 24) => |s| (i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8) as f32 / 8_388_608.0,
        (1, 32) => |s| i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as f32 / 2_147_483_648.0,
        (3, 32) => |s| f32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        _ => {
            return Err(bad(&format!(
                "sample format {tag} with {bits} bits is not supported (PCM 8/16/24/32-bit, float 32-bit)"
            )))
        }
    };
    let width = bits as usize / 8;
    let frame = width * channels;
    let samples = data
        .chunks_exact(frame)
        .map(|f| f.chunks_exact(width).map(decode).sum::<f32>() / channels as f32)
        .collect();
    Ok(Wav { rate, samples })
}

/// Mono samples as a 16-bit PCM WAV file.
pub fn encode_wav(samples: &[f32], rate: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    let data = (samples.len() * 2) as u32;
    out.extend(b"RIFF");
    out.extend((36 + data).to_le_bytes());
    out.extend(b"WAVEfmt ");
    out.extend(16u32.to_le_bytes());
    out.extend(1u16.to_le_bytes());
    out.extend(1u16.to_le_bytes());
    out.extend(rate.to_le_bytes());
    out.extend((rate * 2).to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(16u16.to_le_bytes());
    out.extend(b"data");
    out.extend(data.to_le_bytes());
    for s in samples {
        out.extend(((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes());
    }
    out
}

/// Zero crossings of the sinc kernel on each side, at the lower rate.
const SINC_ZEROS: f64 = 16.0;

/// Resamples from `from` to `to` Hz: each output sample is a Hann-windowed
/// sinc interpolation of the input, low-passed at the lower rate's Nyquist
/// frequency (no aliasing when shrinking).
pub fn resample(samples: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || samples.is_empty() {
        return samples.to_vec();
    }
    let ratio = from as f64 / to as f64;
    let cutoff = (1.0 / ratio).min(1.0);
    let half = SINC_ZEROS / cutoff;
    let n_out = ((samples.len() as f64) / ratio).round().max(1.0) as usize;
    (0..n_out)
        .map(|i| {
            let t = i as f64 * ratio;
            let lo = (t - half).ceil().max(0.0) as usize;
            let hi = ((t + half).floor() as usize).min(samples.len() - 1);
            let mut acc = 0.0;
            for (k, &x) in samples.iter().enumerate().take(hi + 1).skip(lo) {
                let d = t - k as f64;
                let arg = PI * cutoff * d;
                let sinc = if arg.abs() < 1e-12 {
                    1.0
                } else {
                    arg.sin() / arg
                };
                let window = 0.5 + 0.5 * (PI * d / half).cos();
                acc += x as f64 * cutoff * sinc * window;
            }
            acc as f32
        })
        .collect()
}

/// Keeps the stretch from the first to the last 10 ms block whose RMS is
/// within `threshold_db` (negative) of the loudest block's, padded by
/// `pad_ms` each side; silence throughout keeps everything.
pub fn trim_silence(samples: &[f32], rate: u32, threshold_db: f32, pad_ms: u32) -> Vec<f32> {
    let block = (rate as usize / 100).max(1);
    let rms: Vec<f32> = samples
        .chunks(block)
        .map(|c| (c.iter().map(|x| x * x).sum::<f32>() / c.len() as f32).sqrt())
        .collect();
    let peak = rms.iter().copied().fold(0.0, f32::max);
    if peak <= 0.0 {
        return samples.to_vec();
    }
    let floor = peak * 10f32.powf(threshold_db / 20.0);
    let first = rms.iter().position(|&r| r >= floor).unwrap_or(0);
    let last = rms
        .iter()
        .rposition(|&r| r >= floor)
        .unwrap_or(rms.len() - 1);
    let pad = rate as usize * pad_ms as usize / 1000;
    let start = (first * block).saturating_sub(pad);
    let end = ((last + 1) * block + pad).min(samples.len());
    samples[start..end].to_vec()
}

/// Scales a recording so that its RMS level is `target_dbfs` (dB below a
/// full-scale square wave), by at most `max_gain_db`, clipping at ±1; a
/// silent recording is returned as it is.
pub fn normalize_gain(samples: &[f32], target_dbfs: f32, max_gain_db: f32) -> Vec<f32> {
    let n = samples.len().max(1) as f64;
    let rms = (samples.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / n).sqrt();
    if rms <= 0.0 {
        return samples.to_vec();
    }
    let want = 10f64.powf(target_dbfs as f64 / 20.0);
    let gain = (want / rms).min(10f64.powf(max_gain_db as f64 / 20.0)) as f32;
    samples
        .iter()
        .map(|&x| (x * gain).clamp(-1.0, 1.0))
        .collect()
}

/// A first-order high-pass, `y[n] = x[n] − coef·x[n−1]`, lifting the high
/// frequencies speech carries little energy in before a spectrum.
pub fn pre_emphasis(samples: &[f32], coef: f32) -> Vec<f32> {
    let mut prev = 0.0;
    samples
        .iter()
        .map(|&x| {
            let y = x - coef * prev;
            prev = x;
            y
        })
        .collect()
}

/// Each row followed by its delta: the regression slope over ±`width`
/// rows, `Σ n·(c[t+n] − c[t−n]) / (2·Σ n²)`, the first and last rows
/// repeated past the ends (as HTK and librosa's `delta` in `nearest` mode).
pub fn deltas(rows: &[Vec<f32>], width: usize) -> Vec<Vec<f32>> {
    let width = width.max(1);
    let last = rows.len().saturating_sub(1);
    let denom = 2.0 * (1..=width).map(|n| (n * n) as f32).sum::<f32>();
    (0..rows.len())
        .map(|t| {
            let d = rows[t].len();
            let mut out = rows[t].clone();
            out.extend((0..d).map(|j| {
                (1..=width)
                    .map(|n| n as f32 * (rows[(t + n).min(last)][j] - rows[t.saturating_sub(n)][j]))
                    .sum::<f32>()
                    / denom
            }));
            out
        })
        .collect()
}

/// Frames of `length` samples every `hop`, each times a periodic Hann
/// window when `hann`; the last is zero-padded, and there is at least one.
pub fn frames(samples: &[f32], length: usize, hop: usize, hann: bool) -> Vec<Vec<f32>> {
    let length = length.max(1);
    let hop = hop.max(1);
    let count = if samples.len() <= length {
        1
    } else {
        1 + (samples.len() - length).div_ceil(hop)
    };
    let window: Vec<f32> = (0..length)
        .map(|n| {
            if hann {
                (0.5 - 0.5 * (2.0 * PI * n as f64 / length as f64).cos()) as f32
            } else {
                1.0
            }
        })
        .collect();
    (0..count)
        .map(|f| {
            (0..length)
                .map(|n| samples.get(f * hop + n).copied().unwrap_or(0.0) * window[n])
                .collect()
        })
        .collect()
}

/// In-place radix-2 FFT of (re, im); the length must be a power of two.
fn fft(re: &mut [f64], im: &mut [f64]) {
    let n = re.len();
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let ang = -2.0 * PI / len as f64;
        for start in (0..n).step_by(len) {
            for k in 0..len / 2 {
                let (s, c) = (ang * k as f64).sin_cos();
                let (a, b) = (start + k, start + k + len / 2);
                let tr = re[b] * c - im[b] * s;
                let ti = re[b] * s + im[b] * c;
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] += tr;
                im[a] += ti;
            }
        }
        len <<= 1;
    }
}

fn hz_to_mel(f: f64) -> f64 {
    2595.0 * (1.0 + f / 700.0).log10()
}

fn mel_to_hz(m: f64) -> f64 {
    700.0 * (10f64.powf(m / 2595.0) - 1.0)
}

/// The log-mel spectrogram settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MelSpec {
    pub rate: u32,
    /// FFT size, a power of two at least the frame length.
    pub n_fft: usize,
    pub mels: usize,
    pub fmin: f64,
    pub fmax: f64,
}

impl MelSpec {
    /// Checks the settings against each other and a frame length.
    pub fn check(&self, frame: usize) -> Result<(), AudioError> {
        let bad = |name, value: String, range| Err(AudioError::Setting { name, value, range });
        if !self.n_fft.is_power_of_two() || self.n_fft < frame || self.n_fft > 1 << 16 {
            return bad(
                "n_fft",
                self.n_fft.to_string(),
                "a power of two, at least the frame length, at most 65536",
            );
        }
        if !(1..=256).contains(&self.mels) {
            return bad("mels", self.mels.to_string(), "1 to 256");
        }
        if !(0.0 <= self.fmin && self.fmin < self.fmax && self.fmax <= self.rate as f64 / 2.0) {
            return bad(
                "fmin/fmax",
                format!("{}/{}", self.fmin, self.fmax),
                "0 <= fmin < fmax <= half the sample rate",
            );
        }
        Ok(())
    }
}

/// Natural log of each frame's power spectrum through a triangular HTK
/// mel filterbank (floor 1e-10): one row of `mels` per frame.
pub fn log_mel(frames: &[Vec<f32>], spec: &MelSpec) -> Vec<Vec<f32>> {
    let bins = spec.n_fft / 2 + 1;
    let (lo, hi) = (hz_to_mel(spec.fmin), hz_to_mel(spec.fmax));
    let edges: Vec<f64> = (0..spec.mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (spec.mels + 1) as f64))
        .collect();
    let bin_hz = spec.rate as f64 / spec.n_fft as f64;
    let filters: Vec<Vec<f64>> = (0..spec.mels)
        .map(|m| {
            let (l, c, r) = (edges[m], edges[m + 1], edges[m + 2]);
            (0..bins)
                .map(|b| {
                    let f = b as f64 * bin_hz;
                    if f <= l || f >= r {
                        0.0
                    } else if f <= c {
                        (f - l) / (c - l)
                    } else {
                        (r - f) / (r - c)
                    }
                })
                .collect()
        })
        .collect();
    frames
        .iter()
        .map(|frame| {
            let mut re = vec![0.0; spec.n_fft];
            let mut im = vec![0.0; spec.n_fft];
            for (d, &s) in re.iter_mut().zip(frame) {
                *d = s as f64;
            }
            fft(&mut re, &mut im);
            let power: Vec<f64> = (0..bins).map(|b| re[b] * re[b] + im[b] * im[b]).collect();
            filters
                .iter()
                .map(|f| {
                    let e: f64 = f.iter().zip(&power).map(|(w, p)| w * p).sum();
                    e.max(1e-10).ln() as f32
                })
                .collect()
        })
        .collect()
}

/// The first `n` orthonormal DCT-II coefficients of each row.
pub fn mfcc(log_mel: &[Vec<f32>], n: usize) -> Vec<Vec<f32>> {
    log_mel
        .iter()
        .map(|row| {
            let m = row.len() as f64;
            (0..n)
                .map(|k| {
                    let s: f64 = row
                        .iter()
                        .enumerate()
                        .map(|(j, &x)| x as f64 * (PI * k as f64 * (j as f64 + 0.5) / m).cos())
                        .sum();
                    let norm = if k == 0 {
                        (1.0 / m).sqrt()
                    } else {
                        (2.0 / m).sqrt()
                    };
                    (s * norm) as f32
                })
                .collect()
        })
        .collect()
}

/// Per column, the mean over rows, then per column the standard deviation.
pub fn pool(rows: &[Vec<f32>]) -> Vec<f32> {
    let d = rows.first().map_or(0, Vec::len);
    let n = rows.len().max(1) as f64;
    let mean: Vec<f64> = (0..d)
        .map(|j| rows.iter().map(|r| r[j] as f64).sum::<f64>() / n)
        .collect();
    let std = (0..d).map(|j| {
        (rows
            .iter()
            .map(|r| (r[j] as f64 - mean[j]).powi(2))
            .sum::<f64>()
            / n)
            .sqrt()
    });
    mean.iter()
        .map(|&m| m as f32)
        .chain(std.map(|s| s as f32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f64, rate: u32, seconds: f64) -> Vec<f32> {
        (0..(rate as f64 * seconds) as usize)
            .map(|i| (0.5 * (2.0 * PI * hz * i as f64 / rate as f64).sin()) as f32)
            .collect()
    }

    #[test]
    fn wav_round_trips_and_stereo_mixes_to_mono() {
        let s = vec![0.0, 0.5, -0.25];
        let w = decode_wav(&encode_wav(&s, 8000)).unwrap();
        assert_eq!(w.rate, 8000);
        for (a, b) in w.samples.iter().zip(&s) {
            assert!((a - b).abs() < 1e-4);
        }
        // Two 8-bit channels, one frame: (255 - 128)/128 and (1 - 128)/128.
        let mut stereo = encode_wav(&[], 8000);
        stereo[22] = 2;
        stereo[34] = 8;
        stereo.extend([255, 1]);
        let n = stereo.len() as u32 - 44;
        stereo[40..44].copy_from_slice(&n.to_le_bytes());
        let w = decode_wav(&stereo).unwrap();
        assert_eq!(w.samples.len(), 1);
        assert!(w.samples[0].abs() < 1e-6);
    }

    #[test]
    fn broken_wavs_are_refused_with_the_reason() {
        assert!(decode_wav(b"RIFF....WAVX")
            .unwrap_err()
            .to_string()
            .contains("RIFF/WAVE"));
        let mut w = encode_wav(&[0.0], 8000);
        w[34] = 12;
        assert!(decode_wav(&w).unwrap_err().to_string().contains("12 bits"));
    }

    #[test]
    fn resampling_keeps_a_tone_and_its_length() {
        let x = tone(440.0, 8000, 0.5);
        let y = resample(&x, 8000, 16000);
        assert_eq!(y.len(), 8000);
        let z = tone(440.0, 16000, 0.5);
        // Away from the edges, the upsampled tone is the tone at 16 kHz.
        let err = y[1000..7000]
            .iter()
            .zip(&z[1000..7000])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 0.01, "{err}");
        // A tone above the new Nyquist frequency is removed, not folded back.
        let high = resample(&tone(6000.0, 16000, 0.5), 16000, 8000);
        let rms = (high[500..3500].iter().map(|v| v * v).sum::<f32>() / 3000.0).sqrt();
        assert!(rms < 0.02, "{rms}");
    }

    #[test]
    fn silence_is_trimmed_around_the_sound() {
        let mut x = vec![0.0; 1600];
        x.extend(tone(300.0, 16000, 0.1));
        x.extend(vec![0.0; 3200]);
        let t = trim_silence(&x, 16000, -30.0, 0);
        assert_eq!(t.len(), 1600);
        assert_eq!(trim_silence(&[0.0; 100], 16000, -30.0, 10).len(), 100);
    }

    #[test]
    fn gain_pre_emphasis_and_deltas_do_what_speech_front_ends_do() {
        // A quiet tone is brought to -20 dBFS RMS (0.1), within the gain cap.
        let quiet: Vec<f32> = tone(200.0, 8000, 0.1).iter().map(|x| x * 0.01).collect();
        let loud = normalize_gain(&quiet, -20.0, 60.0);
        let rms = (loud.iter().map(|x| x * x).sum::<f32>() / loud.len() as f32).sqrt();
        assert!((rms - 0.1).abs() < 1e-3, "{rms}");
        assert_eq!(normalize_gain(&[0.0; 4], -20.0, 60.0), vec![0.0; 4]);
        // Capped at 6 dB: about twice as loud, no more.
        let capped = normalize_gain(&quiet, -20.0, 6.0);
        assert!((capped[7] / quiet[7] - 1.9953).abs() < 1e-3);
        assert_eq!(pre_emphasis(&[1.0, 1.0, 0.0], 0.5), vec![1.0, 0.5, -0.5]);
        // A ramp's delta is its slope, inside; the ends see a repeated row.
        let ramp: Vec<Vec<f32>> = (0..6).map(|t| vec![t as f32]).collect();
        let d = deltas(&ramp, 2);
        assert_eq!(d[3], vec![3.0, 1.0]);
        assert_eq!(d[0][1], (1.0 * 1.0 + 2.0 * 2.0) / 10.0);
    }

    #[test]
    fn a_tone_lights_the_mel_band_holding_its_frequency() {
        let spec = MelSpec {
            rate: 16000,
            n_fft: 512,
            mels: 40,
            fmin: 20.0,
            fmax: 8000.0,
        };
        spec.check(400).unwrap();
        let f = frames(&tone(1000.0, 16000, 0.2), 400, 160, true);
        assert_eq!(f.len(), 1 + (3200 - 400usize).div_ceil(160));
        let lm = log_mel(&f, &spec);
        let best = (0..40)
            .max_by(|&a, &b| lm[5][a].total_cmp(&lm[5][b]))
            .unwrap();
        let m = hz_to_mel(1000.0);
        let (lo, hi) = (hz_to_mel(20.0), hz_to_mel(8000.0));
        let expected = ((m - lo) / (hi - lo) * 41.0 - 1.0).round() as usize;
        assert!(best.abs_diff(expected) <= 1, "{best} vs {expected}");
        let c = mfcc(&lm, 13);
        assert_eq!(c[0].len(), 13);
        // c0 is the mean log energy times sqrt(M).
        let mean = lm[5].iter().sum::<f32>() / 40.0;
        assert!((c[5][0] - mean * 40f32.sqrt()).abs() < 1e-3);
        let p = pool(&c);
        assert_eq!(p.len(), 26);
        let bad = MelSpec { n_fft: 300, ..spec }.check(400).unwrap_err();
        assert!(bad.to_string().contains("n_fft is 300"));
    }
}
