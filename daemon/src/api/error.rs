//! Every error the API returns, as RFC 9457 `application/problem+json`, mapped in one place.
//!
//! Clients get a safe `detail`; internal causes (database errors and the like) are logged with
//! the request, never sent. Each kind of problem has a stable `code` and `type`.

use std::time::Duration;

use actors::CatalogError;
use poem::Response;
use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

use crate::auth::AuthError;

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Stable error codes.
pub const ERROR_CODE_BAD_REQUEST: &str = "bad_request";
pub const ERROR_CODE_UNAUTHORIZED: &str = "unauthorized";
pub const ERROR_CODE_FORBIDDEN: &str = "forbidden";
pub const ERROR_CODE_NOT_FOUND: &str = "not_found";
pub const ERROR_CODE_METHOD_NOT_ALLOWED: &str = "method_not_allowed";
pub const ERROR_CODE_CONFLICT: &str = "conflict";
pub const ERROR_CODE_PRECONDITION_FAILED: &str = "precondition_failed";
pub const ERROR_CODE_PAYLOAD_TOO_LARGE: &str = "payload_too_large";
pub const ERROR_CODE_UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
pub const ERROR_CODE_VALIDATION: &str = "validation_failed";
pub const ERROR_CODE_RATE_LIMITED: &str = "rate_limited";
pub const ERROR_CODE_INTERNAL: &str = "internal";
pub const ERROR_CODE_NOT_IMPLEMENTED: &str = "not_implemented";
pub const ERROR_CODE_UNAVAILABLE: &str = "unavailable";
pub const ERROR_CODE_UNSUPPORTED: &str = "unsupported";
pub const ERROR_CODE_PROVIDER: &str = "provider_error";
pub const ERROR_CODE_PROVIDER_TIMEOUT: &str = "provider_timeout";
pub const ERROR_CODE_VERIFICATION_FAILED: &str = "verification_failed";

