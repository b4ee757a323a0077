//! The one way keybridge makes outgoing HTTP clients: the host asking its centre, and the
//! `keybridge admin` commands asking a host.
//!
//! - TLS is rustls on aws-lc-rs with the system's roots plus an optional private CA
//!   ([`super::tls::client_config`]).
//! - Redirects are not followed: requests carry proofs and credentials (activation codes,
//!   ITNs, the API password), never to be resent to wherever a `Location` points.
//! - Idle connections are not kept for reuse. Both of our servers close a connection idle for
//!   `idle_timeout_seconds` (5 s by default, configurable down to 50 ms); a client reusing a
//!   pooled connection in the moment the server closes it gets a reset and a failed request
//!   (`ConnectionReset`), and an activation would fail for nothing. These clients send a few
//!   requests now and then, so a fresh connection each costs a handshake and nothing else.

use std::path::Path;
use std::time::Duration;

/// A client for `timeout`-bounded requests, trusting the system's roots and `ca_file`.
/// Reads files: call it at start-up, not on a request.
pub fn http_client(ca_file: Option<&Path>, timeout: Duration) -> Result<reqwest::Client, String> {
    let tls = super::tls::client_config(ca_file).map_err(|e| e.to_string())?;
    reqwest::Client::builder()
        .timeout(timeout)
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| e.to_string())
}
