//! Request parameters from the query string and the JSON body, merged (spec §1.4). The same
//! name given in both with different values is a 400; absent values are for the caller to
//! default (passwords default to the empty string).

use super::error::ApiError;
use crate::licence::{Iec, Itn};
use axum::extract::{FromRequest, Request};
use serde_json::{Map, Value};

/// Largest request body read.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct Params(Map<String, Value>);

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Params {
    pub fn parse(query: Option<&str>, body: &[u8]) -> Result<Params, ApiError> {
        let mut map = Map::new();
        if body.iter().any(|b| !b.is_ascii_whitespace()) {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
            match v {
                Value::Object(o) => map = o,
                _ => return Err(ApiError::bad_request("the body must be a JSON object")),
            }
        }
        if let Some(q) = query {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q)
                .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
            let mut from_query: Map<String, Value> = Map::new();
            for (k, v) in pairs {
                if let Some(prev) = from_query.get(&k) {
                    if prev.as_str() != Some(v.as_str()) {
                        return Err(ApiError::bad_request(format!(
                            "parameter {k} is given twice in the query string with different values"
                        )));
                    }
                }
                from_query.insert(k, Value::String(v));
            }
            for (k, v) in from_query {
                if let Some(b) = map.get(&k) {
                    if as_text(b).as_deref() != v.as_str() {
                        return Err(ApiError::bad_request(format!(
                            "parameter {k} is given in the query string and in the body with different values"
                        )));
                    }
                    continue;
                }
                map.insert(k, v);
            }
        }
        Ok(Params(map))
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// A text parameter; numbers are taken as their decimal text; `null` is absent.
    pub fn text(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(ApiError::bad_request(format!(
                "parameter {name} must be a string"
            ))),
        }
    }

    /// A text parameter bounded in length.
    pub fn text_max(&self, name: &str, max: usize) -> Result<Option<String>, ApiError> {
        let v = self.text(name)?;
        if v.as_ref().is_some_and(|s| s.len() > max) {
            return Err(ApiError::bad_request(format!(
                "parameter {name} is longer than {max} bytes"
            )));
        }
        Ok(v)
    }

    /// A required, non-empty text parameter.
    pub fn required(&self, name: &str, max: usize) -> Result<String, ApiError> {
        match self.text_max(name, max)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(ApiError::bad_request(format!(
                "parameter {name} is required"
            ))),
        }
    }

    /// A non-negative integer given as a JSON number or as decimal text.
    pub fn number(&self, name: &str) -> Result<Option<u64>, ApiError> {
        let bad =
            || ApiError::bad_request(format!("parameter {name} must be a non-negative integer"));
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(bad),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }
}

impl Params {
    /// An ITN (ИНН), number or text. A client that sends it as a number loses leading zeros,
    /// so a short one is padded back to 10 (or 11 digits to 12).
    pub fn itn(&self, name: &str) -> Result<Option<Itn>, ApiError> {
        self.text(name)?
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                let s = s.trim().to_owned();
                let padded = match s.len() {
                    0..=9 => format!("{s:0>10}"),
                    11 => format!("{s:0>12}"),
                    _ => s,
                };
                Itn::try_from(padded)
            })
            .transpose()
            .map_err(ApiError::bad_request)
    }

    /// An IEC (КПП), number or text, padded to 9 digits.
    pub fn iec(&self, name: &str) -> Result<Option<Iec>, ApiError> {
        self.text(name)?
            .filter(|s| !s.trim().is_empty())
            .map(|s| Iec::try_from(format!("{:0>9}", s.trim())))
            .transpose()
            .map_err(ApiError::bad_request)
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let query = req.uri().query().map(str::to_owned);
        let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map_err(|_| {
                ApiError::bad_request(format!("the request body exceeds {MAX_BODY} bytes"))
            })?;
        Params::parse(query.as_deref(), &body)
    }
}

/// Parses a `{KeyNo}` path segment.
pub fn key_no(text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::bad_request(format!("KeyNo {text:?} is not a positive decimal number"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_query_and_body() {
        let p = Params::parse(Some("Password=1&Value=x"), br#"{"Password":"1"}"#).expect("ok");
        assert_eq!(p.text("Value").expect("v").as_deref(), Some("x"));
        assert!(Params::parse(Some("Password=1"), br#"{"Password":"2"}"#).is_err());
        assert!(Params::parse(None, b"[1]").is_err());
        assert!(Params::parse(None, b"{").is_err());
        let p = Params::parse(None, br#"{"ITN":"0123456789","KeyNo":5}"#).expect("ok");
        assert_eq!(p.number("KeyNo").expect("n"), Some(5));
        assert_eq!(p.text("ITN").expect("t").as_deref(), Some("0123456789"));
    }
}
