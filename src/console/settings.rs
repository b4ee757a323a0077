//! The Settings page: a few of the host's config keys edited in the browser. The file is
//! edited with `toml_edit`, so its comments and the keys not shown survive; the result is
//! checked as `keybridge config check` would before it is written (atomically, 0640).
//!
//! What can change under a running server is applied at once: the API switch and the API's
//! credentials (which also ends every console session but the one that made the change, so a
//! cookie from before a password change stops working). The lease lifetime, the centre URL
//! and the trusted centre keys are read at start, and the page says they wait for a restart.
//! Applied values are read back as `keybridge serve` reads them, so a `KEYBRIDGE_…`
//! variable that overrides the file keeps overriding it (and the page says so).

use super::pages::{check_csrf, chrome, Chrome, Page};
use super::session::Current;
use super::words::Message;
use super::{html, tr, Console, ConsoleError, SESSION_COOKIE};
use crate::config::Config;
use crate::crypto::password::PasswordHash;
use crate::web::login::Login;
use askama::Template;
use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Form;
use serde::Deserialize;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Shortest and longest new API password the page accepts.
pub const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 1024;

/// The keys the page edits; those applied while serving, the others at the next start.
const API_ENABLED: &str = "[api] enabled";
const API_USER: &str = "[api] user";
const API_PASSWORD: &str = "[api] password_hash";
const LIVE: [&str; 3] = [API_ENABLED, API_USER, API_PASSWORD];

/// What the form shows: the file's values (the environment may override them).
pub struct Values {
    pub api_enabled: bool,
    pub user: String,
    pub session_seconds: String,
    pub centre_url: String,
    pub trusted_keys: String,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    c: Chrome,
    v: Values,
    path: String,
    /// `KEYBRIDGE_…` variables set now over keys of this page.
    overridden: Vec<String>,
    min_password: usize,
    password_hint: String,
}

/// Why a save was refused, in words (the catalogue's id, and the detail).
struct Refused {
    id: &'static str,
    detail: Option<String>,
}

impl Refused {
    fn new(id: &'static str) -> Refused {
        Refused { id, detail: None }
    }

    fn with(id: &'static str, detail: impl ToString) -> Refused {
        Refused {
            id,
            detail: Some(detail.to_string()),
        }
    }
}

fn read(path: &Path) -> Result<(String, Values), Refused> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Refused::with("settings.unreadable", e)),
    };
    let c: Config = toml::from_str(&text).map_err(|e| Refused::with("settings.unreadable", e))?;
    let v = Values {
        api_enabled: c.api.enabled,
        user: c.api.user.clone(),
        session_seconds: c.leases.session_seconds.to_string(),
        centre_url: c.centre.url.clone().unwrap_or_default(),
        trusted_keys: c
            .licences
            .trusted_centre_keys
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    };
    Ok((text, v))
}

/// The `KEYBRIDGE_…` variables set over `keys` (`[section] name`).
fn overridden(keys: &[&str]) -> Vec<String> {
    crate::config::KEYS
        .iter()
        .filter(|k| keys.contains(&k.dotted().as_str()))
        .map(|k| k.env())
        .filter(|v| std::env::var_os(v).is_some())
        .collect()
}

const EDITED: [&str; 6] = [
    API_ENABLED,
    API_USER,
    API_PASSWORD,
    "[leases] session_seconds",
    "[centre] url",
    "[licences] trusted_centre_keys",
];

async fn page(c: &Console, headers: &HeaderMap, cur: &Current, message: Option<Message>) -> Page {
    let path = c.config_path.clone();
    let got = tokio::task::spawn_blocking(move || read(&path))
        .await
        .map_err(|e| ConsoleError::Internal(e.to_string()))?;
    let t = tr(headers);
    let mut ch = chrome(headers, cur, "settings", "/settings");
    let v = match got {
        Ok((_, v)) => v,
        Err(r) => {
            ch.message = Some(said(t, r));
            Values {
                api_enabled: true,
                user: String::new(),
                session_seconds: String::new(),
                centre_url: String::new(),
                trusted_keys: String::new(),
            }
        }
    };
    if message.is_some() {
        ch.message = message;
    }
    html(
        StatusCode::OK,
        &SettingsPage {
            c: ch,
            v,
            path: c.config_path.display().to_string(),
            overridden: overridden(&EDITED),
            min_password: MIN_PASSWORD,
            password_hint: t.f("settings.password_hint", &[&MIN_PASSWORD]),
        },
    )
}

fn said(t: super::i18n::Tr, r: Refused) -> Message {
    Message {
        ok: false,
        text: t.s(r.id).to_owned(),
        detail: r.detail,
    }
}

pub async fn show(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
) -> Page {
    page(&c, &headers, &cur, None).await
}

