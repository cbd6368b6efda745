//! Wiring: the registry's gRPC services, health and reflection on one listener.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use algobay_proto::v1 as pb;

use crate::grpc::guard::GuardLayer;
use crate::grpc::{AdminApi, BlobsApi, CatalogApi, FleetApi, OtlpMetrics, OtlpTraces, TrainingApi};
use crate::metrics::{Metrics, MetricsLayer};
use crate::service::RegistryApi;
use crate::tls::TlsIdentity;

/// Largest gRPC message accepted (a blob chunk plus headroom), read only once
/// the caller is authenticated.
pub const MAX_MESSAGE: usize = 16 << 20;

/// Calls in flight on one connection.
pub const MAX_STREAMS: u32 = 128;

/// Serves until `shutdown` completes, then finishes the requests in flight.
/// `tls: None` serves plaintext (only for `--insecure`).
/// Connections are admitted within `limits` (caps per peer and in all, the
/// longest idle shed first; see `algobay_net`).
pub async fn serve(
    listener: TcpListener,
    registry: Arc<dyn RegistryApi>,
    tls: Option<TlsIdentity>,
    metrics: Arc<Metrics>,
    limits: algobay_net::Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::admin_server::AdminServer<AdminApi>>()
        .await;
    health
        .set_serving::<pb::blobs_server::BlobsServer<BlobsApi>>()
        .await;
    health
        .set_serving::<pb::catalog_server::CatalogServer<CatalogApi>>()
        .await;
    health
        .set_serving::<pb::fleet_server::FleetServer<FleetApi>>()
        .await;
    health
        .set_serving::<pb::training_server::TrainingServer<TrainingApi>>()
        .await;
    // Rollouts whose canaries are soaking move on with time, not only on reports;
    // abandoned partial uploads are swept now and then.
    let ticker = {
        let reg = registry.clone();
        let sweep_every = (reg.ceilings().partial_max_age / 2).clamp(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(60),
        );
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut swept = std::time::Instant::now();
            loop {
                every.tick().await;
                let reg = reg.clone();
                let sweep = swept.elapsed() >= sweep_every;
                if sweep {
                    swept = std::time::Instant::now();
                }
                let done = tokio::task::spawn_blocking(move || {
                    if sweep {
                        match reg.sweep_uploads() {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(removed = n, "swept abandoned uploads"),
                            Err(e) => tracing::warn!(error = %e, "sweeping uploads"),
                        }
                        if let Err(e) = reg.trim_traces() {
                            tracing::warn!(error = %e, "trimming stored traces");
                        }
                    }
                    reg.tick()
                })
                .await;
                match done {
                    Ok(Err(e)) => tracing::warn!(error = %e, "rollout gates"),
                    Err(e) => tracing::warn!(error = %e, "rollout gates task"),
                    Ok(Ok(_)) => {}
                }
            }
        })
    };
    // What other replicas sharing the stores change reaches this one's index
    // and the devices waiting here.
    let follower = {
        let reg = registry.clone();
        tokio::spawn(async move {
            let sub = {
                let reg = reg.clone();
                tokio::task::spawn_blocking(move || reg.subscribe_store()).await
            };
            let mut rx = match sub {
                Ok(Ok(rx)) => rx,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot hear other replicas' changes");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot hear other replicas' changes");
                    return;
                }
            };
            while let Some(n) = rx.recv().await {
                let reg = reg.clone();
                match tokio::task::spawn_blocking(move || reg.follow(n)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "applying another replica's change"),
                    Err(e) => tracing::warn!(error = %e, "applying another replica's change"),
                }
            }
        })
    };
    // Reflection in both its forms: many tools (Python's grpcio-reflection
    // among them) speak only `v1alpha`.
    let described = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(algobay_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = described()
        .build_v1()
        .expect("embedded descriptor sets are valid");
    let reflection_alpha = described()
        .build_v1alpha()
        .expect("embedded descriptor sets are valid");
    let mut builder = Server::builder()
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(8 << 20)
        .tcp_nodelay(true)
        // Bounds per connection: streams at once, header size; dead peers are found.
        .max_concurrent_streams(Some(MAX_STREAMS))
        .http2_max_header_list_size(Some(64 << 10))
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        .http2_max_pending_accept_reset_streams(Some(64))
        .layer(MetricsLayer(metrics))
        .layer(algobay_proto::status::MalformedAsInvalidLayer)
        .layer(GuardLayer(registry.clone()));
    if let Some(id) = tls {
        let mut config =
            ServerTlsConfig::new().identity(Identity::from_pem(id.cert_pem, id.key_pem));
        if let Some(ca) = id.client_ca_pem {
            config = config
                .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                .client_auth_optional(true);
        }
        builder = builder.tls_config(config)?;
    }
    let served = builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(
            pb::admin_server::AdminServer::new(AdminApi(registry.clone()))
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            pb::blobs_server::BlobsServer::new(BlobsApi(registry.clone()))
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            pb::catalog_server::CatalogServer::new(CatalogApi(registry.clone()))
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            pb::fleet_server::FleetServer::new(FleetApi(registry.clone()))
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            pb::training_server::TrainingServer::new(TrainingApi(registry.clone()))
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer::new(
                OtlpMetrics(registry.clone()),
            ),
        )
        .add_service(
            opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer::new(
                OtlpTraces(registry),
            ),
        )
        .serve_with_incoming_shutdown(
            algobay_net::incoming(listener, algobay_net::Tracker::new(limits)),
            shutdown,
        )
        .await;
    ticker.abort();
    follower.abort();
    served
}
