//! The agent's telemetry beyond the happy path: what it served while the
//! registry was away reaches the registry even when the agent restarts
//! before the registry comes back; and the enterprise's own OpenTelemetry
//! collector (a real OTLP/gRPC server here) gets the same figures and traces.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

/// What the collector received: the latest `algobay.kit.requests` total of
/// each series, the trace ids, and the headers of the last export.
#[derive(Default)]
struct Received {
    requests: std::collections::BTreeMap<(String, u64), u64>,
    traces: std::collections::BTreeSet<Vec<u8>>,
    tenant: String,
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Received>>);

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point::Value};
        let mut r = self.0.lock().unwrap();
        if let Some(t) = req.metadata().get("x-tenant") {
            r.tenant = t.to_str().unwrap_or_default().to_owned();
        }
        for rm in &req.get_ref().resource_metrics {
            for sm in &rm.scope_metrics {
                for m in sm
                    .metrics
                    .iter()
                    .filter(|m| m.name == "algobay.kit.requests")
                {
                    if let Some(Data::Sum(s)) = &m.data {
                        for p in &s.data_points {
                            let outcome = p
                                .attributes
                                .iter()
                                .find(|a| a.key == "outcome")
                                .map(|a| format!("{:?}", a.value))
                                .unwrap_or_default();
                            if let Some(Value::AsInt(n)) = p.value {
                                r.requests
                                    .insert((outcome, p.start_time_unix_nano), n as u64);
                            }
                        }
                    }
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut r = self.0.lock().unwrap();
        for rs in &req.get_ref().resource_spans {
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    r.traces.insert(s.trace_id.clone());
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn requests_in_registry(rt: &tokio::runtime::Runtime, c: &algobay_sdk::Client) -> u64 {
    rt.block_on(c.telemetry("", ""))
        .map(|ts| ts.iter().map(|t| t.requests).sum())
        .unwrap_or(0)
}

#[test]
fn served_while_the_registry_was_away_survives_an_agent_restart_and_a_collector_gets_a_copy() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let collector = Collector::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    {
        let c = collector.clone();
        rt.spawn(
            tonic::transport::Server::builder()
                .add_service(MetricsServiceServer::new(c.clone()))
                .add_service(TraceServiceServer::new(c))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("registry");
    let mut reg = RegistryProc::start(&data, 0);
    let (acme_token, _) = rt.block_on(seed(&reg, false));
    let acme = rt.block_on(reg.client(&acme_token));
    let mut agent = device(
        &rt,
        &reg,
        &acme,
        dir.path(),
        "edge-1",
        &format!(
            "telemetry_seconds = 1\ntrace_sample_ratio = 1.0\n\
             otlp_endpoint = \"http://127.0.0.1:{port}\"\notlp_headers = \"x-tenant=acme\"\n"
        ),
    );
    serve(&rt, &acme, &agent, "algobay/digits-mlp@1.0.0", 120);
    for _ in 0..3 {
        assert_eq!(agent.infer(&row9()).0, 200);
    }
    wait_for(30, "3 requests at the registry", || {
        (requests_in_registry(&rt, &acme) == 3).then_some(())
    });
    // The collector got the same figures, the traces and the headers.
    wait_for(30, "3 requests at the collector", || {
        let r = collector.0.lock().unwrap();
        (r.requests.values().sum::<u64>() == 3 && r.traces.len() >= 3).then_some(())
    });
    assert_eq!(collector.0.lock().unwrap().tenant, "acme");

    // The registry goes away; the device serves on, then restarts before it is back.
    let port = reg.port;
    reg.kill();
    for _ in 0..4 {
        assert_eq!(agent.infer(&row9()).0, 200);
    }
    std::thread::sleep(Duration::from_millis(2500)); // an export tick or two: kept on disk
    agent.kill();
    let kept: Vec<_> = std::fs::read_dir(agent.dir.join("data/telemetry"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pb"))
        .collect();
    assert!(!kept.is_empty(), "the totals were kept on disk");
    let reg = RegistryProc::start(&data, port);
    let acme = rt.block_on(reg.client(&acme_token));
    agent.kill_and_restart();
    wait_for(
        60,
        "the 4 requests served while the registry was away",
        || (requests_in_registry(&rt, &acme) == 7).then_some(()),
    );
    // Delivered, the earlier start's file is gone; the new start counts on top.
    wait_for(30, "the delivered snapshot removed", || {
        (std::fs::read_dir(agent.dir.join("data/telemetry"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".pb"))
            .count()
            <= 1)
            .then_some(())
    });
    wait_for(120, "the agent serving again", || {
        agent.active().filter(|r| r == "algobay/digits-mlp@1.0.0")
    });
    assert_eq!(agent.infer(&row9()).0, 200);
    wait_for(30, "8 requests at the registry", || {
        (requests_in_registry(&rt, &acme) == 8).then_some(())
    });
}
