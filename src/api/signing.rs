//! Response signing (design §5 "Signed bytes"): RSASSA-PKCS1-v1_5 SHA-256 over the
//! `Licence-QueryID` value exactly as received followed by the body exactly as sent; the body
//! alone without a QueryID. The signature goes in `Licence-Signature` and, under the name the
//! spec's example uses, `Licence-QuerySignature`. Every response passes through here.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub const QUERY_ID: HeaderName = HeaderName::from_static("licence-queryid");
pub const SIGNATURE: HeaderName = HeaderName::from_static("licence-signature");
pub const QUERY_SIGNATURE: HeaderName = HeaderName::from_static("licence-querysignature");
pub const SERVER_VERSION: HeaderName = HeaderName::from_static("licence-serverversion");

/// Largest response body signed (the licence list of a very large host stays far below).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// `3.0.x`-style version, OS and CPU, as the spec's example header shows.
pub fn server_version_header() -> String {
    format!(
        "{},{},{}",
        crate::VERSION,
        crate::host::sysinfo::os_type(),
        crate::host::sysinfo::cpu()
    )
}

/// What the signing layer needs: the key and the `Licence-ServerVersion` value. Shared by the
/// host's API and the centre's.
pub struct SigningKey {
    pub signer: Arc<crate::crypto::Signer>,
    pub server_version: String,
}

pub async fn sign(State(state): State<Arc<SigningKey>>, req: Request, next: Next) -> Response {
    let query_id = req.headers().get(&QUERY_ID).cloned();
    let resp = next.run(req).await;
    let (mut parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_RESPONSE).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("could not read a response body to sign: {e}");
            let err = super::error::ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "EInternalError",
                "the response could not be produced",
            )
            .into_response();
            let (p, b) = err.into_parts();
            parts = p;
            axum::body::to_bytes(b, MAX_RESPONSE)
                .await
                .unwrap_or_default()
        }
    };
    let mut message = Vec::with_capacity(bytes.len() + 64);
    if let Some(q) = &query_id {
        message.extend_from_slice(q.as_bytes());
    }
    message.extend_from_slice(&bytes);
    let h = &mut parts.headers;
    if let Ok(v) = HeaderValue::from_str(&state.server_version) {
        h.insert(SERVER_VERSION, v);
    }
    if let Some(q) = query_id {
        h.insert(QUERY_ID, q);
    }
    match state.signer.sign(&message) {
        Ok(sig) => {
            if let Ok(v) = HeaderValue::from_str(&crate::crypto::b64(&sig)) {
                h.insert(SIGNATURE, v.clone());
                h.insert(QUERY_SIGNATURE, v);
            }
        }
        Err(e) => tracing::error!("signing failed: {e}"),
    }
    Response::from_parts(parts, Body::from(bytes))
}
