//! Serving figures as OpenTelemetry metrics, and sampled request traces,
//! exported over OTLP/gRPC to the registry (or any collector that takes the
//! device's client certificate). Metric totals are cumulative: an export lost
//! while the link is down is made up by the next one, so nothing within the
//! agent's life is lost. Traces are samples: a request is traced when the
//! caller's W3C `traceparent` says it is sampled, else with the configured
//! probability; each trace is the request span and one span per pipeline step.
//!
//! The latest totals are also kept on disk ([`durable`]) at every export, so
//! what a device served while the registry was away reaches it after a
//! restart of the agent too. The same figures and traces can also go to the
//! enterprise's own OpenTelemetry collector ([`collector`]).

mod collector;
mod durable;
mod held;

pub use collector::CollectorConfig;
use held::HeldSpans;

use std::time::{Duration, SystemTime};

use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithTonicConfig as _;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;

use crate::error::{AgentError, Result};

/// The instruments, and the provider that exports them.
pub struct Telemetry {
    provider: SdkMeterProvider,
    tracer_provider: SdkTracerProvider,
    tracer: SdkTracer,
    held: HeldSpans,
    requests: Counter<u64>,
    duration: Histogram<f64>,
    stage: Histogram<f64>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

/// Trace spans held back while the registry is unreachable; past this the oldest go.
const HELD_SPANS: usize = 20_000;

/// Latency bucket bounds, in milliseconds.
const BOUNDS_MS: [f64; 13] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

impl Telemetry {
    /// Exports every `interval` over `channel` (the device's mTLS channel), and
    /// to the enterprise's collector when one is set; keeps the totals under
    /// `data_dir` and sends those of earlier starts first.
    /// Traces a share `trace_ratio` (0..=1) of the requests whose caller did not decide.
    pub fn new(
        channel: tonic::transport::Channel,
        interval: Duration,
        device_id: &str,
        trace_ratio: f64,
        data_dir: &std::path::Path,
        collector: &CollectorConfig,
    ) -> Result<Telemetry> {
        let start = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let kept = durable::folder(data_dir);
        let earlier = durable::earlier(&kept, start);
        if !earlier.is_empty() {
            tracing::info!(
                files = earlier.len(),
                "sending the serving totals of earlier starts"
            );
            tokio::spawn(durable::resend(earlier, channel.clone()));
        }
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_channel(channel.clone())
            .build()
            .map_err(|e| AgentError::Config(format!("telemetry exporter: {e}")))?;
        let exporter = durable::DurableMetrics::new(exporter, &kept, start)
            .map_err(|e| AgentError::Config(format!("telemetry folder {}: {e}", kept.display())))?;
        let reader = PeriodicReader::builder(exporter)
            .with_interval(interval)
            .build();
        let resource = Resource::builder_empty()
            .with_service_name("algobay-agent")
            .with_attributes([KeyValue::new("device.id", device_id.to_owned())])
            .build();
        let mut provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource.clone());
        let collector = collector.connect()?;
        if let Some((ch, headers)) = &collector {
            let e = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_channel(ch.clone())
                .with_metadata(headers.clone())
                .build()
                .map_err(|e| AgentError::Config(format!("collector metrics exporter: {e}")))?;
            provider =
                provider.with_reader(PeriodicReader::builder(e).with_interval(interval).build());
        }
        let provider = provider.build();
        let span_exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_channel(channel)
            .build()
            .map_err(|e| AgentError::Config(format!("trace exporter: {e}")))?;
        let held = HeldSpans::new(span_exporter, HELD_SPANS);
        let batch = || {
            BatchConfigBuilder::default()
                .with_scheduled_delay(interval)
                .with_max_queue_size(4096)
                .build()
        };
        let spans = BatchSpanProcessor::builder(held.clone())
            .with_batch_config(batch())
            .build();
        let mut tracer_provider = SdkTracerProvider::builder()
            .with_span_processor(spans)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                trace_ratio.clamp(0.0, 1.0),
            ))))
            .with_resource(resource);
        if let Some((ch, headers)) = collector {
            let e = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_channel(ch)
                .with_metadata(headers)
                .build()
                .map_err(|e| AgentError::Config(format!("collector trace exporter: {e}")))?;
            tracer_provider = tracer_provider.with_span_processor(
                BatchSpanProcessor::builder(e)
                    .with_batch_config(batch())
                    .build(),
            );
        }
        let tracer_provider = tracer_provider.build();
        let tracer = tracer_provider.tracer("algobay-agent");
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
            tracer_provider,
            tracer,
            held,
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

    /// Starts the span of one request, as a child of the caller's
    /// `traceparent` when it sent one.
    pub fn start_request(
        &self,
        traceparent: Option<&str>,
        name: &str,
        kit: &str,
        digest: &str,
        version: &str,
    ) -> RequestTrace {
        let parent = match traceparent {
            Some(tp) => {
                let carrier =
                    std::collections::HashMap::from([("traceparent".to_owned(), tp.to_owned())]);
                TraceContextPropagator::new().extract(&carrier)
            }
            None => Context::new(),
        };
        let [a, b] = Self::kit_attrs(kit, digest);
        let span = self
            .tracer
            .span_builder(name.to_owned())
            .with_kind(SpanKind::Server)
            .with_attributes([a, b, KeyValue::new("kit_version", version.to_owned())])
            .start_with_context(&self.tracer, &parent);
        let cx = parent.with_span(span);
        let trace_id = cx.span().span_context().trace_id().to_string();
        RequestTrace {
            trace_id,
            request_id: String::new(),
            cx: Some(cx),
        }
    }

    /// One span per step, laid end to end from `started` (steps run one after another).
    pub fn steps(
        &self,
        trace: &RequestTrace,
        started: SystemTime,
        timings: &[algobay_runtime::engine::StepTiming],
    ) {
        let Some(cx) = trace.cx.as_ref().filter(|cx| cx.span().is_recording()) else {
            return;
        };
        let mut at = started;
        for t in timings {
            let end = at + t.elapsed;
            let mut span = self
                .tracer
                .span_builder(t.step.clone())
                .with_start_time(at)
                .with_attributes([
                    KeyValue::new("step", t.step.clone()),
                    KeyValue::new("step_kind", t.kind),
                ])
                .start_with_context(&self.tracer, cx);
            span.end_with_timestamp(end);
            at = end;
        }
    }

    /// Ends the request's span, with the error when it failed.
    pub fn end_request(&self, trace: &RequestTrace, error: Option<&str>) {
        if let Some(cx) = &trace.cx {
            if let Some(e) = error {
                cx.span().set_status(Status::error(e.to_owned()));
            }
            cx.span().end();
        }
    }

    /// Sends the spans held back while the link was down (called when it is up again).
    pub async fn resend_held(&self) {
        if let Err(e) = self.held.send(Vec::new()).await {
            tracing::debug!(error = %e, "held trace spans not sent yet");
        }
    }

    /// Spans dropped because more were held back than the budget allows.
    pub fn spans_dropped(&self) -> u64 {
        self.held.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends what is recorded now (used at shutdown).
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
        let _ = self.tracer_provider.force_flush();
    }
}

/// The trace of one request: its id (kept with any hard example it yields)
/// and, when telemetry is on, the span context its steps hang from.
#[derive(Clone, Debug, Default)]
pub struct RequestTrace {
    /// 32 hex digits; empty when neither telemetry nor the caller gave one.
    pub trace_id: String,
    /// The request's id as its caller knows it (given or made by the agent):
    /// what `POST /v1/feedback` names.
    pub request_id: String,
    cx: Option<Context>,
}

impl RequestTrace {
    /// Without telemetry: the caller's trace id, if it sent a well-formed `traceparent`.
    pub fn from_traceparent(traceparent: Option<&str>) -> RequestTrace {
        let trace_id = traceparent
            .and_then(|tp| {
                let parts: Vec<&str> = tp.trim().split('-').collect();
                match parts.as_slice() {
                    [_, id, _, _]
                        if id.len() == 32
                            && id.bytes().all(|b| b.is_ascii_hexdigit())
                            && id.bytes().any(|b| b != b'0') =>
                    {
                        Some(id.to_ascii_lowercase())
                    }
                    _ => None,
                }
            })
            .unwrap_or_default();
        RequestTrace {
            trace_id,
            request_id: String::new(),
            cx: None,
        }
    }
}
