//! The protocol's JSON infer request, decoded without a JSON tree.
//!
//! A JSON tensor held as `serde_json::Value` costs about 8 times its text
//! (each number a 32-byte node in a vector of its own). Here the request is
//! read twice from its bytes instead: a first pass keeps every field but the
//! tensors' `data` (skipped without allocating), so each input's datatype and
//! byte form are known; a second pass reads each `data` straight into the
//! input's raw buffer (row-major little-endian elements, or length-prefixed
//! `BYTES`), nested lists flattened as they come. Memory is then the body
//! plus the raw tensors: for `FP32` about half of the text.

use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use algobay_runtime::DType;

use crate::oip::{dtype_of, BytesForm, OipError};

/// An input tensor's fields other than its `data`.
#[derive(Deserialize)]
pub(crate) struct TensorHead {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub datatype: Option<String>,
    #[serde(default)]
    pub shape: Option<serde_json::Value>,
    #[serde(default)]
    pub parameters: Option<serde_json::Value>,
    /// Whether `data` is there (its value is read by the second pass).
    #[serde(default, deserialize_with = "present")]
    pub data: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(d).map(|_| true)
}

/// The request's fields other than the inputs' `data`.
#[derive(Deserialize)]
pub(crate) struct RequestHead {
    #[serde(default)]
    pub inputs: Option<Vec<TensorHead>>,
    #[serde(default)]
    pub outputs: Option<serde_json::Value>,
    #[serde(default)]
    pub parameters: Option<serde_json::Value>,
    #[serde(default)]
    pub id: Option<serde_json::Value>,
}

/// How one input's `data` is read.
#[derive(Clone, Copy)]
pub(crate) enum Plan {
    /// Not read (the input has no `data`, or sends it in binary).
    Skip,
    /// Numbers (or booleans) into elements of this type.
    Elements(DType),
    /// Strings into length-prefixed `BYTES` elements.
    Bytes(BytesForm),
}

/// First pass: everything but the tensors' data.
pub(crate) fn head(json: &[u8]) -> Result<RequestHead, OipError> {
    serde_json::from_slice(json).map_err(|e| {
        OipError::BadRequest(match e.classify() {
            serde_json::error::Category::Data => format!("the request is not valid: {e}"),
            _ => format!("the request is not JSON: {e}"),
        })
    })
}

/// Bytes to reserve for an input's raw data: what its shape says, but never
/// more than the JSON could hold (an element takes at least two characters),
/// so a shape that lies costs nothing.
pub(crate) fn capacity(shape: &[i64], plan: Plan, json_len: usize) -> usize {
    let Plan::Elements(dtype) = plan else {
        return 0;
    };
    let elements = shape
        .iter()
        .try_fold(1usize, |n, &d| {
            usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
        })
        .unwrap_or(0);
    elements.min(json_len / 2).saturating_mul(dtype.size())
}

/// The plan of an input whose fields are known.
pub(crate) fn plan(name: &str, datatype: &str, form: BytesForm) -> Result<Plan, OipError> {
    let bad = |m: String| OipError::BadRequest(format!("input `{name}`: {m}"));
    if datatype == "BYTES" {
        return Ok(Plan::Bytes(form));
    }
    if form == BytesForm::Base64 {
        return Err(bad(format!(
            "parameters.content_type \"base64\" applies to BYTES tensors, not {datatype}"
        )));
    }
    dtype_of(datatype).map(Plan::Elements).ok_or_else(|| {
        bad(format!(
            "datatype `{datatype}` is not one this server takes"
        ))
    })
}

/// Second pass: each planned input's `data`, as raw bytes, in input order.
pub(crate) fn data(
    json: &[u8],
    plans: &[(String, Plan, usize)],
) -> Result<Vec<Option<Vec<u8>>>, OipError> {
    let mut out: Vec<Option<Vec<u8>>> = vec![None; plans.len()];
    let mut de = serde_json::Deserializer::from_slice(json);
    let seed = RequestSeed {
        plans,
        out: &mut out,
    };
    seed.deserialize(&mut de).map_err(|e| {
        let text = e.to_string();
        // Our own messages name the input already; serde's get a prefix.
        match text.strip_prefix("oip: ") {
            Some(m) => OipError::BadRequest(m.split(" at line ").next().unwrap_or(m).to_owned()),
            None => OipError::BadRequest(format!("the request is not valid: {text}")),
        }
    })?;
    Ok(out)
}

