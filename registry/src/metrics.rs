//! Request metrics: a tower layer that counts and times every gRPC call and
//! logs it, and a `/metrics` endpoint in the Prometheus text format.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::service::RegistryApi;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Counters of the registry's gRPC traffic.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// Records one finished call.
    pub fn observe(&self, method: &str, code: &str, elapsed: Duration) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((method.to_owned(), code.to_owned())).or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            let h = l.entry(method.to_owned()).or_default();
            let s = elapsed.as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if s <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += s;
            h.count += 1;
        }
    }

    /// The Prometheus text exposition of these metrics and of the catalog's size.
    pub fn render(&self, registry: Option<&dyn RegistryApi>) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        out.push_str(
            "# HELP algobay_registry_requests_total gRPC calls by method and status code.\n",
        );
        out.push_str("# TYPE algobay_registry_requests_total counter\n");
        if let Ok(r) = self.requests.lock() {
            for ((m, c), n) in r.iter() {
                let _ = writeln!(
                    out,
                    "algobay_registry_requests_total{{method=\"{m}\",code=\"{c}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP algobay_registry_request_seconds Time to answer a gRPC call (to its response headers).\n");
        out.push_str("# TYPE algobay_registry_request_seconds histogram\n");
        if let Ok(l) = self.latency.lock() {
            for (m, h) in l.iter() {
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "algobay_registry_request_seconds_bucket{{method=\"{m}\",le=\"{b}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "algobay_registry_request_seconds_bucket{{method=\"{m}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "algobay_registry_request_seconds_sum{{method=\"{m}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "algobay_registry_request_seconds_count{{method=\"{m}\"}} {}",
                    h.count
                );
            }
        }
        if let Some(reg) = registry {
            if let Ok(c) = reg.coverage_all() {
                out.push_str(
                    "# HELP algobay_registry_artifacts Published, unyanked artifacts by kind.\n",
                );
                out.push_str("# TYPE algobay_registry_artifacts gauge\n");
                for (k, n) in [("model", c.models), ("tool", c.tools), ("kit", c.kits)] {
                    let _ = writeln!(out, "algobay_registry_artifacts{{kind=\"{k}\"}} {n}");
                }
                out.push_str("# TYPE algobay_registry_teams gauge\n");
                let _ = writeln!(out, "algobay_registry_teams {}", c.teams);
                out.push_str("# TYPE algobay_registry_enterprises gauge\n");
                let _ = writeln!(out, "algobay_registry_enterprises {}", c.enterprises);
            }
        }
        out
    }
}

/// Counts, times and logs every call passing through.
#[derive(Clone, Debug)]
pub struct MetricsLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for MetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Send,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().trim_start_matches('/').to_owned();
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            let code = match &res {
                // Errors are answered in the headers; success in the trailers (counted as 0 here).
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0")
                    .to_owned(),
                Err(_) => "transport".to_owned(),
            };
            let elapsed = started.elapsed();
            metrics.observe(&method, &code, elapsed);
            tracing::info!(target: "algobay_registry::request", method = %method, code = %code, ms = elapsed.as_secs_f64() * 1e3, "grpc");
            res
        })
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    registry: Arc<dyn RegistryApi>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (mut sock, _) = tokio::select! {
            r = listener.accept() => r?,
            _ = &mut shutdown => return Ok(()),
        };
        let metrics = metrics.clone();
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            while n < buf.len() {
                match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf[n..])).await {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(k)) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let line = head.lines().next().unwrap_or_default().to_owned();
            let (status, body) = if line.starts_with("GET /metrics ") {
                let reg = registry.clone();
                let body = tokio::task::spawn_blocking(move || metrics.render(Some(reg.as_ref())))
                    .await
                    .unwrap_or_default();
                ("200 OK", body)
            } else {
                ("404 Not Found", "not found: try GET /metrics\n".to_owned())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
