//! The guard in front of every registry call: the caller is authenticated from
//! the request's headers (its token, or an enrolled device's certificate)
//! before any of the body is read, so an unknown caller cannot make the
//! registry buffer a large message. The calls open to anyone (a device's
//! enrollment) are bounded to what they need, [`OPEN_BODY_LIMIT`] bytes,
//! before they are read.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

use crate::domain::Principal;
use crate::service::RegistryApi;

/// The caller, as the guard authenticated it (a request extension).
#[derive(Clone, Debug)]
pub struct Authenticated(pub Principal);

/// Calls that need no caller: a device's enrollment carries its one-time token in the body.
const OPEN: &[&str] = &["/algobay.v1.Fleet/Enroll"];

/// The most an open call may send: an enrollment is a token, a CSR (about
/// 500 bytes for an ECDSA key), a name and a few labels.
pub const OPEN_BODY_LIMIT: usize = 16 << 10;

/// A request body that fails once more than its limit arrived, before the
/// rest is buffered.
struct Capped {
    inner: tonic::body::Body,
    left: usize,
    path: &'static str,
}

impl http_body::Body for Capped {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    if d.len() > self.left {
                        return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                            "{}: the request is over the limit of {OPEN_BODY_LIMIT} bytes for a call made before authentication",
                            self.path
                        )))));
                    }
                    self.left -= d.len();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Status::from_error(e.into())))),
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// Calls the guard authenticates; health checking and reflection stay open.
fn guarded(path: &str) -> bool {
    (path.starts_with("/algobay.v1.") || path.starts_with("/opentelemetry.proto.collector."))
        && !OPEN.contains(&path)
}

fn authenticate<B>(
    reg: &dyn RegistryApi,
    req: &http::Request<B>,
) -> Result<Principal, crate::RegistryError> {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_owned());
    let cert = req
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|i| i.peer_certs())
        .and_then(|c| c.first().map(|c| crate::tls::der_fingerprint(c.as_ref())));
    match (token, cert) {
        (None, Some(fp)) => reg.authenticate_device(&fp),
        (t, _) => reg.authenticate(t.as_deref()),
    }
}

/// The tower layer that puts a [`Guard`] in front of the services.
#[derive(Clone)]
pub struct GuardLayer(pub Arc<dyn RegistryApi>);

impl std::fmt::Debug for GuardLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardLayer").finish_non_exhaustive()
    }
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            reg: self.0.clone(),
        }
    }
}

/// See the module's documentation.
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    reg: Arc<dyn RegistryApi>,
}

impl<S> std::fmt::Debug for Guard<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").finish_non_exhaustive()
    }
}

impl<S, R> tower::Service<http::Request<tonic::body::Body>> for Guard<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<R>> + Send,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        if let Some(path) = OPEN.iter().find(|p| **p == req.uri().path()) {
            let req = req.map(|inner| {
                tonic::body::Body::new(Capped {
                    inner,
                    left: OPEN_BODY_LIMIT,
                    path,
                })
            });
            return Box::pin(self.inner.call(req));
        }
        if guarded(req.uri().path()) {
            match authenticate(self.reg.as_ref(), &req) {
                Ok(p) => {
                    req.extensions_mut().insert(Authenticated(p));
                }
                Err(e) => {
                    let status = Status::from(e);
                    return Box::pin(async move { Ok(status.into_http()) });
                }
            }
        }
        Box::pin(self.inner.call(req))
    }
}
