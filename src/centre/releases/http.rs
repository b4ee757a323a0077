//! The release API over HTTP (`docs/releases.md`):
//! - `POST /centre/v1/releases/available`: the seed's release list, for a KEY;
//! - `GET /centre/v1/releases/download/{token}/{name}`: a file, by a link from that list —
//!   streamed, with `Content-Length`, `ETag` and one byte range; its body is not signed (the
//!   signed list carries its size, MD5 and SHA-256), everything else is;
//! - vendor (Basic login): `POST /centre/v1/releases` (multipart upload, its own size and
//!   time limits), `GET /centre/v1/releases`, `POST /centre/v1/releases/{id}/withdraw`.

use super::db::Release;
use super::link::Link;
use super::version::Version;
use super::{file_name_ok, type_ok, ReleaseError, ReleaseMeta, Releases};
use crate::centre::http::{bad, normalise, plain_error, proven, CentreReply, CentreState, Peer};
use crate::centre::ActivationCode;
use crate::web::login::require_login;
use crate::web::server::{request_limits, RequestLimits};
use crate::web::signing::StreamedUnsigned;
use axum::body::{Body, Bytes};
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, ReadBuf};

impl From<ReleaseError> for CentreReply {
    fn from(e: ReleaseError) -> Self {
        use StatusCode as S;
        let (status, reason) = match &e {
            ReleaseError::Invalid(_) => (S::BAD_REQUEST, "invalid"),
            ReleaseError::Exists { .. } => (S::CONFLICT, "release_exists"),
            ReleaseError::Unknown(_) => (S::NOT_FOUND, "unknown_release"),
            ReleaseError::UnknownProduct(_) => (S::NOT_FOUND, "unknown_product"),
            ReleaseError::BadLink => (S::FORBIDDEN, "bad_link"),
            ReleaseError::Disabled => (S::NOT_FOUND, "releases_disabled"),
            ReleaseError::Range { .. } => (S::RANGE_NOT_SATISFIABLE, "range_not_satisfiable"),
            ReleaseError::Io(_) | ReleaseError::Db(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
        };
        let message = if status.is_server_error() {
            // File paths and the database's own words stay in the log.
            tracing::error!("releases: {e}");
            "internal error".to_owned()
        } else {
            e.to_string()
        };
        CentreReply::new(status, json!({"error": message, "reason": reason}))
    }
}

/// The request of the release list, as the seed shows it. Every field is a string.
#[derive(Debug, Default, utoipa::ToSchema)]
#[allow(non_snake_case)]
pub struct ReleaseQuery {
    /// The installed version; only newer releases are listed. Empty or absent: none installed.
    #[schema(example = "4.0.4.9")]
    pub INSTALLED_VERSION: Option<String>,
    /// The distribution identifier (required).
    #[schema(example = "PT40_UT_CRM3")]
    pub TYPE: String,
    /// The configuration name (required).
    #[schema(example = "КомплекснаяАвтоматизация_CRM")]
    pub CONF: String,
    /// The configuration version (required).
    #[schema(example = "2.5.8.191")]
    pub CONF_VERSION: String,
    /// The licence's activation code (required).
    #[schema(example = "4345-9320-2035-7421-5369")]
    pub KEY: String,
    /// `Y`: also releases not tested with CONF_VERSION. `N`, empty or absent: only tested ones.
    #[schema(example = "N")]
    pub SHOW_UNTESTED: Option<String>,
    /// `Y`: the links count a completed download (once per key, release and day).
    #[schema(example = "Y")]
    pub COUNT_DOWNLOADS: Option<String>,
}

const QUERY_FIELDS: [&str; 7] = [
    "INSTALLED_VERSION",
    "TYPE",
    "CONF",
    "CONF_VERSION",
    "KEY",
    "SHOW_UNTESTED",
    "COUNT_DOWNLOADS",
];

/// Longest value of any request field.
const MAX_FIELD: usize = 256;

fn flag(field: &str, v: Option<&str>) -> Result<bool, ReleaseError> {
    match v.unwrap_or("") {
        "Y" => Ok(true),
        "N" | "" => Ok(false),
        _ => Err(ReleaseError::Invalid(format!(
            "{field} must be \"Y\" or \"N\""
        ))),
    }
}

impl ReleaseQuery {
    /// Reads the body field by field, so every refusal names the field.
    fn parse(body: &[u8]) -> Result<(ReleaseQuery, bool, bool), ReleaseError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ReleaseError::Invalid(format!("the body is not JSON (UTF-8): {e}")))?;
        let Value::Object(mut map) = v else {
            return Err(ReleaseError::Invalid(
                "the body must be a JSON object with the fields INSTALLED_VERSION, TYPE, CONF, CONF_VERSION, KEY, SHOW_UNTESTED and COUNT_DOWNLOADS".into(),
            ));
        };
        let mut get = |name: &str| -> Result<Option<String>, ReleaseError> {
            match map.remove(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.chars().count() > MAX_FIELD => Err(
                    ReleaseError::Invalid(format!("{name} is longer than {MAX_FIELD} characters")),
                ),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(ReleaseError::Invalid(format!("{name} must be a string"))),
            }
        };
        let required = |name: &str, v: Option<String>| {
            v.filter(|s| !s.trim().is_empty())
                .ok_or_else(|| ReleaseError::Invalid(format!("{name} is required")))
        };
        let installed = get("INSTALLED_VERSION")?;
        let type_ = required("TYPE", get("TYPE")?)?;
        let conf = required("CONF", get("CONF")?)?;
        let conf_version = required("CONF_VERSION", get("CONF_VERSION")?)?;
        let key = required("KEY", get("KEY")?)?;
        let untested = get("SHOW_UNTESTED")?;
        let count = get("COUNT_DOWNLOADS")?;
        if let Some(k) = map.keys().next() {
            let known = QUERY_FIELDS.join(", ");
            return Err(ReleaseError::Invalid(format!(
                "unknown field {k:?}; the fields are {known}"
            )));
        }
        if !type_ok(&type_) {
            return Err(ReleaseError::Invalid(
                "TYPE must be 1-64 of A-Z, a-z, 0-9, '_', '.' and '-'".into(),
            ));
        }
        if let Some(v) = installed.as_deref().filter(|v| !v.is_empty()) {
            Version::parse(v)
                .map_err(|e| ReleaseError::Invalid(format!("INSTALLED_VERSION: {e}")))?;
        }
        Version::parse(&conf_version)
            .map_err(|e| ReleaseError::Invalid(format!("CONF_VERSION: {e}")))?;
        let show_untested = flag("SHOW_UNTESTED", untested.as_deref())?;
        let count_downloads = flag("COUNT_DOWNLOADS", count.as_deref())?;
        Ok((
            ReleaseQuery {
                INSTALLED_VERSION: installed,
                TYPE: type_,
                CONF: conf,
                CONF_VERSION: conf_version,
                KEY: key,
                SHOW_UNTESTED: untested,
                COUNT_DOWNLOADS: count,
            },
            show_untested,
            count_downloads,
        ))
    }
}

