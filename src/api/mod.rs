//! The СЛК external API over HTTP: thin handlers over [`crate::host::Host`]. Requests pass
//! signing → error normalising → the API switch → authentication → the handler; see
//! `docs/api.md` for every endpoint and how the spec's gaps were settled.

pub mod auth;
pub mod error;
mod info;
mod licences;
mod memory;
pub mod params;
pub mod reply;
mod sessions;
pub mod wire;

pub use crate::web::login::Auth;

use crate::crypto::HostResponseKey;
use crate::host::Host;
use crate::web::{login, server, signing};
use axum::routing::{get, post};
use axum::{middleware, Router};
use std::sync::Arc;

/// Shared state of the HTTP layer.
pub struct AppState {
    pub host: Arc<Host>,
    pub signer: Arc<HostResponseKey>,
    pub auth: Auth,
    pub api_enabled: bool,
    pub server_version: String,
}

/// Every path the API serves, as `GET /api` lists them.
pub const URNS: [&str; 10] = [
    "/api/serverinfo",
    "/api/licences",
    "/api/licences/{KeyNo}",
    "/api/licences/{KeyNo}/memory",
    "/api/licences/update",
    "/api/connections",
    "/api/connections/{ID}",
    "/api/sessions",
    "/api/sessions/{ID}",
    "/api/publickey",
];

/// The API's router; `limits` bound each request (`web::server::request_limits`).
pub fn router(state: Arc<AppState>, limits: server::RequestLimits) -> Router {
    let api = Router::new()
        .route("/api", get(info::api))
        .route("/api/", get(info::api))
        .route("/api/serverinfo", get(info::server_info))
        .route("/api/publickey", get(info::public_key))
        .route(
            "/api/licences",
            get(licences::list)
                .post(licences::install)
                .put(licences::install),
        )
        .route(
            "/api/licences/update",
            post(licences::update).put(licences::update),
        )
        .route("/api/licences/{key_no}", get(licences::one))
        .route(
            "/api/licences/{key_no}/memory",
            get(memory::read)
                .post(memory::write_or_passwords)
                .put(memory::write_or_passwords)
                .delete(memory::reset),
        )
        .route("/api/connections", get(sessions::connections))
        .route("/api/connections/{id}", get(sessions::connection))
        .route(
            "/api/sessions",
            get(sessions::list).post(sessions::open).put(sessions::open),
        )
        .route(
            "/api/sessions/{id}",
            get(sessions::one).delete(sessions::close),
        )
        .fallback(info::not_found)
        .with_state(state.clone());
    // Layers run outermost last-added first:
    // sign ← limits ← normalise ← enabled ← login ← handler.
    let api = api
        .layer(middleware::from_fn_with_state(
            state.clone(),
            login::require_login::<AppState>,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_enabled,
        ))
        .layer(middleware::from_fn(error::normalise));
    server::request_limits(api, limits, error::plain_error).layer(middleware::from_fn_with_state(
        Arc::new(signing::HostSigning {
            key: state.signer.clone(),
            server_version: state.server_version.clone(),
            error: error::plain_error,
        }),
        signing::sign::<signing::HostSigning>,
    ))
}
