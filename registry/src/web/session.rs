//! Signing in with an API token, the session cookie, and the anti-forgery
//! token every form carries.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;

use super::views::{self, Base};
use super::{blocking, Console, Shared, WebError};
use crate::domain::{Principal, Role};
use crate::service::WebSession;

/// The session cookie: HttpOnly, Secure, SameSite=Strict.
pub const SESSION_COOKIE: &str = "algobay_session";
/// The sign-in form's own anti-forgery cookie (before there is a session).
const SIGNIN_COOKIE: &str = "algobay_signin";

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn set_cookie(name: &str, value: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Compares two secrets in time that does not depend on where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Who is looking at a page: a signed-in session, or a visitor.
#[derive(Debug)]
pub(crate) struct Viewer {
    pub session: Option<WebSession>,
    /// The page asked for (where to come back to after signing in).
    pub path: String,
}

impl Viewer {
    /// The principal the registry's checks apply to.
    pub fn principal(&self) -> Principal {
        self.session
            .as_ref()
            .map_or_else(Principal::visitor, |s| s.principal.clone())
    }

    /// The session, or a redirect to sign in.
    pub fn signed_in(&self) -> Result<&WebSession, WebError> {
        self.session
            .as_ref()
            .ok_or_else(|| WebError::SignIn(self.path.clone()))
    }

    /// A form's anti-forgery token must be this session's.
    pub fn check_form(&self, form: &HashMap<String, String>) -> Result<&WebSession, WebError> {
        let s = self.signed_in()?;
        match form.get("csrf") {
            Some(t) if same_secret(t, &s.csrf) => Ok(s),
            _ => Err(WebError::Forged),
        }
    }

    /// The enterprise whose fleet a page shows: the caller's own, or for an
    /// operator the one named.
    pub fn enterprise(&self, named: Option<&str>) -> Result<String, WebError> {
        let p = self.signed_in()?.principal.clone();
        match p.role {
            Role::Enterprise => Ok(p.subject),
            Role::Operator => named
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| WebError::Invalid("name the enterprise: ?enterprise=NAME".into())),
            _ => Err(WebError::NotFound),
        }
    }

    pub fn base(&self, c: &Console, title: &str) -> Base {
        Base::new(c, title, self.session.as_ref())
    }
}

impl FromRequestParts<Arc<Console>> for Viewer {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, c: &Arc<Console>) -> Result<Self, WebError> {
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Ok(Viewer {
                session: None,
                path,
            });
        };
        let api = c.api.clone();
        // A session that ended (expired, signed out, its token revoked) is no session.
        let session = tokio::task::spawn_blocking(move || api.session(&secret).ok())
            .await
            .map_err(|e| WebError::Failed(e.to_string()))?;
        Ok(Viewer { session, path })
    }
}

/// Where to go after signing in: a path on this site only. No scheme, no
/// `//` or `/\` (another host to a browser), no control characters or
/// white space (browsers drop tabs and new lines, so `/\t/evil` is `//evil`),
/// no backslash; anything else is refused with 400.
fn local_next(next: Option<&String>) -> Result<String, WebError> {
    let Some(n) = next.filter(|n| !n.is_empty()) else {
        return Ok("/".into());
    };
    let ok = n.len() <= 2048
        && n.starts_with('/')
        && !n.starts_with("//")
        && n.chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != '\\');
    if !ok {
        return Err(WebError::Invalid(
            "next: must be a path on this site (starting with one `/`, with no control characters, white space or backslash)".into(),
        ));
    }
    Ok(n.clone())
}

/// Failed sign-ins allowed per address in [`FAILURE_WINDOW`].
pub(crate) const MAX_FAILURES: usize = 10;
pub(crate) const FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
/// Addresses remembered at most (the oldest forgotten first).
const MAX_ADDRESSES: usize = 10_000;

/// Recent failed sign-ins per client address.
#[derive(Debug, Default)]
pub(crate) struct Failures(std::sync::Mutex<HashMap<std::net::IpAddr, Vec<std::time::Instant>>>);

impl Failures {
    /// Seconds to wait before this address may try again, if it must.
    fn wait(&self, ip: std::net::IpAddr) -> Option<u64> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let v = m.get_mut(&ip)?;
        v.retain(|t| t.elapsed() < FAILURE_WINDOW);
        if v.len() < MAX_FAILURES {
            return None;
        }
        let oldest = v.iter().min()?;
        Some(
            FAILURE_WINDOW
                .saturating_sub(oldest.elapsed())
                .as_secs()
                .max(1),
        )
    }

    fn failed(&self, ip: std::net::IpAddr) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_ADDRESSES && !m.contains_key(&ip) {
            m.retain(|_, v| v.iter().any(|t| t.elapsed() < FAILURE_WINDOW));
            if m.len() >= MAX_ADDRESSES {
                return;
            }
        }
        m.entry(ip).or_default().push(std::time::Instant::now());
    }
}

pub(crate) async fn signin_page(
    State(c): Shared,
    viewer: Viewer,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let nonce = {
        use rand::RngCore;
        let mut b = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut b);
        hex::encode(b)
    };
    let next = match local_next(q.get("next")) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let page = views::SignIn {
        base: viewer.base(&c, "Sign in"),
        next,
        nonce: nonce.clone(),
        error: String::new(),
    };
    let mut res = views::html(&page).into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, set_cookie(SIGNIN_COOKIE, &nonce, 600));
    res
}

pub(crate) async fn signin(
    State(c): Shared,
    peer: Option<axum::Extension<algobay_net::Peer>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let ip = peer.map(|p| p.0 .0.ip());
    if let Some(secs) = ip.and_then(|ip| c.failures.wait(ip)) {
        return Err(WebError::TooMany(secs));
    }
    let sent = form.get("nonce").cloned().unwrap_or_default();
    match cookie(&headers, SIGNIN_COOKIE) {
        Some(n) if !sent.is_empty() && same_secret(&n, &sent) => {}
        _ => return Err(WebError::Forged),
    }
    let token = form.get("token").cloned().unwrap_or_default();
    let next = local_next(form.get("next"))?;
    let api = c.api.clone();
    match tokio::task::spawn_blocking(move || api.sign_in(&token))
        .await
        .map_err(|e| WebError::Failed(e.to_string()))?
    {
        Ok((secret, s)) => {
            let age = (s.expires_unix - now()).max(1);
            let mut res = Redirect::to(&next).into_response();
            let h = res.headers_mut();
            h.append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &secret, age));
            h.append(header::SET_COOKIE, set_cookie(SIGNIN_COOKIE, "", 0));
            Ok(res)
        }
        Err(e) => {
            if let Some(ip) = ip {
                c.failures.failed(ip);
            }
            let page = views::SignIn {
                base: Base::new(&c, "Sign in", None),
                next,
                nonce: sent,
                error: e.to_string(),
            };
            Ok((axum::http::StatusCode::UNAUTHORIZED, views::html(&page)).into_response())
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub(crate) async fn signout(
    State(c): Shared,
    headers: HeaderMap,
    viewer: Viewer,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    viewer.check_form(&form)?;
    if let Some(secret) = cookie(&headers, SESSION_COOKIE) {
        let api = c.api.clone();
        blocking(move || api.sign_out(&secret)).await?;
    }
    let mut res = Redirect::to("/").into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", 0));
    Ok(res)
}
