//! `GET /api/v1/export/...`: the files `mdp export` writes, rendered from the
//! configuration this service runs with, for download from the dashboard.

use super::Ctx;
use super::error::{ApiError, json_response};
use crate::export::{ExportOptions, ExportedFile, render};
use serde_json::json;
use std::sync::Arc;
use warp::http::{HeaderValue, StatusCode};
use warp::path::Tail;
use warp::reply::Response;

/// Where the files are served from.
pub(super) const PREFIX: &str = "/api/v1/export/";

/// The index (`tail` empty) or one exported file; 404 JSON for any other path.
pub(super) fn serve(ctx: Arc<Ctx>, tail: Tail) -> Response {
    let files = render(&ExportOptions::for_service(&ctx.config), &ctx.config);
    match tail.as_str().trim_end_matches('/') {
        "" => index(&files),
        path => match files.into_iter().find(|file| file.path == path) {
            Some(file) => file_response(file),
            None => ApiError::NotFound(format!("no exported file {path}")).into_response(),
        },
    }
}

fn index(files: &[ExportedFile]) -> Response {
    let listed: Vec<serde_json::Value> = files
        .iter()
        .map(|file| {
            json!({
                "path": file.path,
                "url": format!("{PREFIX}{}", file.path),
                "content_type": file.content_type(),
                "bytes": file.contents.len(),
            })
        })
        .collect();
    let mut response = json_response(&json!({ "files": listed }), StatusCode::OK);
    no_cache(&mut response);
    response
}

fn file_response(file: ExportedFile) -> Response {
    let content_type = file.content_type();
    let mut response = Response::new(file.contents.into());
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(content_type));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    no_cache(&mut response);
    response
}

/// The files follow the running configuration: always revalidate.
fn no_cache(response: &mut Response) {
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
}
