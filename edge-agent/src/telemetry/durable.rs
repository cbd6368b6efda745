//! The metric totals kept on disk. Each start of the agent begins new
//! cumulative series; at every export the exporter writes the series' latest
//! totals (the OTLP request itself) to `DATA/telemetry/metrics-<start>.pb`,
//! whole or not at all, before sending them. At the next start, the files of
//! earlier starts are sent again until the registry takes them, then removed:
//! the registry keeps the latest value of each series, so a file sent twice
//! counts once, and what was served while the registry was away is not lost
//! when the agent restarts before it comes back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::Temporality;
use prost::Message as _;

/// The folder of the snapshots under the agent's data folder.
pub(crate) fn folder(data_dir: &Path) -> PathBuf {
    data_dir.join("telemetry")
}

/// Writes `bytes` to `path` whole (see `algobay_runtime::fsx`).
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    algobay_runtime::fsx::write_atomic(path, bytes)
}

/// An exporter that keeps what it exports on disk first.
#[derive(Debug)]
pub(crate) struct DurableMetrics<E> {
    inner: E,
    path: PathBuf,
}

impl<E> DurableMetrics<E> {
    /// Keeps this start's totals in `folder`, named by `start` (unix nanoseconds).
    pub(crate) fn new(inner: E, folder: &Path, start: u128) -> std::io::Result<Self> {
        std::fs::create_dir_all(folder)?;
        Ok(DurableMetrics {
            inner,
            path: folder.join(format!("metrics-{start}.pb")),
        })
    }
}

impl<E: PushMetricExporter> PushMetricExporter for DurableMetrics<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let req = ExportMetricsServiceRequest::from(metrics);
        if !req.resource_metrics.is_empty() {
            if let Err(e) = write_whole(&self.path, &req.encode_to_vec()) {
                tracing::warn!(path = %self.path.display(), error = %e, "keeping serving totals on disk");
            }
        }
        self.inner.export(metrics).await
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// Snapshots of earlier starts in `folder` (all but `current`), oldest first.
pub(crate) fn earlier(folder: &Path, current: u128) -> Vec<PathBuf> {
    let mut out: Vec<(u128, PathBuf)> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let start: u128 = p
                .file_name()?
                .to_str()?
                .strip_prefix("metrics-")?
                .strip_suffix(".pb")?
                .parse()
                .ok()?;
            (start != current).then_some((start, p))
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, p)| p).collect()
}

/// Sends each earlier snapshot until the registry takes it, then removes it.
/// A file that does not decode is set aside (`.bad`), never sent.
pub(crate) async fn resend(files: Vec<PathBuf>, channel: tonic::transport::Channel) {
    let mut client = MetricsServiceClient::new(channel);
    for path in files {
        let req = match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| ExportMetricsServiceRequest::decode(&b[..]).map_err(|e| e.to_string()))
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "a kept metrics snapshot is unreadable; set aside");
                let _ = std::fs::rename(&path, path.with_extension("bad"));
                continue;
            }
        };
        let mut wait = Duration::from_secs(1);
        loop {
            match client.export(req.clone()).await {
                Ok(_) => {
                    tracing::info!(path = %path.display(), "serving totals of an earlier start delivered");
                    let _ = std::fs::remove_file(&path);
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "earlier serving totals not delivered yet");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn earlier_snapshots_are_found_oldest_first_and_the_current_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "metrics-30.pb",
            "metrics-10.pb",
            "metrics-20.pb",
            "other.pb",
            "metrics-x.pb",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let found: Vec<String> = earlier(dir.path(), 20)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(found, ["metrics-10.pb", "metrics-30.pb"]);
    }

    #[test]
    fn a_snapshot_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics-1.pb");
        write_whole(&p, b"first").unwrap();
        write_whole(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert!(!p.with_extension("tmp").exists());
    }
}
