//! `LINE.toml` and its recipes: what the production line makes, from which
//! data, by which team, for which industry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::LineError;

/// The industries the programme names; a recipe must pick from them.
pub const INDUSTRIES: &[&str] = &[
    "manufacturing",
    "medical",
    "health",
    "finance",
    "transport",
    "education",
    "security",
    "commerce",
    "construction",
    "logistics",
    "creative",
];

/// `LINE.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineFile {
    /// Recipe files, relative to LINE.toml; a name ending in `/*.toml` takes every
    /// `.toml` file of that folder.
    pub recipes: Vec<String>,
    /// The pilot's enterprises (`algobay line pilot`), relative to LINE.toml.
    #[serde(default)]
    pub enterprises: Option<String>,
    #[serde(default)]
    pub line: LineSection,
    /// Publishing teams: name → display name.
    #[serde(default)]
    pub teams: BTreeMap<String, String>,
    /// The tools kits may use: tool name → where its stage crate is and who publishes it.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolSpec>,
}

/// `[line]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineSection {
    /// Where the line keeps its state, keys, data, kits and report (relative to
    /// LINE.toml); `build/line` next to it by default.
    #[serde(default)]
    pub work: Option<String>,
    /// The Python that runs dataset extractors (`py:` sources).
    #[serde(default)]
    pub python: Option<String>,
    /// The extractor script, relative to LINE.toml.
    #[serde(default)]
    pub extractor: Option<String>,
    /// The version every artifact of the line is published under, unless a
    /// recipe says otherwise.
    #[serde(default)]
    pub version: Option<String>,
}

/// `[tools.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// The stage crate's folder (or a `.wasm` file), relative to LINE.toml.
    pub stage: String,
    pub team: String,
    /// preprocess, postprocess, …
    pub kind: String,
    pub description: String,
}

/// One recipe file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub recipe: RecipeSection,
    pub dataset: DatasetSpec,
    pub task: TaskSpec,
    /// The models to train; a linear model and two MLPs when none is listed.
    #[serde(default)]
    pub model: Vec<ModelSpec>,
    /// The features are an image's gray pixels: the line also makes kits
    /// that read a PNG or JPEG.
    #[serde(default)]
    pub image: Option<ImageSpec>,
    /// One column is text: the features are its hashed character n-grams,
    /// and the kits read a text.
    #[serde(default)]
    pub text: Option<TextSpec>,
    /// One column is a WAV recording (base64): the features are its pooled
    /// log-mel or MFCC frames, and the kits read a WAV file.
    #[serde(default)]
    pub audio: Option<AudioSpec>,
}

/// `[audio]`: the column holding base64 WAV recordings, and the features.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioSpec {
    pub column: String,
    /// The rate recordings are resampled to, Hz.
    #[serde(default = "default_rate")]
    pub rate: u32,
    /// `logmel` (the default) or `mfcc`.
    #[serde(default)]
    pub features: AudioFeatures,
    #[serde(default = "default_mels")]
    pub mels: usize,
    /// MFCC coefficients kept (`features = "mfcc"`).
    #[serde(default = "default_coefficients")]
    pub coefficients: usize,
}

fn default_rate() -> u32 {
    16_000
}
fn default_mels() -> usize {
    40
}
fn default_coefficients() -> usize {
    13
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AudioFeatures {
    #[default]
    Logmel,
    Mfcc,
}

/// `[text]`: the column holding the text, and how it is hashed.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextSpec {
    pub column: String,
    /// Buckets of the hashed n-grams (the model's input width).
    #[serde(default = "default_buckets")]
    pub buckets: usize,
    /// The longest character n-gram.
    #[serde(default = "default_ngram")]
    pub n: usize,
    /// Words instead of character n-grams: a Chinese word list in jieba's
    /// format (`word frequency [tag]` a line), relative to the recipe; the
    /// kits segment with its `keep` most frequent words (`chinese-segment`)
    /// and hash the words (`feature-hash`).
    #[serde(default)]
    pub words: Option<String>,
    #[serde(default = "default_keep")]
    pub keep: usize,
}

fn default_keep() -> usize {
    50_000
}

fn default_buckets() -> usize {
    1024
}
fn default_ngram() -> usize {
    2
}

/// `[image]`: the feature columns are the pixels of a `width` x `height`
/// gray image, row by row.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    pub width: usize,
    pub height: usize,
    /// The feature value of a white pixel (255); black is 0.
    pub white: f64,
    /// Train on histogram-equalised pictures (the kits' `equalize` step);
    /// such a recipe's kits read pictures only.
    #[serde(default)]
    pub equalize: bool,
}

