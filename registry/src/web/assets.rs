//! The console's style sheet and script, served under names that carry a
//! hash of their content, so browsers may keep them for a year.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("../../static/console.css");
const JS: &str = include_str!("../../static/console.js");

/// The two files and their hashed names.
#[derive(Debug)]
pub(crate) struct Assets {
    pub css: String,
    pub js: String,
}

fn hashed(stem: &str, ext: &str, body: &str) -> String {
    let d = algobay_runtime::Digest::of(body.as_bytes());
    format!("/static/{stem}.{}.{ext}", &d.hex()[..12])
}

impl Assets {
    pub fn new() -> Assets {
        Assets {
            css: hashed("console", "css", CSS),
            js: hashed("console", "js", JS),
        }
    }
}

pub(crate) async fn serve(
    axum::extract::State(c): super::Shared,
    Path(file): Path<String>,
) -> Response {
    let path = format!("/static/{file}");
    let (body, kind) = if path == c.assets.css {
        (CSS, "text/css; charset=utf-8")
    } else if path == c.assets.js {
        (JS, "text/javascript; charset=utf-8")
    } else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    res
}
