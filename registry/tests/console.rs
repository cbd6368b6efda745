//! The web console over real sockets (HTTP/1.1 by hand, no browser): signed-in
//! sessions and how they end, anti-forgery tokens, another enterprise's pages,
//! ordering by downloads and facets, and the headers every page carries. The
//! browser's view of the same pages is `edge-agent/tests/console.rs`.
#![allow(clippy::unwrap_used)]

mod common;
use common::fleet::*;
use common::web::*;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use algobay_registry::domain::*;

/// Signs in with `token`; returns the session cookie and the page's anti-forgery token.
fn sign_in(addr: std::net::SocketAddr, token: &str) -> (String, String) {
    let done = try_sign_in(addr, token, "/fleet");
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.header("location"), Some("/fleet"));
    let set = done
        .headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("algobay_session="))
        .unwrap()
        .1
        .clone();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{set}");
    }
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = request(addr, "GET", "/fleet", &[("Cookie", &cookie)], "");
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    (cookie, csrf)
}

fn operator() -> Principal {
    principal(Role::Operator, "")
}

#[test]
fn a_session_ends_when_it_expires_is_signed_out_or_its_token_is_revoked() {
    let f = fleet(0);
    let (rec, token) = f
        .reg
        .create_token(&operator(), Role::Enterprise, "acme", 0, "")
        .unwrap();
    let (secret, s) = f.reg.sign_in(&token).unwrap();
    assert_eq!(s.principal.subject, "acme");
    assert_eq!(f.reg.session(&secret).unwrap().csrf, s.csrf);
    assert!(
        f.reg.session(&"0".repeat(64)).is_err(),
        "an unknown secret is no session"
    );
    assert!(f.reg.session("x").is_err(), "a malformed one neither");

    f.clock
        .0
        .fetch_add(algobay_registry::service::SESSION_TTL, Ordering::SeqCst);
    let e = f.reg.session(&secret).unwrap_err().to_string();
    assert!(e.contains("expired"), "{e}");

    let (secret, _) = f.reg.sign_in(&token).unwrap();
    f.reg.sign_out(&secret).unwrap();
    assert!(f.reg.session(&secret).is_err());

    let (secret, _) = f.reg.sign_in(&token).unwrap();
    f.reg.revoke_token(&operator(), &rec.id).unwrap();
    let e = f.reg.session(&secret).unwrap_err().to_string();
    assert!(e.contains("revoked"), "{e}");
    assert!(
        f.reg.sign_in(&token).is_err(),
        "a revoked token signs nobody in"
    );
}

#[test]
fn another_enterprises_pages_are_not_found_and_forms_need_the_sessions_token() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let f = fleet(2);
    let dep = f.deploy(&f.v1, f.policy(0.5, 600));
    f.reg
        .create_enterprise(&operator(), "globex", "", vec![])
        .unwrap();
    let (_, acme_token) = f
        .reg
        .create_token(&operator(), Role::Enterprise, "acme", 0, "")
        .unwrap();
    let (_, globex_token) = f
        .reg
        .create_token(&operator(), Role::Enterprise, "globex", 0, "")
        .unwrap();
    let addr = console(&rt, Arc::new(f.replica()));

    let (acme, acme_csrf) = sign_in(addr, &acme_token);
    let page = request(
        addr,
        "GET",
        &format!("/fleet/deployments/{}", dep.id),
        &[("Cookie", &acme)],
        "",
    );
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"state\">canary<"), "{}", page.body);

    // Globex: every page and action of acme's is "not found".
    let (globex, globex_csrf) = sign_in(addr, &globex_token);
    let device = &f.devices[0].token_id;
    for path in [
        format!("/fleet/deployments/{}", dep.id),
        format!("/fleet/devices/{device}"),
        "/fleet/traces/0123456789abcdef0123456789abcdef".to_owned(),
    ] {
        let a = request(addr, "GET", &path, &[("Cookie", &globex)], "");
        assert_eq!(a.status, 404, "{path}: {}", a.body);
    }
    let a = request(
        addr,
        "POST",
        &format!("/fleet/deployments/{}/rollback", dep.id),
        &[("Cookie", &globex)],
        &format!("csrf={globex_csrf}&reason=x"),
    );
    assert_eq!(a.status, 404);
    // Its fleet page lists none of acme's devices, whatever it asks for.
    let a = request(
        addr,
        "GET",
        "/fleet?enterprise=acme",
        &[("Cookie", &globex)],
        "",
    );
    assert!(
        a.body.contains("Fleet of globex") && !a.body.contains(device.as_str()),
        "{}",
        a.body
    );

    // Acme without its token, with another session's, then with its own.
    for body in [
        "reason=x".to_owned(),
        format!("csrf={globex_csrf}&reason=x"),
    ] {
        let a = request(
            addr,
            "POST",
            &format!("/fleet/deployments/{}/pause", dep.id),
            &[("Cookie", &acme)],
            &body,
        );
        assert_eq!(a.status, 403, "{}", a.body);
        assert!(a.body.contains("anti-forgery"), "{}", a.body);
    }
    let (d, _) = f.reg.deployment_status(&f.acme, &dep.id).unwrap();
    assert_eq!(
        d.state,
        DeploymentState::Canary,
        "a forged form changed nothing"
    );
    let a = request(
        addr,
        "POST",
        &format!("/fleet/deployments/{}/pause", dep.id),
        &[("Cookie", &acme)],
        &format!("csrf={acme_csrf}&reason=from+the+test"),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    let (d, _) = f.reg.deployment_status(&f.acme, &dep.id).unwrap();
    assert_eq!(d.state, DeploymentState::Paused);

    // Signed out, the cookie is worth nothing.
    let a = request(
        addr,
        "POST",
        "/signout",
        &[("Cookie", &acme)],
        &format!("csrf={acme_csrf}"),
    );
    assert_eq!(a.status, 303);
    let a = request(addr, "GET", "/fleet", &[("Cookie", &acme)], "");
    assert_eq!(a.status, 303);
    assert!(a
        .header("location")
        .unwrap()
        .starts_with("/signin?next=/fleet"));
}

