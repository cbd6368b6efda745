//! The values that flow through a kit's pipeline, and the port types that describe them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    I64,
    I32,
    U8,
    I8,
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 => 2,
            DType::I64 => 8,
            DType::U8 | DType::I8 | DType::Bool => 1,
        }
    }

    /// The lowercase name used in type strings.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::U8 => "u8",
            DType::I8 => "i8",
            DType::Bool => "bool",
        }
    }

    /// A dtype by its name in type strings (`f32`, `u8`, …).
    pub fn parse(s: &str) -> Option<DType> {
        Some(match s {
            "f32" => DType::F32,
            "f16" => DType::F16,
            "i64" => DType::I64,
            "i32" => DType::I32,
            "u8" => DType::U8,
            "i8" => DType::I8,
            "bool" => DType::Bool,
            _ => return None,
        })
    }
}

/// A dense, row-major, little-endian tensor.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor({}{:?}, {} bytes)",
            self.dtype.name(),
            self.shape,
            self.data.len()
        )
    }
}

impl Tensor {
    /// Builds a tensor, checking that the data fits the shape.
    pub fn new(dtype: DType, shape: Vec<usize>, data: Vec<u8>) -> Result<Tensor> {
        let t = Tensor { dtype, shape, data };
        t.check()?;
        Ok(t)
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Checks that the data length matches shape and dtype.
    pub fn check(&self) -> Result<()> {
        let want = self.numel().checked_mul(self.dtype.size());
        if want != Some(self.data.len()) {
            return Err(Error::invalid(
                "tensor",
                format!(
                    "{}{:?} needs {} bytes of data, got {}",
                    self.dtype.name(),
                    self.shape,
                    want.map_or("too many".to_string(), |w| w.to_string()),
                    self.data.len()
                ),
            ));
        }
        Ok(())
    }

    /// An f32 tensor.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Tensor {
        Tensor {
            dtype: DType::F32,
            shape,
            data: bytemuck::cast_slice(values).to_vec(),
        }
    }

    /// An i64 tensor.
    pub fn from_i64(shape: Vec<usize>, values: &[i64]) -> Tensor {
        Tensor {
            dtype: DType::I64,
            shape,
            data: bytemuck::cast_slice(values).to_vec(),
        }
    }

