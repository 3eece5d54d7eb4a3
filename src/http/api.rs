//! Handlers of the JSON API and the operational endpoints.

use super::Ctx;
use super::error::{ApiError, json_response};
use crate::clock::unix_now;
use crate::control::Outcome;
use crate::feedback;
use crate::rate::{AcquireRefusal, PacedGrant, PacedRefusal, Refusal, pacing};
use crate::telemetry;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Buf, Filter};

/// The body of `/health`, keys in this order.
pub(super) const HEALTH_BODY: &str = r#"{"status":"healthy","service":"market-data-pipeline"}"#;

pub(super) fn health() -> Response {
    let mut response = Response::new(HEALTH_BODY.into());
    response.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("application/json"),
    );
    response
}

pub(super) fn ready(ctx: Arc<Ctx>) -> Response {
    if ctx.is_ready() {
        json_response(&json!({"status": "ready"}), StatusCode::OK)
    } else {
        ApiError::Unavailable("not ready".into()).into_response()
    }
}

pub(super) fn metrics(ctx: Arc<Ctx>) -> Response {
    let mut response = Response::new(ctx.metrics.render().into());
    response.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static(telemetry::CONTENT_TYPE),
    );
    response
}

/// The request body, after the content-type and size checks, or the error
/// that refused it.
pub(super) type Body = Result<Vec<u8>, ApiError>;

/// Reads a JSON request body of at most `limit` bytes, counting while it
/// streams in so a lying or absent Content-Length changes nothing.
pub(super) fn json_body(
    limit: u64,
) -> impl Filter<Extract = (Body,), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and(warp::header::optional::<String>("content-length"))
        .and(warp::body::stream())
        .then(
            move |content_type: Option<String>, length: Option<String>, body| {
                read_body(content_type, length, body, limit)
            },
        )
}

fn is_json(content_type: Option<&str>) -> bool {
    // No header at all is tolerated: the body must still parse as JSON.
    let Some(value) = content_type else {
        return true;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    // application/json, or a structured syntax suffix such as application/cloudevents+json.
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.len() > 5 && subtype.ends_with("+json"))
}

async fn read_body<S, B>(
    content_type: Option<String>,
    content_length: Option<String>,
    body: S,
    limit: u64,
) -> Body
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if !is_json(content_type.as_deref()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = content_length.and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = std::pin::pin!(body);
    let mut bytes = Vec::with_capacity(declared.unwrap_or(256).min(limit) as usize);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| ApiError::BadRequest(format!("unreadable body: {e}")))?;
        if (bytes.len() + chunk.remaining()) as u64 > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            bytes.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(bytes)
}

/// `POST /feedback`: one event from the store.
pub(super) async fn feedback(ctx: Arc<Ctx>, body: Body) -> Response {
    let received = tokio::time::Instant::now();
    let result = async {
        let bytes = body.inspect_err(|e| ctx.metrics.reject(body_reason(e)))?;
        let observation = feedback::parse_event(&bytes, unix_now(), ctx.config.max_clock_skew)
            .map_err(|e| {
                ctx.metrics.reject(e.reason());
                ApiError::BadRequest(e.to_string())
            })?;
        let id = observation.coordinator_id.clone();
        if !ctx.config.feedback_enabled {
            ctx.metrics.reject("disabled");
            return Ok(
                json!({"applied": false, "coordinator_id": id, "reason": "feedback disabled"}),
            );
        }
        let outcome = ctx
            .engine
            .observe(observation, received)
            .ok_or_else(|| ApiError::Unavailable("shutting down".into()))?;
        match outcome {
            Outcome::Applied { level } => Ok(json!({
                "applied": true,
                "coordinator_id": id,
                "coordinator_level": level,
                "level": ctx.engine.current().level,
            })),
            Outcome::OutOfOrder { last_ts } => {
                ctx.metrics.reject("out_of_order");
                Ok(json!({
                    "applied": false,
                    "coordinator_id": id,
                    "reason": "older than the last event applied",
                    "last_ts": last_ts,
                }))
            }
            Outcome::TooManyCoordinators => {
                ctx.metrics.reject("too_many_coordinators");
                Err(ApiError::TooManyCoordinators(format!(
                    "coordinator limit of {} reached",
                    ctx.config.control.max_coordinators
                )))
            }
        }
    }
    .await;
    match result {
        Ok(body) => json_response(&body, StatusCode::OK),
        Err(error) => error.into_response(),
    }
}

