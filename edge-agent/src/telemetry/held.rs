//! Spans held back while the registry is unreachable.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

/// The OTLP span exporter, holding back what it could not send: a failed
/// export keeps its spans (the oldest dropped past the budget, and counted)
/// and the next export, or [`Telemetry::resend_held`], sends them first.
#[derive(Clone, Debug)]
pub(crate) struct HeldSpans {
    inner: Arc<tokio::sync::Mutex<opentelemetry_otlp::SpanExporter>>,
    held: Arc<Mutex<VecDeque<SpanData>>>,
    cap: usize,
    pub(crate) dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl HeldSpans {
    pub(crate) fn new(inner: opentelemetry_otlp::SpanExporter, cap: usize) -> HeldSpans {
        HeldSpans {
            inner: Arc::new(tokio::sync::Mutex::new(inner)),
            held: Default::default(),
            cap,
            dropped: Default::default(),
        }
    }

    pub(crate) async fn send(&self, batch: Vec<SpanData>) -> OTelSdkResult {
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