/// `[recipe]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeSection {
    /// Names its artifacts: `TEAM/NAME-ARCH`.
    pub name: String,
    pub team: String,
    pub industry: String,
    pub scenario: String,
    pub description: String,
    #[serde(default)]
    pub version: Option<String>,
    /// The license kits and models are published under.
    #[serde(default = "default_license")]
    pub license: String,
}

fn default_license() -> String {
    "Apache-2.0".into()
}

/// `[dataset]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// The dataset artifact's name (under the recipe's team).
    pub name: String,
    /// `file:PATH` (a CSV with a header, relative to the recipe) or `py:KEY`
    /// (the extractor writes it).
    pub source: String,
    pub license: String,
    /// Where the data comes from: package, version, file (at most 64 characters;
    /// `description` says more).
    pub origin: String,
    /// Whether the license lets the data be published; when not, only the
    /// models are, and their cards say so.
    #[serde(default = "yes")]
    pub redistribute: bool,
    #[serde(default)]
    pub description: String,
}

fn yes() -> bool {
    true
}

/// `[task]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub kind: TaskKind,
    /// The label or target column.
    pub target: String,
    /// Feature columns; every other column but `drop` when empty.
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub drop: Vec<String>,
    /// Feature columns that hold categories (one-hot encoded); a column
    /// holding any text is one without being listed, so list only number-coded
    /// categories (a region code, say).
    #[serde(default)]
    pub categorical: Vec<String>,
    /// `hash` (by row content) or `ordered` (the last rows are the holdout:
    /// for data in time order).
    #[serde(default)]
    pub split: Split,
    /// Share of rows held out, 0.1–0.5.
    #[serde(default = "default_holdout")]
    pub holdout: f64,
    /// Remove duplicate rows before splitting (the default; turning it off is
    /// for data known to hold none).
    #[serde(default = "yes")]
    pub dedup: bool,
    /// The metric models are judged by: accuracy, macro_f1, auc (two classes)
    /// for classification; rmse, mae for regression.
    #[serde(default)]
    pub metric: Option<String>,
    /// The target's unit, shown with regression outputs.
    #[serde(default)]
    pub unit: Option<String>,
    /// Classification targets that are numbers, mapped to label text.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Category columns with a natural order (column → its categories,
    /// lowest first): the model sees the rank (`ordinal-encode`), not one
    /// one-hot column per category.
    #[serde(default)]
    pub ordinal: BTreeMap<String, Vec<String>>,
    /// Columns holding ISO 8601 dates (`YYYY-MM-DD[ HH:MM[:SS]]`): read as
    /// day numbers, the model sees their calendar features (`date-features`:
    /// year, and month, weekday, day of year and time of day as circles).
    #[serde(default)]
    pub dates: Vec<String>,
    /// How features are scaled for the model: `standard` (training mean and
    /// deviation, the default) or `minmax` (training minimum and maximum onto
    /// 0–1, bounded there: `min-max-scale`).
    #[serde(default)]
    pub scaling: Scaling,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Scaling {
    #[default]
    Standard,
    Minmax,
}

fn default_holdout() -> f64 {
    0.2
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Classification,
    Regression,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    #[default]
    Hash,
    Ordered,
}

/// `[[model]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// `linear`, `mlp` or (for `[image]` recipes) `cnn`.
    pub architecture: String,
    /// What the model's artifacts are called after the recipe's name
    /// (`TEAM/RECIPE-NAME`); the architecture when not given.
    #[serde(default)]
    pub name: Option<String>,
    /// Hidden layer sizes (mlp, and the dense layers after a cnn's convolutions).
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// A cnn's convolution channels (3x3, ReLU, 2x2 max-pool each); `[image]` recipes only.
    #[serde(default)]
    pub channels: Vec<usize>,
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default = "default_lr")]
    pub learning_rate: f64,
    #[serde(default = "default_seed")]
    pub seed: u64,
}

