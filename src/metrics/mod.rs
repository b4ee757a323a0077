//! What operators watch, outside `/api`: `GET /systeminfo` (a health page without
//! credentials) and `GET /metrics` (Prometheus, loopback only or with its own credentials).
//! `docs/operations.md` lists every metric.
//!
//! Counters that events feed (requests, signing time, failed logins, centre calls) live in one
//! process-wide [`Metrics`]: they are touched from the API's layers and from the centre client,
//! which share nothing else. Gauges (licences, sessions, devices) are read from the host at
//! scrape time, so they cannot drift from what `/api` reports.

use crate::api::error::ApiError;
use crate::crypto::CryptoError;
use crate::host::Host;
use crate::web::login::{self, Auth, LoginGate};
use crate::web::signing::ResponseSigning;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock, PoisonError, RwLock};
use std::time::Instant;

/// The content type of the OpenMetrics text format, which Prometheus scrapes natively.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of `keybridge_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The route as declared (`/api/licences/{KeyNo}`), never the raw path: a client cannot
    /// grow the label set by asking for made-up paths (those count as `unmatched`).
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The counters events feed, process-wide.
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    signing: Histogram,
    login_failures: Counter,
    centre_calls: Family<OutcomeLabels, Counter>,
}

/// Upper bounds of the signing-latency buckets, in seconds: RSA-2048 signs in about a
/// millisecond; the tail shows a saturated blocking pool.
const SIGNING_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    requests: Family::default(),
    signing: Histogram::new(SIGNING_BUCKETS),
    login_failures: Counter::default(),
    centre_calls: Family::default(),
});

/// Methods kept as they are in the label; any other is `other`, so the label set stays
/// bounded whatever clients send.
fn method_label(m: &axum::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "other",
    }
}

/// A layer outermost in the host's router: counts every answer by route, method and status,
/// and a 401 to a request that carried credentials as a failed login.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = method_label(req.method()).to_owned();
    let credentials = req.headers().contains_key(header::AUTHORIZATION);
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let m = &*METRICS;
    m.requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status,
        })
        .inc();
    if status == 401 && credentials {
        m.login_failures.inc();
    }
    resp
}

/// One call to the licensing centre ended: `ok`, `busy` (429/503), `refused` (any other
/// signed refusal) or `error` (unreachable, unreadable or unverified answer).
pub fn centre_call(outcome: &'static str) {
    METRICS
        .centre_calls
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
}

/// A signer that times each signature into `keybridge_response_signing_seconds`.
pub struct Metered<S>(pub S);

impl<S: ResponseSigning> ResponseSigning for Metered<S> {
    fn sign(&self, q: &[u8], status: StatusCode, body: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let t = Instant::now();
        let r = self.0.sign(q, status, body);
        METRICS.signing.observe(t.elapsed().as_secs_f64());
        r
    }

    fn server_version(&self) -> &str {
        self.0.server_version()
    }

    fn error(&self, status: StatusCode, message: String) -> Response {
        self.0.error(status, message)
    }
}

/// `[metrics]`: who may read `/metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `false`: `/metrics` is not served (404).
    pub enabled: bool,
    /// The user name `/metrics` asks for when `password_hash` is set.
    pub user: String,
    /// `pbkdf2-sha256$…` (`keybridge auth hash`): `/metrics` then asks every client, on any
    /// address, for `user` and this password. Unset: only loopback clients are answered.
    pub password_hash: Option<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            user: "metrics".into(),
            password_hash: None,
        }
    }
}

/// Who may read `/metrics`, as configured now (replaced on reload).
pub enum Access {
    Disabled,
    LoopbackOnly,
    Login(Arc<MetricsGate>),
}

impl Access {
    /// The access `config` describes, or what is wrong with its password hash.
    pub fn from_config(config: &MetricsConfig) -> Result<Access, String> {
        if !config.enabled {
            return Ok(Access::Disabled);
        }
        match &config.password_hash {
            None => Ok(Access::LoopbackOnly),
            Some(h) => {
                let hash = crate::crypto::password::PasswordHash::parse(h)
                    .map_err(|e| format!("[metrics] password_hash: {e}"))?;
                Ok(Access::Login(Arc::new(MetricsGate {
                    auth: Auth::with_limits(
                        config.user.clone(),
                        hash,
                        login::LoginLimits::new(10, std::time::Duration::from_secs(60)),
                    ),
                })))
            }
        }
    }
}

