//! Golden samples: decode their inputs, run them, compare with what must come out.

use serde_json::Value as J;

use crate::archive::KitArchive;
use crate::engine::LoadedKit;
use crate::error::{Error, Result};
use crate::manifest::{FieldTolerance, Golden, Tolerance};
use crate::value::{DType, PortType, Tensor, Value, Values};

/// Turns file bytes into a value of port type `ty`: raw for `bytes`, UTF-8 for
/// `text`, JSON text for `json`, and a JSON `{"dtype", "shape", "data"}` for tensors.
pub fn decode_input(name: &str, ty: &PortType, bytes: &[u8]) -> Result<Value> {
    let text = || std::str::from_utf8(bytes).map_err(|_| Error::input(name, "is not utf-8 text"));
    Ok(match ty {
        PortType::Bytes => Value::Bytes(bytes.to_vec()),
        PortType::Text => Value::Text(text()?.to_owned()),
        PortType::Json => {
            let t = text()?;
            serde_json::from_str::<J>(t)
                .map_err(|e| Error::input(name, format!("is not valid json: {e}")))?;
            Value::Json(t.to_owned())
        }
        PortType::Tensor { .. } => {
            let j: J = serde_json::from_slice(bytes)
                .map_err(|e| Error::input(name, format!("tensor file is not json: {e}")))?;
            Value::Tensor(tensor_from_json(name, &j)?)
        }
    })
}

