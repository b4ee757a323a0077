//! Request parameters from the query string and the JSON body (spec §1.4), parsed strictly:
//! a request is either understood exactly or refused with a 400 that names the problem, and
//! a refused request changes nothing.
//!
//! Each endpoint declares the parameters it takes where the router names it
//! (`api::router`, through [`strict`]); any other name is refused, with the closest declared
//! one suggested — a misspelt `Vaule` must not silently write an empty value. The rest:
//! - the query string is percent-decoded strictly (`%` takes two hex digits) and must decode
//!   to UTF-8; `+` is a space, as in HTML forms;
//! - the body is empty, whitespace, or one JSON object in UTF-8 (one leading byte-order mark is
//!   skipped: 1C's `HTTPRequest.SetBodyFromString` writes one by default) whose keys are all
//!   different — serde_json would keep the last of two silently;
//! - a parameter given twice — in the query string, or in both the query string and the
//!   body — is refused even with equal values, so no two layers can read different ones;
//! - numbers are non-negative integers within range, as JSON numbers or decimal digits.

use super::error::ApiError;
use crate::licence::{Iec, Itn};
use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Largest request body read.
pub const MAX_BODY: usize = 64 * 1024;

/// What one endpoint takes: parameter names, exactly as the spec spells them.
pub type Accepts = &'static [&'static str];

#[derive(Debug, Default, Clone)]
pub struct Params(Map<String, Value>);

/// A JSON value whose objects, at every depth, have no key twice.
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Unique::deserialize(d).map(|u| u.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Unique(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(de::Error::custom(format!("{k:?} is given twice")));
            }
            let Unique(v) = map.next_value()?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// Parses the body: nothing, or one JSON object with unique keys.
fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not UTF-8 (invalid bytes at offset {})",
            e.valid_up_to()
        ))
    })?;
    let value = serde_json::from_str::<Unique>(text).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            // Our own refusals (a key twice, a number out of range) read best as they are.
            Category::Data => ApiError::bad_request(format!("the JSON body is refused: {e}")),
            _ => ApiError::bad_request(format!("the body is not valid JSON: {e}")),
        }
    })?;
    match value.0 {
        Value::Object(o) => Ok(o),
        _ => Err(ApiError::bad_request(
            "the body must be a JSON object of parameters, e.g. {\"Password\": \"\"}",
        )),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Strict `application/x-www-form-urlencoded` decoding of one name or value. The usual
/// decoders (`percent-encoding`, `form_urlencoded`) pass a malformed `%` through as text,
/// which would turn `%zz` into a password nobody typed; here it is an error.
fn decode(raw: &str) -> Result<String, String> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let pair = b
                    .get(i + 1)
                    .copied()
                    .and_then(hex)
                    .zip(b.get(i + 2).copied().and_then(hex));
                let Some((hi, lo)) = pair else {
                    let bad: String = raw[i..].chars().take(3).collect();
                    return Err(format!(
                        "has an invalid percent-encoding {bad:?} ('%' must be followed by two hex digits)"
                    ));
                };
                out.push(hi << 4 | lo);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8 once percent-decoded".to_owned())
}

/// Parses the query string into (name, value) pairs, refusing a name given twice.
fn parse_query(q: &str) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(raw_name).map_err(|why| {
            ApiError::bad_request(format!(
                "the query string's parameter name {raw_name:?} {why}"
            ))
        })?;
        let value = decode(raw_value).map_err(|why| {
            ApiError::bad_request(format!("parameter {name} in the query string {why}"))
        })?;
        if out.contains_key(&name) {
            return Err(ApiError::bad_request(format!(
                "parameter {name} is given twice in the query string"
            )));
        }
        out.insert(name, Value::String(value));
    }
    Ok(out)
}