#[derive(Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    csrf: String,
    /// Present when the box is ticked.
    api_enabled: Option<String>,
    #[serde(default)]
    user: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    repeat_password: String,
    #[serde(default)]
    session_seconds: String,
    #[serde(default)]
    centre_url: String,
    #[serde(default)]
    trusted_keys: String,
    /// The current API password: every change of settings asks for it again.
    #[serde(default)]
    current_password: String,
}

/// The file's text with the form's values put in; what changed, by key.
fn edit(
    text: &str,
    f: &SettingsForm,
    hash: Option<String>,
) -> Result<(String, Vec<&'static str>), Refused> {
    use toml_edit::{value, Array, DocumentMut, Item, Table};
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| Refused::with("settings.unreadable", e))?;
    let mut changed = Vec::new();
    let section = |doc: &mut DocumentMut, name: &str| -> Result<(), Refused> {
        if !doc.contains_key(name) {
            doc.insert(name, Item::Table(Table::new()));
        }
        match doc.get(name) {
            Some(Item::Table(_)) => Ok(()),
            _ => Err(Refused::with("settings.unreadable", format!("[{name}]"))),
        }
    };
    let old: Config = toml::from_str(text).map_err(|e| Refused::with("settings.unreadable", e))?;
    let enabled = f.api_enabled.is_some();
    let user = f.user.trim();
    if user.is_empty()
        || user.chars().count() > 64
        || user.contains(':')
        || user.chars().any(char::is_control)
    {
        return Err(Refused::new("settings.bad_user"));
    }
    let seconds: f64 = f
        .session_seconds
        .trim()
        .parse()
        .map_err(|_| Refused::new("settings.bad_lease"))?;
    section(&mut doc, "api")?;
    section(&mut doc, "leases")?;
    section(&mut doc, "centre")?;
    section(&mut doc, "licences")?;
    if enabled != old.api.enabled {
        doc["api"]["enabled"] = value(enabled);
        changed.push(API_ENABLED);
    }
    if user != old.api.user {
        doc["api"]["user"] = value(user);
        changed.push(API_USER);
    }
    if let Some(h) = hash {
        doc["api"]["password_hash"] = value(h);
        changed.push(API_PASSWORD);
    }
    if seconds != old.leases.session_seconds {
        doc["leases"]["session_seconds"] = value(seconds);
        changed.push("[leases] session_seconds");
    }
    let url = f.centre_url.trim();
    if url != old.centre.url.as_deref().unwrap_or("") {
        if url.is_empty() {
            if let Some(t) = doc["centre"].as_table_mut() {
                t.remove("url");
            }
        } else {
            doc["centre"]["url"] = value(url);
        }
        changed.push("[centre] url");
    }
    let keys: Vec<&str> = f
        .trusted_keys
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let old_keys: Vec<String> = old
        .licences
        .trusted_centre_keys
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    if keys != old_keys.iter().map(String::as_str).collect::<Vec<_>>() {
        let mut a = Array::new();
        for k in &keys {
            if !Path::new(k).is_absolute() {
                return Err(Refused::with("settings.key_not_absolute", k));
            }
            a.push(*k);
        }
        doc["licences"]["trusted_centre_keys"] = value(a);
        changed.push("[licences] trusted_centre_keys");
    }
    let out = doc.to_string();
    // Checked as the host would read it at start; nothing is written otherwise.
    let c: Config = toml::from_str(&out).map_err(|e| Refused::with("settings.invalid", e))?;
    c.validate()
        .map_err(|(k, m)| Refused::with("settings.invalid", format!("{k}: {m}")))?;
    c.check()
        .map_err(|e| Refused::with("settings.invalid", e))?;
    for k in &c.licences.trusted_centre_keys {
        let mut t = crate::licence::TrustStore::default();
        t.add_file(k)
            .map_err(|e| Refused::with("settings.bad_key_file", format!("{}: {e}", k.display())))?;
    }
    Ok((out, changed))
}

/// What a save did: the keys written, and the credentials to apply if they changed.
struct Saved {
    changed: Vec<&'static str>,
    /// The config as `keybridge serve` would read it now (file and variables).
    effective: Config,
    /// The effective user and password hash, when the file's credentials changed.
    credentials: Option<(String, PasswordHash)>,
}

/// Writes the form to the file and reads back what a start would see. Blocking: PBKDF2 for a
/// new password, file I/O.
fn save_file(path: &Path, f: &SettingsForm) -> Result<Saved, Refused> {
    let hash = (!f.new_password.is_empty()).then(|| PasswordHash::new(&f.new_password).to_string());
    let (text, _) = read(path)?;
    let (out, changed) = edit(&text, f, hash)?;
    if !changed.is_empty() {
        crate::store::atomic::write(path, out.as_bytes(), 0o640).map_err(|e| {
            Refused::with("settings.unwritable", format!("{}: {e}", path.display()))
        })?;
    }
    let effective = Config::load(path, false).map_err(|e| Refused::with("settings.invalid", e))?;
    let credentials = if changed.contains(&API_USER) || changed.contains(&API_PASSWORD) {
        let hash = match &effective.api.password_hash {
            Some(h) => PasswordHash::parse(h).map_err(|e| Refused::with("settings.invalid", e))?,
            None => PasswordHash::new("admin"),
        };
        Some((effective.api.user.clone(), hash))
    } else {
        None
    };
    Ok(Saved {
        changed,
        effective,
        credentials,
    })
}

