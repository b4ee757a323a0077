//! The account API's routes under its base path (default [`DEFAULT_BASE`]):
//! - `POST {base}/execute` — the envelope: `general.type` (`usr`, or `ext` for
//!   compatibility), `general.method`, `general.version`, `general.debug`, `auth.account`;
//! - `POST {base}/execute/{type}/{method…}` — the version-19 path form, without `general`;
//!   `GET` of the same for `account/list`, as the spec shows;
//! - `GET {base}/version` — `{"version", "sm_version"}`.
//!
//! and the vendor's admin routes under `/centre/v1/` (behind the centre's admin login).

use super::admin;
use super::envelope::{self, AccountError, Call, Echo, PathForm, API_VERSION};
use super::methods::{self, Caller};
use super::model::AccountId;
use super::store::Tariff;
use crate::centre::http::{CentreJson, CentreReply, CentreState, Peer};
use crate::centre::CentreError;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Where 1C's Service Manager publishes the API, and so where clients look for it.
pub const DEFAULT_BASE: &str = "/a/adm/hs/ext_api";

/// Checks a configured base path: `/`-separated segments of letters, digits, `_` and `-`,
/// no trailing slash, not under the centre's own `/centre/`.
pub fn check_base(base: &str) -> Result<(), String> {
    let ok = base.starts_with('/')
        && base.len() > 1
        && !base.ends_with('/')
        && base[1..].split('/').all(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
        && base != "/centre"
        && !base.starts_with("/centre/");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "account API path {base:?} must look like /a/adm/hs/ext_api (segments of letters, digits, _ and -) and lie outside /centre"
        ))
    }
}

/// Marks an answer as already in the envelope, so [`envelope_errors`] leaves it alone.
#[derive(Clone, Copy)]
struct Enveloped;

fn mark(mut r: Response) -> Response {
    r.extensions_mut().insert(Enveloped);
    r
}

/// Answers under the account API's base path that its handlers did not make — a 405, a body
/// too large for the centre's limits, a timeout, a path that names no route — are put in the
/// envelope too, so an account API client only ever reads envelopes. Runs inside the signing
/// layer and outside the request limits (`centre::http::router`).
pub async fn envelope_errors(State(base): State<Arc<str>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let ours = path
        .strip_prefix(&*base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    let resp = next.run(req).await;
    let status = resp.status();
    if !ours
        || resp.extensions().get::<Enveloped>().is_some()
        || !(status.is_client_error() || status.is_server_error())
    {
        return resp;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            "this path does not take this HTTP method (POST …/execute; GET …/version)"
        }
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large",
        StatusCode::NOT_FOUND => "no such path (POST …/execute; GET …/version)",
        StatusCode::REQUEST_TIMEOUT => "the request took too long",
        s if s.is_client_error() => "the request was rejected",
        _ => "internal error",
    };
    let code = 10_000 + u64::from(status.as_u16());
    let mut out = (
        status,
        Json(json!({"general": envelope::general(code, true, message, Echo::default())})),
    )
        .into_response();
    if let Some(a) = resp.headers().get(header::ALLOW).cloned() {
        out.headers_mut().insert(header::ALLOW, a);
    }
    out
}

/// The account API's routes at `base`.
pub fn routes(base: &str) -> Router<Arc<CentreState>> {
    let api = Router::new()
        .route("/execute", post(execute))
        .route(
            "/execute/{kind}/{*method}",
            get(execute_path).post(execute_path),
        )
        .route("/version", get(version));
    Router::new().nest(base, api)
}

/// The request and answer of the account API (its parameters are the method's, beside
/// `general` and `auth`; docs/accounts.md).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Envelope {
    /// Request: `type` (`usr`), `method`, `version`, `debug`. Answer: `response` (10000 + the
    /// HTTP status), `error`, `message`, `version`, `sm_version`, `sm_timezone`.
    pub general: Value,
    /// Request only: `account`, the account the call acts for.
    pub auth: Option<Value>,
}

/// The account API and the vendor's account administration, for the OpenAPI description (at
/// the default base path).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        execute, execute_path, version,
        add_account, list_accounts, account_licences, add_member, add_served, add_servant,
        add_tariff, define, reset_password,
    ),
    components(schemas(Envelope)),
    tags((name = "accounts", description = "The Service Manager account API (HTTP Basic with a service user's login; docs/accounts.md)")),
)]
pub struct AccountsApi;