/// One invalid field of a request.
#[derive(Debug, Clone, Object)]
pub struct FieldError {
    /// JSON path of the field, such as `config.token`.
    pub field: String,
    pub message: String,
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Object)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[oai(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, safe to show to users.
    #[oai(skip_serializing_if_is_none)]
    pub detail: Option<String>,
    /// A stable, machine-readable error code.
    pub code: String,
    /// The fields that were invalid, for validation problems.
    #[oai(skip_serializing_if_is_none)]
    pub errors: Option<Vec<FieldError>>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<Option<String>>) -> Self {
        Self {
            kind: format!("urn:stellaops:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            errors: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>, message: impl Into<String>) -> Self {
        self.errors.get_or_insert_with(Vec::new).push(FieldError {
            field: field.into(),
            message: message.into(),
        });
        self
    }
}

/// The error half of every operation's response.
#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "bad_request_handler")]
pub enum ApiError {
    /// The request is malformed: bad JSON, unknown fields, wrong types or bad parameters.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// No valid bearer token was presented.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// The token lacks the scope this operation needs.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// No such object in the caller's tenant.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The request conflicts with the current state, such as a name already in use.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// The `If-Match` version is not the current one.
    #[oai(status = 412, content_type = "application/problem+json")]
    PreconditionFailed(Json<Problem>),
    /// The request body is larger than the limit.
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<Problem>),
    /// The request body is not `application/json`.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Problem>),
    /// The request is well-formed but its content is invalid.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// Too many requests with this token; retry after the given number of seconds.
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Json<Problem>, #[oai(header = "Retry-After")] u64),
    /// An internal error; details are in the daemon's log.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
    /// This operation is not available yet.
    #[oai(status = 501, content_type = "application/problem+json")]
    NotImplemented(Json<Problem>),
    /// The provider behind the integration failed or refused the call.
    #[oai(status = 502, content_type = "application/problem+json")]
    BadGateway(Json<Problem>),
    /// A dependency (such as the database) is unavailable; retry later.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>),
    /// The provider behind the integration did not answer in time.
    #[oai(status = 504, content_type = "application/problem+json")]
    GatewayTimeout(Json<Problem>),
}

/// The error statuses an operation declares, as a set: `Problems<{ status::NOT_FOUND |
/// status::CONFLICT }>`. One bit per variant of [`ApiError`].
pub mod status {
    pub const BAD_REQUEST: u32 = 1 << 0;
    pub const UNAUTHORIZED: u32 = 1 << 1;
    pub const FORBIDDEN: u32 = 1 << 2;
    pub const NOT_FOUND: u32 = 1 << 3;
    pub const CONFLICT: u32 = 1 << 4;
    pub const PRECONDITION_FAILED: u32 = 1 << 5;
    pub const PAYLOAD_TOO_LARGE: u32 = 1 << 6;
    pub const UNSUPPORTED_MEDIA_TYPE: u32 = 1 << 7;
    pub const UNPROCESSABLE: u32 = 1 << 8;
    pub const TOO_MANY_REQUESTS: u32 = 1 << 9;
    pub const INTERNAL: u32 = 1 << 10;
    pub const NOT_IMPLEMENTED: u32 = 1 << 11;
    pub const BAD_GATEWAY: u32 = 1 << 12;
    pub const UNAVAILABLE: u32 = 1 << 13;
    pub const GATEWAY_TIMEOUT: u32 = 1 << 14;

    /// What every operation behind the bearer scheme can answer: no or a bad token (401), a
    /// missing scope (403), the token's rate limit (429), an internal error (500), the key
    /// store or the catalog unavailable (503).
    pub const AUTHENTICATED: u32 =
        UNAUTHORIZED | FORBIDDEN | TOO_MANY_REQUESTS | INTERNAL | UNAVAILABLE;
    /// What every operation with path or query parameters can answer: a parameter that does not
    /// parse (400) or holds a NUL character (422).
    pub const PARAMETERS: u32 = BAD_REQUEST | UNPROCESSABLE;
    /// What every operation with a JSON body can answer: malformed JSON (400), a body over the
    /// limit (413), not JSON (415), invalid content (422).
    pub const BODY: u32 = BAD_REQUEST | PAYLOAD_TOO_LARGE | UNSUPPORTED_MEDIA_TYPE | UNPROCESSABLE;
    /// The failures of a call to the provider behind an integration.
    pub const PROVIDER: u32 = TOO_MANY_REQUESTS | BAD_GATEWAY | GATEWAY_TIMEOUT | UNPROCESSABLE;

    /// The bit of an HTTP status, 0 for a status no [`super::ApiError`] carries.
    pub const fn bit(status: u16) -> u32 {
        match status {
            400 => BAD_REQUEST,
            401 => UNAUTHORIZED,
            403 => FORBIDDEN,
            404 => NOT_FOUND,
            409 => CONFLICT,
            412 => PRECONDITION_FAILED,
            413 => PAYLOAD_TOO_LARGE,
            415 => UNSUPPORTED_MEDIA_TYPE,
            422 => UNPROCESSABLE,
            429 => TOO_MANY_REQUESTS,
            500 => INTERNAL,
            501 => NOT_IMPLEMENTED,
            502 => BAD_GATEWAY,
            503 => UNAVAILABLE,
            504 => GATEWAY_TIMEOUT,
            _ => 0,
        }
    }
}

/// The error half of one operation's response: an [`ApiError`] whose status is one of the set
/// `S` (see [`status`]). The document lists only those statuses for the operation, so a
/// generated client knows which errors it can meet.
///
/// A status outside `S` is a bug in the operation's declaration: debug builds (every test and
/// the fuzzer) panic on it, so the connection fails and the test with it; release builds log
/// it and still send the problem.
#[derive(Debug)]
pub struct Problems<const S: u32>(pub ApiError);

impl<const S: u32, E: Into<ApiError>> From<E> for Problems<S> {
    fn from(e: E) -> Self {
        Problems(e.into())
    }
}

impl<const S: u32> Problems<S> {
    /// Whether the set `S` holds `status`.
    pub const fn declares(status: u16) -> bool {
        let bit = status::bit(status);
        bit != 0 && S & bit != 0
    }
}

impl<const S: u32> ApiResponse for Problems<S> {
    fn meta() -> poem_openapi::registry::MetaResponses {
        let mut meta = ApiError::meta();
        meta.responses
            .retain(|r| r.status.is_some_and(Self::declares));
        meta
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        ApiError::register(registry);
    }
}

impl<const S: u32> From<Problems<S>> for poem::Error {
    fn from(problems: Problems<S>) -> Self {
        let status = problems.0.status();
        if !Problems::<S>::declares(status) {
            tracing::error!(
                message = "An operation answered with a status its document does not declare.",
                status,
            );
            debug_assert!(false, "undeclared error status {status}");
        }
        problems.0.into()
    }
}

/// The `WWW-Authenticate` challenge sent with every 401.
pub const BEARER_CHALLENGE: &str = "Bearer realm=\"stella-integrations\"";

impl ApiError {
    /// The problem for `status`, in the matching variant.
    pub fn from_problem(problem: Problem) -> Self {
        let p = Json(problem);
        match p.0.status {
            400 => ApiError::BadRequest(p),
            401 => ApiError::Unauthorized(p, BEARER_CHALLENGE.into()),
            403 => ApiError::Forbidden(p),
            404 => ApiError::NotFound(p),
            409 => ApiError::Conflict(p),
            412 => ApiError::PreconditionFailed(p),
            413 => ApiError::PayloadTooLarge(p),
            415 => ApiError::UnsupportedMediaType(p),
            422 => ApiError::Unprocessable(p),
            429 => ApiError::TooManyRequests(p, 1),
            501 => ApiError::NotImplemented(p),
            502 => ApiError::BadGateway(p),
            503 => ApiError::Unavailable(p),
            504 => ApiError::GatewayTimeout(p),
            _ => ApiError::Internal(Json(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ERROR_CODE_INTERNAL,
                None,
            ))),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::TooManyRequests(p, _) | ApiError::Unauthorized(p, _) => p.0.status,
            ApiError::BadRequest(p)
            | ApiError::Forbidden(p)
            | ApiError::NotFound(p)
            | ApiError::Conflict(p)
            | ApiError::PreconditionFailed(p)
            | ApiError::PayloadTooLarge(p)
            | ApiError::UnsupportedMediaType(p)
            | ApiError::Unprocessable(p)
            | ApiError::Internal(p)
            | ApiError::NotImplemented(p)
            | ApiError::BadGateway(p)
            | ApiError::Unavailable(p)
            | ApiError::GatewayTimeout(p) => p.0.status,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::from_problem(Problem::new(
            StatusCode::BAD_REQUEST,
            ERROR_CODE_BAD_REQUEST,
            detail.into(),
        ))
    }

    /// A 422 naming the invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let (field, message) = (field.into(), message.into());
        Self::from_problem(
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ERROR_CODE_VALIDATION,
                format!("{field}: {message}"),
            )
            .with_field(field, message),
        )
    }

    pub fn forbidden(scope: &str) -> Self {
        Self::from_problem(Problem::new(
            StatusCode::FORBIDDEN,
            ERROR_CODE_FORBIDDEN,
            format!("this operation needs the {scope} scope"),
        ))
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::from_problem(Problem::new(
            StatusCode::NOT_FOUND,
            ERROR_CODE_NOT_FOUND,
            detail.into(),
        ))
    }

    pub fn not_implemented(detail: impl Into<String>) -> Self {
        Self::from_problem(Problem::new(
            StatusCode::NOT_IMPLEMENTED,
            ERROR_CODE_NOT_IMPLEMENTED,
            detail.into(),
        ))
    }

    pub fn internal() -> Self {
        Self::from_problem(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ERROR_CODE_INTERNAL,
            None,
        ))
    }

    pub fn rate_limited(retry_after: Duration) -> Self {
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        ApiError::TooManyRequests(
            Json(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                ERROR_CODE_RATE_LIMITED,
                format!("rate limit exceeded; retry after {seconds} s"),
            )),
            seconds,
        )
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotFound { kind, id } => {
                ApiError::not_found(format!("{kind} {id} not found"))
            }
            CatalogError::Conflict { field, message } => ApiError::from_problem(
                Problem::new(
                    StatusCode::CONFLICT,
                    ERROR_CODE_CONFLICT,
                    format!("{field}: {message}"),
                )
                .with_field(field, message),
            ),
            CatalogError::VersionMismatch { .. } => ApiError::from_problem(Problem::new(
                StatusCode::PRECONDITION_FAILED,
                ERROR_CODE_PRECONDITION_FAILED,
                e.to_string(),
            )),
            CatalogError::Unavailable => ApiError::from_problem(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ERROR_CODE_UNAVAILABLE,
                "the catalog is unavailable; retry later".to_owned(),
            )),
            CatalogError::Db(error) => {
                tracing::error!(message = "Database error.", %error);
                ApiError::internal()
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::RateLimited { retry_after } => ApiError::rate_limited(retry_after),
            AuthError::KeysUnavailable | AuthError::StoreUnavailable => {
                ApiError::from_problem(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ERROR_CODE_UNAVAILABLE,
                    e.to_string(),
                ))
            }
            other => ApiError::from_problem(Problem::new(
                StatusCode::UNAUTHORIZED,
                ERROR_CODE_UNAUTHORIZED,
                other.to_string(),
            )),
        }
    }
}

