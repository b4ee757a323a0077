//! The host's side of talking to a licensing centre over HTTP (`docs/centre.md`).

use super::HostError;
use crate::centre::wire::{ActivateBody, LicenceBody, LicenceRef, RestoreBody, WireBinding};
use crate::licence::Binding;
use serde::Serialize;
use std::time::Duration;

/// How long one centre call may take before the host reports the centre unreachable.
const TIMEOUT: Duration = Duration::from_secs(20);

pub(super) struct CentreClient {
    base: String,
    http: reqwest::Client,
}

impl CentreClient {
    /// A client for the centre at `url`. An `https://` centre must present a certificate
    /// that the system's roots or `ca_file` (PEM) vouch for; TLS is rustls on aws-lc-rs.
    pub fn new(url: &str, ca_file: Option<&std::path::Path>) -> Result<CentreClient, HostError> {
        let tls = crate::web::tls::client_config(ca_file)
            .map_err(|e| HostError::Internal(format!("[centre] ca_file: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .use_preconfigured_tls(tls)
            .build()
            .map_err(|e| HostError::Internal(e.to_string()))?;
        Ok(CentreClient {
            base: url.trim_end_matches('/').to_owned(),
            http,
        })
    }

    fn unreachable(&self, message: String) -> HostError {
        HostError::CentreUnreachable {
            url: self.base.clone(),
            message,
        }
    }

    /// POSTs to a host-facing endpoint; every one answers with a licence file.
    async fn call<B: Serialize>(&self, path: &str, body: &B) -> Result<Vec<u8>, HostError> {
        let url = format!("{}/centre/v1/{path}", self.base);
        let r = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|e| self.unreachable(error_chain(&e)))?;
        let status = r.status().as_u16();
        let bytes = r
            .bytes()
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        if status != 200 {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(HostError::CentreRefused {
                status,
                reason: v["reason"].as_str().unwrap_or("unknown").to_owned(),
                message: v["error"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("HTTP {status}")),
            });
        }
        let body: LicenceBody = serde_json::from_slice(&bytes)
            .map_err(|e| self.unreachable(format!("unreadable answer: {e}")))?;
        crate::crypto::unb64(&body.licence)
            .ok_or_else(|| self.unreachable("the licence in the answer is not base64".into()))
    }

    pub async fn activate(&self, body: &ActivateBody) -> Result<Vec<u8>, HostError> {
        self.call("activate", body).await
    }

    pub async fn current(&self, key_id: &str, key_no: u64) -> Result<Vec<u8>, HostError> {
        let body = LicenceRef {
            key_id: key_id.into(),
            key_no,
        };
        self.call("licence", &body).await
    }

    pub async fn restore(
        &self,
        key_id: &str,
        key_no: u64,
        binding: &Binding,
    ) -> Result<Vec<u8>, HostError> {
        let body = RestoreBody {
            key_id: key_id.into(),
            key_no,
            binding: WireBinding::from(binding),
        };
        self.call("restore", &body).await
    }
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
