//! `algobay login` and the trust in a registry's certificate.

use super::*;

#[test]
fn an_untrusted_registry_certificate_is_refused_with_the_connect_code() {
    let (env, operator) = Env::start();
    let other = tempfile::tempdir().unwrap();
    algobay_registry::tls::TlsIdentity::self_signed_in(other.path(), &[]).unwrap();
    let (code, _, err) = run(env
        .algobay()
        .args(["--registry", &env.url, "--token", &operator, "--ca-cert"])
        .arg(other.path().join("cert.pem"))
        .arg("search"));
    assert_eq!(code, 8, "{err}");
    assert!(
        err.contains("cannot reach the registry") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn login_without_a_certificate_shows_the_fingerprint_and_trusts_only_a_confirmed_one() {
    let (env, operator) = Env::start();
    let fp =
        algobay_registry::tls::TlsIdentity::read(&env.cert, &env.cert.with_file_name("key.pem"))
            .unwrap()
            .fingerprint();
    // Not a terminal, no confirmation: refused, and the fingerprint is shown to check.
    let (code, _, err) =
        run(env
            .algobay()
            .args(["login", "--registry", &env.url, "--token", &operator]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&fp) && err.contains("--trust-fingerprint"),
        "{err}"
    );
    // A fingerprint that is not the registry's: refused.
    let (code, _, err) = run(env.algobay().args([
        "login",
        "--registry",
        &env.url,
        "--token",
        &operator,
        "--trust-fingerprint",
        "AA:BB",
    ]));
    assert_eq!(code, 8, "{err}");
    // The right one: saved, and later commands trust the registry without --ca-cert.
    let lower = fp.to_lowercase();
    let out = ok(env.algobay().args([
        "login",
        "--registry",
        &env.url,
        "--token",
        &operator,
        "--trust-fingerprint",
        &lower,
    ]));
    assert!(out.contains("as operator"), "{out}");
    let out = ok(env.algobay().args(["coverage", "--json"]));
    assert!(out.contains("\"teams\": 0"), "{out}");
}

#[test]
fn login_creates_the_config_file_named_by_algobay_config() {
    let (env, operator) = Env::start();
    let path = env.path("fresh/nested/algobay.toml");
    let out = ok(env
        .algobay()
        .env("ALGOBAY_CONFIG", &path)
        .args([
            "login",
            "--registry",
            &env.url,
            "--token",
            &operator,
            "--ca-cert",
        ])
        .arg(&env.cert));
    assert!(out.contains("as operator"), "{out}");
    let saved = std::fs::read_to_string(&path).unwrap();
    assert!(
        saved.contains(&env.url) && saved.contains("ca_cert"),
        "{saved}"
    );
    let out = ok(env
        .algobay()
        .env("ALGOBAY_CONFIG", &path)
        .args(["coverage", "--json"]));
    assert!(out.contains("\"teams\""), "{out}");
    // Other commands still refuse a named config file that is missing.
    let (code, _, err) = run(env
        .algobay()
        .env("ALGOBAY_CONFIG", env.path("missing.toml"))
        .arg("search"));
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("missing.toml"), "{err}");
}
