//! The dashboard: its files as served (types, cache headers, nothing outside
//! `web/`), what they reference (their own origin only), their size, and the
//! page itself in headless Chromium following the level live.
//!
//! Screenshots for the docs (not run by default):
//! `MDP_SCREENSHOTS=1 cargo test --test dashboard -- --ignored screenshots`

mod browser;
mod common;

use browser::{Browser, text_of};
use common::{InProcess, MdpProcess, require_tool, store_event};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The page and everything it loads must stay well under this.
const PAGE_BUDGET_BYTES: usize = 300 * 1024;

// ---------------------------------------------------------------------------
// A raw HTTP/1.1 client: sends the request target byte for byte (no URL
// normalisation), which the path-traversal tests need.

struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn exchange(addr: SocketAddr, method: &str, target: &str, headers: &[&str], body: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(addr).expect("connect to mdp");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send request");
    stream.write_all(body).expect("send body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    parse_response(&raw).unwrap_or_else(|| {
        panic!(
            "unparsable response to {method} {target}: {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn parse_response(raw: &[u8]) -> Option<Raw> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Some(Raw {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

fn get(addr: SocketAddr, target: &str) -> Raw {
    exchange(addr, "GET", target, &[], b"")
}

/// Raw requests are blocking: run them off the runtime that serves them.
async fn get_async(addr: SocketAddr, target: &str) -> Raw {
    let target = target.to_owned();
    tokio::task::spawn_blocking(move || get(addr, &target))
        .await
        .expect("request thread")
}

fn post_feedback(addr: SocketAddr, depth: u64, level: &str) {
    let body = store_event(depth, level, None).to_string();
    let response = exchange(
        addr,
        "POST",
        "/feedback",
        &["content-type: application/json"],
        body.as_bytes(),
    );
    assert_eq!(
        response.status,
        200,
        "feedback refused: {}",
        response.text()
    );
    assert!(
        response.text().contains("\"applied\":true"),
        "feedback not applied: {}",
        response.text()
    );
}

// ---------------------------------------------------------------------------
// The files in web/.

fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// Every file under `web/`, as paths relative to it with `/` separators.
fn web_files() -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("web/ is readable") {
            let entry = entry.expect("web/ entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{prefix}{name}");
            if entry.file_type().expect("file type").is_dir() {
                walk(&entry.path(), &format!("{path}/"), out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&web_dir(), "", &mut files);
    files.sort();
    files
}

fn web_text(name: &str) -> String {
    std::fs::read_to_string(web_dir().join(name)).expect("web file is UTF-8 text")
}

/// The content types a file of `web/` may be served with, by extension.
fn expected_types(name: &str) -> &'static [&'static str] {
    match name.rsplit('.').next() {
        Some("html") => &["text/html; charset=utf-8"],
        Some("js") => &[
            "text/javascript; charset=utf-8",
            "application/javascript; charset=utf-8",
        ],
        Some("css") => &["text/css; charset=utf-8"],
        Some("svg") => &["image/svg+xml; charset=utf-8", "image/svg+xml"],
        Some("png") => &["image/png"],
        Some("woff2") => &["font/woff2"],
        Some("txt") | Some("md") => &["text/plain; charset=utf-8", "text/markdown; charset=utf-8"],
        _ => panic!("{name}: no expected content type; add one here"),
    }
}

/// The values of attribute `attr` in `html` (either quote style).
fn attribute_values(html: &str, attr: &str) -> Vec<String> {
    let mut values = Vec::new();
    for quote in ['"', '\''] {
        let needle = format!("{attr}={quote}");
        let mut rest = html;
        while let Some(at) = rest.find(&needle) {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + needle.len()..];
            if !before.is_some_and(char::is_whitespace) {
                continue; // part of a longer name, like data-src
            }
            if let Some(end) = rest.find(quote) {
                values.push(rest[..end].to_owned());
            }
        }
    }
    values
}

/// `(tag name, attributes text)` of every start tag in `html`.
fn start_tags(html: &str) -> Vec<(String, String)> {
    html.split('<')
        .skip(1)
        .filter_map(|piece| {
            let tag = &piece[..piece.find('>')?];
            let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
            let name = tag[..name_end].to_ascii_lowercase();
            let starts_tag = name.chars().next()?.is_ascii_alphabetic();
            starts_tag.then(|| (name, tag[name_end..].to_owned()))
        })
        .collect()
}

/// Whether `reference` (a URL as written in a file) stays on the page's origin.
fn same_origin(reference: &str) -> bool {
    let scheme = reference.split_once(':').is_some_and(|(head, _)| {
        head.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && head
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
    });
    !reference.is_empty() && !scheme && !reference.starts_with("//") && !reference.contains('\\')
}

/// The first argument of each `call(` in `code`, when it is a string literal.
fn literal_arguments(code: &str, call: &str) -> Vec<Result<String, String>> {
    code.match_indices(call)
        .map(|(at, _)| {
            let rest = code[at + call.len()..].trim_start();
            let quote = rest.chars().next().unwrap_or(' ');
            let literal = if ['\'', '"', '`'].contains(&quote) {
                rest[1..]
                    .find(quote)
                    .map(|end| rest[1..1 + end].to_owned())
                    .filter(|value| !value.contains("${"))
            } else {
                None
            };
            literal.ok_or_else(|| rest.chars().take(40).collect())
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Served files.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_in_web_is_served_with_its_type_and_cache_headers() {
    let service = InProcess::start(&[]).await;
    let files = web_files();
    assert!(files.contains(&"index.html".to_owned()), "{files:?}");
    let mut targets: Vec<(String, String)> = files
        .iter()
        .map(|name| (format!("/{name}"), name.clone()))
        .collect();
    targets.push(("/".into(), "index.html".into()));
    for (target, name) in targets {
        let response = get_async(service.addr, &target).await;
        assert_eq!(response.status, 200, "{target}");
        let on_disk = std::fs::read(web_dir().join(&name)).expect("web file");
        assert!(
            response.body == on_disk,
            "{target}: body differs from web/{name}"
        );
        let content_type = response.header("content-type").unwrap_or_default();
        assert!(
            expected_types(&name).contains(&content_type),
            "{target}: content-type {content_type:?}"
        );
        assert_eq!(
            response.header("cache-control"),
            Some("no-cache"),
            "{target}"
        );
        assert_eq!(
            response.header("x-content-type-options"),
            Some("nosniff"),
            "{target}"
        );
        let etag = response.header("etag").unwrap_or_default().to_owned();
        assert!(
            etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
            "{target}: strong ETag expected, got {etag:?}"
        );
        let again = get_async(service.addr, &target).await;
        assert_eq!(
            again.header("etag"),
            Some(etag.as_str()),
            "{target}: stable ETag"
        );
        let policy = response.header("content-security-policy");
        if name.ends_with(".html") {
            let policy = policy.unwrap_or_else(|| panic!("{target}: no CSP"));
            assert!(policy.contains("default-src 'none'"), "{policy}");
            assert!(policy.contains("connect-src 'self'"), "{policy}");
        }
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_files_are_json_404s() {
    let service = InProcess::start(&[]).await;
    for target in [
        "/nope.js",
        "/index.htm",
        "/app.js/",
        "/web/index.html",
        "/.gitignore",
    ] {
        let response = get_async(service.addr, target).await;
        assert_eq!(response.status, 404, "{target}");
        assert_eq!(
            response.header("content-type"),
            Some("application/json"),
            "{target}"
        );
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_outside_web_are_never_served() {
    let service = InProcess::start(&[]).await;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // Lines that only the files aimed at contain.
    let secrets = [
        "name = \"mdp\"".to_owned(),
        "#![forbid(unsafe_code)]".to_owned(),
        "root:x:0:0".to_owned(),
        std::fs::read_to_string(root.join("src/main.rs"))
            .expect("src/main.rs")
            .lines()
            .find(|line| line.contains("fn main"))
            .expect("main.rs has a main")
            .to_owned(),
    ];
    let absolute = format!("http://{}/../Cargo.toml", service.addr);
    let attempts = [
        "/../Cargo.toml",
        "/../../../../etc/passwd",
        "/%2e%2e/Cargo.toml",
        "/%2E%2E/%2E%2E/etc/passwd",
        "/..%2fCargo.toml",
        "/%2e%2e%2fCargo.toml",
        "/..%5cCargo.toml",
        "/web/../src/main.rs",
        "/web/../src/lib.rs",
        "/./../Cargo.toml",
        "/index.html/../../Cargo.toml",
        "/....//Cargo.toml",
        "//etc/passwd",
        "/%2fetc%2fpasswd",
        "/..;/Cargo.toml",
        "/app.js%00.png",
        "/..\\Cargo.toml",
        "/%c0%ae%c0%ae/Cargo.toml",
        "/Cargo.toml",
        "/src/main.rs",
        absolute.as_str(),
    ];
    for target in attempts {
        let response = get_async(service.addr, target).await;
        assert!(
            [400, 404].contains(&response.status),
            "{target}: status {}",
            response.status
        );
        let text = response.text();
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{target} leaked {secret:?}"
            );
        }
    }
    service.stop().await;
}

// ---------------------------------------------------------------------------
// What the files reference, and how much the page weighs.

#[test]
fn the_page_references_only_its_own_origin() {
    let html = web_text("index.html");
    assert!(
        !html.to_ascii_lowercase().contains("<base"),
        "a <base> moves every URL"
    );
    let mut references = Vec::new();
    for attr in [
        "src",
        "href",
        "srcset",
        "action",
        "formaction",
        "poster",
        "data",
        "manifest",
        "xlink:href",
    ] {
        references.extend(attribute_values(&html, attr));
    }
    assert!(references.iter().any(|r| r == "app.js"), "{references:?}");
    for reference in &references {
        assert!(same_origin(reference), "index.html references {reference}");
    }

    let js = web_text("app.js");
    let mut urls = Vec::new();
    for call in ["fetch(", "new EventSource("] {
        for argument in literal_arguments(&js, call) {
            match argument {
                Ok(url) => urls.push(url),
                Err(code) => panic!("app.js: {call}{code}...: use a string literal URL"),
            }
        }
    }
    assert!(urls.iter().any(|u| u.contains("api/v1/stream")), "{urls:?}");
    for url in &urls {
        assert!(same_origin(url), "app.js asks for {url}");
    }
    for api in [
        "XMLHttpRequest",
        "WebSocket",
        "sendBeacon",
        "importScripts",
        "import(",
        "Worker(",
        "window.open",
        "location.href =",
        "location.assign",
    ] {
        assert!(
            !js.contains(api),
            "app.js uses {api}: check where it goes, then allow it here"
        );
    }

    for name in web_files() {
        let Ok(text) = std::fs::read_to_string(web_dir().join(&name)) else {
            continue; // binary
        };
        for reference in css_urls(&text) {
            assert!(same_origin(&reference), "{name}: url({reference})");
        }
        // An absolute URL anywhere is suspect; XML namespaces are names, not requests.
        for (at, _) in text.match_indices("://") {
            let line_start = text[..at].rfind('\n').map_or(0, |n| n + 1);
            let before = &text[line_start..at];
            let namespace = before.rfind("xmlns").is_some_and(|x| {
                before[x..]
                    .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                    .ends_with("=\"")
            });
            assert!(
                namespace,
                "{name}: absolute URL near {:?}",
                &text[line_start..]
            );
        }
    }
}

/// `url(...)` and `@import "..."` references in a stylesheet.
fn css_urls(css: &str) -> Vec<String> {
    let mut urls: Vec<String> = css
        .match_indices("url(")
        .filter_map(|(at, _)| {
            let rest = &css[at + 4..];
            let value = rest[..rest.find(')')?].trim().trim_matches(['"', '\'']);
            Some(value.to_owned())
        })
        .collect();
    for (at, _) in css.match_indices("@import") {
        let rest = css[at + 7..].trim_start();
        if let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'')
            && let Some(end) = rest[1..].find(quote)
        {
            urls.push(rest[1..1 + end].to_owned());
        }
    }
    urls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_what_it_loads_fit_the_size_budget() {
    let service = InProcess::start(&[]).await;
    let page = get_async(service.addr, "/").await;
    assert_eq!(page.status, 200);
    let html = page.text();
    let mut queue: Vec<String> = start_tags(&html)
        .into_iter()
        .flat_map(|(tag, attrs)| {
            let attr = match tag.as_str() {
                "script" | "img" | "source" | "iframe" | "video" | "audio" => "src",
                "link" => "href",
                _ => return Vec::new(),
            };
            attribute_values(&attrs, attr)
        })
        .collect();
    assert!(queue.len() >= 2, "page loads {queue:?}");
    let mut loaded = BTreeSet::new();
    let mut total = page.body.len();
    while let Some(reference) = queue.pop() {
        let target = format!("/{}", reference.trim_start_matches("./"));
        if !loaded.insert(target.clone()) {
            continue;
        }
        let response = get_async(service.addr, &target).await;
        assert_eq!(response.status, 200, "{target} (referenced by the page)");
        if target.ends_with(".css") {
            queue.extend(css_urls(&response.text()));
        }
        total += response.body.len();
    }
    eprintln!(
        "page weight: {total} bytes in {} files + index.html",
        loaded.len()
    );
    assert!(
        total < PAGE_BUDGET_BYTES,
        "the page and its files weigh {total} bytes; budget {PAGE_BUDGET_BYTES}"
    );
    service.stop().await;
}

// ---------------------------------------------------------------------------
// The page in a real browser.

/// The browser, or None (skipped) when chromium or python3 is missing.
fn browser() -> Option<Browser> {
    let chromium = require_tool("chromium")?;
    let python = require_tool("python3")?;
    Some(Browser::launch(&python, &chromium))
}

/// A JavaScript test of the `#level` badge: its text, and its colour's
/// dominant channel (OK green, HARD red, SOFT yellow: red and green).
fn level_shows(level: &str) -> String {
    let colour = match level {
        "OK" => "g > r + 40 && g > b + 20",
        "HARD" => "r > g + 60 && r > b + 60",
        "SOFT" => "r > b + 60 && g > b + 60",
        _ => unreachable!("a level"),
    };
    format!(
        "(() => {{ const e = document.getElementById('level');
           if (!e || e.textContent.trim() !== {level:?}) return false;
           const [r, g, b] = getComputedStyle(e).backgroundColor.match(/\\d+/g).map(Number);
           return {colour}; }})()"
    )
}

/// What a timed-out wait reports about the page.
const PAGE_SUMMARY: &str = "(() => { const t = (id) => (document.getElementById(id) || {}).textContent;
    const l = document.getElementById('level');
    return { level: t('level'), colour: l && getComputedStyle(l).backgroundColor,
             depth: t('queue-depth'), connection: document.body.dataset.conn, seq: t('seq') }; })()";

const DIGITS_OF_DEPTH: &str = "(document.getElementById('queue-depth').textContent || '').replace(/[\\s,.'\\u00a0\\u202f]/g, '')";

/// The text of the first provider's scale cell.
const PROVIDER_SCALE: &str =
    "((document.querySelector('#providers tbody td.scale') || {}).textContent || '').trim()";
/// The colour zone of the queue bar.
const DEPTH_ZONE: &str = "document.getElementById('util-fill').dataset.zone";

/// A store mdp cannot reach shows as unreachable with its depth unknown,
/// never as an empty queue.
#[test]
fn an_unreachable_store_shows_as_such_not_as_an_empty_queue() {
    let Some(mut browser) = browser() else {
        return;
    };
    browser.describe_with(PAGE_SUMMARY);
    let url = common::closed_url();
    let server = MdpProcess::serve(
        &[
            "--store-metrics-url",
            &url,
            "--pull-interval",
            "200ms",
            "--pull-timeout",
            "200ms",
            "--pull-ttl",
            "1s",
        ],
        &[],
    );
    browser.open(&server.url("/"), 1280, 900, false);
    let wait = Duration::from_secs(15);
    browser.wait_for(
        "(document.getElementById('util-text').textContent || '').includes('store unreachable')",
        wait,
    );
    browser.wait_for(&level_shows("SOFT"), wait);
    assert_eq!(
        browser.eval(DIGITS_OF_DEPTH),
        "—",
        "no number stands for the depth"
    );
    assert_eq!(
        browser.eval("document.getElementById('util-fill').closest('.card').dataset.signal"),
        "lost"
    );
}

/// The queue bar follows the depth against the watermarks while the level
/// still holds HARD (the relax hold), and the level bands are visible.
#[test]
fn the_depth_bar_is_coloured_by_depth_not_by_level() {
    let Some(mut browser) = browser() else {
        return;
    };
    browser.describe_with(PAGE_SUMMARY);
    let server = MdpProcess::serve(&["--relax-after", "10m"], &[]);
    post_feedback(server.addr, 9500, "hard");
    browser.open(&server.url("/"), 1280, 900, false);
    let wait = Duration::from_secs(15);
    browser.wait_for(&level_shows("HARD"), wait);
    browser.wait_for(&format!("{DEPTH_ZONE} === 'hard'"), wait);
    post_feedback(server.addr, 6000, "soft");
    browser.wait_for(&format!("{DIGITS_OF_DEPTH} === '6000'"), wait);
    browser.wait_for(&format!("{DEPTH_ZONE} === 'soft'"), wait);
    post_feedback(server.addr, 800, "ok");
    browser.wait_for(&format!("{DIGITS_OF_DEPTH} === '800'"), wait);
    browser.wait_for(&format!("{DEPTH_ZONE} === 'ok'"), wait);
    assert_eq!(
        browser.eval("document.getElementById('level').textContent.trim()"),
        "HARD"
    );
    let green = browser.eval(
        "(() => { const [r, g, b] = getComputedStyle(document.getElementById('util-fill'))
            .backgroundColor.match(/\\d+/g).map(Number); return g > r + 40; })()",
    );
    assert_eq!(green, true, "the bar at 8 % is green while HARD holds");
    let band_alpha = browser.eval(
        "parseFloat(getComputedStyle(document.documentElement).getPropertyValue('--band-hard').split(',')[3])",
    );
    assert!(
        band_alpha.as_f64().is_some_and(|a| a >= 0.25),
        "faint HARD band: {band_alpha}"
    );
}

