//! Login, logout and the language switch.

use super::pages::{check_csrf, Page};
use super::session::{self, Current};
use super::{
    cookie, html, redirect, tr, Console, ConsoleError, LANG_COOKIE, LOGIN_COOKIE, SESSION_COOKIE,
};
use crate::web::login::Login;
use askama::Template;
use axum::extract::{ConnectInfo, Extension, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct Back {
    back: Option<String>,
}

/// A console path to come back to: absolute, one leading slash (never `//host`), no
/// backslash or control character; anything else goes to the start page.
fn safe_back(b: Option<&str>) -> &str {
    match b {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && p.len() <= 200
                && p.chars().all(|c| !c.is_control()) =>
        {
            p
        }
        _ => "/",
    }
}

/// The language switch: remembers the choice in a cookie and goes back.
pub async fn lang(
    State(c): State<Arc<Console>>,
    Path(code): Path<String>,
    Query(q): Query<Back>,
) -> Result<Response, ConsoleError> {
    let l = super::i18n::Lang::parse(&code).ok_or(ConsoleError::NotFound)?;
    let mut r = redirect(safe_back(q.back.as_deref()));
    r.headers_mut().append(
        header::SET_COOKIE,
        c.set_cookie(LANG_COOKIE, Some(l.code())),
    );
    Ok(r)
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    t: super::i18n::Tr,
    csrf: String,
    error: Option<String>,
}

fn login_form(c: &Console, headers: &HeaderMap, status: StatusCode, error: Option<String>) -> Page {
    let token = session::token();
    let mut r = html(
        status,
        &LoginPage {
            t: tr(headers),
            csrf: token.clone(),
            error,
        },
    )?;
    r.headers_mut()
        .append(header::SET_COOKIE, c.set_cookie(LOGIN_COOKIE, Some(&token)));
    Ok(r)
}

pub async fn page(State(c): State<Arc<Console>>, headers: HeaderMap) -> Page {
    login_form(&c, &headers, StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
}

/// Longest user name and password a login form may carry (the API's are far shorter).
const MAX_USER: usize = 256;
const MAX_PASSWORD: usize = 1024;

/// Checks the API's credentials through the API's own login check — the same throttle, the
/// same hash workers, the same lockout — and starts a new session, ending the one the browser
/// held before (so a session id planted in the browser never becomes a logged-in one).
pub async fn login(
    State(c): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Page {
    let t = tr(&headers);
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !session::same(expected, &f.csrf) {
        tracing::warn!(from = %peer.ip(), "console: a login form without its CSRF token");
        return Err(ConsoleError::Csrf);
    }
    let wrong = || {
        login_form(
            &c,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some(t.s("login.wrong").into()),
        )
    };
    if f.user.len() > MAX_USER || f.password.len() > MAX_PASSWORD {
        return wrong();
    }
    let basic = format!(
        "Basic {}",
        crate::crypto::b64(format!("{}:{}", f.user, f.password).as_bytes())
    );
    let user: String = f.user.chars().take(64).collect();
    match c.api.auth.login(peer.ip(), Some(basic.as_bytes())).await {
        Login::Ok => {
            if let Some(old) = cookie(&headers, SESSION_COOKIE) {
                c.sessions.end_token(old);
            }
            let token = c.sessions.create(&f.user);
            c.record_as(user, peer.ip(), "login".into(), "ok".into())
                .await;
            let mut r = redirect("/keys");
            let h = r.headers_mut();
            h.append(
                header::SET_COOKIE,
                c.set_cookie(SESSION_COOKIE, Some(&token)),
            );
            h.append(header::SET_COOKIE, c.set_cookie(LOGIN_COOKIE, None));
            Ok(r)
        }
        Login::NoCredentials => wrong(),
        Login::Wrong { failures } => {
            // Counted guesses only (a locked-out address is refused unlogged): bounded by the
            // throttle per address.
            c.record_as(
                user,
                peer.ip(),
                "login".into(),
                format!("refused: wrong user name or password ({failures} in the window)"),
            )
            .await;
            wrong()
        }
        Login::Locked { retry_after, .. } => login_form(
            &c,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            Some(t.f("login.locked", &[&retry_after.as_secs().max(1)])),
        ),
        Login::Busy { retry_after } => login_form(
            &c,
            &headers,
            StatusCode::SERVICE_UNAVAILABLE,
            Some(t.f("login.busy", &[&retry_after.as_secs().max(1)])),
        ),
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}

/// Ends the session on the server (the cookie alone would not be enough: a copy of it must
/// stop working too).
pub async fn logout(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    Form(f): Form<CsrfOnly>,
) -> Page {
    check_csrf(&cur, &f.csrf)?;
    c.sessions.end(&cur);
    c.record(&cur, "logout".into(), "ok".into()).await;
    let mut r = redirect("/login");
    r.headers_mut()
        .append(header::SET_COOKIE, c.set_cookie(SESSION_COOKIE, None));
    Ok(r)
}
