//! Which names a service answers to in the `Host` header: the guard against DNS rebinding.
//!
//! A web page in a browser on the service's machine can re-point its own domain at
//! 127.0.0.1 and then read the service's answers as its own origin. Its requests still carry
//! the page's domain in `Host`. While the default credentials are in use (which the services
//! allow on loopback only, so exactly where this attack lands) a service therefore answers
//! only a `Host` that is an IP address or `localhost`, plus the names the operator lists;
//! with a real password it answers any name unless the operator lists some.
//!
//! The check runs inside the signing layer (`web::server::request_limits`), so a refusal is
//! the service's own signed JSON error: 421 Misdirected Request.

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How often a refusal is logged at most: a page (or a scanner) can send thousands a second,
/// and each would otherwise be a WARN line.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// The names a service answers to.
#[derive(Debug, Clone, Default)]
pub enum AllowedHosts {
    /// Any `Host`.
    #[default]
    Any,
    /// IP addresses, `localhost`, and `names` (lower case, without a trailing dot).
    Only {
        names: Arc<[String]>,
        /// What a refusal says the operator can do about it.
        hint: Arc<str>,
        /// Refusals are logged at most every [`REFUSAL_LOG_INTERVAL`], with a count of the rest.
        log: Arc<Mutex<crate::web::server::RateLimitedLog>>,
    },
}

/// A `Host` value (or a URI authority) without its port.
#[derive(Debug, PartialEq, Eq)]
enum Name {
    Ip(IpAddr),
    /// Lower case, without a trailing dot.
    Dns(String),
}

/// Whether `p` is what may follow the host: nothing, or `:` and at most five digits.
fn port_ok(p: &str) -> bool {
    match p.strip_prefix(':') {
        None => p.is_empty(),
        Some(d) => d.len() <= 5 && d.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// A host name as DNS writes it: labels of letters, digits, `-` and `_`, 1–253 characters.
fn dns_name(s: &str) -> Option<String> {
    let s = s.strip_suffix('.').unwrap_or(s);
    let ok = (1..=253).contains(&s.len())
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then(|| s.to_ascii_lowercase())
}

/// Parses `host[:port]`, `[v6][:port]`; `None` for anything else (user info, a path, …).
fn parse(value: &str) -> Option<Name> {
    if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !port_ok(after) {
            return None;
        }
        return inside
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| Name::Ip(ip.into()));
    }
    let host = match value.rsplit_once(':') {
        Some((h, p)) if port_ok(&format!(":{p}")) => h,
        Some(_) => return None,
        None => value,
    };
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Some(Name::Ip(ip.into()));
    }
    dns_name(host).map(Name::Dns)
}

impl AllowedHosts {
    /// The policy: with `restrict` (the default credentials are in use) or a non-empty
    /// `names`, only IP addresses, `localhost` and `names`; otherwise any name. `names` are
    /// host names without scheme or port; the error says which one is not.
    pub fn new(restrict: bool, names: &[String], hint: &str) -> Result<AllowedHosts, String> {
        if !restrict && names.is_empty() {
            return Ok(AllowedHosts::Any);
        }
        let mut parsed = Vec::with_capacity(names.len());
        for n in names {
            let n = n.trim();
            // An IP address is answered anyway; listing one is harmless.
            if n.parse::<IpAddr>().is_ok() {
                continue;
            }
            match dns_name(n) {
                Some(d) => parsed.push(d),
                None => {
                    return Err(format!(
                        "{n:?} is not a host name (give a name such as licences.example.com, without scheme or port)"
                    ))
                }
            }
        }
        Ok(AllowedHosts::Only {
            names: parsed.into(),
            hint: hint.into(),
            log: Arc::new(Mutex::new(crate::web::server::RateLimitedLog::new(
                REFUSAL_LOG_INTERVAL,
            ))),
        })
    }

    /// Whether a request naming `value` as its host is answered.
    pub fn allows(&self, value: &str) -> bool {
        let AllowedHosts::Only { names, .. } = self else {
            return true;
        };
        match parse(value) {
            Some(Name::Ip(_)) => true,
            Some(Name::Dns(d)) => d == "localhost" || names.contains(&d),
            None => false,
        }
    }

