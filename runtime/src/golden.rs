//! Golden samples: decode their inputs, run them, compare with what must come out.

use serde_json::Value as J;

use crate::archive::KitArchive;
use crate::engine::LoadedKit;
use crate::error::{Error, Result};
use crate::manifest::{Golden, Tolerance};
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

/// Compares outputs with an expected JSON object (output name → value).
pub fn compare_outputs(
    actual: &Values,
    expected: &J,
    tol: &Tolerance,
) -> std::result::Result<(), String> {
    let obj = expected
        .as_object()
        .ok_or("expected output must be a json object keyed by output name")?;
    for (name, want) in obj {
        let got = actual
            .get(name)
            .ok_or_else(|| format!("output `{name}` is missing"))?;
        compare(&format!("output `{name}`"), &got.to_json(), want, tol)?;
    }
    Ok(())
}

fn numbers(v: &J) -> Option<Vec<f64>> {
    let arr = match v {
        J::Object(o) if o.contains_key("data") => o.get("data")?.as_array()?,
        J::Array(a) => a,
        _ => return None,
    };
    arr.iter().map(J::as_f64).collect()
}

fn compare(path: &str, got: &J, want: &J, tol: &Tolerance) -> std::result::Result<(), String> {
    if let Some(min_cos) = tol.cosine {
        if let (Some(a), Some(b)) = (numbers(got), numbers(want)) {
            if a.len() != b.len() {
                return Err(format!("{path}: {} numbers, expected {}", a.len(), b.len()));
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
                return Err(format!(
                    "{path}: cosine similarity {cos:.6} is below {min_cos}"
                ));
            }
            return Ok(());
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
                return Err(format!(
                    "{path}: got {a}, expected {b} (tolerance {allowed})"
                ));
            }
            Ok(())
        }
        (J::Array(a), J::Array(b)) => {
            if a.len() != b.len() {
                return Err(format!("{path}: {} items, expected {}", a.len(), b.len()));
            }
            a.iter()
                .zip(b)
                .enumerate()
                .try_for_each(|(i, (x, y))| compare(&format!("{path}[{i}]"), x, y, tol))
        }
        (J::Object(a), J::Object(b)) => {
            for (k, y) in b {
                let x = a.get(k).ok_or_else(|| format!("{path}.{k} is missing"))?;
                compare(&format!("{path}.{k}"), x, y, tol)?;
            }
            Ok(())
        }
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!("{path}: got {a}, expected {b}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_within_tolerance_pass_and_outside_fail_with_path() {
        let tol = Tolerance {
            abs: Some(0.01),
            cosine: None,
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
            abs: None,
            cosine: Some(0.999),
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

    #[test]
    fn tensor_json_rejects_wrong_length() {
        let j = serde_json::json!({"dtype": "f32", "shape": [2, 2], "data": [1, 2, 3]});
        assert!(tensor_from_json("x", &j)
            .unwrap_err()
            .to_string()
            .contains("input `x`"));
    }
}
