//! The embedded dashboard: files from `web/`, compiled into the binary.

use super::error::ApiError;
use rust_embed::RustEmbed;
use warp::http::{HeaderValue, StatusCode};
use warp::path::Tail;
use warp::reply::Response;

#[derive(RustEmbed)]
#[folder = "web/"]
struct Assets;

/// Serves `tail` from the embedded files (`index.html` for `/`).
pub fn serve(tail: Tail) -> Response {
    let path = match tail.as_str() {
        "" => "index.html",
        other => other,
    };
    let Some(file) = Assets::get(path) else {
        return ApiError::NotFound(format!("no such file: {path}")).into_response();
    };
    let mut response = Response::new(file.data.into_owned().into());
    let mime = file.metadata.mimetype();
    let mime = if mime.starts_with("text/")
        || mime.ends_with("javascript")
        || mime.ends_with("json")
        || mime.ends_with("svg+xml")
    {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&mime) {
        headers.insert("content-type", value);
    }
    // The page is tiny and changes with each release: always revalidate.
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..8]));
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert("etag", value);
    }
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    *response.status_mut() = StatusCode::OK;
    response
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