    /// The elements of an f32 tensor.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        self.expect(DType::F32)?;
        Ok(bytemuck::pod_collect_to_vec(&self.data))
    }

    /// The elements of an i64 tensor.
    pub fn to_i64(&self) -> Result<Vec<i64>> {
        self.expect(DType::I64)?;
        Ok(bytemuck::pod_collect_to_vec(&self.data))
    }

    /// Every element widened to f64, whatever the dtype (for comparisons and JSON).
    pub fn to_f64_lossy(&self) -> Vec<f64> {
        let d = &self.data;
        match self.dtype {
            DType::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
            DType::F16 => d
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64())
                .collect(),
            DType::I64 => d
                .chunks_exact(8)
                .map(|c| {
                    i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64
                })
                .collect(),
            DType::I32 => d
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
            DType::U8 | DType::Bool => d.iter().map(|&b| b as f64).collect(),
            DType::I8 => d.iter().map(|&b| b as i8 as f64).collect(),
        }
    }

    fn expect(&self, dtype: DType) -> Result<()> {
        if self.dtype != dtype {
            return Err(Error::invalid(
                "tensor",
                format!("dtype is {}, expected {}", self.dtype.name(), dtype.name()),
            ));
        }
        self.check()
    }

    /// Slice `i` along the first axis (the result drops that axis).
    pub fn index_first(&self, i: usize) -> Result<Tensor> {
        let (&n, rest) = self
            .shape
            .split_first()
            .ok_or_else(|| Error::invalid("tensor", "cannot index a scalar"))?;
        if i >= n {
            return Err(Error::invalid(
                "tensor",
                format!("index {i} out of range for first axis of {n}"),
            ));
        }
        let stride = rest.iter().product::<usize>() * self.dtype.size();
        Ok(Tensor {
            dtype: self.dtype,
            shape: rest.to_vec(),
            data: self.data[i * stride..(i + 1) * stride].to_vec(),
        })
    }

    /// Joins tensors along an existing `axis`; every other axis must agree.
    pub fn concat(parts: &[Tensor], axis: usize) -> Result<Tensor> {
        let first = parts
            .first()
            .ok_or_else(|| Error::invalid("tensor", "cannot join zero tensors"))?;
        if axis >= first.shape.len() {
            return Err(Error::invalid(
                "tensor",
                format!("axis {axis} is out of range for shape {:?}", first.shape),
            ));
        }
        let outer: usize = first.shape[..axis].iter().product();
        let mut total = 0;
        for p in parts {
            let same = p.dtype == first.dtype
                && p.shape.len() == first.shape.len()
                && p.shape
                    .iter()
                    .zip(&first.shape)
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            if !same {
                return Err(Error::invalid(
                    "tensor",
                    format!(
                        "cannot join shapes {:?} and {:?} along axis {axis}",
                        first.shape, p.shape
                    ),
                ));
            }
            total += p.shape[axis];
        }
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.data.len()).sum());
        for o in 0..outer {
            for p in parts {
                let chunk = p.data.len() / outer.max(1);
                data.extend_from_slice(&p.data[o * chunk..(o + 1) * chunk]);
            }
        }
        let mut shape = first.shape.clone();
        shape[axis] = total;
        Ok(Tensor {
            dtype: first.dtype,
            shape,
            data,
        })
    }

    /// Cuts the tensor along `axis` into pieces of the given lengths (the inverse of `concat`).
    pub fn split(&self, axis: usize, lengths: &[usize]) -> Result<Vec<Tensor>> {
        let n = *self.shape.get(axis).ok_or_else(|| {
            Error::invalid(
                "tensor",
                format!("axis {axis} is out of range for shape {:?}", self.shape),
            )
        })?;
        if lengths.iter().sum::<usize>() != n {
            return Err(Error::invalid(
                "tensor",
                format!("axis {axis} has {n} entries, not the {lengths:?} asked for"),
            ));
        }
        let outer: usize = self.shape[..axis].iter().product();
        let row = self.shape[axis + 1..].iter().product::<usize>() * self.dtype.size();
        let mut out: Vec<Tensor> = lengths
            .iter()
            .map(|&len| {
                let mut shape = self.shape.clone();
                shape[axis] = len;
                Tensor {
                    dtype: self.dtype,
                    shape,
                    data: Vec::with_capacity(outer * len * row),
                }
            })
            .collect();
        for o in 0..outer {
            let mut at = o * n * row;
            for (t, &len) in out.iter_mut().zip(lengths) {
                t.data.extend_from_slice(&self.data[at..at + len * row]);
                at += len * row;
            }
        }
        Ok(out)
    }

    /// Stacks equal-shaped tensors along a new first axis.
    pub fn stack(parts: &[Tensor]) -> Result<Tensor> {
        let first = parts
            .first()
            .ok_or_else(|| Error::invalid("tensor", "cannot stack zero tensors"))?;
        let mut data = Vec::with_capacity(first.data.len() * parts.len());
        for p in parts {
            if p.dtype != first.dtype || p.shape != first.shape {
                return Err(Error::invalid(
                    "tensor",
                    "cannot stack tensors of different shapes",
                ));
            }
            data.extend_from_slice(&p.data);
        }
        let mut shape = vec![parts.len()];
        shape.extend_from_slice(&first.shape);
        Ok(Tensor {
            dtype: first.dtype,
            shape,
            data,
        })
    }
}

/// One value in the pipeline.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Tensor(Tensor),
    Bytes(Vec<u8>),
    Text(String),
    /// JSON, kept as its text.
    Json(String),
}

impl Value {
    /// A short name of the kind of value, for messages.
    pub fn kind(&self) -> String {
        match self {
            // Written as port types are: `f32[1,4]`.
            Value::Tensor(t) => format!(
                "{}[{}]",
                t.dtype.name(),
                t.shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Value::Bytes(_) => "bytes".into(),
            Value::Text(_) => "text".into(),
            Value::Json(_) => "json".into(),
        }
    }

    /// The value as JSON, for printing results: tensors become `{dtype, shape, data}`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Tensor(t) => serde_json::json!({
                "dtype": t.dtype.name(),
                "shape": t.shape,
                "data": t.to_f64_lossy(),
            }),
            Value::Bytes(b) => serde_json::json!({ "bytes": b.len() }),
            Value::Text(s) => serde_json::Value::String(s.clone()),
            Value::Json(s) => {
                serde_json::from_str(s).unwrap_or(serde_json::Value::String(s.clone()))
            }
        }
    }
}

