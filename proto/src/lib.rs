//! Wire types of Algobay's gRPC API, generated from `algobay/v1/*.proto`.
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

/// The encoded file descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/algobay_descriptor.bin"));