#[utoipa::path(get, path = "/a/adm/hs/ext_api/version", tag = "accounts",
    responses((status = 200, description = "`{\"version\": 19, \"sm_version\"}`", body = Value)))]
async fn version() -> Json<Value> {
    Json(json!({"version": API_VERSION, "sm_version": crate::VERSION}))
}

#[utoipa::path(post, path = "/a/adm/hs/ext_api/execute", tag = "accounts",
    request_body(content = Envelope, description = "`general` (type usr, method, version, debug), `auth` (account) and the method's parameters, e.g. `{\"general\": {\"type\": \"usr\", \"method\": \"account/info\"}, \"auth\": {\"account\": 1010}, \"id\": 1010}`"),
    security(("basic" = [])),
    responses(
        (status = 200, description = "10200: the method's answer beside `general`", body = Envelope),
        (status = 400, description = "10400: malformed, or a missing or wrong parameter", body = Envelope),
        (status = 401, description = "10401: credentials required or wrong", body = Envelope),
        (status = 403, description = "10403: the role does not allow it", body = Envelope),
        (status = 404, description = "10404: not found, or not yours", body = Envelope),
        (status = 406, description = "10406: unknown attached-info names", body = Envelope),
        (status = 409, description = "10409: a login taken, the last owner", body = Envelope),
        (status = 429, description = "10429: too many failed logins", body = Envelope),
        (status = 501, description = "10501: unknown method", body = Envelope),
    ))]
async fn execute(
    State(st): State<Arc<CentreState>>,
    Peer(ip): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run(&st, ip, &headers, None, &body).await
}

/// The version-19 path form — `POST`, the body holding `auth` and the parameters, no
/// `general` — and the spec's GET form, for `account/list` only.
#[utoipa::path(method(get, post), path = "/a/adm/hs/ext_api/execute/{kind}/{method}", tag = "accounts",
    params(("kind" = String, Path, description = "usr (or ext)"), ("method" = String, Path, description = "e.g. account/servant_tariffs/list; GET: account/list only")),
    request_body(content = Value, description = "POST: `auth` and the method's parameters, e.g. `{\"servant\": 1000, \"auth\": {\"account\": 1010}}`"),
    security(("basic" = [])),
    responses((status = 200, description = "10200", body = Envelope), (status = 400, description = "10400", body = Envelope), (status = 401, description = "10401", body = Envelope), (status = 404, description = "10404", body = Envelope)))]
async fn execute_path(
    State(st): State<Arc<CentreState>>,
    Peer(ip): Peer,
    Path((kind, method)): Path<(String, String)>,
    http_method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = PathForm {
        kind,
        method,
        get: http_method == Method::GET,
    };
    run(&st, ip, &headers, Some(form), &body).await
}

async fn run(
    st: &CentreState,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    form: Option<PathForm>,
    body: &[u8],
) -> Response {
    let mut echo = Echo::default();
    let r = answer(st, ip, headers, form, body, &mut echo).await;
    mark(match r {
        Ok(m) => envelope::success(m, echo),
        Err(e) => envelope::failure(&e, echo),
    })
}

async fn answer(
    st: &CentreState,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    form: Option<PathForm>,
    body: &[u8],
    echo: &mut Echo,
) -> Result<Map<String, Value>, AccountError> {
    let user = st
        .users
        .login(
            &st.centre,
            ip,
            headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
        )
        .await?;
    let Call {
        method,
        acting,
        debug,
        params,
    } = envelope::parse_call(body, form, echo)?;
    let logged = debug.then(|| redacted(&params));
    let caller = Caller {
        centre: &st.centre,
        login: &st.users,
        user: user.clone(),
        acting,
    };
    let r = methods::call(&caller, &method, params).await;
    if let Some(req) = logged {
        // `general.debug`: the request (passwords hidden) and the answer, in the log.
        let (code, ans) = match &r {
            Ok(m) => (10_200, Value::Object(m.clone()).to_string()),
            Err(e) => (e.code(), e.to_string()),
        };
        tracing::info!(user = %user, method = %method, account = ?acting, request = %req, response = code, answer = %ans, "accounts: debug");
    }
    r
}

/// The parameters as logged: every `password` replaced.
fn redacted(params: &Map<String, Value>) -> String {
    let mut m = params.clone();
    if m.contains_key("password") {
        m.insert("password".into(), json!("(hidden)"));
    }
    Value::Object(m).to_string()
}

// ----- the vendor's admin routes -----

fn reply(r: Result<Value, AccountError>, created: bool) -> Result<Response, CentreReply> {
    let v = r.map_err(CentreError::from)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(v)).into_response())
}