fn body_reason(error: &ApiError) -> &'static str {
    match error {
        ApiError::PayloadTooLarge { .. } => "too_large",
        ApiError::UnsupportedMediaType => "unsupported_media_type",
        _ => "malformed",
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AcquireRequest {
    provider: String,
    #[serde(default = "one")]
    tokens: u32,
    /// Wait up to this long for the tokens instead of answering 429 at once.
    #[serde(default)]
    wait_ms: u64,
    /// What the request is for (a paced provider's rules select on these;
    /// a plain provider's bucket ignores them).
    #[serde(default)]
    class: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
    #[serde(default)]
    kind: Option<String>,
}

fn one() -> u32 {
    1
}

/// The longest class, key, fingerprint or kind accepted: enough for any
/// contract description, small enough that a tracked key costs little.
const MAX_FIELD: usize = 256;

/// `POST /api/v1/acquire`: rate tokens for an external worker.
pub(super) async fn acquire(ctx: Arc<Ctx>, body: Body) -> Response {
    match try_acquire(&ctx, body).await {
        Ok((provider, tokens, grant)) => {
            let lease = grant.lease.as_ref();
            let body = Granted {
                granted: true,
                lease: lease.map(|(id, _)| id.as_str()),
                lease_expires_ms: lease.map(|(_, expires_in)| expires_in.as_millis()),
                provider: &provider,
                tokens,
                waited_ms: grant.waited.as_millis(),
            };
            json_response(&body, StatusCode::OK)
        }
        Err(error) => error.into_response(),
    }
}

/// A grant's answer, written straight from the fields (no JSON tree per request).
#[derive(Serialize)]
struct Granted<'a> {
    granted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_expires_ms: Option<u128>,
    provider: &'a str,
    tokens: u32,
    waited_ms: u128,
}