/// Parses `{"dtype": "f32", "shape": [..], "data": [..]}`.
pub fn tensor_from_json(name: &str, j: &J) -> Result<Tensor> {
    let bad = |m: &str| Error::input(name, m.to_owned());
    let dtype = match j.get("dtype").and_then(J::as_str) {
        Some("f32") => DType::F32,
        Some("i64") => DType::I64,
        Some(other) => {
            return Err(bad(&format!(
                "tensor dtype `{other}` is not supported in json (use f32 or i64)"
            )))
        }
        None => return Err(bad("tensor json needs a `dtype`")),
    };
    let shape: Vec<usize> = j
        .get("shape")
        .and_then(J::as_array)
        .ok_or_else(|| bad("tensor json needs a `shape` list"))?
        .iter()
        .map(|d| {
            d.as_u64()
                .map(|d| d as usize)
                .ok_or_else(|| bad("tensor `shape` must hold non-negative integers"))
        })
        .collect::<Result<_>>()?;
    let data = j
        .get("data")
        .and_then(J::as_array)
        .ok_or_else(|| bad("tensor json needs a `data` list"))?;
    let t = match dtype {
        DType::F32 => Tensor::from_f32(
            shape,
            &data
                .iter()
                .map(|v| {
                    v.as_f64()
                        .map(|f| f as f32)
                        .ok_or_else(|| bad("tensor `data` must hold numbers"))
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        _ => Tensor::from_i64(
            shape,
            &data
                .iter()
                .map(|v| {
                    v.as_i64()
                        .ok_or_else(|| bad("tensor `data` must hold integers"))
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    t.check().map_err(|e| Error::input(name, e.to_string()))?;
    Ok(t)
}

/// The outcome of one golden sample.
#[derive(Clone, Debug)]
pub struct GoldenOutcome {
    pub index: usize,
    /// `None` when it passed; otherwise what differed.
    pub failure: Option<String>,
    pub outputs: Option<Values>,
}

/// Decodes a golden sample's inputs from the archive.
pub fn golden_inputs(archive: &KitArchive, g: &Golden) -> Result<Values> {
    let mut inputs = Values::new();
    for p in &archive.manifest.inputs {
        let d = g
            .inputs
            .get(&p.name)
            .ok_or_else(|| Error::input(&p.name, "golden sample lacks it"))?;
        inputs.insert(
            p.name.clone(),
            decode_input(&p.name, &p.ty, archive.blob(d)?)?,
        );
    }
    Ok(inputs)
}

/// Runs every golden sample of the kit.
pub fn run_golden(kit: &LoadedKit, archive: &KitArchive) -> Result<Vec<GoldenOutcome>> {
    golden_loop(kit, archive, &crate::wasm::StopSignal::default(), false)
}

/// [`run_golden`] for a checker with a budget, under a stop signal (see
/// [`LoadedKit::run_checked`]); ends at the first failing sample.
pub fn run_golden_checked(
    kit: &LoadedKit,
    archive: &KitArchive,
    stop: &crate::wasm::StopSignal,
) -> Result<Vec<GoldenOutcome>> {
    golden_loop(kit, archive, stop, true)
}

fn golden_loop(
    kit: &LoadedKit,
    archive: &KitArchive,
    stop: &crate::wasm::StopSignal,
    first_failure_ends: bool,
) -> Result<Vec<GoldenOutcome>> {
    let mut out: Vec<GoldenOutcome> = Vec::new();
    for (index, g) in archive.manifest.golden.iter().enumerate() {
        if first_failure_ends && out.iter().any(|o| o.failure.is_some()) {
            break;
        }
        let inputs = golden_inputs(archive, g)?;
        let expected: J =
            serde_json::from_slice(archive.blob(&g.expected)?).map_err(|e| Error::Golden {
                index,
                message: format!("expected output is not json: {e}"),
            })?;
        match kit.run_checked(inputs, stop).map(|(v, _)| v) {
            Err(e) => out.push(GoldenOutcome {
                index,
                failure: Some(format!("the kit failed: {e}")),
                outputs: None,
            }),
            Ok(actual) => {
                let failure = compare_outputs(&actual, &expected, &g.tolerance).err();
                out.push(GoldenOutcome {
                    index,
                    failure,
                    outputs: Some(actual),
                });
            }
        }
    }
    Ok(out)
}

/// The most mismatches one comparison lists (the count says how many more).
const MAX_MISMATCHES: usize = 50;

/// Compares outputs with an expected JSON object (output name → value).
/// Every mismatch is reported, one per line, each with its path.
pub fn compare_outputs(
    actual: &Values,
    expected: &J,
    tol: &Tolerance,
) -> std::result::Result<(), String> {
    let obj = expected
        .as_object()
        .ok_or("expected output must be a json object keyed by output name")?;
    let mut found = Mismatches::default();
    for (name, want) in obj {
        match actual.get(name) {
            None => found.push(format!("output `{name}` is missing")),
            Some(got) => {
                let t = tol.fields.get(name.as_str()).copied().unwrap_or(tol.base());
                let mut at = Place {
                    shown: format!("output `{name}`"),
                    key: name.clone(),
                    tol,
                };
                compare(&mut at, &got.to_json(), want, t, &mut found);
            }
        }
    }
    found.into_result()
}

#[derive(Default)]
struct Mismatches {
    lines: Vec<String>,
    count: usize,
}

impl Mismatches {
    fn push(&mut self, line: String) {
        self.count += 1;
        if self.lines.len() < MAX_MISMATCHES {
            self.lines.push(line);
        }
    }

    fn into_result(self) -> std::result::Result<(), String> {
        if self.count == 0 {
            return Ok(());
        }
        let mut text = self.lines.join("\n");
        if self.count > self.lines.len() {
            text.push_str(&format!(
                "\n… and {} more mismatches",
                self.count - self.lines.len()
            ));
        }
        Err(text)
    }
}

/// Where a comparison is: the path as shown (with indexes) and as the
/// per-field tolerances name it (output and keys only).
struct Place<'a> {
    shown: String,
    key: String,
    tol: &'a Tolerance,
}

impl Place<'_> {
    /// Runs `f` one level down, then comes back.
    fn down(&mut self, shown: &str, key: Option<&str>, f: impl FnOnce(&mut Self)) {
        let (s_len, k_len) = (self.shown.len(), self.key.len());
        self.shown.push_str(shown);
        if let Some(k) = key {
            self.key.push('.');
            self.key.push_str(k);
        }
        f(self);
        self.shown.truncate(s_len);
        self.key.truncate(k_len);
    }
}

fn numbers(v: &J) -> Option<Vec<f64>> {
    let arr = match v {
        J::Object(o) if o.contains_key("data") => o.get("data")?.as_array()?,
        J::Array(a) => a,
        _ => return None,
    };
    arr.iter().map(J::as_f64).collect()
}

fn compare(at: &mut Place<'_>, got: &J, want: &J, tol: FieldTolerance, found: &mut Mismatches) {
    let path = at.shown.clone();
    if let Some(min_cos) = tol.cosine {
        if let (Some(a), Some(b)) = (numbers(got), numbers(want)) {
            if a.len() != b.len() {
                found.push(format!("{path}: {} numbers, expected {}", a.len(), b.len()));
                return;
            }
            let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
            let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
            let cos = if na == 0.0 || nb == 0.0 {
                if na == nb {
                    1.0
                } else {
                    0.0
                }
            } else {
                dot / (na * nb)
            };
            if cos < min_cos {
                found.push(format!(
                    "{path}: cosine similarity {cos:.6} is below {min_cos}"
                ));
            }
            return;
        }
    }
    match (got, want) {
        (J::Number(a), J::Number(b)) => {
            let (a, b) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            let allowed = tol.abs.unwrap_or(1e-6);
            if (a - b).abs() > allowed || a.is_nan() != b.is_nan() {
                found.push(format!(
                    "{path}: got {a}, expected {b} (tolerance {allowed})"
                ));
            }
        }
        (J::Array(a), J::Array(b)) => {
            if a.len() != b.len() {
                found.push(format!("{path}: {} items, expected {}", a.len(), b.len()));
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                at.down(&format!("[{i}]"), None, |at| compare(at, x, y, tol, found));
            }
        }
        (J::Object(a), J::Object(b)) => {
            for (k, y) in b {
                match a.get(k) {
                    None => found.push(format!("{path}.{k} is missing")),
                    Some(x) => at.down(&format!(".{k}"), Some(k), |at| {
                        let t = at.tol.fields.get(at.key.as_str()).copied().unwrap_or(tol);
                        compare(at, x, y, t, found)
                    }),
                }
            }
        }
        (a, b) if a == b => {}
        (a, b) => found.push(format!("{path}: got {a}, expected {b}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_within_tolerance_pass_and_outside_fail_with_path() {
        let tol = Tolerance {
            abs: Some(0.01),
            ..Tolerance::default()
        };
        let got = Values::from([(
            "r".into(),
            Value::Json(r#"[{"text":"hi","score":0.905}]"#.into()),
        )]);
        assert!(compare_outputs(
            &got,
            &serde_json::json!({"r": [{"text": "hi", "score": 0.9}]}),
            &tol
        )
        .is_ok());
        let err = compare_outputs(
            &got,
            &serde_json::json!({"r": [{"text": "hi", "score": 0.8}]}),
            &tol,
        )
        .unwrap_err();
        assert!(err.contains("output `r`[0].score"), "{err}");
        let err = compare_outputs(
            &got,
            &serde_json::json!({"r": [{"text": "ho", "score": 0.9}]}),
            &tol,
        )
        .unwrap_err();
        assert!(err.contains("[0].text") && err.contains("\"ho\""), "{err}");
    }

    #[test]
    fn cosine_tolerance_compares_tensors_by_direction() {
        let tol = Tolerance {
            cosine: Some(0.999),
            ..Tolerance::default()
        };
        let got = Values::from([(
            "e".into(),
            Value::Tensor(Tensor::from_f32(vec![1, 3], &[1.0, 2.0, 3.0])),
        )]);
        let near =
            serde_json::json!({"e": {"dtype": "f32", "shape": [1, 3], "data": [1.001, 2.0, 3.0]}});
        assert!(compare_outputs(&got, &near, &tol).is_ok());
        let far =
            serde_json::json!({"e": {"dtype": "f32", "shape": [1, 3], "data": [3.0, 2.0, 1.0]}});
        assert!(compare_outputs(&got, &far, &tol)
            .unwrap_err()
            .contains("cosine"));
    }

    fn detections() -> Values {
        Values::from([(
            "d".into(),
            Value::Json(
                r#"[{"box":[10.4,20.6,30.0,40.2],"score":0.91,"label":"face"},
                    {"box":[50.0,60.0,70.0,80.0],"score":0.52,"label":"face"}]"#
                    .into(),
            ),
        )])
    }

    #[test]
    fn each_field_takes_the_tolerance_of_the_longest_path_that_names_it() {
        // Pixel boxes to a pixel, scores to a hundredth, in one sample.
        let tol: Tolerance = serde_json::from_value(serde_json::json!({
            "abs": 0.01,
            "fields": {"d.box": {"abs": 1.0}}
        }))
        .unwrap();
        let want = serde_json::json!({"d": [
            {"box": [10, 21, 30, 40], "score": 0.905, "label": "face"},
            {"box": [50.9, 60, 70, 79.5], "score": 0.515}
        ]});
        compare_outputs(&detections(), &want, &tol).unwrap();
        // The box's tolerance does not reach the score beside it.
        let want = serde_json::json!({"d": [{"box": [10, 21, 30, 40], "score": 0.5}, {}]});
        let err = compare_outputs(&detections(), &want, &tol).unwrap_err();
        assert!(
            err.contains("output `d`[0].score") && err.contains("tolerance 0.01"),
            "{err}"
        );
        // An output's own entry covers everything under it.
        let tol: Tolerance =
            serde_json::from_value(serde_json::json!({"fields": {"d": {"abs": 1.0}}})).unwrap();
        let want = serde_json::json!({"d": [{"box": [10, 21, 30, 40], "score": 0.5}, {}]});
        compare_outputs(&detections(), &want, &tol).unwrap();
    }

    #[test]
    fn every_mismatch_is_reported_with_its_path() {
        let want = serde_json::json!({
            "d": [
                {"box": [11, 20.6, 30, 40.2], "score": 0.5, "label": "cat"},
                {"box": [50, 60, 70, 80], "score": 0.52, "label": "face", "extra": 1}
            ],
            "missing": 1
        });
        let err = compare_outputs(&detections(), &want, &Tolerance::default()).unwrap_err();
        let lines: Vec<&str> = err.lines().collect();
        for part in [
            "output `d`[0].box[0]: got 10.4, expected 11",
            "output `d`[0].score",
            "output `d`[0].label: got \"face\", expected \"cat\"",
            "output `d`[1].extra is missing",
            "output `missing` is missing",
        ] {
            assert!(
                lines.iter().any(|l| l.contains(part)),
                "{part} not in:\n{err}"
            );
        }
        assert_eq!(lines.len(), 5, "{err}");
    }

    #[test]
    fn a_long_list_of_mismatches_is_cut_with_a_count() {
        let got = Values::from([(
            "t".into(),
            Value::Tensor(Tensor::from_f32(vec![1, 80], &[0.0; 80])),
        )]);
        let want = serde_json::json!({"t": {"data": vec![1.0; 80]}});
        let err = compare_outputs(&got, &want, &Tolerance::default()).unwrap_err();
        assert_eq!(err.lines().count(), MAX_MISMATCHES + 1, "{err}");
        assert!(err.ends_with("and 30 more mismatches"), "{err}");
    }

    #[test]
    fn tolerances_with_bad_values_or_paths_are_refused() {
        let t: Tolerance =
            serde_json::from_value(serde_json::json!({"fields": {"d..box": {"abs": 1}}})).unwrap();
        assert!(t
            .check("golden[0].tolerance")
            .unwrap_err()
            .contains("d..box"));
        let t: Tolerance =
            serde_json::from_value(serde_json::json!({"fields": {"d": {"abs": -1}}})).unwrap();
        assert!(t.check("golden[0].tolerance").unwrap_err().contains("abs"));
        assert!(serde_json::from_value::<Tolerance>(
            serde_json::json!({"fields": {"d": {"relative": 1}}})
        )
        .is_err());
    }

    #[test]
    fn tensor_json_rejects_wrong_length() {
        let j = serde_json::json!({"dtype": "f32", "shape": [2, 2], "data": [1, 2, 3]});
        assert!(tensor_from_json("x", &j)
            .unwrap_err()
            .to_string()
            .contains("input `x`"));
    }
}