impl ModelSpec {
    /// The model's name within its recipe.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.architecture)
    }

    /// The architecture for people: `linear`, or `mlp 64-32` (its hidden sizes).
    pub fn describe(&self) -> String {
        let sizes = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join("-");
        match (self.channels.is_empty(), self.hidden.is_empty()) {
            (true, true) => self.architecture.clone(),
            (true, false) => format!("{} {}", self.architecture, sizes(&self.hidden)),
            (false, true) => format!("{} conv {}", self.architecture, sizes(&self.channels)),
            (false, false) => format!(
                "{} conv {} dense {}",
                self.architecture,
                sizes(&self.channels),
                sizes(&self.hidden)
            ),
        }
    }
}

fn default_epochs() -> usize {
    300
}
fn default_lr() -> f64 {
    0.02
}
fn default_seed() -> u64 {
    7
}

impl Recipe {
    /// Parses and checks a recipe; errors name the file and the field.
    pub fn parse(path: &Path, text: &str) -> Result<Recipe, LineError> {
        let bad = |m: String| LineError::Recipe {
            path: path.to_owned(),
            message: m,
        };
        let mut r: Recipe = toml::from_str(text).map_err(|e| bad(e.to_string().trim().into()))?;
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !name_ok(&r.recipe.name) {
            return Err(bad(format!(
                "recipe.name `{}` must be lowercase letters, digits and dashes",
                r.recipe.name
            )));
        }
        if !name_ok(&r.dataset.name) {
            return Err(bad(format!(
                "dataset.name `{}` must be lowercase letters, digits and dashes",
                r.dataset.name
            )));
        }
        if !INDUSTRIES.contains(&r.recipe.industry.as_str()) {
            return Err(bad(format!(
                "recipe.industry `{}` is not one of {}",
                r.recipe.industry,
                INDUSTRIES.join(", ")
            )));
        }
        if !(r.dataset.source.starts_with("file:") || r.dataset.source.starts_with("py:")) {
            return Err(bad(format!(
                "dataset.source `{}` must start with file: or py:",
                r.dataset.source
            )));
        }
        if r.dataset.origin.trim().is_empty() || r.dataset.origin.chars().count() > 64 {
            return Err(bad(format!(
                "dataset.origin must say where the data comes from in 1–64 characters (it has {}); put the rest in dataset.description",
                r.dataset.origin.chars().count()
            )));
        }
        if !(0.1..=0.5).contains(&r.task.holdout) {
            return Err(bad(format!(
                "task.holdout {} must be between 0.1 and 0.5",
                r.task.holdout
            )));
        }
        let metric = r.task.metric.clone().unwrap_or_else(|| match r.task.kind {
            TaskKind::Classification => "accuracy".into(),
            TaskKind::Regression => "rmse".into(),
        });
        let allowed: &[&str] = match r.task.kind {
            TaskKind::Classification => &["accuracy", "macro_f1", "auc"],
            TaskKind::Regression => &["rmse", "mae"],
        };
        if !allowed.contains(&metric.as_str()) {
            return Err(bad(format!(
                "task.metric `{metric}` must be one of {} for {:?}",
                allowed.join(", "),
                r.task.kind
            )));
        }
        r.task.metric = Some(metric);
        if let Some(t) = &r.text {
            if !(16..=65536).contains(&t.buckets) || !(1..=5).contains(&t.n) {
                return Err(bad(format!(
                    "text: buckets {} must be 16 to 65536 and n {} 1 to 5",
                    t.buckets, t.n
                )));
            }
            if r.image.is_some() {
                return Err(bad("a recipe is [text] or [image], not both".into()));
            }
        }
        if let Some(a) = &r.audio {
            if r.image.is_some() || r.text.is_some() {
                return Err(bad("a recipe is one of [audio], [text] and [image]".into()));
            }
            if !(4000..=48_000).contains(&a.rate)
                || !(8..=128).contains(&a.mels)
                || !(1..=a.mels).contains(&a.coefficients)
            {
                return Err(bad(format!(
                    "audio: rate {} must be 4000 to 48000 Hz, mels {} 8 to 128, coefficients {} 1 to mels",
                    a.rate, a.mels, a.coefficients
                )));
            }
        }
        if let Some(im) = &r.image {
            if !(1..=4096).contains(&(im.width * im.height)) {
                return Err(bad(format!(
                    "image is {}x{}; it must have 1 to 4096 pixels",
                    im.width, im.height
                )));
            }
            if !(im.white.is_finite() && im.white > 0.0) {
                return Err(bad(format!(
                    "image.white is {}; it must be a positive number",
                    im.white
                )));
            }
        }
        if r.model.is_empty() {
            r.model = vec![
                ModelSpec {
                    architecture: "linear".into(),
                    name: None,
                    hidden: Vec::new(),
                    channels: Vec::new(),
                    epochs: 300,
                    learning_rate: 0.05,
                    seed: 7,
                },
                ModelSpec {
                    architecture: "mlp".into(),
                    name: None,
                    hidden: vec![32],
                    channels: Vec::new(),
                    epochs: 300,
                    learning_rate: 0.01,
                    seed: 7,
                },
                ModelSpec {
                    architecture: "mlp".into(),
                    name: Some("deep-mlp".into()),
                    hidden: vec![64, 32],
                    channels: Vec::new(),
                    epochs: 300,
                    learning_rate: 0.005,
                    seed: 7,
                },
            ];
            // Pictures also get a small CNN.
            if r.image.is_some() {
                r.model.push(ModelSpec {
                    architecture: "cnn".into(),
                    name: None,
                    hidden: Vec::new(),
                    channels: vec![16, 32],
                    epochs: 200,
                    learning_rate: 0.01,
                    seed: 7,
                });
            }
        }
        let mut seen = Vec::new();
        for (i, m) in r.model.iter().enumerate() {
            match m.architecture.as_str() {
                "cnn" if r.image.is_none() => {
                    return Err(bad(format!(
                        "model[{i}]: a cnn reads pictures; the recipe needs an [image]"
                    )))
                }
                "cnn"
                    if !m.channels.is_empty()
                        && !m.channels.contains(&0)
                        && !m.hidden.contains(&0) => {}
                "cnn" => {
                    return Err(bad(format!(
                        "model[{i}]: a cnn needs non-zero `channels` (and hidden sizes)"
                    )))
                }
                _ if !m.channels.is_empty() => {
                    return Err(bad(format!("model[{i}]: only a cnn has `channels`")))
                }
                "linear" if m.hidden.is_empty() => {}
                "linear" => {
                    return Err(bad(format!(
                        "model[{i}]: a linear model has no hidden layers"
                    )))
                }
                "mlp" if !m.hidden.is_empty() && !m.hidden.contains(&0) => {}
                "mlp" => {
                    return Err(bad(format!(
                        "model[{i}]: an mlp needs non-zero hidden sizes"
                    )))
                }
                other => {
                    return Err(bad(format!(
                        "model[{i}].architecture `{other}` must be linear, mlp or cnn"
                    )))
                }
            }
            if m.epochs == 0 || m.epochs > 20_000 {
                return Err(bad(format!(
                    "model[{i}].epochs {} must be 1–20000",
                    m.epochs
                )));
            }
            let label = m.label().to_owned();
            let ok = !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(bad(format!(
                    "model[{i}].name `{label}` must be of a-z, 0-9 and -"
                )));
            }
            if seen.contains(&label) {
                return Err(bad(format!(
                    "model[{i}]: two models named `{label}` would publish under one name (give one a `name`)"
                )));
            }
            seen.push(label);
        }
        Ok(r)
    }

    /// The metric models are judged by.
    pub fn metric(&self) -> &str {
        self.task.metric.as_deref().unwrap_or("accuracy")
    }
}

