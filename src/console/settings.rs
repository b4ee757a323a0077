//! The Settings page: a few of the host's config keys edited in the browser. The file is
//! edited with `toml_edit`, so its comments and the keys not shown survive; the result is
//! checked as `keybridge config check` would before it is written (atomically, 0640). None
//! of these keys can change under a running server — the API's credentials, switch and lease
//! policy are fixed at start — so the page says a restart applies them.

use super::pages::{Chrome, Message};
use super::session::Current;
use super::{html, tr, Console, ConsoleError};
use crate::config::Config;
use crate::web::login::Login;
use askama::Template;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

type Page = Result<Response, ConsoleError>;

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
}

fn read(path: &Path) -> Result<(String, Values), String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let c: Config = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
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

async fn page(c: &Console, headers: &HeaderMap, cur: &Current, message: Option<Message>) -> Page {
    let path = c.config_path.clone();
    let got = tokio::task::spawn_blocking(move || read(&path))
        .await
        .map_err(|e| ConsoleError::Internal(e.to_string()))?;
    let mut ch = super::pages::chrome(headers, cur, "settings", "/settings");
    let v = match got {
        Ok((_, v)) => v,
        Err(e) => {
            ch.message = Some(Message { ok: false, text: e });
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
        },
    )
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
    csrf: String,
    /// Present when the box is ticked.
    api_enabled: Option<String>,
    user: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    repeat_password: String,
    session_seconds: String,
    #[serde(default)]
    centre_url: String,
    #[serde(default)]
    trusted_keys: String,
    /// The current API password: every change of settings asks for it again.
    current_password: String,
}

/// The file's text with the form's values put in; what changed, by key.
fn edit(
    text: &str,
    f: &SettingsForm,
    hash: Option<String>,
) -> Result<(String, Vec<&'static str>), String> {
    use toml_edit::{value, Array, DocumentMut, Item, Table};
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    let mut changed = Vec::new();
    let section = |doc: &mut DocumentMut, name: &str| -> Result<(), String> {
        if !doc.contains_key(name) {
            doc.insert(name, Item::Table(Table::new()));
        }
        match doc.get(name) {
            Some(Item::Table(_)) => Ok(()),
            _ => Err(format!("[{name}] in the config file is not a section")),
        }
    };
    let old: Config = toml::from_str(text).map_err(|e| e.to_string())?;
    let enabled = f.api_enabled.is_some();
    let user = f.user.trim();
    if user.is_empty()
        || user.len() > 64
        || user.contains(':')
        || user.chars().any(char::is_control)
    {
        return Err(
            "the user name must be 1 to 64 characters, without ':' or control characters".into(),
        );
    }
    let seconds: f64 = f
        .session_seconds
        .trim()
        .parse()
        .map_err(|_| "the lease lifetime must be a number of seconds".to_owned())?;
    section(&mut doc, "api")?;
    section(&mut doc, "leases")?;
    section(&mut doc, "centre")?;
    section(&mut doc, "licences")?;
    if enabled != old.api.enabled {
        doc["api"]["enabled"] = value(enabled);
        changed.push("[api] enabled");
    }
    if user != old.api.user {
        doc["api"]["user"] = value(user);
        changed.push("[api] user");
    }
    if let Some(h) = hash {
        doc["api"]["password_hash"] = value(h);
        changed.push("[api] password_hash");
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
                return Err(format!("trusted centre key {k:?}: give an absolute path"));
            }
            a.push(*k);
        }
        doc["licences"]["trusted_centre_keys"] = value(a);
        changed.push("[licences] trusted_centre_keys");
    }
    let out = doc.to_string();
    // Checked as the host would read it at start; nothing is written otherwise.
    let c: Config = toml::from_str(&out).map_err(|e| e.to_string())?;
    c.validate().map_err(|(k, m)| format!("{k}: {m}"))?;
    c.check()?;
    for k in &c.licences.trusted_centre_keys {
        let mut t = crate::licence::TrustStore::default();
        t.add_file(k).map_err(|e| format!("{}: {e}", k.display()))?;
    }
    Ok((out, changed))
}

pub async fn save(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<SettingsForm>,
) -> Page {
    super::pages::check_csrf(&cur, &f.csrf)?;
    let t = tr(&headers);
    let fail = |text: String| Some(Message { ok: false, text });
    // The current password, through the API's login check (and its throttle).
    let basic = format!(
        "Basic {}",
        crate::crypto::b64(format!("{}:{}", cur.user, f.current_password).as_bytes())
    );
    if c.api.auth.login(peer.ip(), Some(basic.as_bytes())).await != Login::Ok {
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
            fail(t.s("settings.wrong_password").into()),
        )
        .await;
    }
    if f.new_password != f.repeat_password {
        return page(&c, &headers, &cur, fail(t.s("settings.mismatch").into())).await;
    }
    let path = c.config_path.clone();
    let done = tokio::task::spawn_blocking(move || -> Result<Vec<&'static str>, String> {
        // PBKDF2 and file I/O: blocking work.
        let hash = (!f.new_password.is_empty())
            .then(|| crate::crypto::password::PasswordHash::new(&f.new_password).to_string());
        let (text, _) = read(&path)?;
        let (out, changed) = edit(&text, &f, hash)?;
        if !changed.is_empty() {
            crate::store::atomic::write(&path, out.as_bytes(), 0o640)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(changed)
    })
    .await
    .map_err(|e| ConsoleError::Internal(e.to_string()))?;
    let (m, outcome) = match done {
        Ok(changed) if changed.is_empty() => (
            Message {
                ok: true,
                text: t.s("settings.unchanged").into(),
            },
            "nothing changed".to_owned(),
        ),
        Ok(changed) => (
            Message {
                ok: true,
                text: format!(
                    "{} {}. {}",
                    t.s("settings.saved"),
                    changed.join(", "),
                    t.s("settings.restart")
                ),
            },
            format!("ok: {}", changed.join(", ")),
        ),
        Err(e) => (
            Message {
                ok: false,
                text: e.clone(),
            },
            format!("refused: {e}"),
        ),
    };
    c.record(&cur, "settings".into(), outcome).await;
    page(&c, &headers, &cur, Some(m)).await
}
