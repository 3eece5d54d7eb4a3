//! API errors and their one mapping to HTTP status and JSON body.

use serde_json::json;
use std::time::Duration;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

/// Every way an API request can fail.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("rate limited")]
    RateLimited {
        provider: String,
        retry_after: Duration,
    },
    #[error("tokens must be between 1 and {limit}, the most {provider} can ever grant at once")]
    TooManyTokens { provider: String, limit: u32 },
    /// A paced provider's rule holds the request (`message` names it).
    #[error("{message}")]
    Held {
        provider: String,
        rule: String,
        limit: String,
        message: String,
        retry_after: Duration,
    },
    /// No rule of a paced provider could ever admit the request.
    #[error("{message}")]
    Never {
        provider: String,
        rule: String,
        limit: String,
        message: String,
    },
    #[error("{0}")]
    TooManyCoordinators(String),
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::TooManyTokens { .. } | ApiError::Never { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. }
            | ApiError::Held { .. }
            | ApiError::TooManyCoordinators(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The JSON response: `{"error": "...", ...}` with the right status.
    pub fn into_response(self) -> Response {
        let status = self.status();
        let mut body = json!({ "error": self.to_string() });
        let mut retry_after = None;
        match &self {
            ApiError::RateLimited {
                provider,
                retry_after: wait,
            } => {
                let ms = wait.as_millis().max(1);
                body["provider"] = json!(provider);
                body["retry_after_ms"] = json!(ms);
                retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
            }
            ApiError::Held {
                provider,
                rule,
                limit,
                retry_after: wait,
                ..
            } => {
                body["provider"] = json!(provider);
                body["rule"] = json!(rule);
                body["limit"] = json!(limit);
                body["retry_after_ms"] = json!(wait.as_millis().max(1));
                retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
            }
            ApiError::Never {
                provider,
                rule,
                limit,
                ..
            } => {
                body["provider"] = json!(provider);
                body["rule"] = json!(rule);
                body["limit"] = json!(limit);
            }
            ApiError::PayloadTooLarge { limit } => body["limit_bytes"] = json!(limit),
            ApiError::TooManyTokens { provider, limit } => {
                body["provider"] = json!(provider);
                body["limit"] = json!(limit);
            }
            _ => {}
        }
        let mut response = json_response(&body, status);
        if self == ApiError::Unauthorized {
            response.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Bearer realm=\"mdp\""),
            );
        }
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(seconds));
        }
        response
    }
}

/// A JSON body with `status`.
pub(super) fn json_response(body: &impl serde::Serialize, status: StatusCode) -> Response {
    let reply = warp::reply::with_status(warp::reply::json(body), status);
    warp::reply::Reply::into_response(reply)
}

/// Turns warp's own rejections (no route, wrong method) into JSON errors.
pub(super) async fn recover(
    rejection: warp::Rejection,
) -> Result<Response, std::convert::Infallible> {
    // Our own refusals (401, 413, ...) outrank "another route did not match".
    let error = if let Some(error) = rejection.find::<Rejected>() {
        error.0.clone()
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::MethodNotAllowed
    } else if rejection.is_not_found() {
        ApiError::NotFound("no such route".into())
    } else {
        ApiError::BadRequest(format!("bad request: {rejection:?}"))
    };
    Ok(error.into_response())
}

/// Carries an [`ApiError`] through warp's rejection path.
#[derive(Debug)]
pub(super) struct Rejected(pub ApiError);

impl warp::reject::Reject for Rejected {}