#[utoipa::path(post, path = "/centre/v1/accounts", tag = "vendor",
    request_body = admin::AccountBody,
    security(("basic" = [])),
    responses(
        (status = 201, description = "Created: `{id, owner, password}` (password only when generated)", body = Value),
        (status = 400, description = "invalid", body = crate::centre::openapi::ErrorBody),
        (status = 401, description = "Vendor credentials are required", body = crate::centre::openapi::ErrorBody),
        (status = 404, description = "not_found", body = crate::centre::openapi::ErrorBody),
        (status = 409, description = "conflict", body = crate::centre::openapi::ErrorBody),
    ))]
async fn add_account(
    State(st): State<Arc<CentreState>>,
    CentreJson(b): CentreJson<admin::AccountBody>,
) -> Result<Response, CentreReply> {
    reply(admin::add_account(&st.centre, &b).await, true)
}

#[utoipa::path(get, path = "/centre/v1/accounts", tag = "vendor",
    security(("basic" = [])),
    responses(
        (status = 200, description = "`{accounts: [{id, name, itn}]}`", body = Value),
        (status = 400, description = "invalid", body = crate::centre::openapi::ErrorBody),
        (status = 401, description = "Vendor credentials are required", body = crate::centre::openapi::ErrorBody),
        (status = 404, description = "not_found", body = crate::centre::openapi::ErrorBody),
        (status = 409, description = "conflict", body = crate::centre::openapi::ErrorBody),
    ))]
async fn list_accounts(State(st): State<Arc<CentreState>>) -> Result<Response, CentreReply> {
    reply(admin::list(&st.centre).await, false)
}

#[utoipa::path(get, path = "/centre/v1/accounts/{id}/licences", tag = "vendor",
    params(("id" = u64, Path, description = "the account's code")),
    security(("basic" = [])),
    responses(
        (status = 200, description = "`{account, licences: [{code, key_id, key_no, binding, activated}]}`", body = Value),
        (status = 400, description = "invalid", body = crate::centre::openapi::ErrorBody),
        (status = 401, description = "Vendor credentials are required", body = crate::centre::openapi::ErrorBody),
        (status = 404, description = "not_found", body = crate::centre::openapi::ErrorBody),
        (status = 409, description = "conflict", body = crate::centre::openapi::ErrorBody),
    ))]
async fn account_licences(
    State(st): State<Arc<CentreState>>,
    Path(id): Path<AccountId>,
) -> Result<Response, CentreReply> {
    reply(admin::licences(&st.centre, id).await, false)
}

#[utoipa::path(post, path = "/centre/v1/accounts/{id}/users", tag = "vendor",
    params(("id" = u64, Path, description = "the account's code")),
    request_body = admin::MemberBody,
    security(("basic" = [])),
    responses(
        (status = 201, description = "Attached: `{account, login, role, password}`", body = Value),
        (status = 400, description = "invalid", body = crate::centre::openapi::ErrorBody),
        (status = 401, description = "Vendor credentials are required", body = crate::centre::openapi::ErrorBody),
        (status = 404, description = "not_found", body = crate::centre::openapi::ErrorBody),
        (status = 409, description = "conflict", body = crate::centre::openapi::ErrorBody),
    ))]
async fn add_member(
    State(st): State<Arc<CentreState>>,
    Path(id): Path<AccountId>,
    CentreJson(b): CentreJson<admin::MemberBody>,
) -> Result<Response, CentreReply> {
    reply(admin::add_member(&st.centre, id, &b).await, true)
}

#[utoipa::path(post, path = "/centre/v1/accounts/{id}/servants", tag = "vendor",
    params(("id" = u64, Path, description = "the account's code")),
    request_body = admin::ServeBody,
    security(("basic" = [])),
    responses(
        (status = 201, description = "`{account, servant}`", body = Value),
        (status = 400, description = "invalid", body = crate::centre::openapi::ErrorBody),
        (status = 401, description = "Vendor credentials are required", body = crate::centre::openapi::ErrorBody),
        (status = 404, description = "not_found", body = crate::centre::openapi::ErrorBody),
        (status = 409, description = "conflict", body = crate::centre::openapi::ErrorBody),
    ))]
async fn add_served(
    State(st): State<Arc<CentreState>>,
    Path(id): Path<AccountId>,
    CentreJson(b): CentreJson<admin::ServeBody>,
) -> Result<Response, CentreReply> {
    let r = st
        .centre
        .add_served(id, b.servant)
        .await
        .map(|()| json!({"account": id, "servant": b.servant}));
    reply(r, true)
}

