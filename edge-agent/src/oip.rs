//! The Open Inference Protocol (KServe v2, as Triton speaks it), independent of
//! transport: a kit is one model (named by its kit name without the team,
//! versioned by the kit version); its ports map to tensors. Tensor ports keep
//! their element type and shape (`?` is -1); `bytes`, `text` and `json` ports
//! are `BYTES` tensors of one element (a JSON output is its JSON text).
//!
//! Tensor data arrives in one form here: row-major little-endian bytes, `BYTES`
//! elements each prefixed by their length (u32, little endian), which is what
//! the gRPC `raw_*_contents` and the HTTP binary extension carry. JSON data is
//! converted to and from that form.

use algobay_runtime::value::Dim;
use algobay_runtime::{DType, PortType, Tensor, Value};

/// What a request can fail with, by kind (each transport maps it to its codes).
#[derive(Debug, thiserror::Error)]
pub enum OipError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// No kit is active.
    #[error("{0}")]
    Unavailable(String),
    /// Too many requests waiting.
    #[error("{0}")]
    Overloaded(String),
    /// The kit failed on this input.
    #[error("{0}")]
    Failed(String),
    /// Already done, and not to be done again (feedback on a request that has it).
    #[error("{0}")]
    Conflict(String),
}

/// Most input tensors in one request, and most outputs asked for.
pub const MAX_TENSORS: usize = 64;

/// Most dimensions of a tensor.
pub const MAX_RANK: usize = 16;

pub use algobay_runtime::shown;

/// Checks the shape of a request before anything runs: a bounded number of
/// inputs and outputs, each input named once, shapes of bounded rank.
pub fn check_request(inputs: &[RawTensor], wanted: &[String]) -> Result<(), OipError> {
    if inputs.len() > MAX_TENSORS || wanted.len() > MAX_TENSORS {
        return Err(OipError::BadRequest(format!(
            "{} inputs and {} outputs asked for, over the limit of {MAX_TENSORS} each",
            inputs.len(),
            wanted.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, t) in inputs.iter().enumerate() {
        if !seen.insert(t.name.as_str()) {
            return Err(OipError::BadRequest(format!(
                "inputs[{i}]: input `{}` is given more than once",
                shown(&t.name)
            )));
        }
        if t.shape.len() > MAX_RANK || t.shape.iter().any(|d| *d < 0) {
            return Err(OipError::BadRequest(format!(
                "inputs[{i}]: shape of `{}` must be at most {MAX_RANK} dimensions, none negative",
                shown(&t.name)
            )));
        }
    }
    Ok(())
}

/// A tensor as the protocol names it, with its data in raw form.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub raw: Vec<u8>,
}

/// The protocol's datatype of a tensor element type.
pub fn datatype(d: DType) -> &'static str {
    match d {
        DType::F32 => "FP32",
        DType::F16 => "FP16",
        DType::I64 => "INT64",
        DType::I32 => "INT32",
        DType::U8 => "UINT8",
        DType::I8 => "INT8",
        DType::Bool => "BOOL",
    }
}

pub(crate) fn dtype_of(datatype: &str) -> Option<DType> {
    Some(match datatype {
        "FP32" => DType::F32,
        "FP16" => DType::F16,
        "INT64" => DType::I64,
        "INT32" => DType::I32,
        "UINT8" => DType::U8,
        "INT8" => DType::I8,
        "BOOL" => DType::Bool,
        _ => return None,
    })
}

/// Datatype and shape of a port type, as model metadata shows them.
pub fn port_metadata(ty: &PortType) -> (String, Vec<i64>) {
    match ty {
        PortType::Tensor { dtype, shape } => (
            datatype(*dtype).into(),
            shape
                .iter()
                .map(|d| match d {
                    Dim::Fixed(n) => *n as i64,
                    Dim::Any => -1,
                })
                .collect(),
        ),
        _ => ("BYTES".into(), vec![1]),
    }
}

/// (name, datatype, shape) of each port, as model metadata lists them.
pub fn ports_metadata(
    ports: &[algobay_runtime::manifest::KitPort],
) -> Vec<(String, String, Vec<i64>)> {
    ports
        .iter()
        .map(|p| {
            let (datatype, shape) = port_metadata(&p.ty);
            (p.name.clone(), datatype, shape)
        })
        .collect()
}

/// `BYTES` elements in raw form.
pub fn bytes_elements(raw: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err("a BYTES element's 4-byte length is cut short".into());
        }
        let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest.len() < 4 + n {
            return Err(format!(
                "a BYTES element claims {n} bytes but {} are left",
                rest.len() - 4
            ));
        }
        out.push(&rest[4..4 + n]);
        rest = &rest[4 + n..];
    }
    Ok(out)
}

