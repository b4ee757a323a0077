//! The console's pages: each handler reads the host directly and renders a template.

use super::session::{self, Current};
use super::{
    cookie, html, redirect, tr, Console, ConsoleError, LANG_COOKIE, LOGIN_COOKIE, SESSION_COOKIE,
};
use crate::host::{ActivationInput, HostError, KeyKind, LicenceEntry};
use crate::web::login::Login;
use askama::Template;
use axum::extract::{ConnectInfo, Extension, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

type Page = Result<Response, ConsoleError>;

/// What the frame of every page needs.
pub struct Chrome {
    pub t: super::i18n::Tr,
    pub user: String,
    pub csrf: String,
    /// The nav entry to mark as current.
    pub nav: &'static str,
    /// The path the language switch comes back to.
    pub here: String,
    pub message: Option<Message>,
}

/// The outcome of a change, in words.
pub struct Message {
    pub ok: bool,
    pub text: String,
}

impl Message {
    fn of<T>(r: &Result<T, String>, ok: &str) -> Message {
        match r {
            Ok(_) => Message {
                ok: true,
                text: ok.to_owned(),
            },
            Err(e) => Message {
                ok: false,
                text: e.clone(),
            },
        }
    }
}

pub(super) fn chrome(headers: &HeaderMap, cur: &Current, nav: &'static str, here: &str) -> Chrome {
    Chrome {
        t: tr(headers),
        user: cur.user.clone(),
        csrf: cur.csrf.clone(),
        nav,
        here: here.to_owned(),
        message: None,
    }
}

/// Every form carries the session's CSRF token.
pub(super) fn check_csrf(cur: &Current, sent: &str) -> Result<(), ConsoleError> {
    if session::same(&cur.csrf, sent) {
        Ok(())
    } else {
        tracing::warn!(from = %cur.from, "console: a form without the session's CSRF token");
        Err(ConsoleError::Csrf)
    }
}

// ---------------------------------------------------------------- assets, language

pub async fn css() -> Response {
    asset(
        include_str!("../../assets/console.css"),
        "text/css; charset=utf-8",
    )
}

pub async fn icon() -> Response {
    asset(include_str!("../../assets/icon.svg"), "image/svg+xml")
}

pub async fn js() -> Response {
    asset(
        include_str!("../../assets/console.js"),
        "text/javascript; charset=utf-8",
    )
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    r
}

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
) -> Response {
    let Some(l) = super::i18n::Lang::parse(&code) else {
        return (StatusCode::NOT_FOUND, "no such language").into_response();
    };
    let mut r = redirect(safe_back(q.back.as_deref()));
    r.headers_mut().append(
        header::SET_COOKIE,
        c.set_cookie(LANG_COOKIE, Some(l.code())),
    );
    r
}

// ---------------------------------------------------------------- login

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

