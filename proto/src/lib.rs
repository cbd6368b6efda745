//! Wire types of Algobay's gRPC API, generated from `algobay/v1/*.proto`, and of
//! the Open Inference Protocol (`inference/grpc_predict_v2.proto`).
//!
//! Only this crate and each service's thin gRPC adapter see these types; the
//! rest of the code works on domain types.

#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::unwrap_used
)]
pub mod v1 {
    tonic::include_proto!("algobay.v1");
}

/// The Open Inference Protocol (KServe v2 / Triton) gRPC service, served by the edge agent.
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::unwrap_used
)]
pub mod inference {
    tonic::include_proto!("inference");
}

/// The encoded file descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/algobay_descriptor.bin"));

pub mod status;
