//! Sessions (`/api/sessions`) and the connections they arrive on (`/api/connections`).

use super::error::ApiError;
use super::params::{Accepts, Params, Segment};
use super::reply::Reply;
use super::wire::{ConnectionJson, ConnectionList, LicenceJson, SessionJson, SessionList, Updated};
use super::AppState;
use crate::host::{Opened, SessionRequest};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;

const MAX_TEXT: usize = 1024;

/// Parameters of `POST /api/sessions` (spec §4.15).
pub const OPEN: Accepts = &[
    "KeyID",
    "ClientSessionID",
    "AppName",
    "UserName",
    "SessionStarted",
    "ComputerName",
    "InfoBaseName",
    "AccessCode",
    "KeyNo",
    "ITN",
    "IEC",
];
/// The lists' paging parameters.
pub const LIST: Accepts = &["Offset", "Limit"];

/// Entries in a list answer unless `Limit` says otherwise: a table of 100,000 sessions is not
/// one 40 MB answer by default.
pub const DEFAULT_PAGE: u64 = 1000;
/// Largest `Limit`.
pub const MAX_PAGE: u64 = 10_000;
/// Header carrying the total number of entries, so a client knows whether to ask for more.
pub const TOTAL_HEADER: &str = "x-total-count";

/// `Offset` (default 0) and `Limit` (default [`DEFAULT_PAGE`], 1 … [`MAX_PAGE`]).
fn page(p: &Params) -> Result<(usize, usize), ApiError> {
    let offset = p.number("Offset")?.unwrap_or(0);
    let limit = p.number("Limit")?.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "parameter Limit must be between 1 and {MAX_PAGE}"
        )));
    }
    Ok((
        usize::try_from(offset).unwrap_or(usize::MAX),
        usize::try_from(limit).unwrap_or(usize::MAX),
    ))
}

#[utoipa::path(get, path = "/api/sessions", tag = "api",
    description = "Live sessions, oldest first, paged.",
    params(("Offset" = Option<u64>, Query, description = "first entry (default 0)"), ("Limit" = Option<u64>, Query, description = "entries, 1-10000 (default 1000); X-Total-Count has the whole list's size")),
    security(("basic" = [])),
    responses(
        (status = 200, description = "OK", body = Value),
        (status = 401, description = "EUnauthorized: credentials required", body = super::openapi::ErrorBody),
    ))]
pub async fn list(State(st): State<Arc<AppState>>, p: Params) -> Result<Reply, ApiError> {
    let (offset, limit) = page(&p)?;
    let (page, total) = st.host.sessions(offset, limit);
    let sessions = page.iter().map(SessionJson::new).collect();
    Ok(Reply::ok(&SessionList { sessions }).with_header(TOTAL_HEADER, total))
}

#[utoipa::path(get, path = "/api/sessions/{ID}", tag = "api",
    description = "One session.",
    params(("ID" = String, Path, description = "the session's ID")),
    security(("basic" = [])),
    responses(
        (status = 200, description = "OK", body = Value),
        (status = 401, description = "EUnauthorized: credentials required", body = super::openapi::ErrorBody),
        (status = 404, description = "ESessionNotFound", body = super::openapi::ErrorBody),
    ))]
pub async fn one(State(st): State<Arc<AppState>>, Segment(id): Segment) -> Result<Reply, ApiError> {
    let s = st.host.session(&id)?;
    Ok(Reply::ok(&SessionJson::new(&s)))
}

/// Releases a session early (not in the spec; design §5). 202 with `Updated`.
#[utoipa::path(delete, path = "/api/sessions/{ID}", tag = "api",
    description = "Releases a session now.",
    params(("ID" = String, Path, description = "the session's ID")),
    security(("basic" = [])),
    responses(
        (status = 202, description = "Updated", body = Value),
        (status = 401, description = "EUnauthorized: credentials required", body = super::openapi::ErrorBody),
        (status = 404, description = "ESessionNotFound", body = super::openapi::ErrorBody),
    ))]
pub async fn close(
    State(st): State<Arc<AppState>>,
    Segment(id): Segment,
) -> Result<Reply, ApiError> {
    st.host.close_session(&id)?;
    Ok(Reply::updated(&Updated::session_closed(id)))
}

