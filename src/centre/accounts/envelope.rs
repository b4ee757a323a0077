//! The account API's envelope: what a request carries besides its parameters (`general`,
//! `auth`), the answer's `general`, and the one table that maps every error to its answer
//! code and HTTP status. The code is 10000 + the HTTP status (10200 success, 10406 unknown
//! attached-info names, as the spec shows), so a client may look at either.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use thiserror::Error;

/// The interface version this centre implements and answers with when a request names none.
pub const API_VERSION: u64 = 19;
/// `general.sm_timezone`: the centre keeps and answers every time in UTC.
pub const TIMEZONE: &str = "UTC";

/// Why a call failed. Every variant is answered in the envelope with the code
/// [`AccountError::code`] gives; none of them changes anything.
#[derive(Debug, Error)]
pub enum AccountError {
    /// 10400: a malformed body, a missing or wrong parameter (the text names it).
    #[error("{0}")]
    BadRequest(String),
    /// 10401: no credentials, or wrong ones.
    #[error("{0}")]
    Unauthenticated(String),
    /// 10403: the caller's role in the account does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// 10404: no such account, user, servicing organisation or tariff *for this caller*: an
    /// account the caller holds no role in reads exactly like one that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 10406: attached-info names the centre does not define.
    #[error("{}", .0.join(" "))]
    UnknownAttached(Vec<String>),
    /// 10409: the change contradicts the state (a login taken, the last owner).
    #[error("{0}")]
    Conflict(String),
    /// 10429: too many failed logins from this address.
    #[error("too many failed logins from your address; try again in {0} s")]
    Throttled(u64),
    /// 10500: the centre failed (its log says how).
    #[error("internal error")]
    Internal,
    /// 10501: a method this API does not have.
    #[error("unknown method {0:?}; the methods are listed in docs/accounts.md")]
    UnknownMethod(String),
    /// 10503: no login check could be made now.
    #[error("the centre is busy; try again in {0} s")]
    Busy(u64),
}

impl AccountError {
    pub fn status(&self) -> StatusCode {
        match self {
            AccountError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AccountError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            AccountError::Forbidden(_) => StatusCode::FORBIDDEN,
            AccountError::NotFound(_) => StatusCode::NOT_FOUND,
            AccountError::UnknownAttached(_) => StatusCode::NOT_ACCEPTABLE,
            AccountError::Conflict(_) => StatusCode::CONFLICT,
            AccountError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            AccountError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            AccountError::UnknownMethod(_) => StatusCode::NOT_IMPLEMENTED,
            AccountError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The centre's `reason` word, for the vendor's admin endpoints (the centre's format).
    pub fn reason(&self) -> &'static str {
        match self {
            AccountError::BadRequest(_) => "invalid",
            AccountError::Unauthenticated(_) => "unauthorized",
            AccountError::Forbidden(_) => "forbidden",
            AccountError::NotFound(_) => "not_found",
            AccountError::UnknownAttached(_) => "unknown_attached",
            AccountError::Conflict(_) => "conflict",
            AccountError::Throttled(_) => "throttled",
            AccountError::Internal => "internal",
            AccountError::UnknownMethod(_) => "unknown_method",
            AccountError::Busy(_) => "busy",
        }
    }

    /// `general.response`.
    pub fn code(&self) -> u64 {
        10_000 + u64::from(self.status().as_u16())
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            AccountError::Throttled(s) | AccountError::Busy(s) => Some(*s),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for AccountError {
    fn from(e: sqlx::Error) -> Self {
        // The database's own words (tables, values, connection details) stay in the log.
        tracing::error!("accounts: database: {e}");
        AccountError::Internal
    }
}

/// The request's `general` and `auth` as far as the answer needs them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo {
    /// `general.version` as asked (answered back), else [`API_VERSION`].
    pub version: Option<u64>,
}

/// `general` of an answer.
pub fn general(code: u64, error: bool, message: &str, echo: Echo) -> Value {
    json!({
        "response": code,
        "error": error,
        "message": message,
        "version": echo.version.unwrap_or(API_VERSION),
        "sm_version": crate::VERSION,
        "sm_timezone": TIMEZONE,
    })
}

/// A successful answer: the method's members and `general`.
pub fn success(mut body: Map<String, Value>, echo: Echo) -> Response {
    body.insert("general".into(), general(10_200, false, "", echo));
    (StatusCode::OK, axum::Json(Value::Object(body))).into_response()
}

/// A refusal in the envelope.
pub fn failure(e: &AccountError, echo: Echo) -> Response {
    let mut r = (
        e.status(),
        axum::Json(json!({"general": general(e.code(), true, &e.to_string(), echo)})),
    )
        .into_response();
    if let Some(s) = e.retry_after() {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    if matches!(e, AccountError::Unauthenticated(_)) {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"keybridge accounts\", charset=\"UTF-8\""),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_status() {
        assert_eq!(AccountError::UnknownAttached(vec![]).code(), 10_406);
        assert_eq!(AccountError::BadRequest(String::new()).code(), 10_400);
        assert_eq!(AccountError::NotFound(String::new()).code(), 10_404);
        assert_eq!(AccountError::UnknownMethod(String::new()).code(), 10_501);
    }
}
