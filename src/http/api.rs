//! Handlers of the JSON API and the operational endpoints.

use super::Ctx;
use super::error::{ApiError, json_response};
use crate::clock::unix_now;
use crate::control::Outcome;
use crate::feedback;
use crate::rate::Refusal;
use crate::telemetry;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Buf, Filter};

/// The body of `/health`, keys in this order.
pub const HEALTH_BODY: &str = r#"{"status":"healthy","service":"market-data-pipeline"}"#;

pub fn health() -> Response {
    let mut response = Response::new(HEALTH_BODY.into());
    response.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("application/json"),
    );
    response
}

pub fn ready(ctx: Ctx) -> Response {
    if ctx.is_ready() {
        json_response(&json!({"status": "ready"}), StatusCode::OK)
    } else {
        ApiError::Unavailable("not ready".into()).into_response()
    }
}

pub fn metrics(ctx: Ctx) -> Response {
    let mut response = Response::new(ctx.metrics.render().into());
    response.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static(telemetry::CONTENT_TYPE),
    );
    response
}

/// The request body, after the content-type and size checks, or the error
/// that refused it.
pub type Body = Result<Vec<u8>, ApiError>;

/// Reads a JSON request body of at most `limit` bytes, counting while it
/// streams in so a lying or absent Content-Length changes nothing.
pub fn json_body(limit: u64) -> impl Filter<Extract = (Body,), Error = warp::Rejection> + Clone {
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
pub async fn feedback(ctx: Ctx, body: Body) -> Response {
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
            .await
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
}

fn one() -> u32 {
    1
}

/// `POST /api/v1/acquire`: rate tokens for an external worker.
pub async fn acquire(ctx: Ctx, body: Body) -> Response {
    match try_acquire(&ctx, body).await {
        Ok(body) => json_response(&body, StatusCode::OK),
        Err(error) => error.into_response(),
    }
}

async fn try_acquire(ctx: &Ctx, body: Body) -> Result<serde_json::Value, ApiError> {
    let request: AcquireRequest = serde_json::from_slice(&body?)
        .map_err(|e| ApiError::BadRequest(format!("body is not a valid acquire request: {e}")))?;
    let max_wait = Duration::from_millis(request.wait_ms).min(ctx.config.http.acquire_max_wait);
    // The coordinator counts the outcome, once per request.
    match ctx
        .rates
        .acquire(&request.provider, request.tokens, max_wait)
        .await
    {
        Ok(waited) => Ok(json!({
            "granted": true,
            "provider": request.provider,
            "tokens": request.tokens,
            "waited_ms": waited.as_millis(),
        })),
        Err(Refusal::Unknown) => Err(ApiError::NotFound(format!(
            "unknown provider {:?}",
            request.provider
        ))),
        Err(Refusal::TooMany { limit }) => Err(ApiError::TooManyTokens {
            provider: request.provider,
            limit,
        }),
        Err(Refusal::Throttled { retry_after }) => Err(ApiError::RateLimited {
            provider: request.provider,
            retry_after,
        }),
    }
}

/// `GET /api/v1/state`.
pub fn state(ctx: Ctx) -> Response {
    json_response(&super::stream::state_json(&ctx), StatusCode::OK)
}

/// `DELETE /api/v1/coordinators/{id}`: forget a coordinator that is gone for
/// good (its pod deleted); its level stops counting and its series go.
pub async fn forget_coordinator(id: String, ctx: Ctx) -> Response {
    let result = async {
        let known = ctx
            .engine
            .forget(id.clone())
            .await
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
pub fn history(ctx: Ctx) -> Response {
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