/// On a phone the trigger names stay whole: each name cell is one line high,
/// as tall as the number beside it.
#[test]
fn trigger_names_do_not_break_on_a_phone() {
    let Some(mut browser) = browser() else {
        return;
    };
    browser.describe_with(PAGE_SUMMARY);
    let server = MdpProcess::serve(&[], &[]);
    post_feedback(server.addr, 9500, "hard");
    browser.open(&server.url("/"), 360, 800, true);
    let wait = Duration::from_secs(15);
    browser.wait_for(
        "document.querySelectorAll('#trigger-rows tr').length >= 2",
        wait,
    );
    let broken = browser.eval(
        "JSON.stringify(Array.from(document.querySelectorAll('#trigger-rows tr')).filter((row) => {
            const [name, value] = row.cells;
            return name.getBoundingClientRect().height > value.getBoundingClientRect().height + 1
                || getComputedStyle(name).whiteSpace !== 'nowrap';
        }).map((row) => row.cells[0].textContent))",
    );
    assert_eq!(broken, "[]", "trigger names broken across lines");
}

#[test]
fn dashboard_follows_the_level_live_in_chromium() {
    let Some(mut browser) = browser() else {
        return;
    };
    browser.describe_with(PAGE_SUMMARY);
    let server = MdpProcess::serve(&["--relax-after", "0s"], &[]);
    post_feedback(server.addr, 9500, "hard");

    browser.open(&server.url("/"), 1280, 900, false);
    let wait = Duration::from_secs(15);
    browser.wait_for(&level_shows("HARD"), wait);
    browser.wait_for(&format!("{DIGITS_OF_DEPTH} === '9500'"), wait);
    browser.wait_for("document.body.dataset.conn === 'live'", wait);
    browser.wait_for(&format!("{PROVIDER_SCALE} === 'paused'"), wait);
    browser.wait_for(&format!("{DEPTH_ZONE} === 'hard'"), wait);
    fits_every_width(&mut browser);
    // Survives only as long as this document: a reload would drop it.
    browser.eval("window.mdpTestDocument = 'first load'");

    post_feedback(server.addr, 1200, "ok");
    browser.wait_for(&level_shows("OK"), wait);
    browser.wait_for(&format!("{DIGITS_OF_DEPTH} === '1200'"), wait);
    assert_eq!(
        browser.eval("window.mdpTestDocument"),
        "first load",
        "page reloaded"
    );
    assert_eq!(browser.eval(&text_of("connection")), "live");

    let report = browser.report();
    let origin = format!("http://{}/", server.addr);
    assert!(
        report.requests.iter().all(|url| url.starts_with(&origin)),
        "requests outside {origin}: {:?}",
        report.requests
    );
    assert!(
        report
            .requests
            .iter()
            .any(|url| url.ends_with("/api/v1/stream")),
        "no stream opened: {:?}",
        report.requests
    );
    assert!(
        report.problems.is_empty(),
        "page problems: {:?}",
        report.problems
    );
    if !report.warnings.is_empty() {
        eprintln!("page warnings: {:?}", report.warnings);
    }

    // Every link on the page leads somewhere.
    let links = browser
        .eval("JSON.stringify(Array.from(document.querySelectorAll('a[href]'), a => a.href))");
    let links: Vec<String> =
        serde_json::from_str(links.as_str().unwrap_or("[]")).expect("links as JSON");
    assert!(links.iter().any(|l| l.ends_with("/metrics")), "{links:?}");
    for link in links {
        let Some(path) = link.strip_prefix(&origin) else {
            panic!("link off the origin: {link}");
        };
        let target = format!("/{}", path.split('#').next().unwrap_or_default());
        let status = get(server.addr, &target).status;
        assert_eq!(status, 200, "link {link}");
    }
}