    /// Whether every name is answered.
    pub fn is_any(&self) -> bool {
        matches!(self, AllowedHosts::Any)
    }
}

/// The middleware: refuses (421, in the service's error format from `error`) a request whose
/// `Host` header or absolute-form URI names a host this service does not answer to, and a
/// request with two `Host` headers (400). A request without `Host` (HTTP/1.0 tools) passes:
/// browsers, which the attack needs, always send one.
pub async fn check(
    hosts: AllowedHosts,
    error: fn(StatusCode, String) -> Response,
    req: Request,
    next: Next,
) -> Response {
    let AllowedHosts::Only { hint, log, .. } = &hosts else {
        return next.run(req).await;
    };
    let mut given = req.headers().get_all(header::HOST).iter();
    let (first, second) = (given.next(), given.next());
    if second.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "the Host header is given more than once; send one".into(),
        );
    }
    let header_ok = first.is_none_or(|v| v.to_str().is_ok_and(|s| hosts.allows(s)));
    let uri_ok = req
        .uri()
        .authority()
        .is_none_or(|a| hosts.allows(a.as_str()));
    if header_ok && uri_ok {
        return next.run(req).await;
    }
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    // The name actually refused: the Host header's, or else the request line's authority
    // (`GET http://evil.example/api` with an allowed `Host`).
    let (shown, source) = match (header_ok, first) {
        (false, Some(v)) => (
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
            "Host header",
        ),
        _ => (
            req.uri()
                .authority()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_default(),
            "request line",
        ),
    };
    let shown: String = shown.chars().take(100).collect();
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .log(|suppressed| {
            tracing::warn!(client, host = ?shown, source, suppressed, "request refused: it names a host this server does not answer to (DNS rebinding guard); logged at most every {} s, `suppressed` counts the refusals not logged since the last line", REFUSAL_LOG_INTERVAL.as_secs());
        });
    error(
        StatusCode::MISDIRECTED_REQUEST,
        format!("this server does not answer to the host named in the request: {hint}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(names: &[&str]) -> AllowedHosts {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        AllowedHosts::new(true, &names, "hint").expect("names")
    }

    #[test]
    fn ip_literals_and_localhost_pass_names_do_not() {
        let h = only(&[]);
        for ok in [
            "127.0.0.1",
            "127.0.0.1:9099",
            "10.1.2.3:80",
            "[::1]",
            "[::1]:9099",
            "[fe80::1]:1",
            "localhost",
            "localhost:9099",
            "LOCALHOST:1",
            "localhost.",
            "127.0.0.1:",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9099",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "evil.localhost",
            "",
            "::1",
            "[::1",
            "[::1]x",
            "user@127.0.0.1",
            "127.0.0.1:99999999",
            "127.0.0.1:ab",
            "a b",
            "evil.example/x",
            "2130706433",
        ] {
            assert!(!h.allows(bad), "{bad}");
        }
    }

    #[test]
    fn listed_names_pass_in_any_case() {
        let h = only(&["Licences.Example.com", "host.local."]);
        assert!(h.allows("licences.example.com:9099"));
        assert!(h.allows("LICENCES.example.COM"));
        assert!(h.allows("host.local"));
        assert!(h.allows("127.0.0.1"));
        assert!(!h.allows("example.com"));
        assert!(!h.allows("x.licences.example.com"));
    }

    #[test]
    fn the_policy_follows_the_password_and_the_list() {
        assert!(AllowedHosts::new(false, &[], "").expect("ok").is_any());
        assert!(!AllowedHosts::new(true, &[], "").expect("ok").is_any());
        let named = AllowedHosts::new(false, &["a.example".into()], "").expect("ok");
        assert!(!named.is_any() && !named.allows("b.example") && named.allows("a.example"));
        assert!(AllowedHosts::Any.allows("anything.example"));
        for bad in [
            "a.example:80",
            "http://a.example",
            "*.example",
            "",
            "a b",
            "[::1",
        ] {
            assert!(AllowedHosts::new(true, &[bad.into()], "").is_err(), "{bad}");
        }
        // IP addresses are accepted anyway; listing one is harmless.
        assert!(AllowedHosts::new(true, &["10.0.0.1".into(), "::1".into()], "").is_ok());
    }
}
