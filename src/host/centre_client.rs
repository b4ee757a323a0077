//! The host's side of talking to a licensing centre over HTTP (`docs/centre.md`). Every call
//! sends a fresh `Licence-QueryID`; with the centre's response key configured, an answer is
//! accepted only if it echoes that QueryID and is signed by that key over (QueryID, status,
//! body) — so a replayed or forged answer, or one signed by any other key, is refused.

use super::HostError;
use crate::centre::wire::{
    ActivateBody, ChallengeBody, LicenceBody, LicenceRef, RestoreBody, WireBinding,
};
use crate::crypto::PublicKey;
use crate::licence::Binding;
use crate::web::signing::{self, QUERY_ID, SIGNATURE};
use serde::Serialize;
use std::time::Duration;

/// How long one centre call may take before the host reports the centre unreachable.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Largest answer read from the centre. Its answers are a licence file or a key in JSON, a
/// few KiB; whoever answers in its place must not make the host buffer without end.
pub const MAX_ANSWER: usize = 1024 * 1024;

pub(super) struct CentreClient {
    base: String,
    http: reqwest::Client,
    /// The centre's response key; `None` trusts answers on the licence signature alone.
    response_key: Option<PublicKey>,
}

/// What the proof of holding a licence is made of, from the terms (or the claim) the host has:
/// which licence, its activation code, and the ITN and IEC it was activated for.
pub(super) struct Held<'a> {
    pub key_id: &'a str,
    pub key_no: u64,
    pub code: &'a str,
    pub itn: Option<&'a str>,
    pub iec: Option<&'a str>,
}

impl CentreClient {
    /// A client for the centre at `url`. An `https://` centre must present a certificate
    /// that the system's roots or `ca_file` (PEM) vouch for; TLS is rustls on aws-lc-rs.
    /// With `response_key`, only answers signed by it are accepted.
    pub fn new(
        url: &str,
        ca_file: Option<&std::path::Path>,
        response_key: Option<PublicKey>,
    ) -> Result<CentreClient, HostError> {
        let http = crate::web::client::http_client(ca_file, TIMEOUT)
            .map_err(|e| HostError::Internal(format!("[centre] ca_file: {e}")))?;
        let base = url.trim_end_matches('/').to_owned();
        if response_key.is_none() {
            tracing::warn!(
                "the centre's response key is not configured ([centre] response_key): answers from {base} are trusted on the licence signature alone"
            );
        }
        Ok(CentreClient {
            base,
            http,
            response_key,
        })
    }

    fn unreachable(&self, message: String) -> HostError {
        HostError::CentreUnreachable {
            url: self.base.clone(),
            message,
        }
    }

    fn unverified(&self, why: &str) -> HostError {
        HostError::CentreUnverified {
            url: self.base.clone(),
            message: why.into(),
        }
    }

    /// POSTs to a host-facing endpoint and returns the body of a verified 200 answer.
    async fn call<B: Serialize>(&self, path: &str, body: &B) -> Result<Vec<u8>, HostError> {
        let url = format!("{}/centre/v1/{path}", self.base);
        self.send(self.http.post(&url).json(body)).await
    }

    /// Sends with a fresh QueryID and returns the body of a verified 200 answer; counts the
    /// outcome in `keybridge_centre_calls_total`.
    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<Vec<u8>, HostError> {
        let r = self.send_unmetered(rb).await;
        crate::metrics::centre_call(match &r {
            Ok(_) => "ok",
            Err(HostError::CentreBusy { .. }) => "busy",
            Err(HostError::CentreRefused { .. }) => "refused",
            Err(_) => "error",
        });
        r
    }