struct RequestSeed<'p, 'o> {
    plans: &'p [(String, Plan, usize)],
    out: &'o mut Vec<Option<Vec<u8>>>,
}

impl<'de> DeserializeSeed<'de> for RequestSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an infer request object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "inputs" {
                map.next_value_seed(InputsSeed {
                    plans: self.plans,
                    out: &mut *self.out,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct InputsSeed<'p, 'o> {
    plans: &'p [(String, Plan, usize)],
    out: &'o mut Vec<Option<Vec<u8>>>,
}

impl<'de> DeserializeSeed<'de> for InputsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for InputsSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of tensors")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let Some((name, plan, capacity)) = self.plans.get(i) else {
                // The first pass counted them: nothing more can come.
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                return Ok(());
            };
            let mut raw = None;
            let seed = TensorSeed {
                name,
                plan: *plan,
                capacity: *capacity,
                out: &mut raw,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            self.out[i] = raw;
            i += 1;
        }
    }
}

struct TensorSeed<'a> {
    name: &'a str,
    plan: Plan,
    capacity: usize,
    out: &'a mut Option<Vec<u8>>,
}

impl<'de> DeserializeSeed<'de> for TensorSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TensorSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tensor object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "data" && !matches!(self.plan, Plan::Skip) {
                let mut raw = Vec::with_capacity(self.capacity);
                let mut count = 0usize;
                map.next_value_seed(DataSeed {
                    name: self.name,
                    plan: self.plan,
                    out: &mut raw,
                    count: &mut count,
                })?;
                *self.out = Some(raw);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// One value of `data` (a number, a string, or a list of them, nested).
struct DataSeed<'a> {
    name: &'a str,
    plan: Plan,
    out: &'a mut Vec<u8>,
    count: &'a mut usize,
}

impl DataSeed<'_> {
    fn fail<E: serde::de::Error>(&self, m: impl fmt::Display) -> E {
        E::custom(format!("oip: input `{}`: {m}", self.name))
    }

    fn number<E: serde::de::Error>(self, v: f64, shown: &dyn fmt::Display) -> Result<(), E> {
        let Plan::Elements(dtype) = self.plan else {
            return Err(self.fail("BYTES data must be strings"));
        };
        match dtype {
            DType::F32 => self.out.extend_from_slice(&(v as f32).to_le_bytes()),
            DType::F16 => self
                .out
                .extend_from_slice(&half::f16::from_f64(v).to_le_bytes()),
            DType::I64 => self.out.extend_from_slice(&(v as i64).to_le_bytes()),
            DType::I32 => self.out.extend_from_slice(&(v as i32).to_le_bytes()),
            DType::U8 => self.out.push(v as u8),
            DType::I8 => self.out.push((v as i8) as u8),
            DType::Bool => return Err(self.fail(format!("`{shown}` is not a boolean"))),
        }
        *self.count += 1;
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for DataSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tensor data: numbers, booleans or strings, in nested lists")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            let seed = DataSeed {
                name: self.name,
                plan: self.plan,
                out: &mut *self.out,
                count: &mut *self.count,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
        }
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.number(v, &v)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.number(v as f64, &v)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.number(v as f64, &v)
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        match self.plan {
            Plan::Elements(DType::Bool) => {
                self.out.push(u8::from(v));
                *self.count += 1;
                Ok(())
            }
            Plan::Elements(_) => Err(self.fail(format!("`{v}` is not a number"))),
            _ => Err(self.fail("BYTES data must be strings")),
        }
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<(), E> {
        let form = match self.plan {
            Plan::Bytes(form) => form,
            Plan::Elements(DType::Bool) => {
                return Err(self.fail(format!("`\"{s}\"` is not a boolean")))
            }
            _ => return Err(self.fail(format!("`\"{s}\"` is not a number"))),
        };
        let i = *self.count;
        let bytes: std::borrow::Cow<'_, [u8]> = match form {
            BytesForm::Utf8 => s.as_bytes().into(),
            BytesForm::Base64 => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .map_err(|e| {
                        self.fail(format!(
                            "element {i} is not base64 (content_type is \"base64\"): {e}"
                        ))
                    })?
                    .into()
            }
        };
        let len = u32::try_from(bytes.len()).map_err(|_| self.fail("an element over 4 GiB"))?;
        self.out.extend_from_slice(&len.to_le_bytes());
        self.out.extend_from_slice(&bytes);
        *self.count += 1;
        Ok(())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Err(self.fail("`null` is not an element"))
    }
    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<(), A::Error> {
        Err(self.fail("an object is not an element"))
    }
}