/// Named values: the inputs or outputs of a kit or a step.
pub type Values = BTreeMap<String, Value>;

/// Named values as one JSON object (output name → [`Value::to_json`]).
pub fn values_json(values: &Values) -> serde_json::Value {
    serde_json::Value::Object(
        values
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect(),
    )
}

/// One dimension of a port's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    Any,
}

/// The type of a port: what a stage, model or kit reads or writes under one name.
///
/// Written as `bytes`, `text`, `json`, or `<dtype>[d0,d1,...]` with each dimension
/// a number or `?`; a symbolic name (`N`, `batch`) counts as `?`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortType {
    Bytes,
    Text,
    Json,
    Tensor { dtype: DType, shape: Vec<Dim> },
}

impl PortType {
    /// Whether a value produced as `self` can be consumed by a port of type `want`.
    pub fn fits(&self, want: &PortType) -> bool {
        match (self, want) {
            (
                PortType::Tensor {
                    dtype: a,
                    shape: sa,
                },
                PortType::Tensor {
                    dtype: b,
                    shape: sb,
                },
            ) => {
                a == b
                    && sa.len() == sb.len()
                    && sa.iter().zip(sb).all(|(x, y)| match (x, y) {
                        (Dim::Fixed(p), Dim::Fixed(q)) => p == q,
                        _ => true,
                    })
            }
            (a, b) => a == b,
        }
    }

    /// Checks a concrete value against this type.
    pub fn check(&self, value: &Value) -> std::result::Result<(), String> {
        let ok = match (self, value) {
            (PortType::Bytes, Value::Bytes(_)) | (PortType::Text, Value::Text(_)) => true,
            (PortType::Json, Value::Json(s)) => {
                serde_json::from_str::<serde_json::Value>(s)
                    .map_err(|e| format!("is not valid json: {e}"))?;
                true
            }
            (PortType::Tensor { dtype, shape }, Value::Tensor(t)) => {
                t.check().map_err(|e| e.to_string())?;
                t.dtype == *dtype
                    && t.shape.len() == shape.len()
                    && t.shape.iter().zip(shape).all(|(n, d)| match d {
                        Dim::Fixed(f) => f == n,
                        Dim::Any => true,
                    })
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(format!("expected {self}, got {}", value.kind()))
        }
    }
}

impl fmt::Display for PortType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortType::Bytes => f.write_str("bytes"),
            PortType::Text => f.write_str("text"),
            PortType::Json => f.write_str("json"),
            PortType::Tensor { dtype, shape } => {
                write!(f, "{}[", dtype.name())?;
                for (i, d) in shape.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    match d {
                        Dim::Fixed(n) => write!(f, "{n}")?,
                        Dim::Any => f.write_str("?")?,
                    }
                }
                f.write_str("]")
            }
        }
    }
}

impl FromStr for PortType {
    type Err = Error;

    fn from_str(s: &str) -> Result<PortType> {
        let s = s.trim();
        match s {
            "bytes" => return Ok(PortType::Bytes),
            "text" => return Ok(PortType::Text),
            "json" => return Ok(PortType::Json),
            _ => {}
        }
        let bad = || {
            Error::invalid(
                "port type",
                format!("`{s}` must be bytes, text, json or <dtype>[dims] such as f32[1,3,?,?]"),
            )
        };
        let open = s.find('[').ok_or_else(bad)?;
        if !s.ends_with(']') {
            return Err(bad());
        }
        let dtype = DType::parse(&s[..open]).ok_or_else(|| {
            Error::invalid(
                "port type",
                format!("unknown dtype `{}` in `{s}`", &s[..open]),
            )
        })?;
        let inner = &s[open + 1..s.len() - 1];
        let shape = if inner.trim().is_empty() {
            Vec::new()
        } else {
            inner
                .split(',')
                .map(|d| {
                    let d = d.trim();
                    if let Ok(n) = d.parse::<usize>() {
                        Ok(Dim::Fixed(n))
                    } else if d == "?"
                        || (!d.is_empty()
                            && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                    {
                        Ok(Dim::Any)
                    } else {
                        Err(bad())
                    }
                })
                .collect::<Result<Vec<_>>>()?
        };
        Ok(PortType::Tensor { dtype, shape })
    }
}

impl Serialize for PortType {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<PortType, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u8s(shape: &[usize], data: &[u8]) -> Tensor {
        Tensor::new(DType::U8, shape.to_vec(), data.to_vec()).unwrap()
    }

