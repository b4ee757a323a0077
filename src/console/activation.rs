//! The Activation page: a code onto this machine or an attached blank USB key, update and
//! restore of every licence, and offline activation (the request file out, the licence file
//! in — the same upload restores a saved licence file). Each says the centre's answer in words.

use super::login::CsrfOnly;
use super::pages::{check_csrf, chrome, Page};
use super::session::Current;
use super::words::{self, Message};
use super::{html, tr, Console};
use crate::api::Refusal;
use crate::host::ActivationInput;
use askama::Template;
use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::Form;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Template)]
#[template(path = "activation.html")]
struct ActivationPage {
    c: super::pages::Chrome,
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

pub async fn page(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
) -> Page {
    activation_page(&c, &headers, &cur, None).await
}

#[derive(Deserialize)]
pub struct ActivateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
    /// `computer`, or the serial of an attached blank.
    #[serde(default)]
    target: String,
    #[serde(default)]
    itn: String,
    #[serde(default)]
    iec: String,
}

impl ActivateForm {
    /// The target as the audit log records it.
    fn target(&self) -> String {
        self.target.chars().take(24).collect()
    }
}

/// The activation form's values, checked as the API checks them.
fn activation_input(f: &ActivateForm, t: super::i18n::Tr) -> Result<ActivationInput, Message> {
    let code = f.code.trim();
    if code.is_empty() || code.len() > 64 {
        return Err(Message::error(t.s("activation.bad_code")));
    }
    let blank_key_no = match f.target.as_str() {
        "computer" => None,
        s => Some(
            s.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Message::error(t.s("activation.bad_target")))?,
        ),
    };
    let bad = |id: &str, e: String| Message {
        ok: false,
        text: t.s(id).to_owned(),
        detail: Some(e),
    };
    let itn = match f.itn.trim() {
        "" => None,
        s => Some(
            crate::licence::Itn::try_from(s.to_owned())
                .map_err(|e| bad("activation.bad_itn", e.to_string()))?,
        ),
    };
    let iec = match f.iec.trim() {
        "" => None,
        s => Some(
            crate::licence::Iec::try_from(s.to_owned())
                .map_err(|e| bad("activation.bad_iec", e.to_string()))?,
        ),
    };
    Ok(ActivationInput {
        code: code.to_owned(),
        itn,
        iec,
        blank_key_no,
    })
}

/// Activates a code at the centre, under the API's failed-activation allowance (counted by
/// the browser's address).
pub async fn activate(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
    Form(f): Form<ActivateForm>,
) -> Page {
    check_csrf(&cur, &f.csrf)?;
    let t = tr(&headers);
    let m = match activation_input(&f, t) {
        Ok(input) => match crate::api::activate_counted(&c.api, cur.from, input).await {
            Ok(e) => Message::ok(t.f("activation.done", &[&e.key_no])),
            Err(Refusal::Host(e)) => Message::host(t, &e),
            Err(Refusal::Throttled(r)) => words::throttled(t, &r),
        },
        Err(m) => m,
    };
    c.record(&cur, format!("activate onto {}", f.target()), m.outcome())
        .await;
    activation_page(&c, &headers, &cur, Some(m)).await
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
        let code = crate::centre::ActivationCode::parse(&input.code).map_err(|e| Message {
            ok: false,
            text: t.s("activation.bad_code_format").into(),
            detail: Some(e.to_string()),
        })?;
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
                    .map_err(|e| Message::host(t, &e))?;
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
        serde_json::to_vec_pretty(&request).map_err(|e| Message {
            ok: false,
            text: t.s("err.internal").into(),
            detail: Some(e.to_string()),
        })
    }
    .await;
    let action = format!("offline request for {}", f.target());
    match made {
        Ok(bytes) => {
            c.record(&cur, action, "ok".into()).await;
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
        Err(m) => {
            c.record(&cur, action, m.outcome()).await;
            activation_page(&c, &headers, &cur, Some(m)).await
        }
    }
}

/// Offline activation, second half (and restore from a saved file): installs a licence file
/// uploaded from the browser, verified by the host before anything is written. The body is
/// bounded ([`super::MAX_BODY`]) before any of it is read.
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
            Err(e) => return Ok(e.into_response()),
        };
        let name = field.name().unwrap_or("").to_owned();
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e) => return Ok(e.into_response()),
        };
        match name.as_str() {
            "csrf" => csrf = Some(String::from_utf8_lossy(&bytes).into_owned()),
            "licence" => file = Some(bytes.to_vec()),
            _ => {}
        }
    }
    check_csrf(&cur, csrf.as_deref().unwrap_or(""))?;
    let m = match file.filter(|f| !f.is_empty()) {
        Some(doc) => match c.api.host.install_licence(doc).await {
            Ok(terms) => Message::ok(t.f("activation.imported", &[&terms.key_no])),
            Err(e) => Message::host(t, &e),
        },
        None => Message::error(t.s("activation.no_file")),
    };
    c.record(&cur, "install licence file".into(), m.outcome())
        .await;
    activation_page(&c, &headers, &cur, Some(m)).await
}

/// Update and restore: asks the centre for every licence's current version and restores
/// those whose machine changed.
pub async fn update(
    State(c): State<Arc<Console>>,
    Extension(cur): Extension<Current>,
    headers: HeaderMap,
    Form(f): Form<CsrfOnly>,
) -> Page {
    check_csrf(&cur, &f.csrf)?;
    let t = tr(&headers);
    let (m, outcome) = match c.api.host.update_licences().await {
        Ok(u) => {
            let text = t.f("activation.updated", &[&u.licences.len(), &u.failed]);
            let outcome = format!("{} licence(s), {} refused", u.licences.len(), u.failed);
            let m = if u.failed == 0 {
                Message::ok(text)
            } else {
                Message::error(text)
            };
            (m, outcome)
        }
        Err(e) => {
            let m = Message::host(t, &e);
            let o = m.outcome();
            (m, o)
        }
    };
    c.record(&cur, "update and restore all licences".into(), outcome)
        .await;
    activation_page(&c, &headers, &cur, Some(m)).await
}