/// One file of a listed release.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModuleFile {
    pub name: String,
    pub size: u64,
    /// A download link: time-limited, bound to the KEY.
    pub url: String,
    /// Lower-case hex MD5 of the file.
    pub md5: String,
    /// Lower-case hex SHA-256 of the file (also its `ETag`).
    pub sha256: String,
}

/// A listed release, with the seed's fields.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Module {
    pub release_id: u64,
    /// The release's version.
    #[schema(example = "4.0.4.11")]
    pub uniqid: String,
    /// The release's version (the same as `uniqid`).
    pub version: String,
    pub developer: String,
    /// The lowest configuration version the release works with.
    pub min_1c_version: String,
    /// The product series (KeyID) the release is licensed under.
    pub lic_product_id: String,
    /// The functionality flag (0-31) the licence must have, or null.
    pub lic_feature_id: Option<u32>,
    pub name: String,
    pub description: String,
    pub promo_link: String,
    pub changelog: String,
    /// Bytes of all its files together.
    pub size: u64,
    /// The link of its first file, the main distribution.
    pub download_link: String,
    pub files: Vec<ModuleFile>,
    /// When it was published (RFC 3339, UTC).
    pub published: String,
    /// Whether it was tested with the asked CONF_VERSION.
    pub tested: bool,
}

