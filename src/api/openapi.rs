//! The host's `/api` in OpenAPI 3, generated from the handlers' `#[utoipa::path]` annotations,
//! and the interactive page (Swagger UI, vendored) where a person logs in (the browser asks
//! for the API's Basic credentials) and tries each call:
//! - `GET /api/openapi.json`: the description;
//! - `GET /api/docs/`: the page (`/api/docs` redirects there).
//!
//! Both sit behind the API's login like every `/api` path, and are signed like every answer.
//! Every operation documents the `Licence-QueryID` request header and the signing headers of
//! its answers ([`SigningHeaders`]); every error is [`ErrorBody`].

use super::error::plain_error;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::sync::{Arc, OnceLock};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::{ObjectBuilder, Type};
use utoipa::{Modify, OpenApi};

pub const OPENAPI_PATH: &str = "/api/openapi.json";
pub const DOCS_PATH: &str = "/api/docs/";

/// Every error of the API (spec §1.4): the HTTP status again, its text, an exception name a
/// program can match on, and a message for people.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorBody {
    pub code: u16,
    pub text: String,
    pub exception: String,
    pub message: String,
}

/// Basic credentials, and the signing headers on every operation.
struct SigningHeaders;

impl Modify for SigningHeaders {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        crate::web::api_page::add_basic_auth(api);
        let string = || ObjectBuilder::new().schema_type(Type::String).build();
        for item in api.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                op.parameters.get_or_insert_with(Vec::new).push(
                    ParameterBuilder::new()
                        .name("Licence-QueryID")
                        .parameter_in(ParameterIn::Header)
                        .description(Some(
                            "A fresh random value per request (1-64 of A-Z a-z 0-9 . _ : -): echoed, and covered by the answer's signature",
                        ))
                        .build(),
                );
                for r in op.responses.responses.values_mut() {
                    if let utoipa::openapi::RefOr::T(r) = r {
                        for (name, what) in [
                            ("Licence-QueryID", "the request's QueryID, echoed"),
                            ("Licence-Signature", "base64 RSASSA-PKCS1-v1_5 SHA-256 over QueryID ‖ body, with the host's key (GET /api/publickey; docs/signing.md)"),
                            ("Licence-QuerySignature", "the same signature, under the name older clients read"),
                        ] {
                            r.headers.insert(
                                name.into(),
                                HeaderBuilder::new()
                                    .schema(string())
                                    .description(Some(what))
                                    .build(),
                            );
                        }
                    }
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keybridge host API",
        description = "The 1C СЛК 3.0 licence server API (`spec/licence-server-api.md`; docs/api.md). Every call takes HTTP Basic credentials; every answer is signed (`Licence-Signature` over QueryID ‖ body, the host's key at GET /api/publickey) and every error is the JSON of ErrorBody.",
    ),
    paths(
        super::info::api, super::info::server_info, super::info::public_key,
        super::licences::list, super::licences::one, super::licences::install, super::licences::update,
        super::memory::read, super::memory::write_or_passwords, super::memory::reset,
        super::sessions::list, super::sessions::one, super::sessions::close, super::sessions::open,
        super::sessions::connections, super::sessions::connection,
        crate::metrics::systeminfo, crate::metrics::scrape,
    ),
    components(schemas(ErrorBody)),
    modifiers(&SigningHeaders),
    tags(
        (name = "api", description = "The licence server API"),
        (name = "operations", description = "Health and metrics, beside /api and outside its login"),
    ),
)]
struct HostApi;

fn json() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_value(HostApi::openapi()).unwrap_or_default())
}

fn ui_config() -> Arc<utoipa_swagger_ui::Config<'static>> {
    static CONFIG: OnceLock<Arc<utoipa_swagger_ui::Config<'static>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| crate::web::api_page::config(OPENAPI_PATH))
        .clone()
}

async fn openapi_json() -> Json<serde_json::Value> {
    Json(json().clone())
}

/// `/api/docs` → `/api/docs/`, with a JSON body (every answer has one to sign).
async fn docs_redirect() -> Response {
    let mut r = (
        StatusCode::PERMANENT_REDIRECT,
        Json(serde_json::json!({"Code": 308, "Text": "Permanent Redirect", "Message": format!("the API page is at {DOCS_PATH}")})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(DOCS_PATH));
    r
}

async fn docs_file(path: Option<Path<String>>) -> Response {
    let tail = path.as_ref().map_or("", |p| p.as_str());
    crate::web::api_page::file(tail, ui_config(), plain_error)
}

async fn docs_index() -> Response {
    docs_file(None).await
}

/// The description and its page, for the API's router (behind its login).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(OPENAPI_PATH, get(openapi_json))
        .route("/api/docs", get(docs_redirect))
        .route(DOCS_PATH, get(docs_index))
        .route("/api/docs/{*rest}", get(docs_file))
}