fn bytes_raw(elements: &[&[u8]]) -> Vec<u8> {
    let mut raw = Vec::new();
    for e in elements {
        raw.extend_from_slice(&(e.len() as u32).to_le_bytes());
        raw.extend_from_slice(e);
    }
    raw
}

/// A request tensor as the value an input port of type `ty` takes.
pub fn to_value(ty: &PortType, t: &RawTensor) -> Result<Value, OipError> {
    let bad = |m: String| OipError::BadRequest(format!("input `{}`: {m}", t.name));
    if t.shape.iter().any(|d| *d < 0) {
        return Err(bad(format!("shape {:?} has a negative dimension", t.shape)));
    }
    match ty {
        PortType::Tensor { dtype, .. } => {
            let want = datatype(*dtype);
            if t.datatype != want {
                return Err(bad(format!(
                    "datatype {} where the kit takes {want}",
                    t.datatype
                )));
            }
            let shape: Vec<usize> = t.shape.iter().map(|d| *d as usize).collect();
            Tensor::new(*dtype, shape, t.raw.clone())
                .map(Value::Tensor)
                .map_err(|e| bad(e.to_string()))
        }
        other => {
            if t.datatype != "BYTES" {
                return Err(bad(format!(
                    "datatype {} where the kit takes BYTES (one element)",
                    t.datatype
                )));
            }
            let elements = bytes_elements(&t.raw).map_err(bad)?;
            if elements.len() != 1 || t.shape.iter().product::<i64>() != 1 {
                return Err(bad(format!(
                    "{} elements (shape {:?}) where the kit takes one",
                    elements.len(),
                    t.shape
                )));
            }
            let b = elements[0].to_vec();
            match other {
                PortType::Bytes => Ok(Value::Bytes(b)),
                PortType::Text => String::from_utf8(b)
                    .map(Value::Text)
                    .map_err(|_| bad("text is not UTF-8".into())),
                _ => {
                    let s = String::from_utf8(b).map_err(|_| bad("json is not UTF-8".into()))?;
                    serde_json::from_str::<serde_json::Value>(&s)
                        .map_err(|e| bad(format!("not JSON: {e}")))?;
                    Ok(Value::Json(s))
                }
            }
        }
    }
}

/// An output value as a response tensor.
pub fn from_value(name: &str, v: &Value) -> RawTensor {
    let (datatype, shape, raw) = match v {
        Value::Tensor(t) => (
            datatype(t.dtype).to_owned(),
            t.shape.iter().map(|d| *d as i64).collect(),
            t.data.clone(),
        ),
        Value::Bytes(b) => ("BYTES".into(), vec![1], bytes_raw(&[b])),
        Value::Text(s) | Value::Json(s) => ("BYTES".into(), vec![1], bytes_raw(&[s.as_bytes()])),
    };
    RawTensor {
        name: name.to_owned(),
        datatype,
        shape,
        raw,
    }
}

fn flatten<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
    match v {
        serde_json::Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
        other => out.push(other),
    }
}

/// How the strings of a `BYTES` tensor's JSON `data` carry its bytes.
///
/// Triton and the protocol itself take each string as the element's bytes
/// (UTF-8). MLServer's codecs (also described by KServe) mark base64 with the
/// tensor's `parameters.content_type: "base64"`; this server does the same,
/// and marks its own outputs that way when their bytes are not UTF-8 text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BytesForm {
    Utf8,
    Base64,
}

impl BytesForm {
    /// The form a tensor's `parameters` say, or an error naming the value.
    pub fn of(name: &str, params: Option<&serde_json::Value>) -> Result<BytesForm, OipError> {
        match params.and_then(|p| p.get("content_type")) {
            None => Ok(BytesForm::Utf8),
            Some(v) => match v.as_str() {
                Some("base64") => Ok(BytesForm::Base64),
                Some("str" | "string" | "text/plain") => Ok(BytesForm::Utf8),
                _ => Err(OipError::BadRequest(format!(
                    "input `{}`: parameters.content_type {} is not one this server takes (\"base64\" or \"str\")",
                    shown(name),
                    shown(&v.to_string())
                ))),
            },
        }
    }
}