/// The declared name closest to `name`, if it is close enough to be a typo of it.
fn closest(name: &str, accepts: Accepts) -> Option<&'static str> {
    let lower = name.to_lowercase();
    accepts
        .iter()
        .map(|a| (strsim::osa_distance(&lower, &a.to_lowercase()), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

impl Params {
    /// Parses a request's parameters for an endpoint (`"POST /api/sessions"`) that takes
    /// `accepts`.
    pub fn parse(
        query: Option<&str>,
        body: &[u8],
        accepts: Accepts,
        endpoint: &str,
    ) -> Result<Params, ApiError> {
        let mut map = parse_body(body)?;
        for (k, v) in parse_query(query.unwrap_or_default())? {
            if map.contains_key(&k) {
                return Err(ApiError::bad_request(format!(
                    "parameter {k} is given both in the query string and in the body; give it once"
                )));
            }
            map.insert(k, v);
        }
        if let Some(unknown) = map.keys().find(|k| !accepts.contains(&k.as_str())) {
            let shown: String = unknown.chars().take(64).collect();
            let mut m = format!("{endpoint} takes no parameter {shown:?}.");
            if let Some(c) = closest(unknown, accepts) {
                m.push_str(&format!(" Did you mean {c}?"));
            }
            if accepts.is_empty() {
                m.push_str(" It takes no parameters.");
            } else {
                m.push_str(&format!(" It takes {}.", accepts.join(", ")));
            }
            return Err(ApiError::bad_request(m));
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

    /// A non-negative integer that fits 64 bits, given as a JSON number or as decimal digits
    /// (no sign, no fraction, no exponent). `null` and `""` are absent.
    pub fn number(&self, name: &str) -> Result<Option<u64>, ApiError> {
        let bad = |v: &dyn fmt::Display| {
            ApiError::bad_request(format!(
                "parameter {name} must be an integer from 0 to {}, not {v}",
                u64::MAX
            ))
        };
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| bad(n)),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => {
                let shown: String = s.chars().take(32).collect();
                if !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad(&format!("{shown:?}")));
                }
                s.parse().map(Some).map_err(|_| bad(&format!("{shown:?}")))
            }
            Some(v) => Err(bad(v)),
        }
    }

    /// A KeyNo-like number: positive.
    pub fn positive(&self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.number(name)? {
            Some(0) => Err(ApiError::bad_request(format!(
                "parameter {name} must be a positive integer, not 0"
            ))),
            n => Ok(n),
        }
    }

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
            .map_err(|e| ApiError::bad_request(format!("parameter {name}: {e}")))
    }

    /// An IEC (КПП), number or text, padded to 9 digits.
    pub fn iec(&self, name: &str) -> Result<Option<Iec>, ApiError> {
        self.text(name)?
            .filter(|s| !s.trim().is_empty())
            .map(|s| Iec::try_from(format!("{:0>9}", s.trim())))
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("parameter {name}: {e}")))
    }
}

/// The layer every endpoint is declared with (`api::router`): reads the body (at most
/// [`MAX_BODY`], else 413), parses the parameters against what the endpoint `accepts`, and
/// hands them to the handler as [`Params`]. It runs after the login check, so nobody's body is
/// read before they have logged in.
pub async fn strict(State(accepts): State<Accepts>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let endpoint = format!(
        "{} {}",
        parts.method,
        parts
            .extensions
            .get::<MatchedPath>()
            .map_or(parts.uri.path(), MatchedPath::as_str)
    );
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return ApiError::payload_too_large(format!(
                "the request body is larger than {MAX_BODY} bytes"
            ))
            .into_response()
        }
        Err(e) => {
            return ApiError::bad_request(format!("the request body could not be read: {e}"))
                .into_response()
        }
    };
    match Params::parse(parts.uri.query(), &bytes, accepts, &endpoint) {
        Ok(p) => {
            parts.extensions.insert(p);
            next.run(Request::from_parts(parts, Body::empty())).await
        }
        Err(e) => e.into_response(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    /// The parameters [`strict`] parsed. An endpoint declared without it has none to give:
    /// a server bug, refused rather than served unchecked.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts.extensions.remove::<Params>().ok_or_else(|| {
            ApiError::internal("this endpoint was declared without its parameter list")
        })
    }
}

/// A `{KeyNo}` or `{ID}` path segment, percent-decoded; a segment that is not UTF-8 is a 400
/// naming it, not the framework's plain-text refusal.
pub struct Segment(pub String);

/// Longest `{ID}` looked up (the host's IDs are far shorter).
const MAX_ID: usize = 128;

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(s)) if s.len() <= MAX_ID => Ok(Segment(s)),
            Ok(_) => Err(ApiError::bad_request(format!(
                "the path's last segment is longer than {MAX_ID} bytes"
            ))),
            Err(e) => Err(ApiError::bad_request(format!(
                "the path {:?} is not valid: {}",
                parts.uri.path(),
                e.body_text()
            ))),
        }
    }
}

