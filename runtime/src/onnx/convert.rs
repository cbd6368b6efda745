//! Tensors into ONNX Runtime's values and back: borrowed in place where the
//! bytes allow it.

use ort::session::SessionInputValue;
use ort::value::{TensorElementType, TensorRef, ValueType};

use crate::error::{Error, Result};
use crate::manifest::Port;
use crate::value::{DType, Dim, PortType, Tensor};

/// A session input over the tensor's bytes: borrowed in place when they are aligned
/// for the element type (the usual case), copied otherwise.
pub(super) fn to_ort<'a>(step: &str, t: &'a Tensor) -> Result<SessionInputValue<'a>> {
    let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    let err = |e: ort::Error| Error::model(step, format!("cannot build input tensor: {e}"));
    fn view<'a, T: bytemuck::Pod + ort::value::PrimitiveTensorElementType + std::fmt::Debug>(
        shape: Vec<i64>,
        data: &'a [u8],
    ) -> std::result::Result<SessionInputValue<'a>, ort::Error> {
        Ok(match bytemuck::try_cast_slice::<u8, T>(data) {
            Ok(s) => TensorRef::from_array_view((shape, s))?.into(),
            Err(_) => ort::value::Tensor::from_array((
                shape,
                bytemuck::pod_collect_to_vec::<u8, T>(data),
            ))?
            .into(),
        })
    }
    Ok(match t.dtype {
        DType::F32 => view::<f32>(shape, &t.data).map_err(err)?,
        DType::F16 => view::<half::f16>(shape, &t.data).map_err(err)?,
        DType::I64 => view::<i64>(shape, &t.data).map_err(err)?,
        DType::I32 => view::<i32>(shape, &t.data).map_err(err)?,
        DType::U8 => view::<u8>(shape, &t.data).map_err(err)?,
        DType::I8 => view::<i8>(shape, &t.data).map_err(err)?,
        DType::Bool => ort::value::Tensor::from_array((
            shape,
            t.data.iter().map(|&b| b != 0).collect::<Vec<_>>(),
        ))
        .map_err(err)?
        .into(),
    })
}

pub(super) fn from_ort(step: &str, name: &str, v: &ort::value::DynValueRef<'_>) -> Result<Tensor> {
    let ValueType::Tensor { ty, .. } = v.dtype() else {
        return Err(Error::model(
            step,
            format!("output `{name}` is not a tensor"),
        ));
    };
    let dtype = dtype_of(step, &format!("output `{name}`"), ty)?;
    let err = |e: ort::Error| Error::model(step, format!("cannot read output `{name}`: {e}"));
    macro_rules! grab {
        ($t:ty) => {{
            let (shape, data) = v.try_extract_tensor::<$t>().map_err(err)?;
            (
                shape.iter().map(|&d| d as usize).collect::<Vec<_>>(),
                bytemuck::cast_slice::<$t, u8>(data).to_vec(),
            )
        }};
    }
    let (shape, data) = match dtype {
        DType::F32 => grab!(f32),
        DType::F16 => grab!(half::f16),
        DType::I64 => grab!(i64),
        DType::I32 => grab!(i32),
        DType::U8 => grab!(u8),
        DType::I8 => grab!(i8),
        DType::Bool => {
            let (shape, data) = v.try_extract_tensor::<bool>().map_err(err)?;
            (
                shape.iter().map(|&d| d as usize).collect(),
                data.iter().map(|&b| b as u8).collect(),
            )
        }
    };
    Tensor::new(dtype, shape, data)
}

pub(super) fn dtype_of(step: &str, what: &str, ty: &TensorElementType) -> Result<DType> {
    Ok(match ty {
        TensorElementType::Float32 => DType::F32,
        TensorElementType::Float16 => DType::F16,
        TensorElementType::Int64 => DType::I64,
        TensorElementType::Int32 => DType::I32,
        TensorElementType::Uint8 => DType::U8,
        TensorElementType::Int8 => DType::I8,
        TensorElementType::Bool => DType::Bool,
        other => {
            return Err(Error::model(
                step,
                format!("{what} has element type {other:?}, which kits cannot carry"),
            ))
        }
    })
}

pub(super) fn port_of(step: &str, kind: &str, name: &str, vt: &ValueType) -> Result<Port> {
    match vt {
        ValueType::Tensor { ty, shape, .. } => {
            let dtype = dtype_of(step, &format!("{kind} `{name}`"), ty)?;
            let shape = shape
                .iter()
                .map(|&d| {
                    if d < 0 {
                        Dim::Any
                    } else {
                        Dim::Fixed(d as usize)
                    }
                })
                .collect();
            Ok(Port {
                name: name.to_owned(),
                ty: PortType::Tensor { dtype, shape },
            })
        }
        other => Err(Error::model(
            step,
            format!("{kind} `{name}` is a {other:?}, only tensors are supported"),
        )),
    }
}
