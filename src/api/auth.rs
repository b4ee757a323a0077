//! The host API's side of the shared login gate (`web::login`), and the switch that disables
//! the API (503).

use super::error::ApiError;
use super::AppState;
use crate::web::login::{Auth, LoginGate};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Paths served without credentials.
pub const PUBLIC_PATHS: [&str; 1] = ["/api/publickey"];

impl LoginGate for AppState {
    fn auth(&self) -> &Auth {
        &self.auth
    }

    fn is_public(&self, path: &str) -> bool {
        PUBLIC_PATHS.contains(&path)
    }

    fn refuse(&self, message: String) -> Response {
        ApiError::new(StatusCode::UNAUTHORIZED, "EHTTPUnauthorized", message).into_response()
    }

    fn unavailable(&self, message: String) -> Response {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ELoginBusy", message).into_response()
    }
}

/// Answers 503 for every request while the API is disabled in the settings — except the
/// public key, which is still needed to verify those 503 answers.
pub async fn require_enabled(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    if !state.api_enabled.load(std::sync::atomic::Ordering::Relaxed)
        && !PUBLIC_PATHS.contains(&req.uri().path())
    {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "EAPIDisabled",
            "access to the API is disabled in the settings ([api] enabled = false)",
        )
        .into_response();
    }
    next.run(req).await
}