/// Parses a `{KeyNo}` path segment: decimal digits only, positive, within 64 bits.
pub fn key_no(text: &str) -> Result<u64, ApiError> {
    let shown: String = text.chars().take(32).collect();
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse::<u64>().ok())
        .flatten()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "KeyNo {shown:?} is not a positive decimal number of at most 20 digits"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEM: Accepts = &["Password", "Value"];

    fn parse(q: Option<&str>, body: &[u8]) -> Result<Params, String> {
        Params::parse(q, body, MEM, "POST /m").map_err(|e| e.message)
    }

    #[test]
    fn merges_query_and_body() {
        let p = parse(Some("Value=x"), br#"{"Password":"1"}"#).expect("ok");
        assert_eq!(p.text("Value").expect("v").as_deref(), Some("x"));
        assert_eq!(p.text("Password").expect("v").as_deref(), Some("1"));
        // Given twice: refused even when equal.
        assert!(parse(Some("Password=1"), br#"{"Password":"1"}"#)
            .expect_err("twice")
            .contains("both"));
        assert!(parse(Some("Value=a&Value=a"), b"")
            .expect_err("twice")
            .contains("twice in the query"));
        assert!(parse(None, b"[1]").is_err());
        assert!(parse(None, b"{").is_err());
        assert!(parse(None, b"  \n").is_ok());
        assert!(parse(None, b"\xEF\xBB\xBF{\"Value\":\"x\"}").is_ok());
    }

    #[test]
    fn strict_encoding() {
        for (q, why) in [
            ("Password=%zz", "percent-encoding"),
            ("Password=%", "percent-encoding"),
            ("Password=%4", "percent-encoding"),
            ("Password=%e0%80", "not UTF-8"),
            ("Password=%ff", "not UTF-8"),
        ] {
            let e = parse(Some(q), b"").expect_err(q);
            assert!(e.contains("Password") && e.contains(why), "{q}: {e}");
        }
        let e = parse(Some("Pass%zzword=1"), b"").expect_err("name");
        assert!(e.contains("Pass%zzword"), "{e}");
        let p = parse(Some("Value=a+b%20c%2B%D1%8F"), b"").expect("ok");
        assert_eq!(p.text("Value").expect("v").as_deref(), Some("a b c+я"));
        let e = parse(None, b"{\"Value\":\"\xff\"}").expect_err("utf8");
        assert!(e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn duplicate_keys_at_any_depth() {
        let e = parse(None, br#"{"Value":"a","Value":"b"}"#).expect_err("dup");
        assert!(e.contains("\"Value\" is given twice"), "{e}");
        let e = parse(None, br#"{"Value":{"x":1,"x":2}}"#).expect_err("nested dup");
        assert!(e.contains("\"x\" is given twice"), "{e}");
    }

    #[test]
    fn unknown_names_suggest_the_meant_one() {
        let e = parse(None, br#"{"Vaule":"a"}"#).expect_err("typo");
        assert!(
            e.contains("\"Vaule\"") && e.contains("Did you mean Value?"),
            "{e}"
        );
        let e = parse(Some("pasword="), b"").expect_err("typo");
        assert!(e.contains("Did you mean Password?"), "{e}");
        let e = parse(Some("Colour=red"), b"").expect_err("unknown");
        assert!(!e.contains("Did you mean"), "{e}");
        assert!(e.contains("It takes Password, Value."), "{e}");
        let e = Params::parse(Some("X=1"), b"", &[], "GET /api/licences")
            .expect_err("none")
            .message;
        assert!(e.contains("takes no parameters"), "{e}");
    }

    #[test]
    fn numbers_are_strict() {
        let n = |v: Value| {
            let mut m = Map::new();
            m.insert("KeyNo".into(), v);
            Params(m).positive("KeyNo")
        };
        assert_eq!(n(serde_json::json!(5)).expect("ok"), Some(5));
        assert_eq!(n(serde_json::json!("5")).expect("ok"), Some(5));
        assert_eq!(n(serde_json::json!("")).expect("ok"), None);
        for bad in [
            serde_json::json!(0),
            serde_json::json!(-1),
            serde_json::json!(1.5),
            serde_json::json!("+5"),
            serde_json::json!(" 5"),
            serde_json::json!("18446744073709551616"),
            serde_json::json!(true),
        ] {
            assert!(n(bad.clone()).is_err(), "{bad}");
        }
        assert!(key_no("7131766").is_ok());
        for bad in ["", "0", "+5", "-5", "1e3", "18446744073709551616", "12ab"] {
            assert!(key_no(bad).is_err(), "{bad}");
        }
    }
}
