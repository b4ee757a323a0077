//! The web console (issue 12): the host's administration in a browser, served by `keybridge
//! serve` at `/` beside the API. Server-rendered HTML from askama templates compiled into the
//! binary (`templates/`), one stylesheet and a little plain JavaScript embedded (`assets/`),
//! so it works air-gapped; Russian and English from one catalogue ([`i18n`]).
//!
//! Security: login with the API's credentials through the API's own check and throttle
//! ([`crate::web::login::Auth`]) into a session cookie ([`session`]); a CSRF token on every
//! form; a strict Content-Security-Policy (no inline script or style); every change in the
//! audit log ([`audit`]); `[console] local_only` serves it to loopback clients only. It uses
//! the host library directly, never HTTP to itself. See `docs/console.md`.

pub mod audit;
pub mod i18n;
mod pages;
pub mod session;
mod settings;

use crate::api::AppState;
use askama::Template;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use i18n::{Lang, Tr};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// The session cookie.
pub const SESSION_COOKIE: &str = "kb_session";
/// The login form's CSRF cookie (double submit: there is no session yet to hold a token).
pub const LOGIN_COOKIE: &str = "kb_login";
/// The chosen language.
pub const LANG_COOKIE: &str = "kb_lang";
/// Forms are small: the largest is a memory write (4 KiB of value).
const MAX_FORM: usize = 64 * 1024;

/// What every console page sends: no script or style but the console's own files, no
/// framing, no referrer, never cached.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's state: the API's (its host, credentials, throttles), and its own sessions
/// and audit log.
pub struct Console {
    pub api: Arc<AppState>,
    pub sessions: session::Sessions,
    pub audit: Arc<audit::Audit>,
    /// Cookies get `Secure` when the port speaks TLS.
    pub secure: bool,
    pub local_only: bool,
    /// The config file the Settings page edits.
    pub config_path: std::path::PathBuf,
}

/// How `keybridge serve` sets the console up.
pub struct Options {
    pub secure: bool,
    pub local_only: bool,
    pub idle: Duration,
    pub config_path: std::path::PathBuf,
}

/// Why a console request failed; turned into a page or a status in one place
/// ([`IntoResponse`] below).
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// A form without the session's CSRF token (or the login form's).
    #[error("the form's security token is missing or wrong; reload the page and try again")]
    Csrf,
    /// A request to a page without a live session.
    #[error("not logged in")]
    NotLoggedIn,
    #[error("{0}")]
    Template(#[from] askama::Error),
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self {
            ConsoleError::NotLoggedIn => redirect("/login"),
            ConsoleError::Csrf => (StatusCode::FORBIDDEN, self.to_string()).into_response(),
            ConsoleError::Template(_) | ConsoleError::Internal(_) => {
                tracing::error!("console: {self}");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
            }
        }
    }
}

/// A 303 to a path of the console. With a body: the signing layer replaces an empty one
/// (`web::signing`), and the redirect would be lost.
pub fn redirect(to: &str) -> Response {
    let Ok(location) = HeaderValue::from_str(to) else {
        return (StatusCode::BAD_REQUEST, "bad path").into_response();
    };
    let mut r = (StatusCode::SEE_OTHER, "see other").into_response();
    r.headers_mut().insert(header::LOCATION, location);
    r
}

/// A rendered template as an HTML answer.
pub fn html<T: Template>(status: StatusCode, t: &T) -> Result<Response, ConsoleError> {
    let body = t.render()?;
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    Ok(r)
}

/// The value of cookie `name` in the request, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

impl Console {
    pub fn new(api: Arc<AppState>, o: Options) -> Arc<Console> {
        let path = api.host.data_dir().join(audit::FILE);
        Arc::new(Console {
            api,
            sessions: session::Sessions::new(o.idle),
            audit: Arc::new(audit::Audit::new(path)),
            secure: o.secure,
            local_only: o.local_only,
            config_path: o.config_path,
        })
    }

    /// A `Set-Cookie` value for the console: `HttpOnly`, `SameSite=Strict`, whole site,
    /// `Secure` under TLS; `None` as the value deletes it.
    pub fn set_cookie(&self, name: &str, value: Option<&str>) -> HeaderValue {
        let mut c = match value {
            Some(v) => format!("{name}={v}; Path=/; HttpOnly; SameSite=Strict"),
            None => format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        };
        if self.secure {
            c.push_str("; Secure");
        }
        HeaderValue::from_str(&c).unwrap_or(HeaderValue::from_static("kb_invalid=1"))
    }

    /// Writes one change to the audit log, off the async workers (it syncs a file).
    pub async fn record(&self, who: &session::Current, action: String, outcome: String) {
        let entry = audit::Entry {
            at: crate::time::now(),
            user: who.user.clone(),
            from: who.from,
            action,
            outcome,
        };
        let log = self.audit.clone();
        let _ = tokio::task::spawn_blocking(move || log.record(entry)).await;
    }
}