/// Turns poem-openapi's request-parsing errors into problems that name the cause.
fn bad_request_handler(err: poem::Error) -> ApiError {
    let status = err.status();
    let detail = without_found_value(&err.to_string());
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ERROR_CODE_PAYLOAD_TOO_LARGE,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ERROR_CODE_UNSUPPORTED_MEDIA_TYPE,
        StatusCode::UNAUTHORIZED => ERROR_CODE_UNAUTHORIZED,
        _ => ERROR_CODE_BAD_REQUEST,
    };
    let status = match status {
        StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::UNSUPPORTED_MEDIA_TYPE
        | StatusCode::UNAUTHORIZED => status,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::from_problem(Problem::new(status, code, detail))
}

/// A parse error's message without the value it found: poem-openapi says
/// `Expected input type "string", found <the JSON sent>.`, and what was sent in the wrong
/// place may be a credential. The expected type stays; everything from `, found ` on goes (the
/// value runs to the end of the message, so nothing after it can be kept safely).
fn without_found_value(message: &str) -> String {
    match message.find(", found ") {
        Some(at) => format!("{}.", &message[..at]),
        None => message.to_owned(),
    }
}

/// A `poem::Error` whose response is a problem document, for extractors and middleware.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problem.detail.as_deref().unwrap_or(&.problem.title))]
pub struct ProblemError {
    problem: Problem,
    retry_after: Option<u64>,
}

