//! The Keys page (every licence at a glance, with filters) and a key's page (every field, its
//! sessions, its user memory).

use super::pages::{check_csrf, chrome, date, Page};
use super::session::Current;
use super::words::{self, Message};
use super::{html, tr, Console, ConsoleError};
use crate::host::{KeyKind, LicenceEntry};
use askama::Template;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Form;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

/// One row of the Keys page.
pub struct KeyRow {
    pub key_no: u64,
    pub usb: bool,
    pub product: String,
    /// `None`: workable; else why not, in words.
    pub problem: Option<String>,
    pub blank: bool,
    pub used: usize,
    /// Licences on the key and those free now; empty for a key without terms.
    pub total: String,
    pub free: String,
    pub expires: String,
    pub days_left: String,
    pub support_end: String,
}

/// What an empty date cell shows for a key that has terms.
const NONE: &str = "—";

/// Sessions a key's page lists at most (a key may hold a million; the API pages the rest).
const KEY_PAGE_SESSIONS: usize = 1000;

/// Live sessions per key: the host's counters, not a copy of every session.
fn used_by_key(c: &Console) -> HashMap<u64, usize> {
    c.api.host.sessions_per_key()
}

fn key_row(t: super::i18n::Tr, e: &LicenceEntry, used: &HashMap<u64, usize>) -> KeyRow {
    let now = crate::time::now();
    let v = e.terms.as_ref().map(|t| t.validity(now));
    let used = used.get(&e.key_no).copied().unwrap_or(0);
    let count = e.terms.as_ref().map(|t| t.licence_count as usize);
    KeyRow {
        key_no: e.key_no,
        usb: e.kind == KeyKind::Usb,
        product: e
            .terms
            .as_ref()
            .map(|t| format!("{} — {}", t.product_name, t.article_name))
            .unwrap_or_default(),
        problem: words::problem(t, e, now),
        blank: e.is_blank,
        used,
        total: count.map(|n| n.to_string()).unwrap_or_default(),
        free: count
            .map(|n| n.saturating_sub(used).to_string())
            .unwrap_or_default(),
        // A licence without an end says so; a blank key has no dates at all.
        expires: match &v {
            Some(v) if v.expire_date.is_none() => t.s("keys.no_end").to_owned(),
            v => date(v.as_ref().and_then(|v| v.expire_date)),
        },
        days_left: v
            .as_ref()
            .and_then(|v| v.days_left)
            .map(|d| d.to_string())
            .unwrap_or_default(),
        support_end: match &e.terms {
            Some(t) if t.support_end_date.is_none() => NONE.to_owned(),
            t => date(t.as_ref().and_then(|t| t.support_end_date)),
        },
    }
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    c: Chrome,
    rows: Vec<KeyRow>,
    filter: String,
}

use super::pages::Chrome;

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
    let t = tr(&headers);
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
        .map(|e| key_row(t, e, &used))
        .filter(|r| match filter {
            "ok" => r.problem.is_none(),
            "problem" => r.problem.is_some(),
            "usb" => r.usb,
            "software" => !r.usb,
            _ => true,
        })
        .collect();
    let here = match filter {
        "all" => "/keys".to_owned(),
        f => format!("/keys?show={f}"),
    };
    html(
        StatusCode::OK,
        &KeysPage {
            c: chrome(&headers, &cur, "keys", &here),
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
    /// Label, the API's name, value.
    fields: Vec<(String, String, String)>,
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
    let t = tr(headers);
    let e = c
        .api
        .host
        .licence(key_no)
        .map_err(|_| ConsoleError::NotFound)?;
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
                (t.field(&k).into_owned(), k, v)
            })
            .collect(),
        _ => Vec::new(),
    };
    let sessions = c.api.host.sessions_of_key(key_no, KEY_PAGE_SESSIONS);
    let used = used_by_key(c);
    let mut ch = chrome(headers, cur, "keys", &format!("/keys/{key_no}"));
    ch.message = message;
    html(
        StatusCode::OK,
        &KeyPage {
            c: ch,
            row: key_row(t, &e, &used),
            fields,
            sessions,
            memory,
        },
    )
}

/// A key number from the path: digits only, positive (anything else is no key, never a path).
fn key_no(s: &str) -> Result<u64, ConsoleError> {
    s.parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or(ConsoleError::NotFound)
}

pub async fn key(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
    Path(no): Path<String>,
) -> Page {
    key_page(&c, &headers, &cur, key_no(&no)?, None, None).await
}

#[derive(Deserialize)]
pub struct MemoryForm {
    #[serde(default)]
    csrf: String,
    /// `read`, `write`, `passwords`, `reset`.
    #[serde(default)]
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

/// Reads, writes, re-passwords or resets a key's user memory. Passwords and values are never
/// logged.
pub async fn memory(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
    Path(no): Path<String>,
    Form(f): Form<MemoryForm>,
) -> Page {
    check_csrf(&cur, &f.csrf)?;
    let no = key_no(&no)?;
    let t = tr(&headers);
    let host = c.api.host.clone();
    let said = |r: Result<(), crate::host::HostError>, ok: &str| match r {
        Ok(()) => Message::ok(t.s(ok)),
        Err(e) => Message::host(t, &e),
    };
    let (message, memory) = match f.action.as_str() {
        "read" => match host.memory_read(no, f.password).await {
            Ok(v) => (None, Some(v)),
            Err(e) => (Some(Message::host(t, &e)), None),
        },
        "write" => {
            let m = said(
                host.memory_write(no, f.password, f.value).await.map(|_| ()),
                "memory.written",
            );
            c.record(&cur, format!("memory write, key {no}"), m.outcome())
                .await;
            (Some(m), None)
        }
        "passwords" => {
            let change = crate::hal::PasswordChange {
                read: f.read,
                write: f.write,
                new_read: f.new_read,
                new_write: f.new_write,
            };
            let m = said(
                host.memory_set_passwords(no, change).await.map(|_| ()),
                "memory.passwords_changed",
            );
            c.record(&cur, format!("memory passwords, key {no}"), m.outcome())
                .await;
            (Some(m), None)
        }
        "reset" if f.confirm.as_deref() == Some("yes") => {
            let m = said(host.memory_reset(no).await.map(|_| ()), "memory.reset_done");
            c.record(&cur, format!("memory reset, key {no}"), m.outcome())
                .await;
            (Some(m), None)
        }
        "reset" => (Some(Message::error(t.s("memory.confirm_needed"))), None),
        _ => return Err(ConsoleError::BadRequest),
    };
    key_page(&c, &headers, &cur, no, message, memory).await
}