    #[test]
    fn tensors_join_along_an_inner_axis_and_split_back() {
        // [2, 1, 2] and [2, 2, 2] joined on axis 1: rows interleave per outer index.
        let a = u8s(&[2, 1, 2], &[1, 2, 3, 4]);
        let b = u8s(&[2, 2, 2], &[5, 6, 7, 8, 9, 10, 11, 12]);
        let j = Tensor::concat(&[a.clone(), b.clone()], 1).unwrap();
        assert_eq!(j.shape, vec![2, 3, 2]);
        assert_eq!(j.data, vec![1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12]);
        assert_eq!(j.split(1, &[1, 2]).unwrap(), vec![a, b]);
    }

    #[test]
    fn tensors_of_other_shapes_or_lengths_are_not_joined_or_split() {
        let a = u8s(&[1, 2], &[1, 2]);
        let b = u8s(&[1, 3], &[1, 2, 3]);
        let e = Tensor::concat(&[a.clone(), b], 0).unwrap_err().to_string();
        assert!(e.contains("cannot join shapes [1, 2] and [1, 3]"), "{e}");
        let e = a.split(0, &[2]).unwrap_err().to_string();
        assert!(e.contains("axis 0 has 1 entries"), "{e}");
        let e = a.split(2, &[1]).unwrap_err().to_string();
        assert!(e.contains("axis 2 is out of range"), "{e}");
    }

    #[test]
    fn port_types_parse_and_print() {
        for s in [
            "bytes",
            "text",
            "json",
            "f32[1,3,?,?]",
            "i64[]",
            "u8[?,?,3]",
        ] {
            assert_eq!(s.parse::<PortType>().unwrap().to_string(), s);
        }
        assert_eq!(
            "f32[N,3]".parse::<PortType>().unwrap().to_string(),
            "f32[?,3]"
        );
    }

    #[test]
    fn port_types_reject_unknown_dtype_and_garbage() {
        assert!("f64[1]"
            .parse::<PortType>()
            .unwrap_err()
            .to_string()
            .contains("unknown dtype `f64`"));
        assert!("tensor".parse::<PortType>().is_err());
        assert!("f32[1,-]".parse::<PortType>().is_err());
    }

    #[test]
    fn fixed_dims_must_agree_dynamic_dims_fit_anything() {
        let a: PortType = "f32[1,3,?,?]".parse().unwrap();
        assert!(a.fits(&"f32[?,3,32,32]".parse().unwrap()));
        assert!(!a.fits(&"f32[1,1,?,?]".parse().unwrap()));
        assert!(!a.fits(&"f32[1,3,?]".parse().unwrap()));
        assert!(!a.fits(&"i64[1,3,?,?]".parse().unwrap()));
    }

    #[test]
    fn check_names_what_was_expected() {
        let t: PortType = "f32[2]".parse().unwrap();
        let err = t
            .check(&Value::Tensor(Tensor::from_f32(vec![3], &[1.0, 2.0, 3.0])))
            .unwrap_err();
        assert!(err.contains("expected f32[2]"), "{err}");
        assert!(t
            .check(&Value::Tensor(Tensor::from_f32(vec![2], &[1.0, 2.0])))
            .is_ok());
    }

    #[test]
    fn index_and_stack_are_inverse() {
        let t = Tensor::from_f32(vec![3, 2], &[1., 2., 3., 4., 5., 6.]);
        let parts: Vec<_> = (0..3).map(|i| t.index_first(i).unwrap()).collect();
        assert_eq!(parts[1].to_f32().unwrap(), vec![3., 4.]);
        assert_eq!(Tensor::stack(&parts).unwrap(), t);
    }
}
