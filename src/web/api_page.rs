//! The interactive API page (Swagger UI, vendored into the binary by `utoipa-swagger-ui`, so it
//! works offline) both services serve beside their OpenAPI description.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use std::sync::Arc;

/// Declares the `basic` security scheme (HTTP Basic) operations refer to.
pub fn add_basic_auth(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
    api.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
}

/// The page's settings: the description it loads, with "Try it out" on and credentials
/// forgotten when the page is closed.
pub fn config(openapi_path: &'static str) -> Arc<utoipa_swagger_ui::Config<'static>> {
    Arc::new(
        utoipa_swagger_ui::Config::new([openapi_path])
            .try_it_out_enabled(true)
            .persist_authorization(false),
    )
}

/// One file of the page (`""` is its index), or the service's own error for a missing one.
pub fn file(
    tail: &str,
    config: Arc<utoipa_swagger_ui::Config<'static>>,
    error: fn(StatusCode, String) -> Response,
) -> Response {
    match utoipa_swagger_ui::serve(tail, config) {
        Ok(Some(f)) => {
            let mut r = Response::new(Body::from(f.bytes.into_owned()));
            if let Ok(v) = HeaderValue::from_str(&f.content_type) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            r
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "no such file".into()),
        Err(e) => {
            tracing::error!("API page: {e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
        }
    }
}
