//! The one place where failures become HTTP: every error leaves as the spec's error body
//! `{Code, Text, Message, Exception}`.

use super::reply::Reply;
use crate::hal::DeviceError;
use crate::host::HostError;
use crate::keymem::MemoryError;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub exception: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header, when the refusal is for a while.
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "Code")]
    code: u16,
    #[serde(rename = "Text")]
    text: &'a str,
    #[serde(rename = "Message")]
    message: String,
    #[serde(rename = "Exception")]
    exception: &'a str,
}

/// Reason phrases as the spec's table prints them.
pub fn status_text(s: StatusCode) -> &'static str {
    match s.as_u16() {
        200 => "OK",
        201 => "Created",
        202 => "Updated",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        500 => "Internal server error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => s.canonical_reason().unwrap_or("Error"),
    }
}

impl ApiError {
    pub fn new(status: StatusCode, exception: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            exception,
            message: message.into(),
            retry_after: None,
        }
    }

    /// With a `Retry-After` of `seconds` (at least 1).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "EBadRequest", message)
    }

    pub fn not_found_url(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "EHTTPNotFound",
            format!("The requested URL \"{path}\" was not found."),
        )
    }

    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "EHTTPPayloadTooLarge",
            message,
        )
    }

    /// A bug on our side, said as such (the details go to the log, not to the client).
    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        tracing::error!("{message}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "EInternalError", message)
    }

    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "EHTTPMethodNotAllowed",
            format!("The method {method} is not allowed for \"{path}\"."),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.status.as_u16(),
            text: status_text(self.status),
            message: format!("({}) {}", self.exception, self.message),
            exception: self.exception,
        };
        let mut resp = Reply::json(self.status, &body).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"keybridge\""),
            );
        }
        resp
    }
}

impl From<HostError> for ApiError {
    fn from(e: HostError) -> Self {
        use StatusCode as S;
        let message = e.to_string();
        let (status, exception) = match &e {
            HostError::KeyNotFound(_) => (S::NOT_FOUND, "EKeyNotFound"),
            HostError::KeyNotAttached(_) | HostError::DeviceNotAttached(_) => {
                (S::NOT_FOUND, "EKeyNotAttached")
            }
            HostError::SessionNotFound(_) => (S::NOT_FOUND, "ESessionNotFound"),
            HostError::ConnectionNotFound(_) => (S::NOT_FOUND, "EConnectionNotFound"),
            HostError::NoMatchingKey(_) => (S::NOT_FOUND, "ENoMatchingKey"),
            HostError::NoFreeLicence(_) => (S::FORBIDDEN, "ENoFreeLicence"),
            HostError::SessionRestricted { .. } => (S::FORBIDDEN, "ESessionRestricted"),
            HostError::TooManySessions(_) => (S::SERVICE_UNAVAILABLE, "ETooManySessions"),
            HostError::TooManyConnections(_) => (S::SERVICE_UNAVAILABLE, "ETooManyConnections"),
            HostError::Memory(m) => match m {
                MemoryError::WrongPassword { .. } => (S::FORBIDDEN, "EWrongPassword"),
                MemoryError::Locked { .. } => (S::FORBIDDEN, "EMemoryLocked"),
                MemoryError::TooLarge { .. } => (S::BAD_REQUEST, "EValueTooLarge"),
                MemoryError::PasswordTooLong { .. } => (S::BAD_REQUEST, "EPasswordTooLong"),
            },
            HostError::Device { error, .. } => match error {
                DeviceError::Disconnected => (S::NOT_FOUND, "EKeyNotAttached"),
                DeviceError::Timeout | DeviceError::Busy => {
                    (S::SERVICE_UNAVAILABLE, "EKeyNotResponding")
                }
                DeviceError::Encode(_) => (S::BAD_REQUEST, "EValueTooLarge"),
                _ => (S::INTERNAL_SERVER_ERROR, "EDeviceError"),
            },
            HostError::Licence(_) => (S::BAD_REQUEST, "ELicenceInvalid"),
            HostError::DeviceNotBlank(_) => (S::BAD_REQUEST, "EKeyNotBlank"),
            HostError::ActivationInProgress(_) => (S::CONFLICT, "EActivationInProgress"),
            HostError::Invalid(_) => (S::BAD_REQUEST, "EBadRequest"),
            HostError::Store(_) => (S::INTERNAL_SERVER_ERROR, "EStorageError"),
            HostError::NotImplemented(_) => (S::NOT_IMPLEMENTED, "ENotImplemented"),
            HostError::CentreNotConfigured | HostError::CentreUnreachable { .. } => {
                (S::SERVICE_UNAVAILABLE, "ECentreUnavailable")
            }
            HostError::CentreUnverified { .. } => (S::SERVICE_UNAVAILABLE, "ECentreUnverified"),
            HostError::CentreBusy { .. } => (S::SERVICE_UNAVAILABLE, "ECentreBusy"),
            HostError::CentreRefused { status, .. } if *status == 400 => {
                (S::BAD_REQUEST, "EActivationRefused")
            }
            HostError::CentreRefused { .. } => (S::FORBIDDEN, "EActivationRefused"),
            HostError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "EInternalError"),
        };
        if status.is_server_error() {
            tracing::error!("{message}");
        }
        // The log above has the full error, paths included; the client learns what failed,
        // not where this host keeps its files.
        let message = match &e {
            HostError::Store(s) => s.public_message(),
            _ => message,
        };
        let out = ApiError::new(status, exception, message);
        match e {
            HostError::CentreBusy { retry_after, .. } => out.retry_after(retry_after),
            _ => out,
        }
    }
}

/// The exception name for a status when nothing more specific is known.
fn exception_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "EBadRequest",
        StatusCode::UNAUTHORIZED => "EHTTPUnauthorized",
        StatusCode::NOT_FOUND => "EHTTPNotFound",
        StatusCode::METHOD_NOT_ALLOWED => "EHTTPMethodNotAllowed",
        StatusCode::REQUEST_TIMEOUT => "ERequestTimeout",
        StatusCode::PAYLOAD_TOO_LARGE => "EHTTPPayloadTooLarge",
        StatusCode::MISDIRECTED_REQUEST => "EHTTPMisdirectedRequest",
        StatusCode::SERVICE_UNAVAILABLE => "EServiceUnavailable",
        s if s.is_server_error() => "EInternalError",
        s if s.is_client_error() => "EBadRequest",
        _ => "EHTTPError",
    }
}

/// The spec's error body for a status, for layers that only know the status (the signing
/// layer's refusals).
pub fn plain_error(status: StatusCode, message: String) -> Response {
    ApiError::new(status, exception_for(status), message).into_response()
}

/// Turns responses the framework makes by itself (405 from a route, a rejected body) into the
/// spec's error body, so no response leaves without it.
pub async fn normalise(req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let status = resp.status();
    if !status.is_client_error() && !status.is_server_error() || is_json {
        return resp;
    }
    let allow = resp.headers().get(header::ALLOW).cloned();
    let mut out = match status {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::method_not_allowed(&method, &path),
        StatusCode::NOT_FOUND => ApiError::not_found_url(&path),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::payload_too_large("the request body is too large")
        }
        s if s.is_client_error() => ApiError::new(s, exception_for(s), "the request was rejected"),
        s => ApiError::new(s, exception_for(s), "internal error"),
    }
    .into_response();
    if let Some(a) = allow {
        out.headers_mut().insert(header::ALLOW, a);
    }
    out
}
