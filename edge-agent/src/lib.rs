//! The Algobay edge agent.
//!
//! # Layout
//! - [`config`]: the settings file, `agent.toml`.
//! - [`identity`]: enrollment (a key made here, a certificate from the registry's CA).
//! - [`cache`]: the content-addressed blob cache shared by all kits, with resumable downloads.
//! - [`samples`]: hard examples waiting to go to the registry, on disk, within a byte budget.
//! - [`state`]: the active and previous (fallback) kits, written atomically.
//! - [`agent`]: restore, the sync loop, pull → verify → golden samples → activate, rollback, GC.
//! - [`oip`]: the Open Inference Protocol's tensors mapped to a kit's ports.
//! - [`serve`]: local HTTP: status, the protocol's REST form, `/metrics`.
//! - [`telemetry`]: OpenTelemetry metrics of every request, exported over OTLP.
//! - [`oip_grpc`]: the protocol's gRPC form (`inference.GRPCInferenceService`).

pub mod agent;
pub mod cache;
pub mod config;
pub mod error;
pub mod identity;
pub mod oip;
pub mod oip_grpc;
mod oip_json;
pub mod recent;
pub mod samples;
pub mod serve;
pub mod state;
pub mod telemetry;

pub use agent::Agent;
pub use config::AgentConfig;
pub use error::{AgentError, Result};
