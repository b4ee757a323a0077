//! The account API's envelope: what a request carries besides its parameters (`general`,
//! `auth`), the answer's `general`, and the one table that maps every error to its answer
//! code and HTTP status. The code is 10000 + the HTTP status (10200 success, 10406 unknown
//! attached-info names, as the spec shows), so a client may look at either.

use super::methods::METHODS;
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

/// The type and method the version-19 path form names (`POST {base}/execute/{type}/{method}`).
#[derive(Debug, Clone)]
pub struct PathForm {
    pub kind: String,
    pub method: String,
    /// Asked with `GET` (allowed for `account/list` only).
    pub get: bool,
}

/// A request taken apart: the method asked for, on behalf of which account, and the
/// method's own parameters (everything but `general` and `auth`).
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// `auth.account`: the account the caller acts in.
    pub acting: Option<u64>,
    /// `general.debug`: log the request and the answer.
    pub debug: bool,
    pub params: Map<String, Value>,
}

fn text_of(v: Option<&Value>, what: &str) -> Result<Option<String>, AccountError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AccountError::BadRequest(format!("{what} must be a string"))),
    }
}

fn check_type(kind: &str) -> Result<(), AccountError> {
    match kind {
        "usr" | "ext" => Ok(()),
        "srv" => Err(AccountError::BadRequest(
            "type srv (service infrastructure) is not served here; the account methods are type usr".into(),
        )),
        other => Err(AccountError::BadRequest(format!(
            "type {:?} is not usr (or ext)",
            other.chars().take(20).collect::<String>()
        ))),
    }
}

/// Reads a request body (and the path form, if the request came by it) into a [`Call`],
/// before anything is looked up; it runs after the login check. `general.version` goes into
/// `echo` as soon as it is read, so even a refusal answers in the version asked.
///
/// Public for the property tests and the fuzzer (`fuzz/`): this is all of the account
/// API that reads what a caller sent before a method's own parameters.
pub fn parse_call(
    body: &[u8],
    form: Option<PathForm>,
    echo: &mut Echo,
) -> Result<Call, AccountError> {
    let mut params = if body.iter().all(u8::is_ascii_whitespace) && form.is_some() {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Err(AccountError::BadRequest(
                    "the request body must be a JSON object".into(),
                ))
            }
            Err(e) => return Err(AccountError::BadRequest(format!("malformed JSON: {e}"))),
        }
    };
    let general = match params.remove("general") {
        None => Map::new(),
        Some(Value::Object(g)) => g,
        Some(_) => return Err(AccountError::BadRequest("general must be an object".into())),
    };
    match general.get("version") {
        None => {}
        Some(v) => {
            echo.version = Some(v.as_u64().filter(|n| *n <= 1000).ok_or_else(|| {
                AccountError::BadRequest("general.version must be a whole number".into())
            })?)
        }
    }
    let debug = general.contains_key("debug");
    for k in general.keys() {
        if !["type", "method", "version", "debug"].contains(&k.as_str()) {
            return Err(AccountError::BadRequest(format!(
                "general.{k} is not one of type, method, version, debug"
            )));
        }
    }
    let said_method = text_of(general.get("method"), "general.method")?;
    let said_type = text_of(general.get("type"), "general.type")?;
    let (method, get) = match form {
        Some(f) => {
            check_type(&f.kind)?;
            if said_method.as_ref().is_some_and(|m| *m != f.method)
                || said_type.as_ref().is_some_and(|t| *t != f.kind)
            {
                return Err(AccountError::BadRequest(
                    "general.type and general.method, when given, must match the path".into(),
                ));
            }
            (f.method, f.get)
        }
        None => {
            check_type(said_type.as_deref().ok_or_else(|| {
                AccountError::BadRequest("general.type is required (usr)".into())
            })?)?;
            let m = said_method.ok_or_else(|| {
                AccountError::BadRequest("general.method is required, e.g. account/list".into())
            })?;
            (m, false)
        }
    };
    if !METHODS.contains(&method.as_str()) {
        return Err(AccountError::UnknownMethod(
            method.chars().take(100).collect(),
        ));
    }
    if get && method != "account/list" {
        return Err(AccountError::BadRequest(format!(
            "{method} takes POST; only account/list has a GET form"
        )));
    }
    let acting = match params.remove("auth") {
        None => None,
        Some(Value::Object(a)) => {
            if let Some(k) = a.keys().find(|k| *k != "account") {
                return Err(AccountError::BadRequest(format!(
                    "auth.{k} is not known; auth holds account"
                )));
            }
            match a.get("account") {
                None => None,
                Some(v) => Some(v.as_u64().ok_or_else(|| {
                    AccountError::BadRequest(
                        "auth.account must be an account code (a number)".into(),
                    )
                })?),
            }
        }
        Some(_) => return Err(AccountError::BadRequest("auth must be an object".into())),
    };
    Ok(Call {
        method,
        acting,
        debug,
        params,
    })
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
