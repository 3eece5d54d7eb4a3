//! The dashboard's static files: `web/` embedded with rust-embed, served with
//! a content type, a strong ETag and an always-revalidate cache policy.
//!
//! Release builds carry the files inside the binary. Debug builds read them
//! from `web/` at request time (rust-embed's default), so editing the page
//! needs no rebuild. In both, only plain names that can be files of `web/` are
//! ever looked up: nothing encoded, hidden or relative reaches the lookup.

use super::error::ApiError;
use rust_embed::RustEmbed;
use warp::http::{HeaderValue, StatusCode, header};
use warp::path::Tail;
use warp::reply::Response;

#[derive(RustEmbed)]
#[folder = "web/"]
struct Assets;

/// What the page may load: its own files and its own API, nothing inline,
/// nothing from another origin, and it may not be framed.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// Serves `tail` from the embedded files (`index.html` for `/`); answers
/// `304 Not Modified` without a body when `if_none_match` (the request's
/// `If-None-Match`) names the file's ETag.
pub(super) fn serve_conditional(tail: Tail, if_none_match: Option<String>) -> Response {
    respond(tail.as_str(), if_none_match.as_deref())
}

fn respond(path: &str, if_none_match: Option<&str>) -> Response {
    let Some(file) = file_name(path).and_then(Assets::get) else {
        return ApiError::NotFound("no such file".into()).into_response();
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    let fresh = if_none_match.is_some_and(|tags| names_etag(tags, &etag));
    let mime = file.metadata.mimetype();
    let mut response = if fresh {
        let mut response = Response::default();
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        Response::new(file.data.into_owned().into())
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&content_type(mime)) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    // Small files that change with each release: cache, but always revalidate.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if mime == "text/html" {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_POLICY),
        );
    }
    response
}

/// The file `path` (a URL path without its leading `/`, still percent-encoded)
/// names under `web/`, or None when it cannot name one. Every segment must be
/// letters, digits, `-`, `_` and dots, starting with a letter or digit.
fn file_name(path: &str) -> Option<&str> {
    if path.is_empty() {
        return Some("index.html");
    }
    let plain = path.split('/').all(|segment| {
        segment.starts_with(|c: char| c.is_ascii_alphanumeric())
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    });
    plain.then_some(path)
}

/// Whether an `If-None-Match` value names `etag` (weak comparison, as RFC 9110
/// asks for this header; `*` names any current file).
fn names_etag(if_none_match: &str, etag: &str) -> bool {
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// The content type, with `charset=utf-8` for text (our files are UTF-8).
fn content_type(mime: &str) -> String {
    let textual = mime.starts_with("text/")
        || mime.ends_with("javascript")
        || mime.ends_with("json")
        || mime.ends_with("+xml");
    if textual {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::Filter;

    fn etag_of(response: &Response) -> String {
        response.headers()[header::ETAG]
            .to_str()
            .expect("ascii etag")
            .to_owned()
    }

    #[test]
    fn only_plain_names_reach_the_lookup() {
        assert_eq!(file_name(""), Some("index.html"));
        assert_eq!(file_name("app.js"), Some("app.js"));
        assert_eq!(
            file_name("vendor/lib-1.2_min.js"),
            Some("vendor/lib-1.2_min.js")
        );
        for hostile in [
            "..",
            "../Cargo.toml",
            "web/../src/main.rs",
            "%2e%2e/Cargo.toml",
            "..%2fCargo.toml",
            ".hidden",
            "/etc/passwd",
            "app.js/",
            "a//b",
            "..\\Cargo.toml",
            "app.js%00.png",
            "index.html?x",
        ] {
            assert_eq!(file_name(hostile), None, "{hostile}");
        }
    }

    #[test]
    fn index_is_html_with_a_policy_and_a_strong_etag() {
        let response = respond("", None);
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
        let etag = etag_of(&response);
        assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
        assert_eq!(etag, etag_of(&respond("index.html", None)));
        assert!(
            !respond("app.js", None)
                .headers()
                .contains_key(header::CONTENT_SECURITY_POLICY)
        );
    }

    #[test]
    fn a_matching_if_none_match_gets_304_without_a_body() {
        let etag = etag_of(&respond("app.js", None));
        for tags in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"other\", {etag}"),
            "*".to_owned(),
        ] {
            let response = respond("app.js", Some(&tags));
            assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{tags}");
            assert_eq!(etag_of(&response), etag);
            assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
        }
        let stale = respond("app.js", Some("\"0123\""));
        assert_eq!(stale.status(), StatusCode::OK);
    }

    #[test]
    fn missing_and_hostile_paths_are_404() {
        for path in ["nope.js", "../Cargo.toml", "%2e%2e/Cargo.toml"] {
            let response = respond(path, None);
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    /// The wiring a route needs for revalidation and HEAD, end to end.
    #[tokio::test]
    async fn conditional_route_revalidates_and_answers_head() {
        let route = warp::get()
            .or(warp::head())
            .unify()
            .and(warp::path::tail())
            .and(warp::header::optional::<String>("if-none-match"))
            .map(serve_conditional);
        let first = warp::test::request().path("/style.css").reply(&route).await;
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(
            first.headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
        let etag = first.headers()[header::ETAG].clone();
        let again = warp::test::request()
            .path("/style.css")
            .header("if-none-match", etag)
            .reply(&route)
            .await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(again.body().is_empty());
        let head = warp::test::request()
            .method("HEAD")
            .path("/")
            .reply(&route)
            .await;
        assert_eq!(head.status(), StatusCode::OK);
    }
}
