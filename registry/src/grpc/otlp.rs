//! The embedded OTLP receiver (OpenTelemetry's own metrics and trace
//! services): devices export over mTLS; points and spans become domain values
//! for [`crate::telemetry`] and [`crate::traces`].

use std::collections::BTreeMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1 as collector;
use opentelemetry_proto::tonic::collector::trace::v1 as trace_collector;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use tonic::{Request, Response, Status};

use super::{blocking, principal};
use crate::service::RegistryApi;
use crate::telemetry::{MetricPoint, PointValue};
use crate::traces::SpanRecord;

/// `opentelemetry.proto.collector.metrics.v1.MetricsService`.
#[derive(Clone)]
pub struct OtlpMetrics(pub Arc<dyn RegistryApi>);

fn attributes(kv: &[KeyValue]) -> BTreeMap<String, String> {
    kv.iter()
        .filter_map(|kv| {
            let v = match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => s.clone(),
                any_value::Value::IntValue(i) => i.to_string(),
                any_value::Value::BoolValue(b) => b.to_string(),
                any_value::Value::DoubleValue(d) => d.to_string(),
                _ => return None,
            };
            Some((kv.key.clone(), v))
        })
        .collect()
}

fn points(req: collector::ExportMetricsServiceRequest) -> Vec<MetricPoint> {
    let mut out = Vec::new();
    for rm in req.resource_metrics {
        for sm in rm.scope_metrics {
            for m in sm.metrics {
                match m.data {
                    Some(metric::Data::Sum(s)) => {
                        for p in s.data_points {
                            let v = match p.value {
                                Some(number_data_point::Value::AsInt(i)) => i as f64,
                                Some(number_data_point::Value::AsDouble(d)) => d,
                                None => continue,
                            };
                            out.push(MetricPoint {
                                name: m.name.clone(),
                                attributes: attributes(&p.attributes),
                                start_unix_nano: p.start_time_unix_nano,
                                value: PointValue::Sum(v),
                            });
                        }
                    }
                    Some(metric::Data::Histogram(h)) => {
                        for p in h.data_points {
                            out.push(MetricPoint {
                                name: m.name.clone(),
                                attributes: attributes(&p.attributes),
                                start_unix_nano: p.start_time_unix_nano,
                                value: PointValue::Histogram {
                                    count: p.count,
                                    sum: p.sum.unwrap_or(0.0),
                                    bounds: p.explicit_bounds,
                                    counts: p.bucket_counts,
                                },
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

#[tonic::async_trait]
impl collector::metrics_service_server::MetricsService for OtlpMetrics {
    async fn export(
        &self,
        req: Request<collector::ExportMetricsServiceRequest>,
    ) -> Result<Response<collector::ExportMetricsServiceResponse>, Status> {
        let p = principal(&self.0, &req).await?;
        let pts = points(req.into_inner());
        let reg = self.0.clone();
        blocking(move || reg.ingest_metrics(&p, pts)).await?;
        Ok(Response::new(collector::ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

/// `opentelemetry.proto.collector.trace.v1.TraceService`.
#[derive(Clone)]
pub struct OtlpTraces(pub Arc<dyn RegistryApi>);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn spans(req: trace_collector::ExportTraceServiceRequest) -> Vec<SpanRecord> {
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    let mut out = Vec::new();
    for rs in req.resource_spans {
        for ss in rs.scope_spans {
            for s in ss.spans {
                let error = s
                    .status
                    .as_ref()
                    .filter(|st| st.code == StatusCode::Error as i32)
                    .map(|st| st.message.clone());
                out.push(SpanRecord {
                    trace_id: hex(&s.trace_id),
                    parent_span_id: hex(&s.parent_span_id),
                    name: s.name,
                    start_unix_nano: s.start_time_unix_nano,
                    end_unix_nano: s.end_time_unix_nano,
                    attributes: attributes(&s.attributes),
                    error,
                });
            }
        }
    }
    out
}

#[tonic::async_trait]
impl trace_collector::trace_service_server::TraceService for OtlpTraces {
    async fn export(
        &self,
        req: Request<trace_collector::ExportTraceServiceRequest>,
    ) -> Result<Response<trace_collector::ExportTraceServiceResponse>, Status> {
        let p = principal(&self.0, &req).await?;
        let spans = spans(req.into_inner());
        let reg = self.0.clone();
        blocking(move || reg.ingest_spans(&p, spans)).await?;
        Ok(Response::new(trace_collector::ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}