impl poem::error::ResponseError for ProblemError {
    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn as_response(&self) -> Response {
        let mut response = problem_response(self.problem.clone());
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert("retry-after", seconds.into());
        }
        response
    }
}

impl ApiError {
    /// As a `poem::Error`, for extractors and middleware that must fail with a problem.
    pub fn into_poem(self) -> poem::Error {
        let (problem, retry_after) = match self {
            ApiError::TooManyRequests(p, seconds) => (p.0, Some(seconds)),
            ApiError::BadRequest(p)
            | ApiError::Unauthorized(p, _)
            | ApiError::Forbidden(p)
            | ApiError::NotFound(p)
            | ApiError::Conflict(p)
            | ApiError::PreconditionFailed(p)
            | ApiError::PayloadTooLarge(p)
            | ApiError::UnsupportedMediaType(p)
            | ApiError::Unprocessable(p)
            | ApiError::Internal(p)
            | ApiError::NotImplemented(p)
            | ApiError::BadGateway(p)
            | ApiError::Unavailable(p)
            | ApiError::GatewayTimeout(p) => (p.0, None),
        };
        poem::Error::from(ProblemError {
            problem,
            retry_after,
        })
    }
}

/// The last line of defence: any error that is not yet a problem document becomes one, so
/// every error response of the daemon (unknown routes, wrong methods, auth failures, body
/// limits) is `application/problem+json`.
pub async fn catch_all(err: poem::Error) -> Response {
    let status = err.status();
    let message = err.to_string();
    // Operations' `ApiError`s and `ProblemError`s arrive here already rendered.
    let response = err.into_response();
    if response.content_type() == Some(PROBLEM_JSON) {
        return response;
    }
    let code = match status {
        StatusCode::BAD_REQUEST => ERROR_CODE_BAD_REQUEST,
        StatusCode::UNAUTHORIZED => ERROR_CODE_UNAUTHORIZED,
        StatusCode::FORBIDDEN => ERROR_CODE_FORBIDDEN,
        StatusCode::NOT_FOUND => ERROR_CODE_NOT_FOUND,
        StatusCode::METHOD_NOT_ALLOWED => ERROR_CODE_METHOD_NOT_ALLOWED,
        StatusCode::PAYLOAD_TOO_LARGE => ERROR_CODE_PAYLOAD_TOO_LARGE,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ERROR_CODE_UNSUPPORTED_MEDIA_TYPE,
        s if s.is_client_error() => ERROR_CODE_BAD_REQUEST,
        _ => {
            tracing::error!(message = "Unhandled error.", error = %message);
            let body = Problem::new(StatusCode::INTERNAL_SERVER_ERROR, ERROR_CODE_INTERNAL, None);
            return problem_response(body);
        }
    };
    problem_response(Problem::new(status, code, without_found_value(&message)))
}

