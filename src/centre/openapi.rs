//! The centre's OpenAPI 3 description, generated from the handlers' `#[utoipa::path]`
//! annotations, and the interactive page (Swagger UI, vendored: it works offline) where a
//! person signs in with Basic credentials and tries each call. Each module describes its own
//! paths in its own `#[derive(OpenApi)]`; [`description`] merges them, one line each.
//!
//! - `GET /centre/v1/openapi.json`: the description (signed like every centre answer);
//! - `GET /centre/docs/`: the page (`/centre/docs` redirects there).

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::sync::{Arc, OnceLock};
use utoipa::{Modify, OpenApi};

pub const OPENAPI_PATH: &str = "/centre/v1/openapi.json";
pub const DOCS_PATH: &str = "/centre/docs/";

/// Every centre error: a message, and a reason a program can match on.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub reason: String,
}

/// Vendor endpoints take HTTP Basic (`admin` and the vendor's password).
struct BasicAuth;

impl Modify for BasicAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        crate::web::api_page::add_basic_auth(api);
    }
}

/// The licensing API hosts use and the vendor's products and codes (`centre::http`).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "keybridge centre",
        description = "The licensing centre's HTTP API. Every answer is signed with the centre's response key (`Licence-Signature`, docs/signing.md) except a release file's bytes, whose size, MD5 and SHA-256 the signed release list carries. Send a fresh random `Licence-QueryID` with each request to have it covered by the signature. Vendor endpoints take HTTP Basic (user `admin`).",
    ),
    paths(
        super::http::activate,
        super::http::current,
        super::http::restore,
        super::http::challenge,
        super::http::public_key,
        super::http::add_product,
        super::http::issue_code,
        super::http::list_codes,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BasicAuth),
    tags(
        (name = "licensing", description = "What a host asks of the centre"),
        (name = "vendor", description = "The vendor's administration (Basic login)"),
        (name = "releases", description = "Licensed releases: the list for a KEY, and downloads"),
    )
)]
struct CentreApi;

/// The whole description: each module's paths merged, one line per module.
pub fn description() -> utoipa::openapi::OpenApi {
    let mut api = CentreApi::openapi();
    api.merge(super::releases::http::ReleasesApi::openapi());
    api.merge(super::accounts::http::AccountsApi::openapi());
    api
}

/// The description as JSON, made once.
fn json() -> &'static Arc<serde_json::Value> {
    static DOC: OnceLock<Arc<serde_json::Value>> = OnceLock::new();
    DOC.get_or_init(|| Arc::new(serde_json::to_value(description()).unwrap_or_default()))
}

fn ui_config() -> Arc<utoipa_swagger_ui::Config<'static>> {
    static CONFIG: OnceLock<Arc<utoipa_swagger_ui::Config<'static>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| crate::web::api_page::config(OPENAPI_PATH))
        .clone()
}

async fn openapi_json() -> Json<serde_json::Value> {
    Json((**json()).clone())
}

/// `/centre/docs` → `/centre/docs/` (with a body: every centre answer has one to sign).
async fn docs_redirect() -> Response {
    let mut r = (
        StatusCode::PERMANENT_REDIRECT,
        Json(serde_json::json!({"error": format!("the API page is at {DOCS_PATH}"), "reason": "moved"})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(DOCS_PATH));
    r
}

async fn docs_file(path: Option<Path<String>>) -> Response {
    let tail = path.as_ref().map_or("", |p| p.as_str());
    crate::web::api_page::file(tail, ui_config(), super::http::plain_error)
}

async fn docs_index() -> Response {
    docs_file(None).await
}

/// The description and the page; public, like the description of any public API.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(OPENAPI_PATH, get(openapi_json))
        .route("/centre/docs", get(docs_redirect))
        .route(DOCS_PATH, get(docs_index))
        .route("/centre/docs/{*rest}", get(docs_file))
}
