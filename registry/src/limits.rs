//! What the registry accepts and how much work one caller can make it do:
//! the ceilings on a published kit (the registry runs its golden samples),
//! on text fields and counts, and on uploads. The defaults keep one publish
//! within a small budget; the operator may raise or lower them.

use std::time::Duration;

use algobay_runtime::manifest::{Manifest, StepKind};

use crate::error::{RegistryError, Result};

/// Ceilings on kits and uploads (flags of `algobay-registry serve`).
#[derive(Clone, Debug, PartialEq)]
pub struct Ceilings {
    /// Largest kit manifest, in bytes.
    pub max_manifest_bytes: usize,
    /// Most steps in a kit's pipeline.
    pub max_steps: usize,
    /// Largest time budget a stage may declare for one call, in milliseconds.
    pub max_stage_time_ms: u32,
    /// Largest memory a stage may declare, in MiB.
    pub max_stage_memory_mb: u32,
    /// Most golden samples in a kit.
    pub max_golden_samples: usize,
    /// Largest golden sample files (inputs and expected outputs), in bytes all together.
    pub max_golden_bytes: u64,
    /// Largest kit (manifest and blobs), in bytes: the registry loads it to test it.
    pub max_kit_bytes: u64,
    /// Wall-clock budget for running one kit's golden samples in the registry.
    pub golden_budget: Duration,
    /// Kits whose golden samples run at once; others wait up to `golden_wait`.
    pub golden_slots: usize,
    /// Of those, one team's at most (a freed slot goes to the team served
    /// longest ago).
    pub golden_team_slots: usize,
    /// How long a publish waits for a golden slot before it is told to retry.
    pub golden_wait: Duration,
    /// An upload that sends nothing for this long is dropped (it can resume).
    pub upload_idle: Duration,
    /// Partial uploads untouched for this long are removed.
    pub partial_max_age: Duration,
}

impl Default for Ceilings {
    fn default() -> Self {
        Ceilings {
            max_manifest_bytes: 1 << 20,
            max_steps: 64,
            max_stage_time_ms: 10_000,
            max_stage_memory_mb: 512,
            max_golden_samples: 32,
            max_golden_bytes: 64 << 20,
            max_kit_bytes: 2 << 30,
            golden_budget: Duration::from_secs(60),
            golden_slots: 1,
            golden_team_slots: 1,
            golden_wait: Duration::from_secs(30),
            upload_idle: Duration::from_secs(60),
            partial_max_age: Duration::from_secs(24 * 3600),
        }
    }
}

impl Ceilings {
    /// Checks what a kit's manifest asks of the registry before anything runs.
    pub fn check_kit(&self, manifest: &Manifest, manifest_bytes: usize) -> Result<()> {
        if manifest_bytes > self.max_manifest_bytes {
            return Err(RegistryError::TooLarge(format!(
                "manifest: {manifest_bytes} bytes, over the registry's limit of {}",
                self.max_manifest_bytes
            )));
        }
        if manifest.steps.len() > self.max_steps {
            return Err(RegistryError::TooLarge(format!(
                "steps: {} steps, over the registry's limit of {}",
                manifest.steps.len(),
                self.max_steps
            )));
        }
        for (i, step) in manifest.steps.iter().enumerate() {
            if let StepKind::Stage { limits, .. } = &step.kind {
                if limits.time_ms > self.max_stage_time_ms {
                    return Err(RegistryError::invalid(
                        format!("steps[{i}].limits.time_ms"),
                        format!(
                            "stage `{}` asks for {} ms a call, over the registry's ceiling of {} ms",
                            shown(&step.name),
                            limits.time_ms,
                            self.max_stage_time_ms
                        ),
                    ));
                }
                if limits.memory_mb > self.max_stage_memory_mb {
                    return Err(RegistryError::invalid(
                        format!("steps[{i}].limits.memory_mb"),
                        format!(
                            "stage `{}` asks for {} MiB, over the registry's ceiling of {} MiB",
                            shown(&step.name),
                            limits.memory_mb,
                            self.max_stage_memory_mb
                        ),
                    ));
                }
            }
        }
        if manifest.golden.len() > self.max_golden_samples {
            return Err(RegistryError::TooLarge(format!(
                "golden: {} samples, over the registry's limit of {}",
                manifest.golden.len(),
                self.max_golden_samples
            )));
        }
        let size_of = |d| manifest.blobs.get(d).copied().unwrap_or(0);
        let golden: u64 = manifest
            .golden
            .iter()
            .flat_map(|g| g.inputs.values().chain(std::iter::once(&g.expected)))
            .map(size_of)
            .fold(0u64, u64::saturating_add);
        if golden > self.max_golden_bytes {
            return Err(RegistryError::TooLarge(format!(
                "golden: {golden} bytes of samples, over the registry's limit of {}",
                self.max_golden_bytes
            )));
        }
        let total = manifest
            .blobs
            .values()
            .fold(manifest_bytes as u64, |a, b| a.saturating_add(*b));
        if total > self.max_kit_bytes {
            return Err(RegistryError::TooLarge(format!(
                "kit: {total} bytes, over the registry's limit of {}",
                self.max_kit_bytes
            )));
        }
        Ok(())
    }
}