fn problem_response(problem: Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let challenge = status == StatusCode::UNAUTHORIZED;
    let body =
        serde_json::to_vec(&poem_openapi::types::ToJSON::to_json(&problem)).unwrap_or_default();
    let mut builder = Response::builder()
        .status(status)
        .content_type(PROBLEM_JSON);
    if challenge {
        builder = builder.header("www-authenticate", BEARER_CHALLENGE);
    }
    builder.body(body)
}

impl From<crate::verify::VerifyError> for ApiError {
    fn from(e: crate::verify::VerifyError) -> Self {
        use crate::verify::VerifyError as E;
        match e {
            E::UnknownType => ApiError::invalid("type", "unknown provider type"),
            E::Connector(e) => e.into(),
            E::Unreachable { reason, message } => ApiError::from_problem(
                Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ERROR_CODE_VERIFICATION_FAILED,
                    format!(
                        "the provider could not be reached with this configuration: {reason}: {message}"
                    ),
                )
                .with_field("config", format!("{reason}: {message}")),
            ),
        }
    }
}

impl From<connectors::connector::Error> for ApiError {
    fn from(e: connectors::connector::Error) -> Self {
        use connectors::connector::Error as E;
        let detail = e.to_string();
        match e {
            E::Unsupported(_) => ApiError::from_problem(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ERROR_CODE_UNSUPPORTED,
                detail,
            )),
            E::Config(c) => ApiError::invalid(c.field().to_owned(), c.message()),
            E::RateLimited { retry_after } => {
                ApiError::rate_limited(retry_after.unwrap_or(Duration::from_secs(60)))
            }
            E::Timeout => ApiError::from_problem(Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                ERROR_CODE_PROVIDER_TIMEOUT,
                detail,
            )),
            // The integration itself is incomplete or points where it may not: the caller can
            // fix it, so a 422 naming the integration's field, not a provider failure.
            E::NoCredentials(_) | E::BadCredential(_) => ApiError::invalid("authRef", detail),
            E::TargetRefused(_) => ApiError::invalid("config", detail),
            E::InvalidCursor => ApiError::bad_request("cursor: not a cursor of this list"),
            _ => ApiError::from_problem(Problem::new(
                StatusCode::BAD_GATEWAY,
                ERROR_CODE_PROVIDER,
                detail,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_lose_the_value_they_found() {
        assert_eq!(
            without_found_value(
                r#"parse request payload error: Expected input type "string", found ["https://u:SECRETVALUE@h/"]. (occurred while parsing "WebhookSubscriptionInput")"#
            ),
            r#"parse request payload error: Expected input type "string"."#
        );
        assert_eq!(
            without_found_value(
                r#"failed to parse parameter `status`: Expected input type "DeliveryState", found "SECRETVALUE"."#
            ),
            r#"failed to parse parameter `status`: Expected input type "DeliveryState"."#
        );
        let unknown = "parse request payload error: failed to parse \"X\": unknown field `extra`.";
        assert_eq!(without_found_value(unknown), unknown);
    }
}
