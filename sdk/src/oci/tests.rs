use super::*;

#[test]
fn references_parse_with_tags_digests_and_schemes() {
    let r: OciRef = "localhost:5000/acme/ocr:1.0.0".parse().unwrap();
    assert!(r.plain_http);
    assert_eq!(
        (r.host.as_str(), r.repository.as_str(), r.tag.as_deref()),
        ("localhost:5000", "acme/ocr", Some("1.0.0"))
    );
    let d = format!("sha256:{}", "a".repeat(64));
    let r: OciRef = format!("registry.example.com/kits/ocr@{d}")
        .parse()
        .unwrap();
    assert!(!r.plain_http);
    assert_eq!(r.digest.as_deref(), Some(d.as_str()));
    assert_eq!(r.manifest_key(), d);
    let r: OciRef = "http://mirror.lan:5000/a/b:v1".parse().unwrap();
    assert!(r.plain_http);
    assert_eq!(r.to_string(), "mirror.lan:5000/a/b:v1");
}

#[test]
fn malformed_references_are_refused_by_what_is_wrong() {
    for (text, says) in [
        ("acme/ocr:1.0", "registry host"),
        ("localhost:5000/Acme/ocr:1", "lowercase"),
        ("localhost:5000/acme/ocr", "tag or a digest"),
        ("localhost:5000/acme/ocr@sha256:12", "digest"),
        ("localhost:5000", "no repository"),
        ("localhost:5000/acme/ocr:-x", "tag"),
    ] {
        let e = text.parse::<OciRef>().unwrap_err().to_string();
        assert!(e.contains(says) && e.contains(text), "{text}: {e}");
    }
}

#[test]
fn bearer_challenges_split_outside_quotes() {
    let parts = split_params(
        r#"realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push""#,
    );
    assert_eq!(parts.len(), 3, "{parts:?}");
    assert!(parts[2].ends_with(r#"pull,push""#));
}
