use super::error::ApiError;
use super::reply::Reply;
use super::wire::{ApiInfo, ServerInfoJson};
use super::{AppState, URNS};
use axum::extract::State;
use axum::http::{header, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub async fn api() -> Reply {
    Reply::ok(&ApiInfo {
        version: crate::VERSION.into(),
        urns: URNS.to_vec(),
    })
}

pub async fn server_info(State(st): State<Arc<AppState>>) -> Reply {
    let info = crate::host::sysinfo::collect(st.host.started(), st.host.computer_id());
    Reply::ok(&ServerInfoJson::from(info))
}

/// The public key that verifies every response's signature, PEM, without credentials.
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
