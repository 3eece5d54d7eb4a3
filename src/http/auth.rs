//! Bearer-token access control for the routes that steer the service.

use super::error::{ApiError, Rejected};
use crate::telemetry::Metrics;
use std::sync::Arc;
use warp::Filter;

pub use crate::config::Token;

/// Passes requests carrying `Authorization: Bearer <token>` (everything when
/// no token is configured); refuses the rest with 401, counted under `route`.
pub fn require(
    token: Option<Arc<Token>>,
    metrics: Metrics,
    route: &'static str,
) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and_then(move |header: Option<String>| {
            let token = token.clone();
            let metrics = metrics.clone();
            async move {
                let Some(token) = token else {
                    return Ok(());
                };
                let presented = header
                    .as_deref()
                    .and_then(|value| value.strip_prefix("Bearer "))
                    .map(str::trim);
                if presented.is_some_and(|p| token.matches(p)) {
                    Ok(())
                } else {
                    metrics.unauthorized.with_label_values(&[route]).inc();
                    Err(warp::reject::custom(Rejected(ApiError::Unauthorized)))
                }
            }
        })
        .untuple_one()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_spaced_tokens_are_refused() {
        assert!(Token::new("short").is_none());
        assert!(Token::new("has a space in it, long enough").is_none());
        assert!(Token::new("  0123456789abcdef\n").is_some());
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let token = Token::new("0123456789abcdef-secret").expect("valid");
        assert!(!format!("{token:?}").contains("secret"));
        assert!(token.matches("0123456789abcdef-secret"));
        assert!(!token.matches("0123456789abcdef-secreT"));
        assert!(!token.matches(""));
    }
}