/// The release list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReleaseList {
    pub modules: Vec<Module>,
    /// Empty, or why fewer releases are listed than the KEY might expect (support ended).
    pub result: String,
}

/// A name as one URL path segment (RFC 3986 unreserved characters kept).
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The scheme and authority links start with: the configured public URL, or this request's
/// `Host` when it is a plain host name or address (anything else gives relative links).
fn link_base(r: &Releases, headers: &HeaderMap) -> String {
    if let Some(u) = &r.settings.public_url {
        return u.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                })
        });
    match host {
        Some(h) => format!("{}://{h}", r.settings.scheme),
        None => String::new(),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Lists the releases a KEY's licence covers.
///
/// Only releases of the TYPE and CONF asked, licensed under the KEY's product series (and
/// feature, if any), newer than INSTALLED_VERSION, not below their minimum configuration
/// version, tested with CONF_VERSION unless SHOW_UNTESTED is `Y`, and published before the
/// licence's support ended. Oldest first. A KEY that is not an activated, unrevoked
/// activation code of this centre is refused with one answer (403 `unknown_key`), and
/// such failures are throttled like every failed proof.
#[utoipa::path(post, path = "/centre/v1/releases/available", tag = "releases",
    request_body(content = ReleaseQuery, content_type = "application/json"),
    responses(
        (status = 200, description = "The releases available to the KEY", body = ReleaseList),
        (status = 400, description = "A field is missing or malformed; the error names it", body = crate::centre::openapi::ErrorBody),
        (status = 403, description = "The KEY is not valid for releases (unknown, not activated, or revoked)", body = crate::centre::openapi::ErrorBody),
        (status = 429, description = "Too many failed KEYs from this address or for this KEY", body = crate::centre::openapi::ErrorBody),
    ))]
