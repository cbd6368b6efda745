//! What operators and tools ask of the gRPC server: health, metrics by
//! method and code, and reflection.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checking_answers_serving() {
    let h = start().await;
    let mut c = tonic_health::pb::health_client::HealthClient::new(h.channel.clone());
    let r = c
        .check(tonic_health::pb::HealthCheckRequest {
            service: "algobay.v1.Catalog".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let _ = sha2::Sha256::digest(b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_counts_calls_by_method_and_code() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = start().await;
    let (tok, _) = h.team("acme").await;
    h.catalog()
        .search(req(pb::SearchRequest::default(), &tok))
        .await
        .unwrap();
    let _ = h
        .catalog()
        .search(Request::new(pb::SearchRequest::default()))
        .await
        .unwrap_err();
    let mut s = tokio::net::TcpStream::connect(h.metrics_addr)
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(
        body.contains(
            "algobay_registry_requests_total{method=\"algobay.v1.Catalog/Search\",code=\"0\"} 1"
        ),
        "{body}"
    );
    assert!(
        body.contains(
            "algobay_registry_requests_total{method=\"algobay.v1.Catalog/Search\",code=\"16\"} 1"
        ),
        "{body}"
    );
    assert!(body.contains("algobay_registry_teams 1"), "{body}");
    assert!(
        body.contains(
            "algobay_registry_request_seconds_count{method=\"algobay.v1.Admin/CreateTeam\"} 1"
        ),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1alpha_answers_as_v1_does() {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    let h = start().await;
    let mut c = ServerReflectionClient::new(h.channel.clone());
    let asks = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "algobay.v1.Catalog".into(),
            )),
        },
    ];
    let mut answers = c
        .server_reflection_info(tokio_stream::iter(asks))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("{answer:?}")
    };
    assert!(
        list.service.iter().any(|s| s.name == "algobay.v1.Catalog"),
        "{list:?}"
    );
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = answer.message_response else {
        panic!("{answer:?}")
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_registry_services() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let h = start().await;
    let mut c = ServerReflectionClient::new(h.channel.clone());
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = c
        .server_reflection_info(tokio_stream::iter(vec![ask]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("{answer:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "algobay.v1.Admin",
        "algobay.v1.Blobs",
        "algobay.v1.Catalog",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
}