#[utoipa::path(get, path = "/api/connections", tag = "api",
    description = "Connections, oldest first, paged.",
    params(("Offset" = Option<u64>, Query, description = "first entry (default 0)"), ("Limit" = Option<u64>, Query, description = "entries, 1-10000 (default 1000); X-Total-Count has the whole list's size")),
    security(("basic" = [])),
    responses(
        (status = 200, description = "OK", body = Value),
        (status = 401, description = "EUnauthorized: credentials required", body = super::openapi::ErrorBody),
    ))]
pub async fn connections(State(st): State<Arc<AppState>>, p: Params) -> Result<Reply, ApiError> {
    let (offset, limit) = page(&p)?;
    let (page, total) = st.host.connections(offset, limit);
    let connections = page.iter().map(ConnectionJson::new).collect();
    Ok(Reply::ok(&ConnectionList { connections }).with_header(TOTAL_HEADER, total))
}

#[utoipa::path(get, path = "/api/connections/{ID}", tag = "api",
    description = "One connection.",
    params(("ID" = String, Path, description = "the connection's ID")),
    security(("basic" = [])),
    responses(
        (status = 200, description = "OK", body = Value),
        (status = 401, description = "EUnauthorized: credentials required", body = super::openapi::ErrorBody),
        (status = 404, description = "EConnectionNotFound", body = super::openapi::ErrorBody),
    ))]
pub async fn connection(
    State(st): State<Arc<AppState>>,
    Segment(id): Segment,
) -> Result<Reply, ApiError> {
    let c = st.host.connection(&id)?;
    Ok(Reply::ok(&ConnectionJson::new(&c)))
}

/// Reads `POST /api/sessions` parameters (already parsed against [`OPEN`]) into a session
/// request; every refusal is a 400 naming the parameter. Public (as
/// `api::parse_session_request`) for the property tests and the fuzzer.
pub fn parse_request(
    p: &Params,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<SessionRequest, ApiError> {
    let itn = p.itn("ITN")?;
    let iec = p.iec("IEC")?;
    let session_started = p
        .text_max("SessionStarted", 64)?
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            crate::time::parse_client(&s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "SessionStarted {s:?} is not a date and time (ISO 8601)"
                ))
            })
        })
        .transpose()?;
    Ok(SessionRequest {
        key_id: p.required("KeyID", 64)?,
        client_session_id: p.required("ClientSessionID", 256)?,
        app_name: p.required("AppName", MAX_TEXT)?,
        user_name: p.text_max("UserName", MAX_TEXT)?,
        session_started,
        computer_name: p.text_max("ComputerName", MAX_TEXT)?,
        info_base_name: p.text_max("InfoBaseName", MAX_TEXT)?,
        access_code: p.text_max("AccessCode", MAX_TEXT)?,
        key_no: p.positive("KeyNo")?,
        itn,
        iec,
        peer_ip: peer.ip(),
        client_version: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(128).collect()),
    })
}

/// Opens an external session: 201 with the licence it holds, or 200 when the ClientSessionID
/// already has a session (whose lease this renews).
#[utoipa::path(method(post, put), path = "/api/sessions", tag = "api",
    description = "Opens (201) or renews (200) the session of `ClientSessionID`; answers the licence it holds.",
    request_body(content = Value, description = "`KeyID`, `ClientSessionID`, `AppName` (required); `UserName`, `SessionStarted`, `ComputerName`; filters `KeyNo`, `ITN`, `IEC`, `InfoBaseName`, `AccessCode`"),
    security(("basic" = [])),
    responses(
        (status = 201, description = "A new session: its licence", body = Value),
        (status = 401, description = "EUnauthorized: credentials required", body = super::openapi::ErrorBody),
        (status = 400, description = "EBadRequest", body = super::openapi::ErrorBody),
        (status = 403, description = "ENoFreeLicence, ESessionRestricted", body = super::openapi::ErrorBody),
        (status = 404, description = "ENoMatchingKey", body = super::openapi::ErrorBody),
        (status = 503, description = "ETooManySessions, ETooManyConnections", body = super::openapi::ErrorBody),
    ))]
pub async fn open(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    p: Params,
) -> Result<Reply, ApiError> {
    let req = parse_request(&p, peer, &headers)?;
    let now = crate::time::now();
    Ok(match st.host.open_session(req)? {
        Opened::Created(e) => Reply::json(StatusCode::CREATED, &LicenceJson::new(&e, now)),
        Opened::Existing(e) => Reply::ok(&LicenceJson::new(&e, now)),
    })
}
