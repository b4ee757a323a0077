//! What every page shares (its frame, the CSRF check, the embedded assets), and the pages that
//! mostly show: Sessions (with release), Devices, System and the documentation.

use super::session::{self, Current};
use super::words::Message;
use super::{html, tr, Console, ConsoleError};
use askama::Template;
use axum::extract::{Extension, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use std::sync::Arc;

pub type Page = Result<Response, ConsoleError>;

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

pub fn chrome(headers: &HeaderMap, cur: &Current, nav: &'static str, here: &str) -> Chrome {
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
pub fn check_csrf(cur: &Current, sent: &str) -> Result<(), ConsoleError> {
    if session::same(&cur.csrf, sent) {
        Ok(())
    } else {
        tracing::warn!(from = %cur.from, "console: a form without the session's CSRF token");
        Err(ConsoleError::Csrf)
    }
}

/// A date as the pages show it.
pub fn date(t: Option<crate::time::Timestamp>) -> String {
    t.map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

// ---------------------------------------------------------------- assets

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

// ---------------------------------------------------------------- sessions

#[derive(Template)]
#[template(path = "sessions.html")]
struct SessionsPage {
    c: Chrome,
    sessions: Vec<crate::host::Session>,
    total: usize,
    connections: Vec<crate::host::Connection>,
}

async fn sessions_page(
    c: &Console,
    headers: &HeaderMap,
    cur: &Current,
    message: Option<Message>,
) -> Page {
    let (sessions, total) = c.api.host.sessions(0, super::live::LISTED);
    let (connections, _) = c.api.host.connections(0, super::live::LISTED);
    let mut ch = chrome(headers, cur, "sessions", "/sessions");
    ch.message = message;
    html(
        StatusCode::OK,
        &SessionsPage {
            c: ch,
            sessions,
            total,
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
    #[serde(default)]
    csrf: String,
    #[serde(default)]
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
    let m = match c.api.host.close_session(&f.id) {
        Ok(_) => Message::ok(t.s("sessions.released")),
        Err(e) => Message::host(t, &e),
    };
    let id: String = f.id.chars().take(64).collect();
    c.record(&cur, format!("release session {id:?}"), m.outcome())
        .await;
    sessions_page(&c, &headers, &cur, Some(m)).await
}

// ---------------------------------------------------------------- devices

/// One USB key as the Devices page shows it.
pub struct DeviceView {
    pub d: crate::host::DeviceRow,
    pub state: String,
}

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    c: Chrome,
    devices: Vec<DeviceView>,
}

pub async fn devices(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
) -> Page {
    let t = tr(&headers);
    let devices = c
        .api
        .host
        .devices()
        .into_iter()
        .map(|d| DeviceView {
            state: super::words::device_state(t, &d),
            d,
        })
        .collect();
    html(
        StatusCode::OK,
        &DevicesPage {
            c: chrome(&headers, &cur, "devices", "/devices"),
            devices,
        },
    )
}

// ---------------------------------------------------------------- system, docs

/// The documentation served inside the console (the binary carries it: no network needed).
const DOCS: [(&str, &str, &str); 5] = [
    (
        "console",
        "doc.console",
        include_str!("../../docs/console.md"),
    ),
    (
        "operations",
        "doc.operations",
        include_str!("../../docs/operations.md"),
    ),
    (
        "configuration",
        "doc.configuration",
        include_str!("../../docs/configuration.md"),
    ),
    ("api", "doc.api", include_str!("../../docs/api.md")),
    (
        "security",
        "doc.security",
        include_str!("../../docs/security.md"),
    ),
];

#[derive(Template)]
#[template(path = "system.html")]
struct SystemPage {
    c: Chrome,
    version: &'static str,
    info: Vec<(String, String, String)>,
    uptime: String,
    public_key: String,
    fingerprint: String,
    docs: Vec<(&'static str, &'static str)>,
    audit: Vec<super::audit::Entry>,
}

pub async fn system(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
) -> Page {
    let t = tr(&headers);
    let host = c.api.host.clone();
    let audit = c.audit.clone();
    // Reads /proc, the network interfaces and (once) the audit file: blocking.
    let (info, audit) = tokio::task::spawn_blocking(move || {
        (
            crate::host::sysinfo::collect(host.started(), host.computer_id()),
            audit.recent(),
        )
    })
    .await
    .map_err(|e| ConsoleError::Internal(e.to_string()))?;
    let json = serde_json::to_value(crate::api::wire::ServerInfoJson::from(info))
        .map_err(|e| ConsoleError::Internal(e.to_string()))?;
    let info = match json {
        serde_json::Value::Object(m) => m
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (t.field(&k).into_owned(), k, v)
            })
            .collect(),
        _ => Vec::new(),
    };
    let up = (crate::time::now() - c.api.host.started())
        .num_seconds()
        .max(0);
    let clock = format!("{:02}:{:02}:{:02}", up / 3600 % 24, up / 60 % 60, up % 60);
    let uptime = t.f("system.uptime_value", &[&(up / 86400), &clock]);
    let key = c.api.signer.public_key();
    html(
        StatusCode::OK,
        &SystemPage {
            c: chrome(&headers, &cur, "system", "/system"),
            version: crate::VERSION,
            info,
            uptime,
            public_key: key.pem().to_owned(),
            fingerprint: key.fingerprint().to_owned(),
            docs: DOCS.iter().map(|(n, id, _)| (*n, *id)).collect(),
            audit,
        },
    )
}

#[derive(Template)]
#[template(path = "doc.html")]
struct DocPage {
    c: Chrome,
    title: String,
    /// The document as HTML, from [`render_doc`].
    body: &'static str,
}

/// The embedded documents as HTML, rendered once.
static RENDERED: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| DOCS.iter().map(|(_, _, md)| render_doc(md)).collect());

/// Markdown to HTML (pulldown-cmark). Raw HTML in a document is shown as text; a link to
/// another embedded document stays in the console; any other link, and every image (the
/// screenshots are not embedded), becomes its text — a console page never points off the
/// machine.
fn render_doc(md: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
    // Whether each open link was kept, so its end is kept or dropped alike.
    let mut links: Vec<bool> = Vec::new();
    let events = Parser::new_ext(md, Options::ENABLE_TABLES).filter_map(|ev| match ev {
        Event::Html(t) | Event::InlineHtml(t) => Some(Event::Text(t)),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => match local_doc(&dest_url) {
            Some(to) => {
                links.push(true);
                Some(Event::Start(Tag::Link {
                    link_type,
                    dest_url: to.into(),
                    title,
                    id,
                }))
            }
            None => {
                links.push(false);
                None
            }
        },
        Event::End(TagEnd::Link) => links.pop().unwrap_or(false).then_some(ev),
        Event::Start(Tag::Image { .. }) | Event::End(TagEnd::Image) => None,
        other => Some(other),
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, events);
    out
}

/// `/docs/NAME` for a link to an embedded document (`security.md`, `docs/api.md#errors`).
fn local_doc(url: &str) -> Option<String> {
    let (path, anchor) = url.split_once('#').unwrap_or((url, ""));
    let name = path.rsplit('/').next()?.strip_suffix(".md")?;
    let known = DOCS.iter().any(|(n, _, _)| *n == name);
    let anchor_ok = anchor
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    (known && anchor_ok).then(|| match anchor {
        "" => format!("/docs/{name}"),
        a => format!("/docs/{name}#{a}"),
    })
}

/// One of the embedded documents.
pub async fn doc(
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Page {
    let Some(i) = DOCS.iter().position(|(n, _, _)| *n == name) else {
        return Err(ConsoleError::NotFound);
    };
    let (n, id, _) = DOCS[i];
    let ch = chrome(&headers, &cur, "system", &format!("/docs/{n}"));
    let title = ch.t.s(id).to_owned();
    html(
        StatusCode::OK,
        &DocPage {
            c: ch,
            title,
            body: &RENDERED[i],
        },
    )
}

#[cfg(test)]
mod doc_tests {
    use super::*;

    #[test]
    fn documents_render_without_raw_html_or_links_off_the_machine() {
        let html = render_doc(
            "# T\n\n<script>alert(1)</script>\n\nSee [security](security.md#limits), \
             [spec](https://example.com/x), [up](../README.md) and ![shot](images/a.png).\n\n\
             | a | b |\n|---|---|\n| 1 | 2 |\n",
        );
        assert!(html.contains("<h1>T</h1>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script"), "{html}");
        assert!(
            html.contains(r#"<a href="/docs/security#limits">security</a>"#),
            "{html}"
        );
        assert!(
            !html.contains("example.com") && !html.contains("README"),
            "{html}"
        );
        assert!(html.contains("spec") && html.contains("up") && html.contains("shot"));
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("<table>"), "{html}");
        // Every embedded document renders, and none points off the machine.
        for doc in RENDERED.iter() {
            assert!(
                !doc.contains("<img") && !doc.contains("href=\"http"),
                "{doc}"
            );
        }
    }
}