#[test]
fn the_marketplace_filters_orders_by_downloads_and_counts_facets_for_anyone() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let f = fleet(0);
    let b = f.reg.get(&f.v2, Some(Kind::Kit)).unwrap();
    for _ in 0..3 {
        f.reg.note_download(&b.digest).unwrap();
    }
    let addr = console(&rt, Arc::new(f.replica()));

    let a = request(addr, "GET", "/?sort=downloads", &[], "");
    assert_eq!(a.status, 200, "{}", a.body);
    let first = a.body.find("algobay/digits-b").unwrap();
    let second = a.body.find("algobay/digits-a").unwrap();
    assert!(first < second, "the downloaded kit comes first");
    assert!(a.body.contains("3 downloads"), "{}", a.body);
    assert!(a.body.contains("data-facet=\"kind\""));
    assert!(a.body.contains("2 found"), "{}", a.body);

    let a = request(addr, "GET", "/?kind=kit&team=nobody", &[], "");
    assert!(a.body.contains("0 found"), "{}", a.body);
    let a = request(addr, "GET", "/?sort=popular", &[], "");
    assert_eq!(a.status, 400);
    assert!(a.body.contains("sort `popular`"), "{}", a.body);
    let a = request(addr, "GET", "/?kind=gadget", &[], "");
    assert_eq!(a.status, 400);

    // A kit's page: its downloads, diagram and pull command, for a visitor.
    let (name, version) = f.v2.split_once('@').unwrap();
    let a = request(addr, "GET", &format!("/a/kit/{name}/{version}"), &[], "");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("3 in all"), "{}", a.body);
    assert!(a.body.contains("<svg class=\"pipeline\""));
    assert!(a.body.contains(&format!("algobay kit pull {}", f.v2)));
    let a = request(addr, "GET", "/a/kit/algobay/nothing/1.0.0", &[], "");
    assert_eq!(a.status, 404);
}

#[test]
fn every_answer_carries_a_strict_policy_and_assets_are_cached_by_their_hash() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let f = fleet(0);
    let addr = console(&rt, Arc::new(f.replica()));
    let a = request(addr, "GET", "/", &[("Accept-Encoding", "gzip")], "");
    assert_eq!(a.status, 200);
    let csp = a.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(a.header("content-encoding"), Some("gzip"));
    assert_eq!(a.header("cache-control"), Some("no-store"));
    let page = request(addr, "GET", "/", &[], "");
    let css = page
        .body
        .split("href=\"/static/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let js = page
        .body
        .split("src=\"/static/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    for file in [css, js] {
        let a = request(addr, "GET", &format!("/static/{file}"), &[], "");
        assert_eq!(a.status, 200, "{file}");
        assert_eq!(
            a.header("cache-control"),
            Some("public, max-age=31536000, immutable")
        );
    }
    let a = request(addr, "GET", "/static/console.000000000000.css", &[], "");
    assert_eq!(a.status, 404);
    assert!(!page.body.contains("<script>"), "no inline script");
}

/// Posts a sign-in with `token` and `next`; returns the answer.
fn try_sign_in(addr: std::net::SocketAddr, token: &str, next: &str) -> Answer {
    let form = request(addr, "GET", "/signin", &[], "");
    let nonce_cookie = form
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("algobay_signin="))
        .unwrap();
    let nonce = nonce_cookie.split_once('=').unwrap().1.to_owned();
    request(
        addr,
        "POST",
        "/signin",
        &[("Cookie", &nonce_cookie)],
        &format!("nonce={nonce}&token={token}&next={next}"),
    )
}

