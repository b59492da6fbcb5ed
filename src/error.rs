//! The HTTP layer's error type and its mapping to the contract (section 3):
//! every failure answers JSON `{ "error": { "code", "message" } }` with the
//! status beside its code.
//!
//! 4xx messages are written for the client. 5xx bodies say nothing internal;
//! the whole cause chain goes to the log instead. This module also owns the
//! error handlers that make actix's own extractor failures (bad JSON, bad
//! query, bad path) and unknown routes answer in the same shape.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use huddle_actors::auth::AuthFailure;
use huddle_actors::store::StoreError;
use serde_json::json;
use std::error::Error as StdError;
use std::fmt::Write as _;
use std::time::Duration;

/// Largest JSON request body the API accepts, in bytes.
pub const JSON_BODY_LIMIT: usize = 64 * 1024;

/// A boxed error kept as the cause of a 5xx answer.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `bad_request`: malformed or invalid input.
    #[error("{0}")]
    BadRequest(String),
    /// 401 `unauthorized`: missing or invalid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 401 `token_expired`: the access or refresh token has expired.
    #[error("token expired")]
    TokenExpired,
    /// 403 `forbidden`.
    #[error("{0}")]
    Forbidden(String),
    /// 404 `not_found` (also for things the caller may not know exist).
    #[error("{0}")]
    NotFound(String),
    /// 405 `method_not_allowed`: the route exists, not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409 `conflict`: a uniqueness rule or a limit.
    #[error("{0}")]
    Conflict(String),
    /// 410 `gone`.
    #[error("{0}")]
    Gone(String),
    /// 413 `payload_too_large`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415 `unsupported_media_type`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 416 `range_not_satisfiable`.
    #[error("{0}")]
    RangeNotSatisfiable(String),
    /// 429 `rate_limited`, with `Retry-After` (whole seconds, rounded up).
    #[error("too many requests; retry in {}s", retry_after_secs(*retry_after))]
    RateLimited {
        /// How long until a request would be accepted again.
        retry_after: Duration,
    },
    /// 500 `internal`: the cause is logged, never shown.
    #[error("internal error: {context}")]
    Internal {
        /// What was being done (logged only).
        context: String,
        /// The underlying failure (logged only).
        #[source]
        source: Option<BoxError>,
    },
    /// 503 `unavailable`: a dependency is down; the cause is logged.
    #[error("service unavailable: {context}")]
    Unavailable {
        /// What is unavailable (logged only).
        context: String,
        /// The underlying failure (logged only).
        #[source]
        source: Option<BoxError>,
    },
}

impl ApiError {
    /// A 500 with a cause, for the log.
    pub fn internal(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        ApiError::Internal {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A 503 with a cause, for the log.
    pub fn unavailable(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        ApiError::Unavailable {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// The contract's error code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::TokenExpired => "token_expired",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::Gone(_) => "gone",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RangeNotSatisfiable(_) => "range_not_satisfiable",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal { .. } => "internal",
            ApiError::Unavailable { .. } => "unavailable",
        }
    }

    /// The message shown to the client; generic for 5xx.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Internal { .. } => "internal server error".to_owned(),
            ApiError::Unavailable { .. } => "service temporarily unavailable".to_owned(),
            other => other.to_string(),
        }
    }

    /// The error as the contract's JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({ "error": { "code": self.code(), "message": self.public_message() } })
    }
}

fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

/// The error and all its sources, joined for the log.
pub fn cause_chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let _ = write!(out, ": {cause}");
        source = cause.source();
    }
    out
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) | ApiError::TokenExpired => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            log::error!("{status}: {}", cause_chain(self));
        }
        let mut builder = HttpResponse::build(status);
        if let ApiError::RateLimited { retry_after } = self {
            builder.insert_header((header::RETRY_AFTER, retry_after_secs(*retry_after)));
        }
        if matches!(self, ApiError::Unauthorized(_) | ApiError::TokenExpired) {
            builder.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        builder.json(self.body())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(what) => ApiError::Conflict(what),
            StoreError::NotFound(what) => ApiError::NotFound(what),
            backend @ StoreError::Backend { .. } => ApiError::internal("document store", backend),
        }
    }
}