pub async fn available(
    State(st): State<Arc<CentreState>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ReleaseList>, CentreReply> {
    let r = st.centre.releases()?;
    let (q, show_untested, count) = ReleaseQuery::parse(&body)?;
    let code = ActivationCode::parse(&q.KEY).map_err(|e| {
        bad(format!(
            "KEY must be the licence's activation code (20 digits, e.g. 4345-9320-2035-7421-5369): {e}"
        ))
    })?;
    let lic = proven(
        &st,
        peer,
        "releases",
        &code,
        st.centre.release_licence(&code),
    )
    .await?;
    let installed = q
        .INSTALLED_VERSION
        .as_deref()
        .filter(|v| !v.is_empty())
        .map(Version::parse)
        .transpose()
        .map_err(bad)?;
    let conf_version = Version::parse(&q.CONF_VERSION).map_err(bad)?;
    let now = crate::time::now();
    let support_over = lic.support_end.filter(|end| *end < now);
    let mut list: Vec<(Version, Release, bool)> = Vec::new();
    for rel in st.centre.listed_releases(&q.TYPE, &lic.key_id).await? {
        let Ok(v) = Version::parse(&rel.meta.version) else {
            continue;
        };
        let m = &rel.meta;
        let tested = m
            .tested_conf_versions
            .iter()
            .filter_map(|t| Version::parse(t).ok())
            .any(|t| t == conf_version);
        let floor_ok = m.min_conf_version.is_empty()
            || Version::parse(&m.min_conf_version).is_ok_and(|min| conf_version >= min);
        let covered = m
            .lic_feature_id
            .is_none_or(|f| lic.flags & (1u32 << f) != 0);
        let newer = installed.as_ref().is_none_or(|i| v > *i);
        let in_support = lic.support_end.is_none_or(|end| rel.published <= end);
        if m.conf == q.CONF
            && covered
            && newer
            && floor_ok
            && in_support
            && (tested || show_untested)
        {
            list.push((v, rel, tested));
        }
    }
    list.sort_by(|a, b| a.0.cmp(&b.0));
    let base = link_base(r, &headers);
    let expires = unix_now().saturating_add(r.settings.link_ttl.as_secs());
    let key_tag = r.link_key().key_tag(code.digits());
    let modules = list
        .into_iter()
        .map(|(_, rel, tested)| {
            let files: Vec<ModuleFile> = rel
                .files
                .iter()
                .enumerate()
                .map(|(pos, f)| {
                    let token = r.link_key().make(&Link {
                        release_id: rel.id,
                        position: u16::try_from(pos).unwrap_or(u16::MAX),
                        expires,
                        key_tag,
                        count,
                    });
                    ModuleFile {
                        name: f.name.clone(),
                        size: f.size,
                        url: format!(
                            "{base}/centre/v1/releases/download/{token}/{}",
                            path_segment(&f.name)
                        ),
                        md5: f.md5.clone(),
                        sha256: f.sha256.clone(),
                    }
                })
                .collect();
            let m = rel.meta;
            Module {
                release_id: rel.id,
                uniqid: m.version.clone(),
                version: m.version,
                developer: m.developer,
                min_1c_version: m.min_conf_version,
                lic_product_id: m.lic_product_id,
                lic_feature_id: m.lic_feature_id,
                name: m.name,
                description: m.description,
                promo_link: m.promo_link,
                changelog: m.changelog,
                size: files.iter().map(|f| f.size).sum(),
                download_link: files.first().map(|f| f.url.clone()).unwrap_or_default(),
                files,
                published: crate::time::format(&rel.published),
                tested,
            }
        })
        .collect();
    let result = match support_over {
        Some(end) => format!(
            "the licence's support period ended on {}: releases published after it are not listed; renew support to receive newer releases",
            end.format("%Y-%m-%d")
        ),
        None => String::new(),
    };
    Ok(Json(ReleaseList { modules, result }))
}

/// Which bytes of a file to send.
#[derive(Debug, PartialEq, Eq)]
enum Span {
    Full,
    /// First and last byte, inclusive.
    Part(u64, u64),
    Unsatisfiable,
}

/// One byte range of `Range` (RFC 9110 §14): `a-b`, `a-` or `-n`. Several ranges, another
/// unit or a malformed header get the whole file (the RFC lets a server ignore `Range`); an
/// `If-Range` that is not this file's ETag too.
fn span(headers: &HeaderMap, size: u64, etag: &str) -> Span {
    let Some(r) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Span::Full;
    };
    if let Some(ir) = headers.get(header::IF_RANGE) {
        if ir.as_bytes() != etag.as_bytes() {
            return Span::Full;
        }
    }
    let Some(spec) = r.trim().strip_prefix("bytes=") else {
        return Span::Full;
    };
    if spec.contains(',') {
        return Span::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Span::Full;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim(), b.trim()) {
        ("", n) => match num(n) {
            None => Span::Full,
            Some(0) => Span::Unsatisfiable,
            Some(_) if size == 0 => Span::Unsatisfiable,
            Some(n) => Span::Part(size.saturating_sub(n), size - 1),
        },
        (a, b) => {
            let Some(first) = num(a) else {
                return Span::Full;
            };
            let last = if b.is_empty() { None } else { num(b) };
            if !b.is_empty() && last.is_none() {
                return Span::Full;
            }
            if last.is_some_and(|l| l < first) {
                return Span::Full;
            }
            if first >= size {
                return Span::Unsatisfiable;
            }
            Span::Part(first, last.map_or(size - 1, |l| l.min(size - 1)))
        }
    }
}

/// A file's bytes on their way out; once the last byte of the file has been read, a counted
/// link counts the download (once per key, release and day). Counted by bytes, not at EOF:
/// hyper stops polling a body as soon as `Content-Length` bytes have gone.
struct Counted<R> {
    inner: R,
    left: u64,
    on_end: Option<Box<dyn FnOnce() + Send>>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let out = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = out {
            let n = (buf.filled().len() - before) as u64;
            self.left = self.left.saturating_sub(n);
            if self.left == 0 {
                if let Some(f) = self.on_end.take() {
                    f();
                }
            }
        }
        out
    }
}

