use super::error::ApiError;
use super::reply::Reply;
use super::wire::{ApiInfo, ServerInfoJson};
use super::{AppState, URNS};
use axum::extract::State;
use axum::http::{header, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

#[utoipa::path(get, path = "/api", tag = "api",
    description = "The API version and every path it serves (`Urns`).",
    security(("basic" = [])),
    responses(
        (status = 200, description = "OK", body = Value),
        (status = 401, description = "EUnauthorized: credentials required", body = super::openapi::ErrorBody),
    ))]
pub async fn api() -> Reply {
    Reply::ok(&ApiInfo {
        version: crate::VERSION.into(),
        urns: URNS.to_vec(),
    })
}

#[utoipa::path(get, path = "/api/serverinfo", tag = "api",
    description = "The host: version, OS, CPU, ComputerID, start time.",
    security(("basic" = [])),
    responses(
        (status = 200, description = "OK", body = Value),
        (status = 401, description = "EUnauthorized: credentials required", body = super::openapi::ErrorBody),
    ))]
pub async fn server_info(State(st): State<Arc<AppState>>) -> Reply {
    let info = crate::host::sysinfo::collect(st.host.started(), st.host.computer_id());
    Reply::ok(&ServerInfoJson::from(info))
}

/// The public key that verifies every response's signature, PEM, without credentials.
#[utoipa::path(get, path = "/api/publickey", tag = "api",
    description = "The PEM public key every answer's signature verifies against.",
    security(("basic" = [])),
    responses(
        (status = 200, description = "PEM (application/x-pem-file)", body = String),
        (status = 401, description = "EUnauthorized: credentials required", body = super::openapi::ErrorBody),
    ))]
pub async fn public_key(State(st): State<Arc<AppState>>) -> Response {
    let mut r = st.signer.public_key().pem().to_owned().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    r
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found_url(uri.path())
}