#[utoipa::path(post, path = "/centre/v1/servants", tag = "vendor",
    request_body = admin::ServantBody,
    security(("basic" = [])),
    responses(
        (status = 201, description = "`{servant}`", body = Value),
        (status = 400, description = "invalid", body = crate::centre::openapi::ErrorBody),
        (status = 401, description = "Vendor credentials are required", body = crate::centre::openapi::ErrorBody),
        (status = 404, description = "not_found", body = crate::centre::openapi::ErrorBody),
        (status = 409, description = "conflict", body = crate::centre::openapi::ErrorBody),
    ))]
async fn add_servant(
    State(st): State<Arc<CentreState>>,
    CentreJson(b): CentreJson<admin::ServantBody>,
) -> Result<Response, CentreReply> {
    reply(admin::add_servant(&st.centre, &b).await, true)
}

#[utoipa::path(post, path = "/centre/v1/servants/{id}/tariffs", tag = "vendor",
    params(("id" = u64, Path, description = "the account's code")),
    request_body = Tariff,
    security(("basic" = [])),
    responses(
        (status = 201, description = "`{servant, id}`", body = Value),
        (status = 400, description = "invalid", body = crate::centre::openapi::ErrorBody),
        (status = 401, description = "Vendor credentials are required", body = crate::centre::openapi::ErrorBody),
        (status = 404, description = "not_found", body = crate::centre::openapi::ErrorBody),
        (status = 409, description = "conflict", body = crate::centre::openapi::ErrorBody),
    ))]
async fn add_tariff(
    State(st): State<Arc<CentreState>>,
    Path(id): Path<AccountId>,
    CentreJson(t): CentreJson<Tariff>,
) -> Result<Response, CentreReply> {
    reply(admin::add_tariff(&st.centre, id, &t).await, true)
}

#[utoipa::path(post, path = "/centre/v1/attached", tag = "vendor",
    request_body = admin::DefinitionBody,
    security(("basic" = [])),
    responses(
        (status = 201, description = "`{target, name, type}`", body = Value),
        (status = 400, description = "invalid", body = crate::centre::openapi::ErrorBody),
        (status = 401, description = "Vendor credentials are required", body = crate::centre::openapi::ErrorBody),
        (status = 404, description = "not_found", body = crate::centre::openapi::ErrorBody),
        (status = 409, description = "conflict", body = crate::centre::openapi::ErrorBody),
    ))]
async fn define(
    State(st): State<Arc<CentreState>>,
    CentreJson(b): CentreJson<admin::DefinitionBody>,
) -> Result<Response, CentreReply> {
    reply(admin::define(&st.centre, &b).await, true)
}

#[utoipa::path(post, path = "/centre/v1/users/{login}/password", tag = "vendor",
    params(("login" = String, Path, description = "the service user's login")),
    request_body = admin::PasswordBody,
    security(("basic" = [])),
    responses(
        (status = 200, description = "`{login, password}` (password only when generated)", body = Value),
        (status = 400, description = "invalid", body = crate::centre::openapi::ErrorBody),
        (status = 401, description = "Vendor credentials are required", body = crate::centre::openapi::ErrorBody),
        (status = 404, description = "not_found", body = crate::centre::openapi::ErrorBody),
        (status = 409, description = "conflict", body = crate::centre::openapi::ErrorBody),
    ))]
async fn reset_password(
    State(st): State<Arc<CentreState>>,
    Path(login): Path<String>,
    CentreJson(b): CentreJson<admin::PasswordBody>,
) -> Result<Response, CentreReply> {
    reply(admin::reset_password(&st.centre, &login, &b).await, false)
}

/// The vendor's account routes; the caller puts them behind the admin login.
pub fn admin_routes() -> Router<Arc<CentreState>> {
    Router::new()
        .route("/centre/v1/accounts", post(add_account).get(list_accounts))
        .route("/centre/v1/accounts/{id}/licences", get(account_licences))
        .route("/centre/v1/accounts/{id}/users", post(add_member))
        .route("/centre/v1/accounts/{id}/servants", post(add_served))
        .route("/centre/v1/servants", post(add_servant))
        .route("/centre/v1/servants/{id}/tariffs", post(add_tariff))
        .route("/centre/v1/attached", post(define))
        .route("/centre/v1/users/{login}/password", post(reset_password))
}