/// Nothing spills out of its card or widens the page, from a small phone to
/// a wide monitor (checked at HARD, when the trigger table is widest).
fn fits_every_width(browser: &mut Browser) {
    const OVERFLOW: &str = "new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(() => {
        const spill = Array.from(document.querySelectorAll('.card'))
            .filter((c) => c.scrollWidth > c.clientWidth + 1)
            .map((c) => c.className + ': ' + c.scrollWidth + ' > ' + c.clientWidth);
        if (document.documentElement.scrollWidth > innerWidth) spill.push('page: ' + document.documentElement.scrollWidth);
        done(JSON.stringify(spill));
    })))";
    for (width, mobile) in [
        (360, true),
        (390, true),
        (768, true),
        (800, false),
        (1024, false),
        (1280, false),
        (1440, false),
        (1920, false),
    ] {
        browser.resize(width, 900, mobile);
        let spill = browser.eval(OVERFLOW);
        assert_eq!(spill, "[]", "content wider than its box at {width} px");
    }
    browser.resize(1280, 900, false);
}

// ---------------------------------------------------------------------------
// Screenshots for the docs.

/// Writes docs/dashboard-{ok,soft,hard,phone}.png from a running `mdp demo`.
/// Run with `MDP_SCREENSHOTS=1 cargo test --test dashboard -- --ignored screenshots`.
#[test]
#[ignore = "writes docs/*.png; run with MDP_SCREENSHOTS=1"]
fn screenshots() {
    if std::env::var("MDP_SCREENSHOTS").as_deref() != Ok("1") {
        eprintln!("SKIPPED: set MDP_SCREENSHOTS=1 to rewrite docs/dashboard-*.png");
        return;
    }
    let (Some(chromium), Some(python)) = (require_tool("chromium"), require_tool("python3")) else {
        panic!("screenshots need chromium and python3");
    };
    let mut browser = Browser::launch_for(&python, &chromium, Duration::from_secs(900));
    browser.describe_with(PAGE_SUMMARY);
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
    let demo = MdpProcess::spawn(
        &[
            "demo",
            "--listen",
            "127.0.0.1:0",
            // Long enough phases that the chart tells the whole story.
            "--phase-duration",
            "90s",
            // The second cycle only keeps the page live until the last shot.
            "--cycles",
            "2",
        ],
        &[],
    );
    let laptop = browser.open(&demo.url("/"), 1280, 900, false);
    let phone = browser.open(&demo.url("/"), 390, 844, true);
    let phase = Duration::from_secs(200);
    // Each level held a while, so the chart shows it as a plateau.
    let settled = |level: &str, seconds: u32| {
        format!(
            "{} && (() => {{ const t = document.getElementById('level-age').textContent;
                const s = t.match(/^([\\d.]+) s$/);
                return s ? Number(s[1]) >= {seconds} : /min|h|d/.test(t); }})()",
            level_shows(level)
        )
    };

    browser.select(laptop);
    browser.wait_for(&settled("SOFT", 40), phase);
    browser.screenshot(&docs.join("dashboard-soft.png"));

    browser.wait_for(&settled("HARD", 40), phase);
    browser.screenshot(&docs.join("dashboard-hard.png"));
    browser.select(phone);
    browser.screenshot(&docs.join("dashboard-phone.png"));

    browser.select(laptop);
    browser.wait_for(&settled("OK", 20), phase);
    browser.screenshot(&docs.join("dashboard-ok.png"));

    for tab in [laptop, phone] {
        browser.select(tab);
        let report = browser.report();
        assert!(
            report.problems.is_empty(),
            "page problems: {:?}",
            report.problems
        );
    }
}