/// The language of a request: the switch's cookie, else the browser's `Accept-Language`.
pub fn lang_of(headers: &HeaderMap) -> Lang {
    cookie(headers, LANG_COOKIE)
        .and_then(Lang::parse)
        .unwrap_or_else(|| {
            Lang::from_accept(
                headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            )
        })
}

pub fn tr(headers: &HeaderMap) -> Tr {
    Tr {
        lang: lang_of(headers),
    }
}

fn peer(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// Security headers on every console answer; `local_only` turns others away as if nothing
/// were here.
async fn guard(State(c): State<Arc<Console>>, req: Request, next: Next) -> Response {
    if c.local_only && !peer(&req).is_loopback() {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// Pages past the login: a live session or a redirect to the login page.
async fn require_session(State(c): State<Arc<Console>>, mut req: Request, next: Next) -> Response {
    let current = cookie(req.headers(), SESSION_COOKIE).and_then(|t| c.sessions.get(t));
    match current {
        Some(cur) => {
            req.extensions_mut().insert(cur);
            next.run(req).await
        }
        None => ConsoleError::NotLoggedIn.into_response(),
    }
}

/// The console's routes, to merge beside the API (`api::router`). Empty when disabled.
pub fn router(c: Option<Arc<Console>>) -> Router {
    let Some(c) = c else {
        return Router::new();
    };
    let private = Router::new()
        .route("/", get(|| async { redirect("/keys") }))
        .route("/keys", get(pages::keys))
        .route("/keys/{no}", get(pages::key).post(pages::key_memory))
        .route("/sessions", get(pages::sessions))
        .route("/sessions/release", post(pages::release))
        .route("/activation", get(pages::activation).post(pages::activate))
        .route("/activation/update", post(pages::update))
        .route("/activation/request", post(pages::offline_request))
        .route("/activation/import", post(pages::import))
        .route("/devices", get(pages::devices))
        .route("/system", get(pages::system))
        .route("/settings", get(settings::show).post(settings::save))
        .route("/logout", post(pages::logout))
        .route_layer(middleware::from_fn_with_state(c.clone(), require_session));
    let public = Router::new()
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/lang/{code}", get(pages::lang))
        .route("/assets/console.css", get(pages::css))
        .route("/assets/console.js", get(pages::js))
        .route("/assets/icon.svg", get(pages::icon))
        .route("/favicon.ico", get(pages::icon));
    private
        .merge(public)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM))
        .layer(middleware::from_fn_with_state(c.clone(), guard))
        .with_state(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Host, HostOptions, LeasePolicy};
    use axum::body::Body;
    use tower::ServiceExt;

    fn console(dir: &std::path::Path, local_only: bool) -> Arc<Console> {
        let host = Host::new(HostOptions {
            data_dir: dir.into(),
            computer_id: "0".repeat(40),
            trust: crate::licence::TrustStore::default(),
            session_lease: LeasePolicy {
                session: Duration::from_secs(300),
                max_sessions: 10,
                max_connections: 10,
            },
            memory_policy: crate::keymem::LockPolicy::default(),
            centre_url: None,
            centre_ca_file: None,
            centre_response_key: None,
        })
        .expect("host");
        let api = Arc::new(AppState {
            host: Arc::new(host),
            signer: Arc::new(crate::crypto::HostResponseKey::new(
                crate::crypto::KeyPair::generate().expect("key"),
            )),
            auth: crate::web::login::Auth::new(
                "admin".into(),
                crate::crypto::password::PasswordHash::new("admin"),
                10,
                Duration::from_secs(60),
            ),
            activation_failures: (&crate::config::ApiConfig::default()).into(),
            api_enabled: true,
            server_version: String::new(),
        });
        Console::new(
            api,
            Options {
                secure: false,
                local_only,
                idle: Duration::from_secs(60),
                config_path: dir.join("keybridge.toml"),
            },
        )
    }

    async fn status(app: &Router, from: [u8; 4]) -> StatusCode {
        let mut req = Request::builder()
            .uri("/login")
            .body(Body::empty())
            .expect("request");
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((from, 40000))));
        app.clone().oneshot(req).await.expect("answer").status()
    }

    #[tokio::test]
    async fn local_only_serves_loopback_clients_alone() {
        let dir = tempfile::tempdir().expect("tmp");
        let only = router(Some(console(dir.path(), true)));
        assert_eq!(status(&only, [127, 0, 0, 1]).await, StatusCode::OK);
        assert_eq!(status(&only, [127, 9, 9, 9]).await, StatusCode::OK);
        assert_eq!(status(&only, [10, 0, 0, 5]).await, StatusCode::NOT_FOUND);
        assert_eq!(status(&only, [192, 0, 2, 7]).await, StatusCode::NOT_FOUND);
        let open = router(Some(console(dir.path(), false)));
        assert_eq!(status(&open, [192, 0, 2, 7]).await, StatusCode::OK);
    }
}
