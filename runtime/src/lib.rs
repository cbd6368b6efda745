//! The Algobay kit format and the engine that runs kits.
//!
//! A *kit* is a manifest (canonical JSON naming every blob by digest) plus the
//! blobs it names, signed by the publishing team. Its pipeline is a list of
//! steps: WASM stages run in wasmtime with no ambient authority, ONNX models
//! in ONNX Runtime, safetensors models in candle.
//!
//! # Layout
//! - [`digest`]: `sha256:<hex>` names.
//! - [`value`]: the values that flow between steps and the port types that describe them.
//! - [`manifest`]: the manifest and its validation (names, versions, pipeline wiring).
//! - [`kitfile`]: the authored `Kitfile` and the packager that resolves it into a kit.
//! - [`sign`]: team keys, signatures, trust roots.
//! - [`archive`]: the kit file (tar), read defensively, written atomically.
//! - [`wasm`]: the stage sandbox.
//! - [`onnx`], [`candle`]: model back ends.
//! - [`engine`]: loads a verified kit once and runs requests on it, concurrently.
//! - [`golden`]: compares outputs with a kit's golden samples.

// Tensor data is little-endian on the wire and in WASM; the host reinterprets it in place.
#[cfg(target_endian = "big")]
compile_error!("algobay-runtime assumes a little-endian host");

pub mod archive;
pub mod candle;
pub mod digest;
pub mod engine;
pub mod error;
pub mod fsx;
pub mod golden;
pub mod kitfile;
pub mod manifest;
pub mod onnx;
pub mod sign;
pub mod value;
pub mod wasm;

pub use archive::{KitArchive, VerifiedKit};
pub use digest::Digest;
pub use engine::{LoadedKit, Runtime, RuntimeOptions};
pub use error::{shown, Error, Result};
pub use manifest::Manifest;
pub use sign::{PublicKey, SecretKey, TrustRoots};
pub use value::{DType, PortType, Tensor, Value, Values};