    async fn send_unmetered(&self, rb: reqwest::RequestBuilder) -> Result<Vec<u8>, HostError> {
        // 32 hex digits: fits the QueryID alphabet, and never repeats.
        let query_id = hex::encode(crate::crypto::random_bytes::<16>());
        let r = rb
            .header(QUERY_ID, &query_id)
            .send()
            .await
            .map_err(|e| self.unreachable(error_chain(&e)))?;
        let status = r.status().as_u16();
        let retry_after = retry_after(r.headers());
        let echoed = r.headers().get(QUERY_ID).map(|v| v.as_bytes().to_vec());
        let signature = r
            .headers()
            .get(SIGNATURE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = self.read_capped(r).await?;
        let bytes = self
            .verify(query_id.into_bytes(), echoed, status, signature, bytes)
            .await?;
        if status != 200 {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            if status == 429 || status == 503 {
                // Throttled or overloaded: a reason to come back, not a refused proof.
                return Err(HostError::CentreBusy {
                    retry_after,
                    message: v["error"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("HTTP {status}")),
                });
            }
            return Err(HostError::CentreRefused {
                status,
                reason: v["reason"].as_str().unwrap_or("unknown").to_owned(),
                message: v["error"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("HTTP {status}")),
            });
        }
        Ok(bytes)
    }

    /// The answer's body, read chunk by chunk up to [`MAX_ANSWER`]; a longer one (declared
    /// or sent) is refused without reading the rest.
    async fn read_capped(&self, mut r: reqwest::Response) -> Result<Vec<u8>, HostError> {
        let too_large = || {
            self.unreachable(format!(
                "its answer is larger than {MAX_ANSWER} bytes; refused"
            ))
        };
        if r.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = r
            .chunk()
            .await
            .map_err(|e| self.unreachable(error_chain(&e)))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// Checks the QueryID echo and the signature (RSA, on the blocking pool), if the
    /// centre's response key is configured.
    async fn verify(
        &self,
        query_id: Vec<u8>,
        echoed: Option<Vec<u8>>,
        status: u16,
        signature: Option<String>,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, HostError> {
        let Some(key) = self.response_key.clone() else {
            return Ok(body);
        };
        if echoed.as_deref() != Some(query_id.as_slice()) {
            return Err(self.unverified("it does not echo this request's Licence-QueryID"));
        }
        let checked = tokio::task::spawn_blocking(move || {
            let ok =
                signing::verify_centre_answer(&key, &query_id, status, &body, signature.as_deref());
            (ok, body)
        })
        .await
        .map_err(|e| HostError::Internal(format!("worker failed: {e}")))?;
        match checked {
            (Ok(()), body) => Ok(body),
            (Err(_), _) => Err(self.unverified("its signature does not verify")),
        }
    }

    /// A call whose answer is a licence file.
    async fn licence<B: Serialize>(&self, path: &str, body: &B) -> Result<Vec<u8>, HostError> {
        let bytes = self.call(path, body).await?;
        let body: LicenceBody = serde_json::from_slice(&bytes)
            .map_err(|e| self.unreachable(format!("unreadable answer: {e}")))?;
        crate::crypto::unb64(&body.licence)
            .ok_or_else(|| self.unreachable("the licence in the answer is not base64".into()))
    }

    /// The fingerprint of the key the centre signs licences with, so the host asks it only
    /// about licences it issued (asking about others would count as failed proofs).
    pub async fn licence_key_fingerprint(&self) -> Result<String, HostError> {
        let url = format!("{}/centre/v1/publickey", self.base);
        let bytes = self.send(self.http.get(&url)).await?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.unreachable(format!("unreadable answer: {e}")))?;
        let pem = v["licence_key"]
            .as_str()
            .ok_or_else(|| self.unreachable("the answer names no licence key".into()))?;
        PublicKey::from_pem(pem)
            .map(|k| k.fingerprint().to_owned())
            .map_err(|e| self.unreachable(format!("its licence key: {e}")))
    }

    /// A fresh attestation challenge for a blank USB key to answer, asked for the activation
    /// `code` it will serve (the centre issues one only for a code not yet activated).
    pub async fn challenge(&self, code: &str) -> Result<[u8; 32], HostError> {
        let bytes = self
            .call("challenge", &serde_json::json!({ "code": code }))
            .await?;
        let body: ChallengeBody = serde_json::from_slice(&bytes)
            .map_err(|e| self.unreachable(format!("unreadable answer: {e}")))?;
        let mut c = [0u8; 32];
        hex::decode_to_slice(&body.challenge, &mut c).map_err(|_| {
            self.unreachable("the challenge in the answer is not 64 hex digits".into())
        })?;
        Ok(c)
    }

    pub async fn activate(&self, body: &ActivateBody) -> Result<Vec<u8>, HostError> {
        self.licence("activate", body).await
    }

    pub async fn current(&self, held: &Held<'_>) -> Result<Vec<u8>, HostError> {
        let body = LicenceRef {
            key_id: held.key_id.into(),
            key_no: held.key_no,
            code: held.code.into(),
            itn: held.itn.map(str::to_owned),
            iec: held.iec.map(str::to_owned),
        };
        self.licence("licence", &body).await
    }

    pub async fn restore(&self, held: &Held<'_>, binding: &Binding) -> Result<Vec<u8>, HostError> {
        let body = RestoreBody {
            key_id: held.key_id.into(),
            key_no: held.key_no,
            code: held.code.into(),
            itn: held.itn.map(str::to_owned),
            iec: held.iec.map(str::to_owned),
            binding: WireBinding::from(binding),
        };
        self.licence("restore", &body).await
    }
}

/// Longest wait passed on from a centre's `Retry-After`: its windows are minutes, and a
/// larger (or garbled) value must not tell clients to stay away for days.
const MAX_RETRY_AFTER: u64 = 3600;

/// The centre's `Retry-After` in seconds (1 ..= [`MAX_RETRY_AFTER`]); 60 when it sent none
/// or an HTTP date (the centre sends seconds).
fn retry_after(h: &reqwest::header::HeaderMap) -> u64 {
    h.get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(60)
        .clamp(1, MAX_RETRY_AFTER)
}

/// An error with its causes: reqwest's own text omits them, and the cause is what says
/// "invalid peer certificate: UnknownIssuer".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