/// JSON `data` (flat or nested, row-major) in raw form.
pub fn json_to_raw(
    name: &str,
    datatype: &str,
    data: &serde_json::Value,
) -> Result<Vec<u8>, OipError> {
    json_to_raw_as(name, datatype, data, BytesForm::Utf8)
}

/// [`json_to_raw`] with `BYTES` strings read in the given form.
pub fn json_to_raw_as(
    name: &str,
    datatype: &str,
    data: &serde_json::Value,
    form: BytesForm,
) -> Result<Vec<u8>, OipError> {
    let bad = |m: String| OipError::BadRequest(format!("input `{name}`: {m}"));
    let mut items = Vec::new();
    flatten(data, &mut items);
    if datatype == "BYTES" {
        let mut parts: Vec<std::borrow::Cow<'_, [u8]>> = Vec::with_capacity(items.len());
        for (i, x) in items.iter().enumerate() {
            let s = x
                .as_str()
                .ok_or_else(|| bad("BYTES data must be strings".into()))?;
            parts.push(match form {
                BytesForm::Utf8 => s.as_bytes().into(),
                BytesForm::Base64 => {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD
                        .decode(s.trim())
                        .map_err(|e| {
                            bad(format!(
                                "element {i} is not base64 (content_type is \"base64\"): {e}"
                            ))
                        })?
                        .into()
                }
            });
        }
        let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_ref()).collect();
        return Ok(bytes_raw(&parts));
    }
    if form == BytesForm::Base64 {
        return Err(bad(format!(
            "parameters.content_type \"base64\" applies to BYTES tensors, not {datatype}"
        )));
    }
    let dtype = dtype_of(datatype).ok_or_else(|| {
        bad(format!(
            "datatype `{datatype}` is not one this server takes"
        ))
    })?;
    let mut raw = Vec::with_capacity(items.len() * dtype.size());
    for x in items {
        let num = || {
            x.as_f64()
                .ok_or_else(|| bad(format!("`{x}` is not a number")))
        };
        match dtype {
            DType::F32 => raw.extend_from_slice(&(num()? as f32).to_le_bytes()),
            DType::F16 => raw.extend_from_slice(&half::f16::from_f64(num()?).to_le_bytes()),
            DType::I64 => raw.extend_from_slice(&(num()? as i64).to_le_bytes()),
            DType::I32 => raw.extend_from_slice(&(num()? as i32).to_le_bytes()),
            DType::U8 => raw.push(num()? as u8),
            DType::I8 => raw.push((num()? as i8) as u8),
            DType::Bool => raw.push(
                x.as_bool()
                    .ok_or_else(|| bad(format!("`{x}` is not a boolean")))? as u8,
            ),
        }
    }
    Ok(raw)
}

/// The form a `BYTES` output takes in JSON: its strings as they are when every
/// element is UTF-8 text, else base64 (marked with `content_type`).
pub fn output_form(t: &RawTensor) -> BytesForm {
    let text = t.datatype != "BYTES"
        || bytes_elements(&t.raw)
            .unwrap_or_default()
            .iter()
            .all(|e| std::str::from_utf8(e).is_ok());
    if text {
        BytesForm::Utf8
    } else {
        BytesForm::Base64
    }
}

/// Raw data as JSON `data` (flat): numbers, booleans, or strings for `BYTES`
/// (base64 when [`output_form`] says so).
pub fn raw_to_json(t: &RawTensor) -> serde_json::Value {
    use serde_json::Value as J;
    if t.datatype == "BYTES" {
        let form = output_form(t);
        return J::Array(
            bytes_elements(&t.raw)
                .unwrap_or_default()
                .into_iter()
                .map(|e| {
                    J::String(match form {
                        BytesForm::Utf8 => String::from_utf8_lossy(e).into_owned(),
                        BytesForm::Base64 => {
                            use base64::Engine as _;
                            base64::engine::general_purpose::STANDARD.encode(e)
                        }
                    })
                })
                .collect(),
        );
    }
    let Some(dtype) = dtype_of(&t.datatype) else {
        return J::Null;
    };
    let c = t.raw.chunks_exact(dtype.size());
    J::Array(match dtype {
        DType::F32 => c
            .map(|b| J::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64))
            .collect(),
        DType::F16 => c
            .map(|b| J::from(half::f16::from_le_bytes([b[0], b[1]]).to_f64()))
            .collect(),
        DType::I64 => c
            .map(|b| J::from(i64::from_le_bytes(b.try_into().unwrap_or([0; 8]))))
            .collect(),
        DType::I32 => c
            .map(|b| J::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect(),
        DType::U8 => c.map(|b| J::from(b[0])).collect(),
        DType::I8 => c.map(|b| J::from(b[0] as i8)).collect(),
        DType::Bool => c.map(|b| J::from(b[0] != 0)).collect(),
    })
}

