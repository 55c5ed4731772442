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
    /// No result in time.
    #[error("no result within {0:?}")]
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
            GatewayError::Choice(ChoiceError::ModelNotOffered { .. }) => StatusCode::BAD_REQUEST,
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

    /// Wraps lcpd's answer to a request with what was asked.
    pub fn lcpd(context: &'static str, source: BusError) -> Self {
        GatewayError::Lcpd { context, source }
    }
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
    }
}