/// One save at a time: each reads the file, edits and writes it, then applies it, so two
/// browsers saving at once can neither lose one's change nor leave the running values those
/// of the file's older version.
static SAVING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Writes the form and applies what can change while serving: the API switch, and the
/// credentials (every console session ends; the returned token is this browser's new one).
/// Blocking: called on the blocking pool.
fn save_and_apply(c: &Console, f: &SettingsForm) -> Result<(Saved, Option<String>), Refused> {
    let _one = SAVING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let saved = save_file(&c.config_path, f)?;
    if saved.changed.is_empty() {
        return Ok((saved, None));
    }
    c.api
        .api_enabled
        .store(saved.effective.api.enabled, Ordering::Relaxed);
    let fresh = saved.credentials.as_ref().map(|(user, hash)| {
        c.api.auth.set_credentials(user.clone(), hash.clone());
        c.sessions.end_all();
        c.sessions.create(user)
    });
    Ok((saved, fresh))
}

pub async fn save(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
    Form(f): Form<SettingsForm>,
) -> Page {
    check_csrf(&cur, &f.csrf)?;
    let t = tr(&headers);
    // The current password, through the API's login check (and its throttle).
    let basic = format!(
        "Basic {}",
        crate::crypto::b64(format!("{}:{}", cur.user, f.current_password).as_bytes())
    );
    if c.api.auth.login(cur.from, Some(basic.as_bytes())).await != Login::Ok {
        c.record(
            &cur,
            "settings".into(),
            "refused: wrong current password".into(),
        )
        .await;
        return page(
            &c,
            &headers,
            &cur,
            Some(Message::error(t.s("settings.wrong_password"))),
        )
        .await;
    }
    let refused = if f.new_password != f.repeat_password {
        Some(Refused::new("settings.mismatch"))
    } else if !f.new_password.is_empty()
        && !(MIN_PASSWORD..=MAX_PASSWORD).contains(&f.new_password.chars().count())
    {
        Some(Refused::new("settings.short_password"))
    } else {
        None
    };
    if let Some(r) = refused {
        let m = said(t, r);
        c.record(&cur, "settings".into(), m.outcome()).await;
        return page(&c, &headers, &cur, Some(m)).await;
    }
    let console = c.clone();
    let done = tokio::task::spawn_blocking(move || save_and_apply(&console, &f))
        .await
        .map_err(|e| ConsoleError::Internal(e.to_string()))?;
    let (saved, fresh) = match done {
        Ok(s) => s,
        Err(r) => {
            let m = said(t, r);
            c.record(&cur, "settings".into(), m.outcome()).await;
            return page(&c, &headers, &cur, Some(m)).await;
        }
    };
    if saved.changed.is_empty() {
        c.record(&cur, "settings".into(), "nothing changed".into())
            .await;
        return page(
            &c,
            &headers,
            &cur,
            Some(Message::ok(t.s("settings.unchanged"))),
        )
        .await;
    }
    let (now, later): (Vec<&str>, Vec<&str>) = saved.changed.iter().partition(|k| LIVE.contains(k));
    let mut text = t.f("settings.saved", &[&saved.changed.join(", ")]);
    if !now.is_empty() {
        text.push(' ');
        text.push_str(&t.f("settings.applied", &[&now.join(", ")]));
    }
    if !later.is_empty() {
        text.push(' ');
        text.push_str(&t.f("settings.after_restart", &[&later.join(", ")]));
    }
    let env = overridden(&saved.changed);
    if !env.is_empty() {
        text.push(' ');
        text.push_str(&t.f("settings.env_overrides", &[&env.join(", ")]));
    }
    c.record(
        &cur,
        "settings".into(),
        format!(
            "ok: {}; applied now: {}; after a restart: {}",
            saved.changed.join(", "),
            if now.is_empty() {
                "-".into()
            } else {
                now.join(", ")
            },
            if later.is_empty() {
                "-".into()
            } else {
                later.join(", ")
            },
        ),
    )
    .await;
    let Some(token) = fresh else {
        return page(&c, &headers, &cur, Some(Message::ok(text))).await;
    };
    let Some(new) = c.sessions.get(&token, cur.from, true) else {
        return Err(ConsoleError::NotLoggedIn);
    };
    let mut r = page(&c, &headers, &new, Some(Message::ok(text))).await?;
    r.headers_mut().append(
        header::SET_COOKIE,
        c.set_cookie(SESSION_COOKIE, Some(&token)),
    );
    Ok(r)
}
