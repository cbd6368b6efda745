//! The Algobay client library: a typed async client of the registry.
//!
//! ```no_run
//! # async fn demo() -> Result<(), algobay_sdk::SdkError> {
//! use algobay_sdk::{Client, Search};
//! let ca = std::fs::read_to_string("algobay-data/tls/cert.pem").ok();
//! let client = Client::connect("https://localhost:7443", Some("abt_…".into()), ca).await?;
//! let page = client.search(Search { text: "ocr".into(), page_size: 20, ..Default::default() }).await?;
//! for a in page.artifacts {
//!     println!("{} {}", a.reference(), a.description);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`client`]: [`Client`] and the domain values it returns ([`Artifact`], [`Page`]).
//! - [`fleet`]: the fleet calls of [`Client`]: enrollment, devices, deployments, sync.
//! - [`line`]: the production line: recipes to checked, trained, published models and kits.
//! - [`oci`]: kits as OCI artifacts in any OCI distribution registry, pushed and pulled.
//! - The `algobay` binary (`src/main.rs`, `src/cli/`) is built on it.

pub mod client;
pub mod fleet;
pub mod line;
pub mod oci;
pub mod trainer;
pub mod training;

pub use client::{
    fetch_certificate, no_progress, Artifact, Client, DatasetCard, DatasetInfo, Kind, ModelInfo,
    Page, Progress, Relations, SdkError, Search, Uploaded,
};
