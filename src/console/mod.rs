//! The web console (issue 12): the host's administration in a browser, served by `keybridge
//! serve` at `/` beside the API. Server-rendered HTML from askama templates compiled into the
//! binary (`templates/`), one stylesheet and a little plain JavaScript embedded (`assets/`),
//! so it works air-gapped; Russian and English from one catalogue ([`i18n`]).
//!
//! Security: login with the API's credentials through the API's own check and throttle
//! ([`crate::web::login::Auth`]) into a session cookie ([`session`]); a CSRF token on every
//! form; a strict Content-Security-Policy (no inline script or style), no framing, no caching;
//! every change in the audit log ([`audit`]); `[console] local_only` serves it to loopback
//! clients only. It uses the host library directly, never HTTP to itself. See
//! `docs/console.md`.

mod activation;
pub mod audit;
pub mod i18n;
mod keys;
pub mod live;
mod login;
mod pages;
pub mod session;
mod settings;
pub mod words;

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
/// Sent by the pages' own background refreshes (`assets/console.js`): such a request does
/// not count as activity, so an open page cannot keep its session from idling out.
pub const REFRESH_HEADER: &str = "x-kb-refresh";
/// Request bodies: forms are small (the largest a memory write, 4 KiB of value) and a licence
/// file upload is a few KiB; anything larger is refused (413) before it is read.
pub const MAX_BODY: usize = 64 * 1024;

/// What every console page sends: no script or style but the console's own files, no
/// framing, no referrer, never cached.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's state: the API's (its host, credentials, throttles), and its own sessions,
/// audit log and change watcher.
pub struct Console {
    pub api: Arc<AppState>,
    pub sessions: session::Sessions,
    pub audit: Arc<audit::Audit>,
    pub live: live::Live,
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
    /// A session ends after this long without a request.
    pub idle: Duration,
    pub config_path: std::path::PathBuf,
    /// The server's idle timeout: an event stream must move bytes more often than this.
    pub server_idle: Duration,
}

/// Why a console request failed; turned into a page in the reader's language in one place
/// ([`IntoResponse`] below and [`guard`]).
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// A form without the session's CSRF token (or the login form's).
    #[error("the form's security token is missing or wrong")]
    Csrf,
    /// A request to a page without a live session.
    #[error("not logged in")]
    NotLoggedIn,
    /// No such key, language or document.
    #[error("not found")]
    NotFound,
    /// A form the pages never send.
    #[error("bad request")]
    BadRequest,
    #[error("{0}")]
    Template(#[from] askama::Error),
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = match self {
            ConsoleError::NotLoggedIn => return redirect("/login"),
            ConsoleError::Csrf => StatusCode::FORBIDDEN,
            ConsoleError::NotFound => StatusCode::NOT_FOUND,
            ConsoleError::BadRequest => StatusCode::BAD_REQUEST,
            ConsoleError::Template(_) | ConsoleError::Internal(_) => {
                tracing::error!("console: {self}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        // The page itself is made by `guard`, which knows the reader's language.
        (status, status.as_str().to_owned()).into_response()
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    t: Tr,
    text: String,
}

/// The page for a failed request: the status's words from the catalogue.
fn error_page(t: Tr, status: StatusCode) -> Response {
    let id = match status {
        StatusCode::FORBIDDEN => "err.csrf",
        StatusCode::NOT_FOUND => "err.not_found",
        StatusCode::PAYLOAD_TOO_LARGE => "err.too_large",
        StatusCode::METHOD_NOT_ALLOWED => "err.method",
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => "err.busy",
        s if s.is_server_error() => "err.internal",
        _ => "err.bad_request",
    };
    let page = ErrorPage {
        t,
        text: t.s(id).to_owned(),
    };
    match html(status, &page) {
        Ok(r) => r,
        Err(_) => (status, status.as_str().to_owned()).into_response(),
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
            live: live::Live::new(o.server_idle / 2),
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
        self.record_as(who.user.clone(), who.from, action, outcome)
            .await;
    }

    /// [`Console::record`] for a request without a session (a refused login).
    pub async fn record_as(&self, user: String, from: IpAddr, action: String, outcome: String) {
        let entry = audit::Entry {
            at: crate::time::now(),
            user,
            from,
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

/// Every console answer passes here: `local_only` turns others away as if nothing were here;
/// a failure becomes a page in the reader's language (axum's own refusals too — a body over
/// [`MAX_BODY`], a form that does not parse); and the security headers go on.
async fn guard(State(c): State<Arc<Console>>, req: Request, next: Next) -> Response {
    if c.local_only && !peer(&req).is_loopback() {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let t = tr(req.headers());
    let mut r = next.run(req).await;
    let is_html = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    let streamed = r
        .extensions()
        .get::<crate::web::signing::StreamedUnsigned>()
        .is_some();
    if (r.status().is_client_error() || r.status().is_server_error()) && !is_html && !streamed {
        r = error_page(t, r.status());
    }
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

/// Pages past the login: a live session or a redirect to the login page. The session seen
/// by the handler carries this request's address, for the audit log.
async fn require_session(State(c): State<Arc<Console>>, mut req: Request, next: Next) -> Response {
    let touch = !req.headers().contains_key(REFRESH_HEADER);
    let from = peer(&req);
    let current =
        cookie(req.headers(), SESSION_COOKIE).and_then(|t| c.sessions.get(t, from, touch));
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
        .route("/keys", get(keys::keys))
        .route("/keys/{no}", get(keys::key).post(keys::memory))
        .route("/sessions", get(pages::sessions))
        .route("/sessions/release", post(pages::release))
        .route(
            "/activation",
            get(activation::page).post(activation::activate),
        )
        .route("/activation/update", post(activation::update))
        .route("/activation/request", post(activation::offline_request))
        .route("/activation/import", post(activation::import))
        .route("/devices", get(pages::devices))
        .route("/system", get(pages::system))
        .route("/docs/{name}", get(pages::doc))
        .route("/settings", get(settings::show).post(settings::save))
        .route("/logout", post(login::logout))
        .route_layer(middleware::from_fn_with_state(c.clone(), require_session));
    let public = Router::new()
        .route("/login", get(login::page).post(login::login))
        .route("/lang/{code}", get(login::lang))
        // Checks its session itself: without one it must answer 204, not a redirect.
        .route("/events", get(live::events))
        .route("/assets/console.css", get(pages::css))
        .route("/assets/console.js", get(pages::js))
        .route("/assets/icon.svg", get(pages::icon))
        .route("/favicon.ico", get(pages::icon));
    private
        .merge(public)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(c.clone(), guard))
        .with_state(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Host, HostOptions};
    use axum::body::Body;
    use tower::ServiceExt;

    fn console(dir: &std::path::Path, local_only: bool) -> Arc<Console> {
        let host = Host::new(HostOptions::for_tests(dir)).expect("host");
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
            api_enabled: true.into(),
            server_version: String::new(),
        });
        Console::new(
            api,
            Options {
                secure: false,
                local_only,
                idle: Duration::from_secs(60),
                config_path: dir.join("keybridge.toml"),
                server_idle: Duration::from_secs(5),
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
