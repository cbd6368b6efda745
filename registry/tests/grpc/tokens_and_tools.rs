//! Tokens that no longer count, and tools that must be stages.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_tokens_are_refused() {
    let h = start().await;
    h.team("acme").await;
    let t = h.team_token("acme", 60).await.unwrap();
    let who = h
        .admin()
        .who_am_i(req(pb::WhoAmIRequest {}, &t.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (who.role, who.subject.as_str()),
        (pb::Role::Team as i32, "acme")
    );
    h.clock.0.fetch_add(61, Ordering::SeqCst);
    let err = h
        .admin()
        .who_am_i(req(pb::WhoAmIRequest {}, &t.token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("expired"), "{}", err.message());

    let t = h.team_token("acme", 0).await.unwrap();
    h.admin()
        .revoke_token(req(
            pb::RevokeTokenRequest {
                token_id: t.token_id.clone(),
            },
            &h.operator,
        ))
        .await
        .unwrap();
    let err = h
        .admin()
        .who_am_i(req(pb::WhoAmIRequest {}, &t.token))
        .await
        .unwrap_err();
    assert!(err.message().contains("revoked"), "{}", err.message());
    let err = h.team_token("nobody", 0).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(
        target_dir()
            .join("wasm32-wasip2/release")
            .join(format!("{name}.wasm")),
    )
    .expect("build the stages first (scripts/test.sh does)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_must_implement_the_stage_interface() {
    let h = start().await;
    let (tok, _) = h.team("acme").await;
    let tool = wasm("stage_classify_post");
    h.upload(&tok, &tool).await;
    let tr = |d: &Digest, kind: &str| pb::PublishToolRequest {
        name: "acme/softmax".into(),
        version: "1.0.0".into(),
        digest: d.to_string(),
        tool_kind: kind.into(),
        ..Default::default()
    };
    let err = h
        .catalog()
        .publish_tool(req(tr(&Digest::of(&tool), "magic"), &tok))
        .await
        .unwrap_err();
    assert!(err.message().contains("tool_kind"), "{}", err.message());
    let a = h
        .catalog()
        .publish_tool(req(tr(&Digest::of(&tool), "postprocess"), &tok))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.inputs[0].r#type, "f32[?,?]");
    assert_eq!(a.outputs[0].name, "result");
    let junk = vec![0u8, 97, 115, 109, 1, 0, 0, 0, 255, 255];
    h.upload(&tok, &junk).await;
    let mut r = tr(&Digest::of(&junk), "postprocess");
    r.name = "acme/junk".into();
    let err = h.catalog().publish_tool(req(r, &tok)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("stage"), "{}", err.message());
}
