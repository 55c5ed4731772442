//! The gateway's error type: its HTTP status and OpenAI error type (the reference's mapping), and
//! the exhaustive mapping to the bus's stable codes.

use super::budget::BudgetError;
use super::choice::ChoiceError;
use crate::bus::{BusError, ErrorCode, ToErrorCode};
use http::StatusCode;
use std::time::Duration;

/// OpenAI error type of client errors.
pub const TYPE_INVALID_REQUEST: &str = "invalid_request_error";
/// OpenAI error type of server errors.
pub const TYPE_SERVER: &str = "server_error";
/// OpenAI error type of a spent budget.
pub const TYPE_INSUFFICIENT_QUOTA: &str = "insufficient_quota";

/// Everything that can go wrong in the gateway, per request or in its service loop.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No or a wrong Bearer key.
    #[error("missing or invalid API key (send Authorization: Bearer KEY)")]
    Unauthorized,
    /// Unknown path.
    #[error("unknown endpoint {0}")]
    NotFound(String),
    /// Known path, other method.
    #[error("method not allowed (allowed: {0})")]
    MethodNotAllowed(&'static str),
    /// Body over the limit.
    #[error("request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    /// Compressed body.
    #[error("unsupported Content-Encoding {0:?}: send the body uncompressed")]
    UnsupportedEncoding(String),
    /// The body did not arrive in time.
    #[error("request body not received within {0:?}")]
    BodyTimeout(Duration),
    /// The body could not be read.
    #[error("request body could not be read: {0}")]
    BodyRead(String),
    /// The body is not a valid request.
    #[error("{0}")]
    InvalidRequest(String),
    /// No provider to ask.
    #[error(transparent)]
    Choice(#[from] ChoiceError),
    /// The day's budget, or its database.
    #[error(transparent)]
    Budget(#[from] BudgetError),
    /// lcpd refused or failed a request (quote, execute) or could not be reached.
    #[error("{context}: {source}")]
    Lcpd {
        /// What was asked.
        context: &'static str,
        /// lcpd's answer.
        source: BusError,
    },
    /// The job ended without a result.
    #[error("{0}")]
    ProviderFailed(String),
    /// The result is compressed.
    #[error("provider sent a result with content encoding {0:?}; only identity is supported")]
    ResultEncoding(String),
    /// The provider's result did not begin, or stopped moving, within this bound.
    #[error("the provider sent no result for {0:?}")]
    Timeout(Duration),
    /// Binding the listener or another I/O failure of the service.
    #[error("gateway: {0}")]
    Io(#[from] std::io::Error),
    /// The bus, outside a request.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// HTTP status of a bus code (the reference's gRPC -> HTTP table).
pub fn status_of_code(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidArgument | ErrorCode::NotFound | ErrorCode::FailedPrecondition => StatusCode::BAD_REQUEST,
        ErrorCode::Cancelled => StatusCode::REQUEST_TIMEOUT,
        ErrorCode::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::Unavailable => StatusCode::BAD_GATEWAY,
        ErrorCode::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::AlreadyExists => StatusCode::CONFLICT,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl GatewayError {
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Unauthorized => StatusCode::UNAUTHORIZED,
            GatewayError::NotFound(_) => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            GatewayError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::BodyRead(_) | GatewayError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::Choice(ChoiceError::ModelNotOffered { .. }) => StatusCode::NOT_FOUND,
            GatewayError::Choice(ChoiceError::NoProviders | ChoiceError::MappedPeerNotReady { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GatewayError::Budget(BudgetError::Exceeded { .. }) => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::Budget(BudgetError::Open(_) | BudgetError::Sqlite(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::Lcpd { source, .. } => status_of_code(source.code()),
            GatewayError::ProviderFailed(_) | GatewayError::ResultEncoding(_) => StatusCode::BAD_GATEWAY,
            GatewayError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::Bus(e) => status_of_code(e.code()),
        }
    }

    /// The OpenAI error type: `insufficient_quota` for a spent budget, else by status class.
    pub fn error_type(&self) -> &'static str {
        match self {
            GatewayError::Budget(BudgetError::Exceeded { .. }) => TYPE_INSUFFICIENT_QUOTA,
            _ if self.status().is_server_error() => TYPE_SERVER,
            _ => TYPE_INVALID_REQUEST,
        }
    }

    /// The OpenAI error code, where OpenAI has one for the case (`"code"` of the error body).
    pub fn openai_code(&self) -> Option<&'static str> {
        match self {
            GatewayError::Choice(ChoiceError::ModelNotOffered { .. }) => Some("model_not_found"),
            GatewayError::Budget(BudgetError::Exceeded { .. }) => Some("insufficient_quota"),
            GatewayError::Unauthorized => Some("invalid_api_key"),
            _ => None,
        }
    }

    /// The message an OpenAI client shows its user: this error without the bus's code names and
    /// LCP's error prefix (`quote: failed_precondition: lcp_error code=8: x` reads `quote: x (LCP
    /// error 8)`). Logs keep the full form.
    pub fn client_message(&self) -> String {
        match self {
            GatewayError::Lcpd { context, source: BusError::Remote(r) } => {
                format!("{context}: {}", without_lcp_prefix(&r.message))
            }
            GatewayError::ProviderFailed(m) => without_lcp_prefix(m),
            other => other.to_string(),
        }
    }

    /// Wraps lcpd's answer to a request with what was asked.
    pub fn lcpd(context: &'static str, source: BusError) -> Self {
        GatewayError::Lcpd { context, source }
    }
}

/// `lcp_error code=N: text` -> `text (LCP error N)`, anywhere in `m` (lcpd words a provider's
/// `lcp_error` so); other text as it is.
fn without_lcp_prefix(m: &str) -> String {
    const P: &str = "lcp_error code=";
    let Some(at) = m.find(P) else { return m.to_string() };
    let rest = &m[at + P.len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let Some(text) = rest[digits..].strip_prefix(": ").or_else(|| rest[digits..].strip_prefix(':')) else {
        return m.to_string();
    };
    if digits == 0 {
        return m.to_string();
    }
    let text = if text.is_empty() { "the provider gave no reason" } else { text };
    format!("{}{text} (LCP error {})", &m[..at], &rest[..digits])
}

impl ToErrorCode for GatewayError {
    fn code(&self) -> ErrorCode {
        match self {
            GatewayError::Unauthorized => ErrorCode::PermissionDenied,
            GatewayError::NotFound(_) => ErrorCode::NotFound,
            GatewayError::MethodNotAllowed(_) => ErrorCode::Unimplemented,
            GatewayError::BodyTooLarge(_) => ErrorCode::ResourceExhausted,
            GatewayError::UnsupportedEncoding(_)
            | GatewayError::BodyRead(_)
            | GatewayError::InvalidRequest(_)
            | GatewayError::ResultEncoding(_) => ErrorCode::InvalidArgument,
            GatewayError::BodyTimeout(_) | GatewayError::Timeout(_) => ErrorCode::DeadlineExceeded,
            GatewayError::Choice(ChoiceError::ModelNotOffered { .. }) => ErrorCode::NotFound,
            GatewayError::Choice(ChoiceError::NoProviders | ChoiceError::MappedPeerNotReady { .. }) => {
                ErrorCode::Unavailable
            }
            GatewayError::Budget(BudgetError::Exceeded { .. }) => ErrorCode::ResourceExhausted,
            GatewayError::Budget(BudgetError::Open(_) | BudgetError::Sqlite(_)) => ErrorCode::Internal,
            GatewayError::Lcpd { source, .. } => source.code(),
            GatewayError::ProviderFailed(_) => ErrorCode::Unavailable,
            GatewayError::Io(_) => ErrorCode::Internal,
            GatewayError::Bus(e) => e.code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::RemoteError;

    fn remote(code: ErrorCode) -> GatewayError {
        GatewayError::lcpd("quote", BusError::Remote(RemoteError::new(code, "x")))
    }

    #[test]
    fn statuses_follow_the_reference() {
        let table = [
            (ErrorCode::InvalidArgument, 400),
            (ErrorCode::NotFound, 400),
            (ErrorCode::FailedPrecondition, 400),
            (ErrorCode::Cancelled, 408),
            (ErrorCode::ResourceExhausted, 429),
            (ErrorCode::DeadlineExceeded, 504),
            (ErrorCode::Unavailable, 502),
            (ErrorCode::Unimplemented, 501),
            (ErrorCode::PermissionDenied, 403),
            (ErrorCode::AlreadyExists, 409),
            (ErrorCode::Internal, 500),
        ];
        for (code, status) in table {
            let e = remote(code);
            assert_eq!(e.status().as_u16(), status, "{code:?}");
            assert_eq!(e.code(), code);
            let want = if status >= 500 { TYPE_SERVER } else { TYPE_INVALID_REQUEST };
            assert_eq!(e.error_type(), want, "{code:?}");
        }
        assert_eq!(GatewayError::Unauthorized.status(), 401);
        assert_eq!(GatewayError::BodyTooLarge(1).status(), 413);
        assert_eq!(GatewayError::UnsupportedEncoding("gzip".into()).status(), 415);
        assert_eq!(GatewayError::ProviderFailed("x".into()).status(), 502);
        assert_eq!(GatewayError::Choice(ChoiceError::NoProviders).status(), 503);
        let timeout = GatewayError::lcpd("quote", BusError::Timeout { to: "lcpd".into(), ms: 1 });
        assert_eq!(timeout.status(), 504);
        let over = GatewayError::Budget(BudgetError::Exceeded { price_msat: 1, would: 2, limit: 1 });
        assert_eq!((over.status().as_u16(), over.error_type()), (429, TYPE_INSUFFICIENT_QUOTA));
        // An unknown model is OpenAI's 404 model_not_found.
        let unknown = GatewayError::Choice(ChoiceError::ModelNotOffered { model: "m".into() });
        assert_eq!((unknown.status().as_u16(), unknown.openai_code()), (404, Some("model_not_found")));
        assert_eq!(unknown.error_type(), TYPE_INVALID_REQUEST);
    }

    #[test]
    fn client_messages_carry_no_internal_prefixes() {
        let refused = RemoteError::new(ErrorCode::FailedPrecondition, "lcp_error code=8: model busy");
        let e = GatewayError::lcpd("quote", BusError::Remote(refused));
        assert_eq!(e.to_string(), "quote: failed_precondition: lcp_error code=8: model busy");
        assert_eq!(e.client_message(), "quote: model busy (LCP error 8)");
        let e = GatewayError::ProviderFailed("result stream: lcp_error code=7: upstream 503".into());
        assert_eq!(e.client_message(), "result stream: upstream 503 (LCP error 7)");
        let plain =
            GatewayError::lcpd("execute", BusError::Remote(RemoteError::new(ErrorCode::NotFound, "no such job")));
        assert_eq!(plain.client_message(), "execute: no such job");
        for odd in ["lcp_error code=: x", "lcp_error code=9", "lcp_error code=x: y"] {
            assert_eq!(without_lcp_prefix(odd), odd);
        }
        assert_eq!(without_lcp_prefix("lcp_error code=3:"), "the provider gave no reason (LCP error 3)");
    }
}
