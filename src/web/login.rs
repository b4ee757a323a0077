//! HTTP Basic authentication with a hashed password and a throttle on failed logins per
//! address, shared by the host's API and the centre's administration.

use crate::crypto::password::PasswordHash;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub struct Auth {
    user: String,
    hash: PasswordHash,
    /// Digests of `Authorization` headers already checked against the PBKDF2 hash, so a busy
    /// client pays for the slow hash once, not per request.
    verified: Mutex<HashSet<[u8; 32]>>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    max_failures: u32,
    window: Duration,
}

const VERIFIED_CACHE: usize = 256;

impl Auth {
    pub fn new(user: String, hash: PasswordHash, max_failures: u32, window: Duration) -> Auth {
        Auth {
            user,
            hash,
            verified: Mutex::new(HashSet::new()),
            failures: Mutex::new(HashMap::new()),
            max_failures: max_failures.max(1),
            window,
        }
    }

    /// Checks an `Authorization` header value. Blocking (PBKDF2): call off the executor.
    pub fn check(&self, header: Option<&[u8]>) -> bool {
        let Some(h) = header else { return false };
        let digest: [u8; 32] = Sha256::digest(h).into();
        if self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&digest)
        {
            return true;
        }
        let Some(b64) = h
            .strip_prefix(b"Basic ")
            .or_else(|| h.strip_prefix(b"basic "))
        else {
            return false;
        };
        let Some(decoded) = std::str::from_utf8(b64).ok().and_then(crate::crypto::unb64) else {
            return false;
        };
        let Ok(text) = String::from_utf8(decoded) else {
            return false;
        };
        let Some((user, pass)) = text.split_once(':') else {
            return false;
        };
        // Always run the hash, so a wrong user name costs as long as a wrong password.
        let pass_ok = self.hash.verify(pass);
        let ok = pass_ok && user == self.user;
        if ok {
            let mut v = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            if v.len() >= VERIFIED_CACHE {
                v.clear();
            }
            v.insert(digest);
        }
        ok
    }

    /// Seconds until `ip` may try again, if it is throttled.
    fn throttled(&self, ip: IpAddr) -> Option<u64> {
        let f = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let (n, since) = f.get(&ip)?;
        let left = self.window.checked_sub(since.elapsed())?;
        (*n >= self.max_failures).then(|| left.as_secs().max(1))
    }

    fn record_failure(&self, ip: IpAddr) {
        let mut f = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let e = f.entry(ip).or_insert((0, Instant::now()));
        if e.1.elapsed() > self.window {
            *e = (0, Instant::now());
        }
        e.0 += 1;
        if f.len() > 10_000 {
            let w = self.window;
            f.retain(|_, (_, t)| t.elapsed() <= w);
        }
    }

    fn clear_failures(&self, ip: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&ip);
    }
}

/// What the login check needs from a service: its credentials, which paths are open, and how
/// it words a refusal. The host's API and the centre's admin endpoints share one check.
pub trait LoginGate: Send + Sync + 'static {
    fn auth(&self) -> &Auth;

    /// Paths served without credentials.
    fn is_public(&self, _path: &str) -> bool {
        false
    }

    /// The 401 answer, in the service's own error format.
    fn refuse(&self, message: String) -> Response;
}

pub async fn require_login<S: LoginGate>(
    State(state): State<Arc<S>>,
    req: Request,
    next: Next,
) -> Response {
    if state.is_public(req.uri().path()) {
        return next.run(req).await;
    }
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if let Some(secs) = state.auth().throttled(ip) {
        return state.refuse(format!(
            "too many failed logins from {ip}; try again in {secs} s"
        ));
    }
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    let checker = state.clone();
    let ok = tokio::task::spawn_blocking(move || checker.auth().check(header.as_deref()))
        .await
        .unwrap_or(false);
    if !ok {
        state.auth().record_failure(ip);
        return state.refuse(
            "HTTP Basic authentication with a valid user name and password is required".into(),
        );
    }
    state.auth().clear_failures(ip);
    next.run(req).await
}