/// The login gate of `/metrics`: its own user and throttle, the API's error format.
pub struct MetricsGate {
    auth: Auth,
}

impl LoginGate for MetricsGate {
    fn auth(&self) -> &Auth {
        &self.auth
    }

    fn refuse(&self, message: String) -> Response {
        ApiError::new(StatusCode::UNAUTHORIZED, "EHTTPUnauthorized", message).into_response()
    }

    fn unavailable(&self, message: String) -> Response {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ELoginBusy", message).into_response()
    }
}

/// What `/systeminfo` and `/metrics` read.
pub struct Ops {
    pub host: Arc<Host>,
    access: RwLock<Arc<Access>>,
    started: Instant,
}

impl Ops {
    pub fn new(host: Arc<Host>, access: Access) -> Arc<Ops> {
        Arc::new(Ops {
            host,
            access: RwLock::new(Arc::new(access)),
            started: Instant::now(),
        })
    }

    /// Replaces who may read `/metrics` (on `SIGHUP`).
    pub fn set_access(&self, access: Access) {
        *self.access.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(access);
    }

    fn access(&self) -> Arc<Access> {
        self.access
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `running`, or `degraded` when a key cannot be used (a failing USB key, a licence
    /// file that does not open).
    fn state(&self) -> &'static str {
        let failing = self.host.devices().iter().any(|d| d.error.is_some())
            || self.host.licences().iter().any(|l| l.open_error.is_some());
        if failing {
            "degraded"
        } else {
            "running"
        }
    }
}

/// `GET /systeminfo`: 200 without credentials, a few lines of text, as the original server
/// answers container health checks.
#[utoipa::path(get, path = "/systeminfo", tag = "operations",
    description = "Health for container checks: version, uptime, state (text/plain), without credentials.",
    responses((status = 200, description = "`keybridge licence host`, `version:`, `uptime:`, `state: running|degraded`", body = String)))]
pub async fn systeminfo(State(ops): State<Arc<Ops>>) -> Response {
    let body = format!(
        "keybridge licence host\nversion: {}\nuptime: {}\nstate: {}\n",
        crate::VERSION,
        ops.started.elapsed().as_secs(),
        ops.state()
    );
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `GET /metrics`, behind [`Access`].
pub async fn metrics(State(ops): State<Arc<Ops>>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    match &*ops.access() {
        Access::Disabled => ApiError::not_found_url(req.uri().path()).into_response(),
        Access::LoopbackOnly if !peer.is_some_and(|ip| is_loopback(&ip)) => ApiError::new(
            StatusCode::FORBIDDEN,
            "EMetricsForbidden",
            "/metrics answers loopback clients only; set [metrics] password_hash to read it from elsewhere",
        )
        .into_response(),
        Access::LoopbackOnly => next.run(req).await,
        Access::Login(gate) => login::require_login(State(gate.clone()), req, next).await,
    }
}

/// Loopback, including an IPv4 loopback address mapped into IPv6.
fn is_loopback(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v| v.is_loopback()),
    }
}

