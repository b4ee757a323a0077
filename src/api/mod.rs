//! The СЛК external API over HTTP: thin handlers over [`crate::host::Host`]. Requests pass
//! signing → error normalising → the API switch → authentication → strict parameters → the
//! handler; see `docs/api.md` for every endpoint and how the spec's gaps were settled.

pub mod auth;
pub mod error;
mod info;
mod licences;
mod memory;
pub mod openapi;
pub mod params;
pub mod reply;
mod sessions;
pub mod wire;

pub use crate::web::login::Auth;
pub use licences::{
    activate_counted, activate_throttled, ActivationThrottle, Refusal, UPDATE_FAILED,
};
/// The session parameters' reader and the names `POST /api/sessions` takes, for the property
/// tests and the fuzzer (`fuzz/`), which feed them what a client could send.
pub use sessions::{parse_request as parse_session_request, OPEN as SESSION_PARAMETERS};

use crate::crypto::HostResponseKey;
use crate::host::Host;
use crate::web::{login, server, signing};
use axum::handler::Handler;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{middleware, Router};
use std::sync::Arc;

/// Shared state of the HTTP layer.
pub struct AppState {
    pub host: Arc<Host>,
    pub signer: Arc<HostResponseKey>,
    pub auth: Auth,
    /// Activations the centre refused as unproven, per client (`licences::ActivationThrottle`).
    pub activation_failures: ActivationThrottle,
    /// `[api] enabled`; the web console's Settings page switches it while serving.
    pub api_enabled: std::sync::atomic::AtomicBool,
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

/// Parameters of the endpoints that take none.
const NONE: params::Accepts = &[];

/// One endpoint: a handler for `methods`, declared with the parameters it takes. Every
/// endpoint goes through here, so every one parses its parameters strictly
/// ([`params::strict`]) and a handler never sees a name it was not declared with.
fn endpoint<H, T>(
    methods: MethodFilter,
    accepts: params::Accepts,
    handler: H,
) -> MethodRouter<Arc<AppState>>
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    on(methods, handler).route_layer(middleware::from_fn_with_state(accepts, params::strict))
}

/// The API's router; `limits` bound each request (`web::server::request_limits`). `ops`
/// serves `/systeminfo` and `/metrics` beside `/api`, outside its login (`crate::metrics`);
/// `console` is the web console (`crate::console`, its own login), or an empty router.
pub fn router(
    state: Arc<AppState>,
    limits: server::RequestLimits,
    ops: Arc<crate::metrics::Ops>,
    console: Router,
) -> Router {
    use MethodFilter as M;
    let write = M::POST.or(M::PUT);
    let api = Router::new()
        .route("/api", endpoint(M::GET, NONE, info::api))
        .route("/api/", endpoint(M::GET, NONE, info::api))
        .route("/api/serverinfo", endpoint(M::GET, NONE, info::server_info))
        .route("/api/publickey", endpoint(M::GET, NONE, info::public_key))
        .route(
            "/api/licences",
            endpoint(M::GET, NONE, licences::list).merge(endpoint(
                write,
                licences::INSTALL,
                licences::install,
            )),
        )
        .route(
            "/api/licences/update",
            endpoint(write, NONE, licences::update),
        )
        .route(
            "/api/licences/{KeyNo}",
            endpoint(M::GET, NONE, licences::one),
        )
        .route(
            "/api/licences/{KeyNo}/memory",
            endpoint(M::GET, memory::READ, memory::read)
                .merge(endpoint(write, memory::WRITE, memory::write_or_passwords))
                .merge(endpoint(M::DELETE, memory::RESET, memory::reset)),
        )
        .route(
            "/api/connections",
            endpoint(M::GET, sessions::LIST, sessions::connections),
        )
        .route(
            "/api/connections/{ID}",
            endpoint(M::GET, NONE, sessions::connection),
        )
        .route(
            "/api/sessions",
            endpoint(M::GET, sessions::LIST, sessions::list).merge(endpoint(
                write,
                sessions::OPEN,
                sessions::open,
            )),
        )
        .route(
            "/api/sessions/{ID}",
            endpoint(M::GET, NONE, sessions::one).merge(endpoint(M::DELETE, NONE, sessions::close)),
        )
        .merge(openapi::routes())
        .fallback(info::not_found)
        .with_state(state.clone());
    // Layers run outermost last-added first:
    // sign ← limits ← normalise ← enabled ← login ← (routing) ← parameters ← handler.
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
    let api = api.merge(ops_routes(ops)).merge(console); // issue 12: the web console
    server::request_limits(api, limits, error::plain_error)
        .layer(middleware::from_fn_with_state(
            Arc::new(crate::metrics::Metered(signing::HostSigning {
                key: state.signer.clone(),
                server_version: state.server_version.clone(),
                error: error::plain_error,
            })),
            signing::sign::<crate::metrics::Metered<signing::HostSigning>>,
        ))
        .layer(middleware::from_fn(crate::metrics::track))
}

/// `/systeminfo` (no credentials) and `/metrics` (loopback only, or its own login).
fn ops_routes(ops: Arc<crate::metrics::Ops>) -> Router {
    use crate::metrics as m;
    let strict = || middleware::from_fn_with_state(NONE, params::strict);
    Router::new()
        .route(
            "/systeminfo",
            on(MethodFilter::GET, m::systeminfo).route_layer(strict()),
        )
        .route(
            "/metrics",
            on(MethodFilter::GET, m::scrape)
                .route_layer(strict())
                .route_layer(middleware::from_fn_with_state(ops.clone(), m::metrics)),
        )
        .with_state(ops)
}
