//! The response-signing layer both services put outermost: every answer leaves signed, with
//! `Licence-ServerVersion`, the request's `Licence-QueryID` echoed, and the signature in
//! `Licence-Signature` (and `Licence-QuerySignature`, the name the spec's example uses).
//!
//! What makes it safe to sign every answer (`docs/security.md`, "No signing oracle"):
//! - the QueryID, the only client-chosen bytes a signature covers, must be 1–64 characters of
//!   `A-Z a-z 0-9 . _ : -` (a clear 400 otherwise, signed without it), so it can never carry
//!   JSON or a second message;
//! - no signed answer has an empty body: a handler that made one is a bug, and the layer
//!   replaces it with the service's JSON for that status instead of signing the QueryID alone;
//! - it signs exactly what is sent: a HEAD answer sends no body, so it carries no signature;
//! - a request with two QueryIDs is refused (400), so the echoed one is the one signed.
//!
//! Signing (RSA) runs on the blocking pool, never on an async worker.

use crate::crypto::{b64, CentreResponseKey, CryptoError, HostResponseKey, PublicKey};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

pub const QUERY_ID: HeaderName = HeaderName::from_static("licence-queryid");
pub const SIGNATURE: HeaderName = HeaderName::from_static("licence-signature");
pub const QUERY_SIGNATURE: HeaderName = HeaderName::from_static("licence-querysignature");
pub const SERVER_VERSION: HeaderName = HeaderName::from_static("licence-serverversion");

/// Marks an answer whose body streams unsigned: a release file download (its 200 or 206), far
/// too large to buffer and sign, whose size, MD5 and SHA-256 the signed release list already
/// carries (`docs/releases.md`). Its headers still get the version and the QueryID; every other
/// answer of that route (errors) is signed as usual. Only a handler sets it, never a client.
#[derive(Debug, Clone, Copy)]
pub struct StreamedUnsigned;

/// Longest QueryID accepted.
pub const MAX_QUERY_ID: usize = 64;

/// Largest response body signed (the licence list of a very large host stays far below).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// Whether `q` is a QueryID we sign over: 1–64 of `A-Z a-z 0-9 . _ : -`. The spec suggests
/// the current time (`20240101120000`), but a predictable QueryID lets anyone holding the
/// credentials collect signed answers for it in advance; clients should send a random one
/// (a UUID, or the time plus a random part).
pub fn query_id_ok(q: &[u8]) -> bool {
    (1..=MAX_QUERY_ID).contains(&q.len())
        && q.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// What a service brings to the signing layer: its key, its version header and its error
/// format.
pub trait ResponseSigning: Send + Sync + 'static {
    /// Signs one answer. `query_id` is empty when the request sent none.
    fn sign(
        &self,
        query_id: &[u8],
        status: StatusCode,
        body: &[u8],
    ) -> Result<Vec<u8>, CryptoError>;

    fn server_version(&self) -> &str;

    /// The service's own JSON error answer (never an empty body).
    fn error(&self, status: StatusCode, message: String) -> Response;
}

/// The host's `/api` key: the СЛК bytes, QueryID ‖ body.
pub struct HostSigning {
    pub key: Arc<HostResponseKey>,
    pub server_version: String,
    pub error: fn(StatusCode, String) -> Response,
}

impl ResponseSigning for HostSigning {
    fn sign(&self, q: &[u8], _status: StatusCode, body: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.key.sign_response(q, body)
    }

    fn server_version(&self) -> &str {
        &self.server_version
    }

    fn error(&self, status: StatusCode, message: String) -> Response {
        (self.error)(status, message)
    }
}

/// The centre's response key: labelled, over QueryID, status and body.
pub struct CentreSigning {
    pub key: Arc<CentreResponseKey>,
    pub server_version: String,
    pub error: fn(StatusCode, String) -> Response,
}

impl ResponseSigning for CentreSigning {
    fn sign(&self, q: &[u8], status: StatusCode, body: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.key.sign_response(q, status.as_u16(), body)
    }

    fn server_version(&self) -> &str {
        &self.server_version
    }

    fn error(&self, status: StatusCode, message: String) -> Response {
        (self.error)(status, message)
    }
}