/// Text fields and counts a request may carry.
pub mod text {
    /// A description or display name.
    pub const DESCRIPTION: usize = 4 << 10;
    /// A display name.
    pub const DISPLAY_NAME: usize = 256;
    /// A card (Markdown).
    pub const CARD: usize = 256 << 10;
    /// A license, domain, task, scenario, architecture or other short word.
    pub const WORD: usize = 128;
    /// Industries, tags, labels or selector entries in one request.
    pub const LIST: usize = 64;
    /// One industry, tag, label key or metric name.
    pub const ITEM: usize = 64;
    /// One label or selector value.
    pub const LABEL_VALUE: usize = 255;
    /// The longest a token may live: ten years.
    pub const MAX_TTL_SECONDS: i64 = 10 * 365 * 24 * 3600;
}

/// Checks a text field's length; the error names the field.
pub fn check_len(field: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(RegistryError::TooLarge(format!(
            "{field}: {} bytes, over the limit of {max}",
            value.len()
        )));
    }
    Ok(())
}

/// Checks a list of short words (industries, tags): how many and how long each.
pub fn check_list(field: &str, values: &[String]) -> Result<()> {
    if values.len() > text::LIST {
        return Err(RegistryError::TooLarge(format!(
            "{field}: {} entries, over the limit of {}",
            values.len(),
            text::LIST
        )));
    }
    for (i, v) in values.iter().enumerate() {
        check_len(&format!("{field}[{i}]"), v, text::ITEM)?;
    }
    Ok(())
}

/// Checks labels or a selector: how many, and the length of each key and value.
pub fn check_labels<'a>(
    field: &str,
    labels: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) -> Result<()> {
    if labels.len() > text::LIST {
        return Err(RegistryError::TooLarge(format!(
            "{field}: {} entries, over the limit of {}",
            labels.len(),
            text::LIST
        )));
    }
    for (k, v) in labels {
        check_len(&format!("{field} key"), k, text::ITEM)?;
        check_len(&format!("{field}[{}]", shown(k)), v, text::LABEL_VALUE)?;
    }
    Ok(())
}

pub use algobay_runtime::shown;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_cuts_long_values_and_says_how_long_they_were() {
        assert_eq!(shown("short"), "short");
        let long = "é".repeat(1000);
        let s = shown(&long);
        assert!(s.ends_with("… (2000 bytes)"), "{s}");
        assert!(s.len() < 80, "{s}");
    }

    #[test]
    fn labels_over_the_count_or_length_are_refused_by_name() {
        let many: std::collections::BTreeMap<String, String> =
            (0..100).map(|i| (format!("k{i}"), "v".into())).collect();
        let e = check_labels("selector", many.iter())
            .unwrap_err()
            .to_string();
        assert!(e.contains("selector: 100 entries"), "{e}");
        let long: std::collections::BTreeMap<String, String> =
            [("site".to_string(), "x".repeat(300))].into();
        let e = check_labels("labels", long.iter()).unwrap_err().to_string();
        assert!(e.contains("labels[site]: 300 bytes"), "{e}");
    }
}