pub async fn login_page(State(c): State<Arc<Console>>, headers: HeaderMap) -> Page {
    login_form(&c, &headers, StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    csrf: String,
    user: String,
    password: String,
}

/// Checks the API's credentials through the API's own login check — the same throttle, the
/// same hash workers, the same lockout — and starts a session.
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
    if f.user.len() > 256 || f.password.len() > 1024 {
        return login_form(
            &c,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some(t.s("login.wrong").into()),
        );
    }
    let basic = format!(
        "Basic {}",
        crate::crypto::b64(format!("{}:{}", f.user, f.password).as_bytes())
    );
    match c.api.auth.login(peer.ip(), Some(basic.as_bytes())).await {
        Login::Ok => {
            let token = c.sessions.create(&f.user, peer.ip());
            if let Some(cur) = c.sessions.get(&token) {
                c.record(&cur, "login".into(), "ok".into()).await;
            }
            let mut r = redirect("/keys");
            let h = r.headers_mut();
            h.append(
                header::SET_COOKIE,
                c.set_cookie(SESSION_COOKIE, Some(&token)),
            );
            h.append(header::SET_COOKIE, c.set_cookie(LOGIN_COOKIE, None));
            Ok(r)
        }
        Login::NoCredentials | Login::Wrong { .. } => login_form(
            &c,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some(t.s("login.wrong").into()),
        ),
        Login::Locked { retry_after, .. } => login_form(
            &c,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            Some(format!(
                "{} {} s",
                t.s("login.locked"),
                retry_after.as_secs().max(1)
            )),
        ),
        Login::Busy { retry_after } => login_form(
            &c,
            &headers,
            StatusCode::SERVICE_UNAVAILABLE,
            Some(format!(
                "{} {} s",
                t.s("login.busy"),
                retry_after.as_secs().max(1)
            )),
        ),
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    csrf: String,
}

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

// ---------------------------------------------------------------- keys

/// One row of the Keys page.
pub struct KeyRow {
    pub key_no: u64,
    pub usb: bool,
    pub product: String,
    /// `None`: workable; else why not.
    pub problem: Option<String>,
    pub blank: bool,
    pub used: usize,
    pub total: String,
    pub expires: String,
    pub days_left: String,
    pub support_end: String,
}

fn date(t: Option<crate::time::Timestamp>) -> String {
    t.map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Sessions a key's page lists at most (a key may hold a million; the API pages the rest).
const KEY_PAGE_SESSIONS: usize = 1000;

fn used_by_key(c: &Console) -> std::collections::HashMap<u64, usize> {
    c.api.host.sessions_per_key()
}

fn key_row(e: &LicenceEntry, used: &std::collections::HashMap<u64, usize>) -> KeyRow {
    let now = crate::time::now();
    let v = e.terms.as_ref().map(|t| t.validity(now));
    KeyRow {
        key_no: e.key_no,
        usb: e.kind == KeyKind::Usb,
        product: e
            .terms
            .as_ref()
            .map(|t| format!("{} — {}", t.product_name, t.article_name))
            .unwrap_or_default(),
        problem: e.unusable_reason(now),
        blank: e.is_blank,
        used: used.get(&e.key_no).copied().unwrap_or(0),
        total: e
            .terms
            .as_ref()
            .map(|t| t.licence_count.to_string())
            .unwrap_or_default(),
        expires: date(v.as_ref().and_then(|v| v.expire_date)),
        days_left: v
            .as_ref()
            .and_then(|v| v.days_left)
            .map(|d| d.to_string())
            .unwrap_or_default(),
        support_end: date(e.terms.as_ref().and_then(|t| t.support_end_date)),
    }
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    c: Chrome,
    rows: Vec<KeyRow>,
    filter: String,
}

#[derive(Deserialize)]
pub struct KeysQuery {
    /// `all`, `ok`, `problem`, `usb`, `software`.
    show: Option<String>,
}

pub async fn keys(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
    Query(q): Query<KeysQuery>,
) -> Page {
    let used = used_by_key(&c);
    let filter = q
        .show
        .as_deref()
        .filter(|f| ["ok", "problem", "usb", "software"].contains(f))
        .unwrap_or("all");
    let rows = c
        .api
        .host
        .licences()
        .iter()
        .map(|e| key_row(e, &used))
        .filter(|r| match filter {
            "ok" => r.problem.is_none(),
            "problem" => r.problem.is_some(),
            "usb" => r.usb,
            "software" => !r.usb,
            _ => true,
        })
        .collect();
    html(
        StatusCode::OK,
        &KeysPage {
            c: chrome(&headers, &cur, "keys", "/keys"),
            rows,
            filter: filter.to_owned(),
        },
    )
}

#[derive(Template)]
#[template(path = "key.html")]
struct KeyPage {
    c: Chrome,
    row: KeyRow,
    fields: Vec<(String, String)>,
    sessions: Vec<crate::host::Session>,
    memory: Option<String>,
}

async fn key_page(
    c: &Console,
    headers: &HeaderMap,
    cur: &Current,
    key_no: u64,
    message: Option<Message>,
    memory: Option<String>,
) -> Page {
    let e = match c.api.host.licence(key_no) {
        Ok(e) => e,
        Err(_) => return Ok((StatusCode::NOT_FOUND, "no such key").into_response()),
    };
    let now = crate::time::now();
    let json = serde_json::to_value(crate::api::wire::LicenceJson::new(&e, now))
        .map_err(|e| ConsoleError::Internal(e.to_string()))?;
    let fields = match json {
        serde_json::Value::Object(m) => m
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect(),
        _ => Vec::new(),
    };
    let sessions = c.api.host.sessions_of_key(key_no, KEY_PAGE_SESSIONS);
    let used = used_by_key(c);
    let here = format!("/keys/{key_no}");
    let mut ch = chrome(headers, cur, "keys", &here);
    ch.message = message;
    html(
        StatusCode::OK,
        &KeyPage {
            c: ch,
            row: key_row(&e, &used),
            fields,
            sessions,
            memory,
        },
    )
}

fn key_no(s: &str) -> Option<u64> {
    s.parse().ok().filter(|n| *n > 0)
}

pub async fn key(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
    Path(no): Path<String>,
) -> Page {
    let Some(no) = key_no(&no) else {
        return Ok((StatusCode::NOT_FOUND, "no such key").into_response());
    };
    key_page(&c, &headers, &cur, no, None, None).await
}

#[derive(Deserialize)]
pub struct MemoryForm {
    csrf: String,
    /// `read`, `write`, `passwords`, `reset`.
    action: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    read: String,
    #[serde(default)]
    write: String,
    #[serde(default)]
    new_read: String,
    #[serde(default)]
    new_write: String,
    /// The reset's confirmation box.
    #[serde(default)]
    confirm: Option<String>,
}

fn words(e: HostError) -> String {
    e.to_string()
}

/// Reads, writes, re-passwords or resets a key's user memory.
pub async fn key_memory(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
    Path(no): Path<String>,
    Form(f): Form<MemoryForm>,
) -> Page {
    check_csrf(&cur, &f.csrf)?;
    let Some(no) = key_no(&no) else {
        return Ok((StatusCode::NOT_FOUND, "no such key").into_response());
    };
    let t = tr(&headers);
    let host = c.api.host.clone();
    let (message, memory) = match f.action.as_str() {
        "read" => match host.memory_read(no, f.password).await {
            Ok(v) => (None, Some(v)),
            Err(e) => (Some(Message::of::<()>(&Err(words(e)), "")), None),
        },
        "write" => {
            let r = host
                .memory_write(no, f.password, f.value)
                .await
                .map_err(words);
            c.record(&cur, format!("memory write, key {no}"), outcome(&r))
                .await;
            (Some(Message::of(&r, t.s("memory.written"))), None)
        }
        "passwords" => {
            let change = crate::hal::PasswordChange {
                read: f.read,
                write: f.write,
                new_read: f.new_read,
                new_write: f.new_write,
            };
            let r = host.memory_set_passwords(no, change).await.map_err(words);
            c.record(&cur, format!("memory passwords, key {no}"), outcome(&r))
                .await;
            (Some(Message::of(&r, t.s("memory.passwords_changed"))), None)
        }
        "reset" => {
            if f.confirm.as_deref() != Some("yes") {
                (
                    Some(Message {
                        ok: false,
                        text: t.s("memory.confirm_needed").into(),
                    }),
                    None,
                )
            } else {
                let r = host.memory_reset(no).await.map_err(words);
                c.record(&cur, format!("memory reset, key {no}"), outcome(&r))
                    .await;
                (Some(Message::of(&r, t.s("memory.reset_done"))), None)
            }
        }
        _ => return Ok((StatusCode::BAD_REQUEST, "unknown action").into_response()),
    };
    key_page(&c, &headers, &cur, no, message, memory).await
}

fn outcome<T>(r: &Result<T, String>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("refused: {e}"),
    }
}

// ---------------------------------------------------------------- sessions

#[derive(Template)]
#[template(path = "sessions.html")]
struct SessionsPage {
    c: Chrome,
    sessions: Vec<crate::host::Session>,
    connections: Vec<crate::host::Connection>,
}

async fn sessions_page(
    c: &Console,
    headers: &HeaderMap,
    cur: &Current,
    message: Option<Message>,
) -> Page {
    let (sessions, _) = c.api.host.sessions(0, 1000);
    let (connections, _) = c.api.host.connections(0, 1000);
    let mut ch = chrome(headers, cur, "sessions", "/sessions");
    ch.message = message;
    html(
        StatusCode::OK,
        &SessionsPage {
            c: ch,
            sessions,
            connections,
        },
    )
}

pub async fn sessions(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
) -> Page {
    sessions_page(&c, &headers, &cur, None).await
}

#[derive(Deserialize)]
pub struct ReleaseForm {
    csrf: String,
    id: String,
}

pub async fn release(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
    Form(f): Form<ReleaseForm>,
) -> Page {
    check_csrf(&cur, &f.csrf)?;
    let t = tr(&headers);
    let r = c.api.host.close_session(&f.id).map(|_| ()).map_err(words);
    let id: String = f.id.chars().take(64).collect();
    c.record(&cur, format!("release session {id}"), outcome(&r))
        .await;
    sessions_page(
        &c,
        &headers,
        &cur,
        Some(Message::of(&r, t.s("sessions.released"))),
    )
    .await
}

// ---------------------------------------------------------------- activation

#[derive(Template)]
#[template(path = "activation.html")]
struct ActivationPage {
    c: Chrome,
    blanks: Vec<u64>,
}

async fn activation_page(
    c: &Console,
    headers: &HeaderMap,
    cur: &Current,
    message: Option<Message>,
) -> Page {
    let blanks = c
        .api
        .host
        .devices()
        .into_iter()
        .filter(|d| d.attached && d.blank && d.error.is_none())
        .filter_map(|d| d.serial)
        .collect();
    let mut ch = chrome(headers, cur, "activation", "/activation");
    ch.message = message;
    html(StatusCode::OK, &ActivationPage { c: ch, blanks })
}

pub async fn activation(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
) -> Page {
    activation_page(&c, &headers, &cur, None).await
}

#[derive(Deserialize)]
pub struct ActivateForm {
    csrf: String,
    code: String,
    /// `computer`, or the serial of an attached blank.
    target: String,
    #[serde(default)]
    itn: String,
    #[serde(default)]
    iec: String,
}

pub async fn activate(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
    Form(f): Form<ActivateForm>,
) -> Page {
    check_csrf(&cur, &f.csrf)?;
    let t = tr(&headers);
    let input = activation_input(&f, t);
    let target = f.target.chars().take(24).collect::<String>();
    let r = match input {
        Ok(input) => crate::api::activate_throttled(&c.api, cur.from, input)
            .await
            .map(|e| e.key_no)
            .map_err(|e| e.message),
        Err(e) => Err(e),
    };
    c.record(&cur, format!("activate onto {target}"), outcome(&r))
        .await;
    let text = match &r {
        Ok(no) => Ok(format!("{} {no}", t.s("activation.done"))),
        Err(e) => Err(e.clone()),
    };
    let m = match text {
        Ok(s) => Message { ok: true, text: s },
        Err(e) => Message { ok: false, text: e },
    };
    activation_page(&c, &headers, &cur, Some(m)).await
}

/// The activation form's values, checked as the API checks them.
fn activation_input(f: &ActivateForm, t: super::i18n::Tr) -> Result<ActivationInput, String> {
    let code = f.code.trim();
    if code.is_empty() || code.len() > 64 {
        return Err(t.s("activation.bad_code").into());
    }
    let blank_key_no = match f.target.as_str() {
        "computer" => None,
        s => Some(key_no(s).ok_or_else(|| t.s("activation.bad_target").to_owned())?),
    };
    let itn = match f.itn.trim() {
        "" => None,
        s => Some(crate::licence::Itn::try_from(s.to_owned()).map_err(|e| e.to_string())?),
    };
    let iec = match f.iec.trim() {
        "" => None,
        s => Some(crate::licence::Iec::try_from(s.to_owned()).map_err(|e| e.to_string())?),
    };
    Ok(ActivationInput {
        code: code.to_owned(),
        itn,
        iec,
        blank_key_no,
    })
}

/// Offline activation, first half: the request file to take to the vendor (`keybridge
/// centre fulfil` turns it into a licence file). For a blank USB key it carries the key's
/// proof over the offline challenge, as `keybridge licence request` makes it.
pub async fn offline_request(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
    Form(f): Form<ActivateForm>,
) -> Page {
    use crate::centre::wire::{ActivateBody, OfflineRequest, WireBinding, REQUEST_FORMAT};
    check_csrf(&cur, &f.csrf)?;
    let t = tr(&headers);
    let made = async {
        let input = activation_input(&f, t)?;
        let code = crate::centre::ActivationCode::parse(&input.code).map_err(|e| e.to_string())?;
        let itn = input.itn.map(String::from);
        let iec = input.iec.map(String::from);
        let (binding, device_proof) = match input.blank_key_no {
            Some(serial) => {
                let challenge = crate::hal::attest::offline_challenge(
                    &code.to_string(),
                    itn.as_deref(),
                    iec.as_deref(),
                    serial,
                );
                let proof = c
                    .api
                    .host
                    .attest_blank(serial, challenge)
                    .await
                    .map_err(words)?;
                (WireBinding::Device(serial), Some((&proof).into()))
            }
            None => (
                WireBinding::Computer(c.api.host.computer_id().to_owned()),
                None,
            ),
        };
        let request = OfflineRequest {
            format: REQUEST_FORMAT.into(),
            activation: ActivateBody {
                code: code.to_string(),
                itn,
                iec,
                binding,
                device_proof,
                challenge: None,
            },
        };
        serde_json::to_vec_pretty(&request).map_err(|e| e.to_string())
    }
    .await;
    let target = f.target.chars().take(24).collect::<String>();
    match made {
        Ok(bytes) => {
            c.record(&cur, format!("offline request for {target}"), "ok".into())
                .await;
            let mut r = bytes.into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"activation-request.json\""),
            );
            Ok(r)
        }
        Err(e) => {
            c.record(
                &cur,
                format!("offline request for {target}"),
                format!("refused: {e}"),
            )
            .await;
            activation_page(&c, &headers, &cur, Some(Message { ok: false, text: e })).await
        }
    }
}