impl LineFile {
    /// Reads LINE.toml; errors name the file and the field.
    pub fn read(path: &Path) -> Result<LineFile, LineError> {
        let text = std::fs::read_to_string(path).map_err(|e| LineError::Io {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let f: LineFile = toml::from_str(&text).map_err(|e| LineError::Recipe {
            path: path.to_owned(),
            message: e.to_string().trim().into(),
        })?;
        for (name, t) in &f.tools {
            if !f.teams.contains_key(&t.team) {
                return Err(LineError::Recipe {
                    path: path.to_owned(),
                    message: format!("tools.{name}.team `{}` is not one of [teams]", t.team),
                });
            }
        }
        Ok(f)
    }

    /// The recipe files LINE.toml names, in name order.
    pub fn recipe_files(&self, base: &Path) -> Result<Vec<PathBuf>, LineError> {
        let mut out = Vec::new();
        for r in &self.recipes {
            if let Some(dir) = r.strip_suffix("/*.toml") {
                let dir = base.join(dir);
                let rd = std::fs::read_dir(&dir).map_err(|e| LineError::Io {
                    path: dir.clone(),
                    message: e.to_string(),
                })?;
                let mut files: Vec<PathBuf> = rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect();
                files.sort();
                out.extend(files);
            } else {
                out.push(base.join(r));
            }
        }
        Ok(out)
    }
}