async fn body_bytes<S: ResponseSigning>(
    state: &S,
    resp: Response,
) -> (axum::http::response::Parts, Vec<u8>) {
    let (parts, body) = resp.into_parts();
    match axum::body::to_bytes(body, MAX_RESPONSE).await {
        Ok(b) => (parts, b.to_vec()),
        Err(e) => {
            tracing::error!("could not read a response body to sign: {e}");
            let err = state.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the response could not be produced".into(),
            );
            let (p, b) = err.into_parts();
            let bytes = axum::body::to_bytes(b, MAX_RESPONSE)
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default();
            (p, bytes)
        }
    }
}

pub async fn sign<S: ResponseSigning>(
    State(state): State<Arc<S>>,
    req: Request,
    next: Next,
) -> Response {
    let head = req.method() == Method::HEAD;
    let query_id = req.headers().get(&QUERY_ID).cloned();
    let repeated = req.headers().get_all(&QUERY_ID).iter().nth(1).is_some();
    let (resp, query_id) = match query_id {
        // Two QueryIDs: whichever one we signed, a reader might take the other.
        Some(_) if repeated => (
            state.error(
                StatusCode::BAD_REQUEST,
                "Licence-QueryID is given more than once; send one".into(),
            ),
            None,
        ),
        Some(q) if !query_id_ok(q.as_bytes()) => (
            state.error(
                StatusCode::BAD_REQUEST,
                format!(
                    "Licence-QueryID must be 1-{MAX_QUERY_ID} characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'; send a fresh random value with each request (a UUID, or the time plus a random part, e.g. 20240101120000-7f3a9c2e), not one that can be guessed in advance"
                ),
            ),
            None,
        ),
        q => (next.run(req).await, q),
    };
    if resp.extensions().get::<StreamedUnsigned>().is_some() {
        let mut resp = resp;
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(state.server_version()) {
            h.insert(SERVER_VERSION, v);
        }
        if let Some(q) = query_id {
            h.insert(QUERY_ID, q);
        }
        return resp;
    }
    let (mut parts, mut bytes) = body_bytes(&*state, resp).await;
    if bytes.is_empty() && !head {
        // Never sign the QueryID alone: that would sign bytes the client chose.
        tracing::error!("an answer with status {} had no body", parts.status);
        let (p, b) = body_bytes(
            &*state,
            state.error(parts.status, "the request was processed".into()),
        )
        .await;
        parts = p;
        bytes = b;
    }
    let h = &mut parts.headers;
    if let Ok(v) = HeaderValue::from_str(state.server_version()) {
        h.insert(SERVER_VERSION, v);
    }
    let q = query_id
        .as_ref()
        .map(|q| q.as_bytes().to_vec())
        .unwrap_or_default();
    if let Some(q) = query_id {
        h.insert(QUERY_ID, q);
    }
    if head || bytes.is_empty() {
        // A HEAD answer sends no body, so there is nothing to sign: no signature at all.
        return Response::from_parts(parts, Body::from(bytes));
    }
    let status = parts.status;
    let signer = state.clone();
    let (signed, bytes) = match tokio::task::spawn_blocking(move || {
        let sig = signer.sign(&q, status, &bytes);
        (sig, bytes)
    })
    .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("signing worker failed: {e}");
            return state.error(StatusCode::INTERNAL_SERVER_ERROR, "signing failed".into());
        }
    };
    match signed {
        Ok(sig) => {
            if let Ok(v) = HeaderValue::from_str(&b64(&sig)) {
                parts.headers.insert(SIGNATURE, v.clone());
                parts.headers.insert(QUERY_SIGNATURE, v);
            }
        }
        Err(e) => tracing::error!("signing failed: {e}"),
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// Checks a centre answer against the centre's response key (the host's client side).
pub fn verify_centre_answer(
    key: &PublicKey,
    query_id: &[u8],
    status: u16,
    body: &[u8],
    signature_b64: Option<&str>,
) -> Result<(), CryptoError> {
    let sig = signature_b64
        .and_then(crate::crypto::unb64)
        .ok_or(CryptoError::SignatureEncoding)?;
    key.verify_centre_response(query_id, status, body, &sig)
}

#[cfg(test)]
mod tests {
    use super::query_id_ok;

    #[test]
    fn query_ids() {
        assert!(query_id_ok(b"20240101120000"));
        assert!(query_id_ok(b"3f2b-11:aa.b_c"));
        assert!(!query_id_ok(b""));
        assert!(!query_id_ok(b"20240101120000{\"KeyNo\":1}"));
        assert!(!query_id_ok(b"a b"));
        assert!(!query_id_ok(&[b'1'; 65]));
    }
}