impl From<AuthFailure> for ApiError {
    fn from(failure: AuthFailure) -> Self {
        match failure {
            AuthFailure::Unauthorized => {
                ApiError::Unauthorized("missing or invalid token".to_owned())
            }
            AuthFailure::Expired => ApiError::TokenExpired,
            AuthFailure::Unavailable => ApiError::internal("authentication", failure),
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(err: actix_web::error::BlockingError) -> Self {
        ApiError::internal("blocking task", err)
    }
}

/// Longest parser message echoed to a client: serde quotes offending values,
/// which may be huge.
const MAX_ECHO_CHARS: usize = 200;

fn clip(message: &str) -> String {
    if message.chars().count() <= MAX_ECHO_CHARS {
        message.to_owned()
    } else {
        let mut clipped: String = message.chars().take(MAX_ECHO_CHARS).collect();
        clipped.push('…');
        clipped
    }
}

/// Maps a JSON body extractor failure to the contract's shape.
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::PayloadTooLarge(format!("JSON body larger than {JSON_BODY_LIMIT} bytes"))
        }
        JsonPayloadError::ContentType => {
            ApiError::UnsupportedMediaType("expected Content-Type: application/json".to_owned())
        }
        JsonPayloadError::Deserialize(e) => {
            ApiError::BadRequest(format!("invalid JSON body: {}", clip(&e.to_string())))
        }
        JsonPayloadError::Serialize(e) => ApiError::internal("serializing JSON", e.to_string()),
        other => ApiError::BadRequest(format!(
            "invalid request body: {}",
            clip(&other.to_string())
        )),
    };
    api.into()
}

/// Maps a query string extractor failure to `bad_request`.
pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid query string: {}", clip(&err.to_string()))).into()
}

/// Maps a path extractor failure to `bad_request`.
pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid path: {}", clip(&err.to_string()))).into()
}

/// The extractor configurations that answer in the contract's shape; register
/// them as app data (`configure` does so for the API scope).
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(JSON_BODY_LIMIT)
        .error_handler(json_error)
}

/// Query extractor configuration answering `bad_request` in the contract's shape.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(query_error)
}

/// Path extractor configuration answering `bad_request` in the contract's shape.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(path_error)
}

/// Default service: an unknown route answers a JSON 404.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::NotFound(format!("no route for {} {}", req.method(), req.path())).error_response()
}

/// Resource default: a known path with an unsupported method answers 405.
pub async fn method_not_allowed() -> HttpResponse {
    ApiError::MethodNotAllowed.error_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    async fn body_of(err: ApiError) -> (StatusCode, serde_json::Value, HttpResponse) {
        let resp = err.error_response();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = to_bytes(resp.into_body()).await.unwrap();
        let mut rebuilt = HttpResponse::build(status);
        for (k, v) in headers.iter() {
            rebuilt.insert_header((k.clone(), v.clone()));
        }
        (
            status,
            serde_json::from_slice(&bytes).unwrap(),
            rebuilt.finish(),
        )
    }

    #[actix_web::test]
    async fn internal_errors_hide_their_cause() {
        let err = ApiError::from(StoreError::backend(
            "write failed",
            std::io::Error::other("disk /var/secret full"),
        ));
        let chain = cause_chain(&err);
        assert!(chain.contains("disk /var/secret full"), "{chain}");
        let (status, body, _) = body_of(err).await;
        assert_eq!(status, 500);
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body.to_string().contains("secret"));
    }

    #[actix_web::test]
    async fn rate_limited_rounds_retry_after_up() {
        let (status, body, resp) = body_of(ApiError::RateLimited {
            retry_after: Duration::from_millis(1500),
        })
        .await;
        assert_eq!(status, 429);
        assert_eq!(body["error"]["code"], "rate_limited");
        assert_eq!(resp.headers().get("retry-after").unwrap(), "2");
    }

    #[test]
    fn store_and_auth_errors_map_to_contract_codes() {
        assert_eq!(
            ApiError::from(StoreError::Conflict("x".into())).code(),
            "conflict"
        );
        assert_eq!(
            ApiError::from(StoreError::NotFound("x".into())).code(),
            "not_found"
        );
        assert_eq!(ApiError::from(AuthFailure::Expired).code(), "token_expired");
        assert_eq!(
            ApiError::from(AuthFailure::Unauthorized).code(),
            "unauthorized"
        );
        assert_eq!(ApiError::from(AuthFailure::Unavailable).code(), "internal");
    }
}