async fn try_acquire(ctx: &Ctx, body: Body) -> Result<(String, u32, PacedGrant), ApiError> {
    let request: AcquireRequest = serde_json::from_slice(&body?)
        .map_err(|e| ApiError::BadRequest(format!("body is not a valid acquire request: {e}")))?;
    for (field, value) in [
        ("class", &request.class),
        ("key", &request.key),
        ("fingerprint", &request.fingerprint),
        ("kind", &request.kind),
    ] {
        if value
            .as_ref()
            .is_some_and(|v| v.is_empty() || v.len() > MAX_FIELD)
        {
            return Err(ApiError::BadRequest(format!(
                "{field} must be 1 to {MAX_FIELD} bytes"
            )));
        }
    }
    let max_wait = Duration::from_millis(request.wait_ms).min(ctx.config.http.acquire_max_wait);
    let wanted = pacing::Request {
        provider: request.provider,
        class: request.class,
        key: request.key,
        fingerprint: request.fingerprint,
        kind: request.kind,
        tokens: request.tokens,
    };
    // The coordinator counts the outcome, once per request.
    let provider = wanted.provider.clone();
    match ctx.rates.acquire_request(&wanted, max_wait).await {
        Ok(grant) => Ok((provider, wanted.tokens, grant)),
        Err(
            AcquireRefusal::Bucket(Refusal::Unknown) | AcquireRefusal::Paced(PacedRefusal::Unknown),
        ) => Err(ApiError::NotFound(format!("unknown provider {provider:?}"))),
        Err(AcquireRefusal::Bucket(Refusal::TooMany { limit })) => {
            Err(ApiError::TooManyTokens { provider, limit })
        }
        Err(AcquireRefusal::Bucket(Refusal::Throttled { retry_after })) => {
            Err(ApiError::RateLimited {
                provider,
                retry_after,
            })
        }
        Err(AcquireRefusal::Paced(PacedRefusal::Held { held, retry_after })) => {
            Err(ApiError::Held {
                message: held.to_string(),
                provider,
                rule: held.rule,
                limit: held.limit,
                retry_after,
            })
        }
        Err(AcquireRefusal::Paced(PacedRefusal::Never(never))) => Err(ApiError::Never {
            message: never.to_string(),
            provider,
            rule: never.rule,
            limit: never.limit,
        }),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseRequest {
    lease: String,
}

/// `POST /api/v1/release`: a worker returns the lease of a finished request.
pub(super) async fn release(ctx: Arc<Ctx>, body: Body) -> Response {
    let result = async {
        let request: ReleaseRequest = serde_json::from_slice(&body?).map_err(|e| {
            ApiError::BadRequest(format!("body is not a valid release request: {e}"))
        })?;
        let released = ctx.rates.release(&request.lease).await;
        if !released {
            return Err(ApiError::NotFound(format!(
                "no lease {:?} is held (returned, expired, or never granted)",
                request.lease
            )));
        }
        Ok(json!({"released": true, "lease": request.lease}))
    }
    .await;
    match result {
        Ok(body) => json_response(&body, StatusCode::OK),
        Err(error) => error.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushbackRequest {
    provider: String,
    #[serde(default)]
    class: Option<String>,
    kind: pacing::PushbackKind,
    #[serde(default)]
    retry_after_ms: Option<u64>,
}

/// The longest retry-after a pushback may ask for.
const MAX_PUSHBACK_HOLD: Duration = Duration::from_secs(24 * 3600);

/// `POST /api/v1/pushback`: a worker reports the provider's own pushback
/// (IBKR error 162, an HTTP 429); that class backs off at once.
pub(super) async fn pushback(ctx: Arc<Ctx>, body: Body) -> Response {
    let result = async {
        let request: PushbackRequest = serde_json::from_slice(&body?).map_err(|e| {
            ApiError::BadRequest(format!("body is not a valid pushback report: {e}"))
        })?;
        if request
            .class
            .as_ref()
            .is_some_and(|c| c.is_empty() || c.len() > MAX_FIELD)
        {
            return Err(ApiError::BadRequest(format!(
                "class must be 1 to {MAX_FIELD} bytes"
            )));
        }
        let retry_after = request.retry_after_ms.map(Duration::from_millis);
        if retry_after.is_some_and(|r| r > MAX_PUSHBACK_HOLD) {
            return Err(ApiError::BadRequest(format!(
                "retry_after_ms must be at most {}",
                MAX_PUSHBACK_HOLD.as_millis()
            )));
        }
        let Some(paced) = ctx.rates.paced().filter(|p| p.contains(&request.provider)) else {
            return Err(ApiError::NotFound(format!(
                "{:?} is not a paced provider",
                request.provider
            )));
        };
        let report = pacing::Pushback {
            provider: request.provider.clone(),
            class: request.class.clone(),
            kind: request.kind,
            retry_after,
        };
        let factor = paced.pushback(&report).map_err(|e| match e {
            pacing::PushbackError::UnknownProvider(_) => ApiError::NotFound(e.to_string()),
            pacing::PushbackError::TooManyClasses { .. } => ApiError::Unavailable(e.to_string()),
        })?;
        tracing::warn!(
            provider = %request.provider,
            class = request.class.as_deref().unwrap_or("*"),
            kind = request.kind.as_str(),
            retry_after_ms = request.retry_after_ms,
            factor,
            "provider pushed back: its rate rules slow down"
        );
        Ok(json!({
            "provider": request.provider,
            "class": request.class,
            "kind": request.kind,
            "factor": factor,
        }))
    }
    .await;
    match result {
        Ok(body) => json_response(&body, StatusCode::OK),
        Err(error) => error.into_response(),
    }
}

/// `GET /api/v1/state`.
pub(super) fn state(ctx: Arc<Ctx>) -> Response {
    json_response(&super::stream::state_json(&ctx), StatusCode::OK)
}

/// `DELETE /api/v1/coordinators/{id}`: forget a coordinator that is gone for
/// good (its pod deleted); its level stops counting and its series go.
pub(super) async fn forget_coordinator(id: String, ctx: Arc<Ctx>) -> Response {
    let result = async {
        let known = ctx
            .engine
            .forget(&id)
            .ok_or_else(|| ApiError::Unavailable("shutting down".into()))?;
        if !known {
            return Err(ApiError::NotFound(format!("no coordinator {id:?}")));
        }
        Ok(json!({
            "forgotten": true,
            "coordinator_id": id,
            "level": ctx.engine.current().level,
        }))
    }
    .await;
    match result {
        Ok(body) => json_response(&body, StatusCode::OK),
        Err(error) => error.into_response(),
    }
}

/// `GET /api/v1/history`.
pub(super) fn history(ctx: Arc<Ctx>) -> Response {
    json_response(
        &json!({"resolution_seconds": 1, "samples": ctx.engine.history()}),
        StatusCode::OK,
    )
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn recognises_json_media_types() {
        for accepted in [
            None,
            Some("application/json"),
            Some("Application/JSON; charset=utf-8"),
            Some("application/cloudevents+json"),
        ] {
            assert!(is_json(accepted), "{accepted:?}");
        }
        for refused in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("application/+json"),
            Some("json"),
            Some("application/jsonp"),
            Some("é+json"),
        ] {
            assert!(!is_json(refused), "{refused:?}");
        }
    }
}
