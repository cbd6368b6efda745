//! The web console: the marketplace, coverage, fleets, labelling and
//! training rounds as server-rendered pages (axum, askama templates, SVG
//! drawn here), on its own HTTPS port with the registry's TLS identity.
//!
//! A thin adapter like `grpc`: every page calls the same [`RegistryApi`] with
//! the signed-in principal (or a visitor's), so role and tenant checks are the
//! service's own. What a caller may not see is a 404. Pages work without
//! script; one small script file adds copy buttons and keyboard shortcuts.
//! Every response carries a Content-Security-Policy that allows no inline
//! script and nothing from elsewhere.

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::error::RegistryError;
use crate::service::RegistryApi;

mod artifact;
mod assets;
mod catalog;
mod fleet;
pub mod markdown;
mod session;
pub mod svg;
mod views;
mod work;

pub use session::SESSION_COOKIE;

/// What every handler shares.
pub struct Console {
    pub(crate) api: Arc<dyn RegistryApi>,
    pub(crate) assets: assets::Assets,
    /// Recent failed sign-ins per client address.
    pub(crate) failures: session::Failures,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

type Shared = State<Arc<Console>>;

/// The console's routes over a registry.
pub fn router(api: Arc<dyn RegistryApi>) -> Router {
    let console = Arc::new(Console {
        api,
        assets: assets::Assets::new(),
        failures: session::Failures::default(),
    });
    Router::new()
        .route("/", get(catalog::marketplace))
        .route("/a/{kind}/{team}/{name}", get(catalog::latest))
        .route("/a/{kind}/{team}/{name}/{version}", get(artifact::artifact))
        .route("/teams/{team}", get(catalog::team))
        .route("/blobs/{digest}", get(artifact::blob))
        .route("/coverage", get(catalog::coverage))
        .route("/fleet", get(fleet::overview))
        .route("/fleet/deployments", post(fleet::create_deployment))
        .route("/fleet/deployments/{id}", get(fleet::deployment))
        .route("/fleet/deployments/{id}/{action}", post(fleet::act))
        .route("/fleet/devices/{id}", get(fleet::device))
        .route("/fleet/traces/{id}", get(fleet::trace))
        .route("/labelling", get(work::queue).post(work::label))
        .route("/training", get(work::rounds))
        .route("/signin", get(session::signin_page).post(session::signin))
        .route("/signout", post(session::signout))
        .route("/static/{file}", get(assets::serve))
        .fallback(|| async { not_found() })
        .layer(axum::middleware::from_fn(headers))
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(console)
}

/// The headers every answer carries.
async fn headers(req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    // The time to make the page (before compression and the network), for
    // browsers' developer tools and the console benchmark.
    if let Ok(v) = HeaderValue::from_str(&format!(
        "app;dur={:.3}",
        started.elapsed().as_secs_f64() * 1000.0
    )) {
        h.insert("server-timing", v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// Why a page could not be shown.
#[derive(Debug)]
pub(crate) enum WebError {
    /// Not there, or not the caller's to see.
    NotFound,
    /// Sign in first (then come back to `next`).
    SignIn(String),
    /// A form without its anti-forgery token.
    Forged,
    /// Too many attempts from this address; try again after this many seconds.
    TooMany(u64),
    Invalid(String),
    Failed(String),
}

impl From<RegistryError> for WebError {
    fn from(e: RegistryError) -> WebError {
        match e {
            // Another tenant's things, and what a role may not do, look absent.
            RegistryError::NotFound(_) | RegistryError::PermissionDenied(_) => WebError::NotFound,
            RegistryError::Unauthenticated(m) => WebError::Invalid(m),
            RegistryError::Invalid { .. }
            | RegistryError::Rejected(_)
            | RegistryError::TooLarge(_)
            | RegistryError::FailedPrecondition(_)
            | RegistryError::AlreadyExists(_) => WebError::Invalid(e.to_string()),
            other => WebError::Failed(other.to_string()),
        }
    }
}

fn not_found() -> Response {
    WebError::NotFound.into_response()
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            WebError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here, or nothing you may see.".to_owned(),
            ),
            WebError::SignIn(next) => {
                let to = format!("/signin?next={}", views::query_escape(&next));
                return Redirect::to(&to).into_response();
            }
            WebError::Forged => (
                StatusCode::FORBIDDEN,
                "Refused",
                "The form did not carry this session's anti-forgery token. Reload the page and try again.".to_owned(),
            ),
            WebError::Invalid(m) => (StatusCode::BAD_REQUEST, "Not accepted", m),
            WebError::TooMany(secs) => {
                let page = views::ErrorPage {
                    base: views::Base::bare("Too many attempts"),
                    message: format!(
                        "Too many failed sign-ins from this address; try again in {secs} s."
                    ),
                };
                let mut res = (StatusCode::TOO_MANY_REQUESTS, views::html(&page)).into_response();
                if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                    res.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return res;
            }
            WebError::Failed(m) => {
                tracing::warn!(error = %m, "console page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something failed",
                    "The registry could not answer; the error is in its log.".to_owned(),
                )
            }
        };
        let page = views::ErrorPage {
            base: views::Base::bare(title),
            message,
        };
        (status, views::html(&page)).into_response()
    }
}

/// Runs a registry call on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::error::Result<T> + Send + 'static,
) -> Result<T, WebError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WebError::Failed(e.to_string()))?
        .map_err(WebError::from)
}

/// The console's TLS settings from the registry's identity (HTTP/2 and 1.1).
pub fn tls_config(id: &crate::tls::TlsIdentity) -> crate::error::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: String| RegistryError::Storage(format!("console tls {what}: {e}"));
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad("certificate", e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes())
        .map_err(|e| bad("key", e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("versions", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("identity", e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serves the console on `listener` (over TLS when given) until `shutdown`,
/// within `limits`: connection caps (the longest idle shed first), and
/// timeouts on the handshake, the headers and the body of every request.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: algobay_net::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    algobay_net::serve_http(
        listener,
        app,
        tls,
        algobay_net::Tracker::new(limits),
        shutdown,
    )
    .await
}