/// The handler behind [`metrics`]: gathers and encodes on the blocking pool (a host with many
/// sessions makes this a few milliseconds of work).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    description = "Prometheus metrics (OpenMetrics text; docs/operations.md): loopback clients only, or the `[metrics]` login when it has a password.",
    security((), ("basic" = [])),
    responses(
        (status = 200, description = "OpenMetrics text", body = String),
        (status = 403, description = "EMetricsForbidden: not loopback, and no [metrics] password", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "[metrics] enabled = false", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn scrape(State(ops): State<Arc<Ops>>) -> Response {
    let host = ops.host.clone();
    let uptime = ops.started.elapsed().as_secs_f64();
    match tokio::task::spawn_blocking(move || render(&host, uptime)).await {
        Ok(Ok(text)) => {
            let mut r = text.into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            r
        }
        Ok(Err(e)) => {
            ApiError::internal(format!("encoding the metrics failed: {e}")).into_response()
        }
        Err(e) => ApiError::internal(format!("the metrics worker failed: {e}")).into_response(),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    key_no: u64,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// Every state a licence can be in, so each appears (as 0) even when no licence is in it.
const LICENCE_STATES: [&str; 6] = [
    "active",
    "expired",
    "not_yet_valid",
    "blank",
    "not_workable",
    "unplugged",
];

fn licence_state(e: &crate::host::LicenceEntry, now: crate::time::Timestamp) -> &'static str {
    if e.open_error.is_some() {
        return "not_workable";
    }
    if !e.attached {
        return "unplugged";
    }
    let Some(t) = &e.terms else {
        return "blank";
    };
    let v = t.validity(now);
    if v.expired {
        "expired"
    } else if v.not_yet_valid {
        "not_yet_valid"
    } else {
        "active"
    }
}

/// The whole exposition, in the OpenMetrics text format.
pub fn render(host: &Host, uptime: f64) -> Result<String, std::fmt::Error> {
    let now = crate::time::now();
    let mut reg = Registry::default();

    reg.register(
        "keybridge_build",
        "The running version",
        prometheus_client::metrics::info::Info::new(VersionLabels {
            version: crate::VERSION,
        }),
    );

    let up = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    up.set(uptime);
    reg.register_with_unit(
        "keybridge_uptime",
        "Time since the host started",
        Unit::Seconds,
        up,
    );

    // The per-key counters, not a copy of every session: a scrape costs the number of keys.
    let used: HashMap<u64, i64> = host
        .sessions_per_key()
        .into_iter()
        .map(|(k, n)| (k, i64::try_from(n).unwrap_or(i64::MAX)))
        .collect();
    let (_, session_count) = host.sessions(0, 0);
    let (_, connection_count) = host.connections(0, 0);

    let by_state = Family::<StateLabels, Gauge>::default();
    for state in LICENCE_STATES {
        by_state.get_or_create(&StateLabels { state }).set(0);
    }
    let seats = Family::<KeyLabels, Gauge>::default();
    let seats_used = Family::<KeyLabels, Gauge>::default();
    let seats_free = Family::<KeyLabels, Gauge>::default();
    for e in host.licences() {
        by_state
            .get_or_create(&StateLabels {
                state: licence_state(&e, now),
            })
            .inc();
        let Some(t) = &e.terms else { continue };
        let labels = KeyLabels {
            key_no: e.key_no,
            kind: match e.kind {
                crate::host::KeyKind::Software => "software",
                crate::host::KeyKind::Usb => "usb",
            },
        };
        let total = i64::from(t.licence_count);
        let u = used.get(&e.key_no).copied().unwrap_or(0);
        seats.get_or_create(&labels).set(total);
        seats_used.get_or_create(&labels).set(u);
        seats_free.get_or_create(&labels).set((total - u).max(0));
    }
    reg.register("keybridge_licences", "Licences (keys) by state", by_state);
    reg.register(
        "keybridge_licence_seats",
        "Seats a key's licence grants (its licence count)",
        seats,
    );
    reg.register(
        "keybridge_licence_seats_used",
        "Live sessions holding a seat of the key",
        seats_used,
    );
    reg.register(
        "keybridge_licence_seats_free",
        "Seats of the key not held by a session",
        seats_free,
    );

    let g = |v: usize| {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
        g
    };
    reg.register("keybridge_sessions", "Live sessions", g(session_count));
    reg.register(
        "keybridge_connections",
        "Connections the host keeps",
        g(connection_count),
    );
    let devices = host.devices();
    reg.register(
        "keybridge_usb_devices_attached",
        "USB keys plugged in now",
        g(devices.iter().filter(|d| d.attached).count()),
    );
    reg.register(
        "keybridge_usb_devices_failing",
        "USB keys plugged in that cannot be used (they answer wrongly or not at all)",
        g(devices
            .iter()
            .filter(|d| d.attached && d.error.is_some())
            .count()),
    );

    let m = &*METRICS;
    reg.register(
        "keybridge_http_requests",
        "Answers of the host's HTTP API by route, method and status",
        m.requests.clone(),
    );
    reg.register_with_unit(
        "keybridge_response_signing",
        "Time to sign one answer (RSA-2048)",
        Unit::Seconds,
        m.signing.clone(),
    );
    reg.register(
        "keybridge_login_failures",
        "Requests refused for wrong credentials",
        m.login_failures.clone(),
    );
    reg.register(
        "keybridge_centre_calls",
        "Calls to the licensing centre by outcome (ok, busy, refused, error)",
        m.centre_calls.clone(),
    );

    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg)?;
    Ok(out)
}