/// `attachment` with the name in ASCII (others replaced) and in UTF-8 (RFC 6266).
fn disposition(name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        path_segment(name)
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// Downloads a release file by a link from the release list.
///
/// The body is the file's bytes, not signed (the signed release list gives its size, MD5 and
/// SHA-256; the `ETag` is the SHA-256). One byte range is honoured (206 with
/// `Content-Range`; 416 when it starts past the end). A link that is expired, altered, made
/// by another centre, or for a withdrawn release is refused with one answer.
#[utoipa::path(get, path = "/centre/v1/releases/download/{token}/{name}", tag = "releases",
    params(
        ("token" = String, Path, description = "The link's token"),
        ("name" = String, Path, description = "The file's name"),
        ("Range" = Option<String>, Header, description = "One byte range, e.g. bytes=1000-"),
    ),
    responses(
        (status = 200, description = "The whole file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The asked range", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 403, description = "The link is not valid", body = crate::centre::openapi::ErrorBody),
        (status = 416, description = "The range starts past the end", body = crate::centre::openapi::ErrorBody),
    ))]
pub async fn download(
    State(st): State<Arc<CentreState>>,
    Path((token, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, CentreReply> {
    let r = st.centre.releases()?;
    let link = r
        .link_key()
        .check(&token, unix_now())
        .ok_or(ReleaseError::BadLink)?;
    let file = st
        .centre
        .linked_file(link.release_id, link.position)
        .await?;
    if file.name != name {
        return Err(ReleaseError::BadLink.into());
    }
    let etag = format!("\"{}\"", file.sha256);
    let size = file.size;
    let (first, last) = match span(&headers, size, &etag) {
        Span::Full => (0, size.saturating_sub(1)),
        Span::Part(a, b) => (a, b),
        Span::Unsatisfiable => {
            let mut resp = CentreReply::from(ReleaseError::Range { size }).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
    };
    let partial = headers.contains_key(header::RANGE)
        && matches!(span(&headers, size, &etag), Span::Part(..));
    let len = if size == 0 { 0 } else { last - first + 1 };
    let mut f = tokio::fs::File::open(r.store.path(&file.sha256))
        .await
        .map_err(ReleaseError::Io)?;
    let on_disk = f.metadata().await.map_err(ReleaseError::Io)?.len();
    if on_disk != size {
        return Err(ReleaseError::Io(std::io::Error::other(format!(
            "stored file {} has {on_disk} bytes, its release lists {size}",
            file.sha256
        )))
        .into());
    }
    if first > 0 {
        f.seek(std::io::SeekFrom::Start(first))
            .await
            .map_err(ReleaseError::Io)?;
    }
    let to_end = size == 0 || last == size - 1;
    let on_end: Option<Box<dyn FnOnce() + Send>> = (link.count && to_end).then(|| {
        let st = st.clone();
        let (id, tag) = (link.release_id, link.key_tag);
        Box::new(move || {
            tokio::spawn(async move {
                if let Err(e) = st.centre.count_download(id, &tag).await {
                    tracing::warn!("release {id}: download not counted: {e}");
                }
            });
        }) as Box<dyn FnOnce() + Send>
    });
    let reader = Counted {
        inner: f.take(len),
        left: len,
        on_end,
    };
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        reader,
        64 * 1024,
    ));
    let mut resp = Response::new(body);
    *resp.status_mut() = if partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(header::CONTENT_DISPOSITION, disposition(&file.name));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if partial {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{last}/{size}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    resp.extensions_mut().insert(StreamedUnsigned);
    Ok(resp)
}

/// The upload's multipart form, for the API description.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The release (JSON, [`ReleaseMeta`]); the first part.
    #[schema(value_type = String, content_media_type = "application/json")]
    release: String,
    /// The files, in order (the first is the main distribution); each part's filename is the
    /// file's name.
    #[schema(value_type = Vec<String>, format = Binary)]
    file: Vec<String>,
}

/// Largest `release` part.
const MAX_META: usize = 256 * 1024;

fn multipart_error(e: axum::extract::multipart::MultipartError) -> CentreReply {
    let status = e.status();
    CentreReply::new(
        status,
        json!({"error": format!("the upload broke off or is malformed: {}", e.body_text()), "reason": if status == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "invalid" }}),
    )
}

/// Publishes a release: a `multipart/form-data` body with a `release` part (JSON) first, then
/// one `file` part per file. Files stream to the store, hashed on the way; nothing is
/// published unless every part arrived whole. A duplicate version is refused (409) before
/// any file is received.
#[utoipa::path(post, path = "/centre/v1/releases", tag = "vendor",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    security(("basic" = [])),
    responses(
        (status = 201, description = "Published", body = super::AdminRelease),
        (status = 400, description = "A part or field is malformed", body = crate::centre::openapi::ErrorBody),
        (status = 401, description = "Vendor credentials are required", body = crate::centre::openapi::ErrorBody),
        (status = 404, description = "Unknown product series", body = crate::centre::openapi::ErrorBody),
        (status = 409, description = "This version of this TYPE exists", body = crate::centre::openapi::ErrorBody),
        (status = 413, description = "The upload is larger than the centre takes", body = crate::centre::openapi::ErrorBody),
    ))]