/// Offline activation, second half (and restore from a saved file): installs a licence file
/// uploaded from the browser, verified by the host before anything is written.
pub async fn import(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
    mut form: axum::extract::Multipart,
) -> Page {
    let t = tr(&headers);
    let mut csrf = None;
    let mut file = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => return Ok((StatusCode::BAD_REQUEST, "bad form").into_response()),
        };
        let name = field.name().unwrap_or("").to_owned();
        let Ok(bytes) = field.bytes().await else {
            return Ok((StatusCode::BAD_REQUEST, "bad form").into_response());
        };
        match name.as_str() {
            "csrf" => csrf = Some(String::from_utf8_lossy(&bytes).into_owned()),
            "licence" => file = Some(bytes.to_vec()),
            _ => {}
        }
    }
    check_csrf(&cur, csrf.as_deref().unwrap_or(""))?;
    let r = match file.filter(|f| !f.is_empty()) {
        Some(doc) => c
            .api
            .host
            .install_licence(doc)
            .await
            .map(|terms| terms.key_no)
            .map_err(words),
        None => Err(t.s("activation.no_file").into()),
    };
    c.record(&cur, "import licence file".into(), outcome(&r))
        .await;
    let m = match r {
        Ok(no) => Message {
            ok: true,
            text: format!("{} {no}", t.s("activation.imported")),
        },
        Err(e) => Message { ok: false, text: e },
    };
    activation_page(&c, &headers, &cur, Some(m)).await
}

