//! The protocol's errors as HTTP answers: a status code that means something and a JSON body
//! `{"error": "...", "kind": "..."}` with the same sentence the socket gives.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use vigil_proto::{ErrorCode, WireError};

/// A failed HTTP request.
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl HttpError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            kind,
            message: message.into(),
        }
    }

    pub fn bad(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }
}

/// The status and kind of a protocol error code: one table, one row per code.
pub fn status_of(code: ErrorCode) -> (StatusCode, &'static str) {
    match code {
        ErrorCode::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_argument"),
        ErrorCode::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        ErrorCode::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
        ErrorCode::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
        ErrorCode::Busy => (StatusCode::CONFLICT, "busy"),
        ErrorCode::NoProcess => (StatusCode::NOT_FOUND, "no_process"),
        ErrorCode::ExecFailed => (StatusCode::UNPROCESSABLE_ENTITY, "exec_failed"),
        ErrorCode::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        ErrorCode::Unsupported => (StatusCode::NOT_IMPLEMENTED, "unsupported"),
        // A quota or a bound of vigild, not the size of this request's body (that one is 413).
        ErrorCode::LimitExceeded => (StatusCode::TOO_MANY_REQUESTS, "limit_exceeded"),
        ErrorCode::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        ErrorCode::Protocol => (StatusCode::BAD_REQUEST, "protocol"),
        ErrorCode::Conflict => (StatusCode::CONFLICT, "conflict"),
        ErrorCode::NodeDown => (StatusCode::SERVICE_UNAVAILABLE, "node_down"),
        ErrorCode::Unknown(_) => (StatusCode::INTERNAL_SERVER_ERROR, "unknown"),
    }
}

impl From<WireError> for HttpError {
    fn from(e: WireError) -> HttpError {
        let (status, kind) = status_of(e.code);
        HttpError::new(status, kind, e.message)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "kind": self.kind });
        let mut r = (self.status, axum::Json(body)).into_response();
        // A body that was not read (too slow, too large) leaves the connection in no state to carry
        // another request: it is closed after this answer. So is one that showed no token or a wrong
        // one, so that guessing the token costs a connection a guess.
        if matches!(
            self.status,
            StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNAUTHORIZED
        ) {
            r.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_meaningful_status() {
        let rows = [
            (ErrorCode::InvalidArgument, 400),
            (ErrorCode::NotFound, 404),
            (ErrorCode::AlreadyExists, 409),
            (ErrorCode::PermissionDenied, 403),
            (ErrorCode::Busy, 409),
            (ErrorCode::NoProcess, 404),
            (ErrorCode::ExecFailed, 422),
            (ErrorCode::Timeout, 504),
            (ErrorCode::Unsupported, 501),
            (ErrorCode::LimitExceeded, 429),
            (ErrorCode::Internal, 500),
            (ErrorCode::Protocol, 400),
            (ErrorCode::Conflict, 409),
            (ErrorCode::NodeDown, 503),
            (ErrorCode::Unknown(99), 500),
        ];
        for (code, want) in rows {
            assert_eq!(status_of(code).0.as_u16(), want, "{code:?}");
        }
    }
}