pub async fn upload(
    State(st): State<Arc<CentreState>>,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Response, CentreReply> {
    let r = st.centre.releases()?;
    let mut form = form.map_err(|e| {
        bad(format!(
            "a multipart/form-data body is expected: {}",
            e.body_text()
        ))
    })?;
    let mut meta: Option<ReleaseMeta> = None;
    let mut files = Vec::new();
    while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("release") => {
                if meta.is_some() {
                    return Err(bad("the release part is given twice"));
                }
                let mut text = Vec::new();
                while let Some(c) = field.chunk().await.map_err(multipart_error)? {
                    if text.len() + c.len() > MAX_META {
                        return Err(bad(format!(
                            "the release part is larger than {MAX_META} bytes"
                        )));
                    }
                    text.extend_from_slice(&c);
                }
                let m: ReleaseMeta = serde_json::from_slice(&text)
                    .map_err(|e| bad(format!("the release part: {e}")))?;
                st.centre.check_release(&m).await?;
                meta = Some(m);
            }
            Some("file") => {
                if meta.is_none() {
                    return Err(bad("the release part must come before the files"));
                }
                let name = field.file_name().unwrap_or_default().to_owned();
                if !file_name_ok(&name) {
                    return Err(bad("each file part needs a filename: 1-255 bytes, no '/', '\\' or control characters"));
                }
                if files.len() >= super::MAX_FILES {
                    return Err(bad(format!(
                        "a release has at most {} files",
                        super::MAX_FILES
                    )));
                }
                let mut staging = r.store.stage().await.map_err(ReleaseError::Io)?;
                while let Some(c) = field.chunk().await.map_err(multipart_error)? {
                    staging.write(c).await.map_err(ReleaseError::Io)?;
                }
                files.push(staging.finish(name).await.map_err(ReleaseError::Io)?);
            }
            other => {
                return Err(bad(format!(
                    "unknown part {:?}: the parts are release (JSON) and file",
                    other.unwrap_or_default()
                )))
            }
        }
    }
    let meta = meta.ok_or_else(|| bad("the release part (JSON) is missing"))?;
    let id = st.centre.publish_release(&meta, files).await?;
    let published = st
        .centre
        .list_releases()
        .await?
        .into_iter()
        .find(|a| a.release_id == id)
        .ok_or(ReleaseError::Unknown(id))?;
    Ok((StatusCode::CREATED, Json(published)).into_response())
}

/// Every release, newest first, with download counts (completed downloads, once per key and
/// UTC day) and whether it was withdrawn.
#[utoipa::path(get, path = "/centre/v1/releases", tag = "vendor",
    security(("basic" = [])),
    responses(
        (status = 200, description = "The releases", body = ReleasesBody),
        (status = 401, description = "Vendor credentials are required", body = crate::centre::openapi::ErrorBody),
    ))]
