//! Integration tests of the runtime: real WASM stages, real ONNX Runtime, real
//! candle models, real kit files. Needs `scripts/setup.sh` to have run (models
//! and ORT_DYLIB_PATH); the test script does that.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;
mod format;
mod imaging;
mod kitfile_doc;
mod kits;
mod sandbox;