#[test]
fn sign_in_goes_only_to_a_local_path_and_wrong_tokens_are_limited_per_address() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let f = fleet(1);
    let (_, acme_token) = f
        .reg
        .create_token(&operator(), Role::Enterprise, "acme", 0, "")
        .unwrap();
    let addr = console(&rt, Arc::new(f.replica()));
    // Tabs, new lines, NUL, another host, a scheme, backslashes: 400, never a 500 or a redirect.
    for bad in [
        "/%09/evil.example",
        "/%0d%0aSet-Cookie:x=1",
        "/%0b",
        "/%00",
        "//evil.example",
        "https://evil.example/",
        "/%5c/evil.example",
        "/\\\\evil.example",
    ] {
        let a = try_sign_in(addr, &acme_token, bad);
        assert_eq!(
            a.status,
            400,
            "next={bad}: {} {:?}",
            a.status,
            a.header("location")
        );
        assert!(
            a.body.contains("next: must be a path on this site"),
            "{}",
            a.body
        );
        let page = request(addr, "GET", &format!("/signin?next={bad}"), &[], "");
        assert_eq!(page.status, 400, "GET next={bad}");
    }
    let ok = try_sign_in(addr, &acme_token, "/fleet?x=1");
    assert_eq!(
        (ok.status, ok.header("location")),
        (303, Some("/fleet?x=1"))
    );
    // Ten wrong tokens a minute from one address, then 429 with when to retry,
    // even for the right one.
    for i in 0..10 {
        let a = try_sign_in(addr, "abt_wrong", "/");
        assert_eq!(a.status, 401, "attempt {i}");
    }
    let limited = try_sign_in(addr, &acme_token, "/");
    assert_eq!(limited.status, 429, "{}", limited.body);
    let wait: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
}

#[test]
fn a_blob_too_big_to_show_is_refused_before_it_is_read() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let f = fleet(1);
    let team = principal(Role::Team, "algobay");
    // 40 MiB: over what a page shows (32 MiB).
    let big = vec![7u8; 40 << 20];
    let d = algobay_runtime::Digest::of(&big);
    f.reg.blobs().put(&d, &big).unwrap();
    f.reg.note_upload(&team, &d, true).unwrap();
    drop(big);
    let (_, token) = f
        .reg
        .create_token(&operator(), Role::Operator, "", 0, "")
        .unwrap();
    let addr = console(&rt, Arc::new(f.replica()));
    let (cookie, _) = sign_in_op(addr, &token);
    let before = peak_rss_mib();
    for _ in 0..20 {
        let a = request(
            addr,
            "GET",
            &format!("/blobs/{d}"),
            &[("Cookie", &cookie)],
            "",
        );
        assert_eq!(a.status, 400);
        assert!(a.body.contains("too big to show here"), "{}", a.body);
    }
    let grew = peak_rss_mib().saturating_sub(before);
    assert!(
        grew < 100,
        "reading sizes only, the peak grew by {grew} MiB"
    );
    // A small blob streams whole, verified.
    let small = b"hello".to_vec();
    let sd = algobay_runtime::Digest::of(&small);
    f.reg.blobs().put(&sd, &small).unwrap();
    f.reg.note_upload(&team, &sd, true).unwrap();
    let a = request(
        addr,
        "GET",
        &format!("/blobs/{sd}"),
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!((a.status, a.body.as_str()), (200, "hello"));
}

fn sign_in_op(addr: std::net::SocketAddr, token: &str) -> (String, String) {
    let done = try_sign_in(addr, token, "/");
    assert_eq!(done.status, 303, "{}", done.body);
    let cookie = done
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("algobay_session="))
        .unwrap();
    (cookie, String::new())
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap()
        / 1024
}

#[test]
fn coverage_tells_a_tenant_nothing_of_other_enterprises_or_their_private_kits() {
    let f = fleet(2);
    let team = principal(Role::Team, "algobay");
    // A kit made for acme alone, with a scenario of its own.
    let kit = common::build_digits(&f.key, "algobay/acme-only");
    for (d, b) in &kit.blobs {
        f.reg.blobs().put(d, b).unwrap();
        f.reg.note_upload(&team, d, true).unwrap();
    }
    f.reg
        .blobs()
        .put(
            &algobay_runtime::Digest::of(&kit.manifest_bytes),
            &kit.manifest_bytes,
        )
        .unwrap();
    f.reg
        .publish_kit(
            &team,
            kit.manifest_bytes.clone(),
            kit.signatures.clone(),
            "acme",
            &algobay_registry::service::Cancel::new(),
        )
        .unwrap();
    use algobay_registry::service::RegistryApi;
    let op = RegistryApi::coverage(&f.reg, &operator()).unwrap();
    assert_eq!(op.kits, 3);
    assert_eq!(op.enterprises, 1);
    for p in [team.clone(), f.acme.clone(), principal(Role::Visitor, "")] {
        let c = RegistryApi::coverage(&f.reg, &p).unwrap();
        assert_eq!(c.kits, 2, "{:?}: private kits are not counted", p.role);
        assert_eq!((c.enterprises, c.enterprises_served, c.devices), (0, 0, 0));
        assert!(
            c.by_industry
                .values()
                .all(|s| s.enterprises == 0 && s.devices == 0),
            "{:?}",
            c.by_industry
        );
    }
}