pub async fn list(State(st): State<Arc<CentreState>>) -> Result<Json<ReleasesBody>, CentreReply> {
    Ok(Json(ReleasesBody {
        releases: st.centre.list_releases().await?,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReleasesBody {
    pub releases: Vec<super::AdminRelease>,
}

/// Withdraws a release: it is no longer listed and its links are refused; its files stay
/// (another release may share them). Withdrawing again changes nothing.
#[utoipa::path(post, path = "/centre/v1/releases/{id}/withdraw", tag = "vendor",
    params(("id" = u64, Path, description = "The release_id")),
    security(("basic" = [])),
    responses(
        (status = 200, description = "Withdrawn", body = Value),
        (status = 401, description = "Vendor credentials are required", body = crate::centre::openapi::ErrorBody),
        (status = 404, description = "No such release", body = crate::centre::openapi::ErrorBody),
    ))]
pub async fn withdraw(
    State(st): State<Arc<CentreState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, CentreReply> {
    let id: u64 = id.parse().map_err(|_| bad("the release id is a number"))?;
    let when = st.centre.withdraw_release(id).await?;
    Ok(Json(
        json!({"release_id": id, "withdrawn": crate::time::format(&when)}),
    ))
}

/// The release routes the centre's router merges (all under its usual limits); the upload
/// is in [`upload_routes`].
pub fn routes(state: &Arc<CentreState>) -> Router<Arc<CentreState>> {
    let admin = Router::new()
        .route("/centre/v1/releases/{id}/withdraw", post(withdraw))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_login::<CentreState>,
        ));
    Router::new()
        .route("/centre/v1/releases/available", post(available))
        .route("/centre/v1/releases/download/{token}/{name}", get(download))
        .merge(admin)
}

/// The vendor's release list and upload, under their own request limits: the upload's body
/// may be as large as `max_upload` and take `upload_timeout`; nothing else may.
pub fn upload_routes(state: Arc<CentreState>, limits: &RequestLimits) -> Router {
    let (max, timeout) = match state.centre.releases() {
        Ok(r) => (r.settings.max_upload, r.settings.upload_timeout),
        Err(_) => (0, limits.timeout),
    };
    let app = Router::new()
        .route("/centre/v1/releases", post(upload).get(list))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_login::<CentreState>,
        ))
        .with_state(state)
        .layer(middleware::from_fn(normalise));
    request_limits(
        app,
        RequestLimits {
            timeout,
            max_body: Some(usize::try_from(max.max(1)).unwrap_or(usize::MAX)),
            hosts: limits.hosts.clone(),
        },
        plain_error,
    )
}

#[cfg(test)]
mod tests {
    use super::{span, HeaderMap, Span};
    use axum::http::header;

    fn ask(range: &str) -> Span {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, range.parse().expect("header"));
        span(&h, 100, "\"e\"")
    }

    #[test]
    fn ranges() {
        assert_eq!(span(&HeaderMap::new(), 100, "\"e\""), Span::Full);
        assert_eq!(ask("bytes=0-9"), Span::Part(0, 9));
        assert_eq!(ask("bytes=90-"), Span::Part(90, 99));
        assert_eq!(ask("bytes=90-1000"), Span::Part(90, 99));
        assert_eq!(ask("bytes=-10"), Span::Part(90, 99));
        assert_eq!(ask("bytes=-1000"), Span::Part(0, 99));
        assert_eq!(ask("bytes=100-"), Span::Unsatisfiable);
        assert_eq!(ask("bytes=-0"), Span::Unsatisfiable);
        assert_eq!(ask("bytes=0-1,5-6"), Span::Full);
        assert_eq!(ask("bytes=9-1"), Span::Full);
        assert_eq!(ask("items=0-1"), Span::Full);
        assert_eq!(ask("bytes=x-1"), Span::Full);
        assert_eq!(ask("bytes=99999999999999999999999-"), Span::Full);
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, "bytes=5-".parse().expect("h"));
        h.insert(header::IF_RANGE, "\"other\"".parse().expect("h"));
        assert_eq!(span(&h, 100, "\"e\""), Span::Full);
        h.insert(header::IF_RANGE, "\"e\"".parse().expect("h"));
        assert_eq!(span(&h, 100, "\"e\""), Span::Part(5, 99));
    }
}

/// The release paths of the centre's API description ([`crate::centre::openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(paths(available, download, upload, list, withdraw))]
pub struct ReleasesApi;
