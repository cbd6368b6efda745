//! One rule for every gRPC server here: a request message that does not decode
//! is the caller's fault, so it is answered INVALID_ARGUMENT, not INTERNAL
//! (which tonic answers by default).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::{Code, Status};

/// The status for a message that did not decode; any other status unchanged.
pub fn decode_status(s: Status) -> Status {
    if s.code() == Code::Internal && s.message().starts_with("failed to decode") {
        let m: String = s.message().chars().take(200).collect();
        return Status::invalid_argument(format!("malformed request message: {m}"));
    }
    s
}

/// A tower layer applying [`decode_status`] to answers given in the headers
/// (how a unary call that failed to decode is answered).
#[derive(Clone, Copy, Debug, Default)]
pub struct MalformedAsInvalidLayer;

impl<S> tower::Layer<S> for MalformedAsInvalidLayer {
    type Service = MalformedAsInvalid<S>;

    fn layer(&self, inner: S) -> MalformedAsInvalid<S> {
        MalformedAsInvalid(inner)
    }
}

/// See [`MalformedAsInvalidLayer`].
#[derive(Clone, Debug)]
pub struct MalformedAsInvalid<S>(S);

impl<S, B, R> tower::Service<http::Request<B>> for MalformedAsInvalid<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let fut = self.0.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            if let Some(s) = Status::from_header_map(resp.headers()) {
                if s.code() == Code::Internal {
                    let fixed = decode_status(s);
                    if fixed.code() != Code::Internal {
                        let _ = fixed.add_header(resp.headers_mut());
                    }
                }
            }
            Ok(resp)
        })
    }
}
