//! Serving figures as OpenTelemetry metrics, and sampled request traces,
//! exported over OTLP/gRPC to the registry (or any collector that takes the
//! device's client certificate). Metric totals are cumulative: an export lost
//! while the link is down is made up by the next one, so nothing within the
//! agent's life is lost. Traces are samples: a request is traced when the
//! caller's W3C `traceparent` says it is sampled, else with the configured
//! probability; each trace is the request span and one span per pipeline step.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithTonicConfig as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData,
    SpanExporter,
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
    /// Exports every `interval` over `channel` (the device's mTLS channel).
    /// Traces a share `trace_ratio` (0..=1) of the requests whose caller did not decide.
    pub fn new(
        channel: tonic::transport::Channel,
        interval: Duration,
        device_id: &str,
        trace_ratio: f64,
    ) -> Result<Telemetry> {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_channel(channel.clone())
            .build()
            .map_err(|e| AgentError::Config(format!("telemetry exporter: {e}")))?;
        let reader = PeriodicReader::builder(exporter)
            .with_interval(interval)
            .build();
        let resource = Resource::builder_empty()
            .with_service_name("algobay-agent")
            .with_attributes([KeyValue::new("device.id", device_id.to_owned())])
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource.clone())
            .build();
        let span_exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_channel(channel)
            .build()
            .map_err(|e| AgentError::Config(format!("trace exporter: {e}")))?;
        let held = HeldSpans::new(span_exporter, HELD_SPANS);
        let spans = BatchSpanProcessor::builder(held.clone())
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(interval)
                    .with_max_queue_size(4096)
                    .build(),
            )
            .build();
        let tracer_provider = SdkTracerProvider::builder()
            .with_span_processor(spans)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                trace_ratio.clamp(0.0, 1.0),
            ))))
            .with_resource(resource)
            .build();
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

/// The OTLP span exporter, holding back what it could not send: a failed
/// export keeps its spans (the oldest dropped past the budget, and counted)
/// and the next export, or [`Telemetry::resend_held`], sends them first.
#[derive(Clone, Debug)]
struct HeldSpans {
    inner: Arc<tokio::sync::Mutex<opentelemetry_otlp::SpanExporter>>,
    held: Arc<Mutex<VecDeque<SpanData>>>,
    cap: usize,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl HeldSpans {
    fn new(inner: opentelemetry_otlp::SpanExporter, cap: usize) -> HeldSpans {
        HeldSpans {
            inner: Arc::new(tokio::sync::Mutex::new(inner)),
            held: Default::default(),
            cap,
            dropped: Default::default(),
        }
    }

    async fn send(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let inner = self.inner.lock().await;
        let mut all: Vec<SpanData> = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        all.extend(batch);
        if all.is_empty() {
            return Ok(());
        }
        match inner.export(all.clone()).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                // What arrived meanwhile is newer: it goes after.
                let newer: Vec<SpanData> = held.drain(..).collect();
                held.extend(all);
                held.extend(newer);
                let over = held.len().saturating_sub(self.cap);
                held.drain(..over);
                self.dropped
                    .fetch_add(over as u64, std::sync::atomic::Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

impl SpanExporter for HeldSpans {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let this = self.clone();
        async move { this.send(batch).await }
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Ok(mut inner) = self.inner.try_lock() {
            inner.set_resource(resource);
        }
    }
}