/// An infer request of the protocol's HTTP form, decoded.
#[derive(Debug)]
pub struct HttpInfer {
    pub tensors: Vec<RawTensor>,
    pub wanted: Vec<String>,
    pub binary_out: std::collections::BTreeSet<String>,
    pub all_binary: bool,
    pub id: Option<serde_json::Value>,
}

fn binary_flag(params: &serde_json::Value, key: &str) -> bool {
    params.get(key).and_then(|v| v.as_bool()).unwrap_or(false)
}

/// Decodes an infer request of the HTTP form: its JSON (the first `json_len`
/// bytes of `body`), then the binary tensor data that follows it, if any
/// (the binary extension: each input's `parameters.binary_data_size` bytes, in order).
/// JSON tensor data is read straight into typed buffers ([`crate::oip_json`]),
/// never into a JSON tree.
pub fn parse_http_infer(body: &[u8], json_len: usize) -> Result<HttpInfer, OipError> {
    use crate::oip_json::{self, Plan};
    if json_len > body.len() {
        return Err(OipError::BadRequest(format!(
            "the JSON header is said to be {json_len} bytes of a {}-byte body",
            body.len()
        )));
    }
    let json = &body[..json_len];
    let req = oip_json::head(json)?;
    let mut binary = &body[json_len..];
    let Some(inputs) = req.inputs else {
        return Err(OipError::BadRequest(
            "`inputs` must be a list of tensors".into(),
        ));
    };
    if inputs.len() > MAX_TENSORS {
        return Err(OipError::BadRequest(format!(
            "{} inputs, over the limit of {}",
            inputs.len(),
            MAX_TENSORS
        )));
    }
    // Every input's fields are checked before any data is read.
    let mut heads = Vec::with_capacity(inputs.len());
    let mut plans = Vec::with_capacity(inputs.len());
    for (i, t) in inputs.into_iter().enumerate() {
        let name = t.name.unwrap_or_default();
        let datatype = t.datatype.unwrap_or_default();
        let shape: Option<Vec<i64>> = t
            .shape
            .as_ref()
            .and_then(|v| v.as_array())
            .and_then(|a| a.iter().map(|d| d.as_i64()).collect());
        let (Some(shape), false, false) = (shape, name.is_empty(), datatype.is_empty()) else {
            return Err(OipError::BadRequest(format!(
                "inputs[{i}] needs `name`, `datatype` and `shape` (a list of integers)"
            )));
        };
        let size = t
            .parameters
            .as_ref()
            .and_then(|p| p.get("binary_data_size"))
            .and_then(|v| v.as_u64());
        let plan = match (size, t.data) {
            (Some(_), true) => {
                return Err(OipError::BadRequest(format!(
                    "input `{}` has both `data` and `parameters.binary_data_size`; send one",
                    shown(&name)
                )))
            }
            (Some(_), false) => Plan::Skip,
            (None, true) => {
                let form = BytesForm::of(&name, t.parameters.as_ref())?;
                oip_json::plan(&name, &datatype, form)?
            }
            (None, false) => {
                return Err(OipError::BadRequest(format!(
                    "input `{}` has neither `data` nor `parameters.binary_data_size`",
                    shown(&name)
                )))
            }
        };
        let reserve = oip_json::capacity(&shape, plan, json_len);
        plans.push((name.clone(), plan, reserve));
        heads.push((name, datatype, shape, size));
    }
    let mut decoded = if plans.iter().any(|p| !matches!(p.1, Plan::Skip)) {
        oip_json::data(json, &plans)?
    } else {
        vec![None; plans.len()]
    };
    let mut tensors = Vec::with_capacity(heads.len());
    for (i, (name, datatype, shape, size)) in heads.into_iter().enumerate() {
        let raw = match size {
            Some(n) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if n > binary.len() {
                    return Err(OipError::BadRequest(format!(
                        "input `{}`: binary_data_size {n} is more than the {} bytes left",
                        shown(&name),
                        binary.len()
                    )));
                }
                let (head, rest) = binary.split_at(n);
                binary = rest;
                head.to_vec()
            }
            None => decoded[i].take().unwrap_or_default(),
        };
        tensors.push(RawTensor {
            name,
            datatype,
            shape,
            raw,
        });
    }
    let all_binary = req
        .parameters
        .as_ref()
        .map(|p| binary_flag(p, "binary_data_output"))
        .unwrap_or(false);
    let mut wanted = Vec::new();
    let mut binary_out = std::collections::BTreeSet::new();
    for o in req
        .outputs
        .as_ref()
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        if let Some(n) = o.get("name").and_then(|v| v.as_str()) {
            wanted.push(n.to_owned());
            if o.get("parameters")
                .is_some_and(|p| binary_flag(p, "binary_data"))
            {
                binary_out.insert(n.to_owned());
            }
        }
    }
    if !binary.is_empty() {
        return Err(OipError::BadRequest(format!(
            "{} bytes of binary data follow the last input's",
            binary.len()
        )));
    }
    Ok(HttpInfer {
        tensors,
        wanted,
        binary_out,
        all_binary,
        id: req.id,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn port(ty: &str) -> PortType {
        ty.parse().unwrap()
    }

    #[test]
    fn bytes_in_json_are_base64_when_the_tensor_says_so_and_literal_otherwise() {
        let body = |params: serde_json::Value, data: serde_json::Value| {
            serde_json::to_vec(&serde_json::json!({"inputs": [
                {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": params, "data": data}
            ]}))
            .unwrap()
        };
        let b = body(
            serde_json::json!({"content_type": "base64"}),
            serde_json::json!(["AP+AAQ=="]),
        );
        let got = parse_http_infer(&b, b.len()).unwrap();
        assert_eq!(
            bytes_elements(&got.tensors[0].raw).unwrap(),
            [&[0u8, 255, 128, 1][..]]
        );
        let b = body(serde_json::json!({}), serde_json::json!(["AP+AAQ=="]));
        let got = parse_http_infer(&b, b.len()).unwrap();
        assert_eq!(
            bytes_elements(&got.tensors[0].raw).unwrap(),
            [&b"AP+AAQ=="[..]]
        );
        let b = body(
            serde_json::json!({"content_type": "base64"}),
            serde_json::json!(["not base64!"]),
        );
        let e = parse_http_infer(&b, b.len()).unwrap_err().to_string();
        assert!(e.contains("input `image`: element 0 is not base64"), "{e}");
        let b = body(
            serde_json::json!({"content_type": "gzip"}),
            serde_json::json!(["x"]),
        );
        let e = parse_http_infer(&b, b.len()).unwrap_err().to_string();
        assert!(e.contains("parameters.content_type \"gzip\""), "{e}");
        let e = json_to_raw_as("x", "FP32", &serde_json::json!([1.0]), BytesForm::Base64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("applies to BYTES tensors, not FP32"), "{e}");
    }

    #[test]
    fn bytes_outputs_that_are_not_text_go_out_as_marked_base64() {
        let t = |elements: &[&[u8]]| RawTensor {
            name: "o".into(),
            datatype: "BYTES".into(),
            shape: vec![1],
            raw: bytes_raw(elements),
        };
        let binary = t(&[&[0xff, 0x00]]);
        assert_eq!(output_form(&binary), BytesForm::Base64);
        assert_eq!(raw_to_json(&binary), serde_json::json!(["/wA="]));
        let text = t(&[b"hello"]);
        assert_eq!(output_form(&text), BytesForm::Utf8);
        assert_eq!(raw_to_json(&text), serde_json::json!(["hello"]));
    }

    #[test]
    fn json_tensors_round_trip_through_raw_form() {
        let raw = json_to_raw("x", "FP32", &serde_json::json!([[1.5, 2.0], [3.0, -4.25]])).unwrap();
        let t = RawTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![2, 2],
            raw,
        };
        let v = to_value(&port("f32[?,2]"), &t).unwrap();
        let back = from_value("y", &v);
        assert_eq!(back.shape, vec![2, 2]);
        assert_eq!(
            raw_to_json(&back),
            serde_json::json!([1.5, 2.0, 3.0, -4.25])
        );
    }

    #[test]
    fn bytes_ports_take_one_element_and_check_it() {
        let raw = json_to_raw("x", "BYTES", &serde_json::json!(["{\"a\": 1}"])).unwrap();
        let t = RawTensor {
            name: "x".into(),
            datatype: "BYTES".into(),
            shape: vec![1],
            raw,
        };
        assert_eq!(
            to_value(&port("json"), &t).unwrap(),
            Value::Json("{\"a\": 1}".into())
        );
        let not_json = RawTensor {
            raw: bytes_raw(&[b"{oops"]),
            ..t.clone()
        };
        let err = to_value(&port("json"), &not_json).unwrap_err().to_string();
        assert!(err.starts_with("input `x`: not JSON"), "{err}");
        let two = RawTensor {
            raw: bytes_raw(&[b"a", b"b"]),
            shape: vec![2],
            ..t.clone()
        };
        assert!(to_value(&port("text"), &two)
            .unwrap_err()
            .to_string()
            .contains("2 elements"));
        let cut = RawTensor {
            raw: vec![9, 0, 0, 0, b'a'],
            ..t
        };
        assert!(to_value(&port("bytes"), &cut)
            .unwrap_err()
            .to_string()
            .contains("claims 9 bytes"));
    }

    #[test]
    fn json_data_decodes_the_same_nested_or_flat_and_whatever_the_key_order() {
        let flat =
            br#"{"inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[1,2.5,-3,4e2]}]}"#;
        let nested = br#"{"inputs":[{"data":[[1,2.5],[-3,400]],"shape":[2,2],"name":"x","datatype":"FP32"}],"id":"r1"}"#;
        let a = parse_http_infer(flat, flat.len()).unwrap();
        let b = parse_http_infer(nested, nested.len()).unwrap();
        assert_eq!(a.tensors[0].raw, b.tensors[0].raw);
        let want: Vec<u8> = [1.0f32, 2.5, -3.0, 400.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(a.tensors[0].raw, want);
        assert_eq!(b.id, Some(serde_json::json!("r1")));
        // A shape that overstates its data reserves no more than the text allows.
        let liar =
            br#"{"inputs":[{"name":"x","datatype":"INT64","shape":[1000000000000],"data":[7]}]}"#;
        let c = parse_http_infer(liar, liar.len()).unwrap();
        assert_eq!(c.tensors[0].raw, 7i64.to_le_bytes());
        assert!(c.tensors[0].raw.capacity() <= liar.len() * 8);
        // Booleans, strings and nulls where they do not belong are named.
        for (body, says) in [
            (
                &br#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[true]}]}"#[..],
                "`true` is not a number",
            ),
            (
                &br#"{"inputs":[{"name":"x","datatype":"BOOL","shape":[1],"data":[1]}]}"#[..],
                "is not a boolean",
            ),
            (
                &br#"{"inputs":[{"name":"x","datatype":"BYTES","shape":[1],"data":[1]}]}"#[..],
                "BYTES data must be strings",
            ),
            (
                &br#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[null]}]}"#[..],
                "null",
            ),
            (
                &br#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1}]}"#[..],
                "not JSON",
            ),
            (&br#"{"inputs":{"name":"x"}}"#[..], "not valid"),
        ] {
            let e = parse_http_infer(body, body.len()).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn wrong_datatype_or_size_is_named() {
        let t = RawTensor {
            name: "pixels".into(),
            datatype: "INT64".into(),
            shape: vec![1, 64],
            raw: vec![0; 512],
        };
        let err = to_value(&port("f32[1,64]"), &t).unwrap_err().to_string();
        assert!(
            err.contains("datatype INT64 where the kit takes FP32"),
            "{err}"
        );
        let short = RawTensor {
            datatype: "FP32".into(),
            raw: vec![0; 12],
            ..t
        };
        let err = to_value(&port("f32[1,64]"), &short)
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs 256 bytes"), "{err}");
    }
}

/// A new request id: 32 hex digits, 128 random bits from the system's
/// generator, so that no client can guess another's (feedback names a
/// request by it).
pub fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A request id a caller gave: 1 to 128 visible ASCII characters.
pub fn check_request_id(id: &str) -> Result<(), OipError> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(OipError::BadRequest(format!(
            "request id `{}`: must be 1 to 128 visible ASCII characters",
            shown(id)
        )));
    }
    Ok(())
}