pub async fn update(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
    Form(f): Form<CsrfOnly>,
) -> Page {
    check_csrf(&cur, &f.csrf)?;
    let t = tr(&headers);
    let r = c.api.host.update_licences().await.map_err(words);
    let m = match &r {
        Ok(u) => Message {
            ok: u.failed == 0,
            text: format!(
                "{} {}; {} {}",
                t.s("activation.updated"),
                u.licences.len(),
                t.s("activation.refused"),
                u.failed
            ),
        },
        Err(e) => Message {
            ok: false,
            text: e.clone(),
        },
    };
    c.record(&cur, "update all licences".into(), m.text.clone())
        .await;
    activation_page(&c, &headers, &cur, Some(m)).await
}

// ---------------------------------------------------------------- devices, system

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    c: Chrome,
    devices: Vec<crate::host::DeviceRow>,
}

pub async fn devices(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
) -> Page {
    html(
        StatusCode::OK,
        &DevicesPage {
            c: chrome(&headers, &cur, "devices", "/devices"),
            devices: c.api.host.devices(),
        },
    )
}

#[derive(Template)]
#[template(path = "system.html")]
struct SystemPage {
    c: Chrome,
    info: Vec<(String, String)>,
    uptime: String,
    public_key: String,
    fingerprint: String,
    audit: Vec<super::audit::Entry>,
}

pub async fn system(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
) -> Page {
    let host = c.api.host.clone();
    // Reads /proc and the network interfaces: blocking.
    let info = tokio::task::spawn_blocking(move || {
        crate::host::sysinfo::collect(host.started(), host.computer_id())
    })
    .await
    .map_err(|e| ConsoleError::Internal(e.to_string()))?;
    let json = serde_json::to_value(crate::api::wire::ServerInfoJson::from(info))
        .map_err(|e| ConsoleError::Internal(e.to_string()))?;
    let info = match json {
        serde_json::Value::Object(m) => m
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect(),
        _ => Vec::new(),
    };
    let up = (crate::time::now() - c.api.host.started())
        .num_seconds()
        .max(0);
    let uptime = format!(
        "{}d {:02}:{:02}:{:02}",
        up / 86400,
        up / 3600 % 24,
        up / 60 % 60,
        up % 60
    );
    let key = c.api.signer.public_key();
    html(
        StatusCode::OK,
        &SystemPage {
            c: chrome(&headers, &cur, "system", "/system"),
            info,
            uptime,
            public_key: key.pem().to_owned(),
            fingerprint: key.fingerprint().to_owned(),
            audit: c.audit.recent(),
        },
    )
}
