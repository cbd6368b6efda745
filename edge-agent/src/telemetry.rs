//! Serving figures as OpenTelemetry metrics, exported over OTLP/gRPC to the
//! registry (or any collector that takes the device's client certificate).
//! Totals are cumulative: an export lost while the link is down is made up by
//! the next one, so nothing within the agent's life is lost.

use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithTonicConfig as _;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::Resource;

use crate::error::{AgentError, Result};

/// The instruments, and the provider that exports them.
pub struct Telemetry {
    provider: SdkMeterProvider,
    requests: Counter<u64>,
    duration: Histogram<f64>,
    stage: Histogram<f64>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

/// Latency bucket bounds, in milliseconds.
const BOUNDS_MS: [f64; 13] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

impl Telemetry {
    /// Exports every `interval` over `channel` (the device's mTLS channel).
    pub fn new(
        channel: tonic::transport::Channel,
        interval: Duration,
        device_id: &str,
    ) -> Result<Telemetry> {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_channel(channel)
            .build()
            .map_err(|e| AgentError::Config(format!("telemetry exporter: {e}")))?;
        let reader = PeriodicReader::builder(exporter)
            .with_interval(interval)
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(
                Resource::builder_empty()
                    .with_service_name("algobay-agent")
                    .with_attributes([KeyValue::new("device.id", device_id.to_owned())])
                    .build(),
            )
            .build();
        let meter = provider.meter("algobay-agent");
        Ok(Telemetry {
            requests: meter
                .u64_counter("algobay.kit.requests")
                .with_description("requests to the active kit, by outcome")
                .build(),
            duration: meter
                .f64_histogram("algobay.kit.duration")
                .with_unit("ms")
                .with_description("end-to-end latency of a request")
                .with_boundaries(BOUNDS_MS.to_vec())
                .build(),
            stage: meter
                .f64_histogram("algobay.stage.duration")
                .with_unit("ms")
                .with_description("latency of one step of the kit's pipeline")
                .with_boundaries(BOUNDS_MS.to_vec())
                .build(),
            provider,
        })
    }

    fn kit_attrs(kit: &str, digest: &str) -> [KeyValue; 2] {
        [
            KeyValue::new("kit", kit.to_owned()),
            KeyValue::new("kit_digest", digest.to_owned()),
        ]
    }

    /// One request: `outcome` is ok, bad_request, failed or overloaded.
    pub fn request(&self, kit: &str, digest: &str, outcome: &'static str, ms: Option<f64>) {
        let [a, b] = Self::kit_attrs(kit, digest);
        self.requests.add(
            1,
            &[a.clone(), b.clone(), KeyValue::new("outcome", outcome)],
        );
        if let Some(ms) = ms {
            self.duration.record(ms, &[a, b]);
        }
    }

    /// One step of a request.
    pub fn stage(&self, kit: &str, digest: &str, step: &str, ms: f64) {
        let [a, b] = Self::kit_attrs(kit, digest);
        self.stage
            .record(ms, &[a, b, KeyValue::new("step", step.to_owned())]);
    }

    /// Sends what is recorded now (used at shutdown).
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }
}
