//! HTTP Basic login with a hashed password, shared by the host's API and the centre's
//! administration.
//!
//! What keeps guessing and load in check:
//! - every attempt is counted in a [`Throttle`] per client address *before* its password hash
//!   runs, so N parallel wrong guesses count N and only the first `max_failures` of them
//!   reach the hash; a hashed success clears the address (a remembered header does not:
//!   behind a shared NAT it would reset a guesser's count), and the table is bounded;
//! - at most `hash_workers` PBKDF2 hashes run at once, on the blocking pool; a login that
//!   cannot get a worker within `hash_wait` is answered 503 (not counted), so wrong passwords
//!   from many addresses cannot take every CPU;
//! - identical `Authorization` headers from one address in flight at once share one check
//!   (and one count), so a client opening many connections with the right password is not
//!   locked out by its own burst; a header whose check succeeded is remembered (a bounded
//!   set of SHA-256 digests) and later skips the hash;
//! - a request without credentials is refused without counting: it guesses nothing;
//! - failures and lockouts are logged with the address, the count and the user name — never
//!   the password or the header.

use super::throttle::{client_key, Refused, Throttle, ThrottlePolicy};
use crate::crypto::password::PasswordHash;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::{OnceCell, Semaphore};

/// Limits of the login check.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Failed logins from one address within `window` before it is refused.
    pub max_failures: u32,
    pub window: Duration,
    /// Client addresses tracked at once; when every one is failing, new ones are refused
    /// (503) rather than unlocking the locked ones.
    pub table_size: usize,
    /// Password hashes computed at once; 0 means one per CPU.
    pub hash_workers: usize,
    /// How long a login waits for a hash worker before it is answered 503.
    pub hash_wait: Duration,
}

impl LoginLimits {
    pub const DEFAULT_TABLE_SIZE: usize = 10_000;
    pub const DEFAULT_HASH_WAIT: Duration = Duration::from_secs(2);

    /// The semaphore that bounds password hashes at once: `hash_workers`, or one per CPU.
    pub fn hash_semaphore(&self) -> Arc<Semaphore> {
        let workers = match self.hash_workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        Arc::new(Semaphore::new(workers))
    }

    /// A failure table for these limits (fails closed when full).
    pub fn throttle(&self) -> Throttle<IpAddr> {
        Throttle::new(ThrottlePolicy {
            max_failures: self.max_failures,
            window: self.window,
            capacity: self.table_size,
        })
    }

    pub fn new(max_failures: u32, window: Duration) -> Self {
        LoginLimits {
            max_failures,
            window,
            table_size: Self::DEFAULT_TABLE_SIZE,
            hash_workers: 0,
            hash_wait: Self::DEFAULT_HASH_WAIT,
        }
    }
}

impl From<&crate::config::ApiConfig> for LoginLimits {
    fn from(c: &crate::config::ApiConfig) -> Self {
        LoginLimits {
            max_failures: c.max_failed_logins,
            window: Duration::from_secs(c.login_window_seconds),
            table_size: c.login_table_size,
            hash_workers: c.login_hash_workers,
            hash_wait: Duration::from_millis(c.login_wait_ms),
        }
    }
}

/// The result of one login check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    Ok,
    /// No `Authorization` header: not counted.
    NoCredentials,
    /// Wrong user name, password or header; `failures` in the window, this one included.
    Wrong {
        failures: u32,
    },
    /// Too many failures: refused without a check (and counted).
    Locked {
        failures: u32,
        retry_after: Duration,
    },
    /// No check could be made now (no free hash worker, or the table is full of failing
    /// addresses); not counted.
    Busy {
        retry_after: Duration,
    },
}

pub(crate) type HeaderDigest = [u8; 32];

/// Digests of `Authorization` headers already checked and found right, oldest first out.
#[derive(Default)]
pub(crate) struct Verified {
    set: HashSet<HeaderDigest>,
    order: VecDeque<HeaderDigest>,
}

/// How many verified headers are remembered.
const VERIFIED_CACHE: usize = 256;
/// How many distinct checks may be shared at once before new ones run on their own.
const MAX_FLIGHTS: usize = 1024;

impl Verified {
    pub(crate) fn contains(&self, d: &HeaderDigest) -> bool {
        self.set.contains(d)
    }

    pub(crate) fn insert(&mut self, d: HeaderDigest) {
        if self.set.insert(d) {
            self.order.push_back(d);
            while self.order.len() > VERIFIED_CACHE {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

type Flight = Arc<OnceCell<Login>>;

/// The user name and password hash accepted now, numbered so a check that began under older
/// ones never remembers its header as right.
struct Credentials {
    user: String,
    hash: PasswordHash,
    generation: u64,
}

struct Inner {
    /// Replaced whole by [`Auth::set_credentials`] (the web console's Settings page).
    credentials: std::sync::RwLock<Arc<Credentials>>,
    window: Duration,
    verified: Mutex<Verified>,
    throttle: Throttle<IpAddr>,
    hashing: Arc<Semaphore>,
    hash_wait: Duration,
    /// Checks in progress, by (client key, header digest).
    flights: Mutex<HashMap<(IpAddr, HeaderDigest), Flight>>,
}

/// The credentials one service accepts and the state of its login check. Cheap to clone.
#[derive(Clone)]
pub struct Auth(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The user name and password of a Basic `Authorization` header. The scheme name is
/// case-insensitive and followed by one or more spaces (RFC 9110 §11.4: `auth-scheme
/// 1*SP token68`), so `BASIC`, `basic` and `bAsIc` are all Basic.
pub(crate) fn basic(h: &[u8]) -> Option<(String, String)> {
    let space = h.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = h.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"Basic") {
        return None;
    }
    let start = rest.iter().position(|&b| b != b' ')?;
    let b64 = &rest[start..];
    let decoded = std::str::from_utf8(b64)
        .ok()
        .and_then(crate::crypto::unb64)?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// The user name as logged: at most 64 characters (the log escapes it).
fn user_of(h: &[u8]) -> String {
    basic(h)
        .map(|(u, _)| u.chars().take(64).collect())
        .unwrap_or_else(|| "(not Basic)".into())
}

impl Auth {
    /// Credentials with the default limits but for the failure count and window.
    pub fn new(user: String, hash: PasswordHash, max_failures: u32, window: Duration) -> Auth {
        Auth::with_limits(user, hash, LoginLimits::new(max_failures, window))
    }

    pub fn with_limits(user: String, hash: PasswordHash, limits: LoginLimits) -> Auth {
        Auth(Arc::new(Inner {
            credentials: std::sync::RwLock::new(Arc::new(Credentials {
                user,
                hash,
                generation: 0,
            })),
            window: limits.window,
            verified: Mutex::new(Verified::default()),
            throttle: limits.throttle(),
            hashing: limits.hash_semaphore(),
            hash_wait: limits.hash_wait,
            flights: Mutex::new(HashMap::new()),
        }))
    }

    /// The user name accepted now.
    pub fn user(&self) -> String {
        self.0.credentials().user.clone()
    }

    /// Accepts `user` and `hash` from now on, and forgets every header found right before:
    /// the old password stops working at once, also for a client that used it a moment ago.
    pub fn set_credentials(&self, user: String, hash: PasswordHash) {
        let mut verified = lock(&self.0.verified);
        let mut c = self
            .0
            .credentials
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let generation = c.generation + 1;
        *c = Arc::new(Credentials {
            user,
            hash,
            generation,
        });
        *verified = Verified::default();
    }

    /// Failed attempts counted for `ip` in the current window.
    pub fn failures(&self, ip: IpAddr) -> u32 {
        self.0.throttle.failures(&client_key(ip))
    }

    /// Client addresses the failure table holds now.
    pub fn tracked(&self) -> usize {
        self.0.throttle.len()
    }

    /// How long the failure window is.
    pub fn window(&self) -> Duration {
        self.0.window
    }

    /// Checks one request's `Authorization` header from `ip`.
    pub async fn login(&self, ip: IpAddr, header: Option<&[u8]>) -> Login {
        let Some(h) = header else {
            return Login::NoCredentials;
        };
        let key = client_key(ip);
        let digest: HeaderDigest = Sha256::digest(h).into();
        if lock(&self.0.verified).contains(&digest) {
            // The right credentials: no guess, so not counted — unless the address is
            // locked out, which holds for every request from it.
            if self.0.throttle.failures(&key) >= self.0.throttle.policy().max_failures {
                if let Err(r) = self.0.throttle.begin(&key) {
                    return self.refused(ip, h, r);
                }
                // The window ended meanwhile: that count was not a guess; take it back.
                self.0.throttle.cancel(&key);
            }
            // The address's failures stay: behind a shared NAT a legitimate client's
            // remembered header would otherwise hand a guesser at the same address a fresh
            // set of guesses with every request. Only a fresh, hashed success clears them.
            return Login::Ok;
        }
        let flight = self.join(key, digest);
        let mut led = false;
        let verdict = *flight
            .get_or_init(|| {
                led = true;
                self.attempt(ip, key, h, digest)
            })
            .await;
        self.leave(key, digest, &flight);
        if led {
            return verdict;
        }
        // Another request with the same header from the same client was checked for us.
        match verdict {
            Login::Ok | Login::NoCredentials | Login::Busy { .. } => verdict,
            Login::Wrong { .. } => self.count_refusal(ip, key, h),
            Login::Locked { .. } => match self.0.throttle.begin(&key) {
                Err(r) => self.refused(ip, h, r),
                Ok(_) => {
                    // The window ended meanwhile: this one gets its own check.
                    self.0.throttle.cancel(&key);
                    self.attempt(ip, key, h, digest).await
                }
            },
        }
    }

    /// Counts an attempt whose answer is already known to be a refusal (a header found
    /// wrong, or an address locked out), without hashing.
    fn count_refusal(&self, ip: IpAddr, key: IpAddr, h: &[u8]) -> Login {
        match self.0.throttle.begin(&key) {
            Ok(s) => {
                tracing::warn!(client = %ip, user = ?user_of(h), failures = s.failures, "login failed: wrong credentials");
                Login::Wrong {
                    failures: s.failures,
                }
            }
            Err(r) => self.refused(ip, h, r),
        }
    }

    fn refused(&self, ip: IpAddr, h: &[u8], r: Refused) -> Login {
        match r {
            Refused::Locked {
                retry_after,
                failures,
            } => {
                tracing::warn!(client = %ip, user = ?user_of(h), failures, retry_after_s = retry_after.as_secs(), "login refused: locked out after too many failures");
                Login::Locked {
                    failures,
                    retry_after,
                }
            }
            Refused::Full => {
                tracing::warn!(client = %ip, "login refused: the failed-login table is full");
                Login::Busy {
                    retry_after: self.0.window.max(Duration::from_secs(1)),
                }
            }
        }
    }

    /// One real check: count it, wait for a hash worker, hash on the blocking pool.
    async fn attempt(&self, ip: IpAddr, key: IpAddr, h: &[u8], digest: HeaderDigest) -> Login {
        let started = match self.0.throttle.begin(&key) {
            Ok(s) => s,
            Err(r) => return self.refused(ip, h, r),
        };
        // Gives the attempt back if this request goes away before its check starts.
        let counted = Uncount {
            auth: self,
            key,
            armed: true,
        };
        let permit = match tokio::time::timeout(
            self.0.hash_wait,
            self.0.hashing.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(p)) => p,
            _ => {
                drop(counted);
                tracing::warn!(client = %ip, "login refused: every password-hash worker is busy");
                return Login::Busy {
                    retry_after: Duration::from_secs(1),
                };
            }
        };
        counted.disarm();
        let inner = self.0.clone();
        let header = h.to_vec();
        let failures = started.failures;
        // The check and its bookkeeping finish even if the request is dropped meanwhile.
        let checked = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            inner.check(ip, key, &header, digest, failures)
        })
        .await;
        checked.unwrap_or(Login::Wrong { failures })
    }

    fn join(&self, key: IpAddr, digest: HeaderDigest) -> Flight {
        let mut f = lock(&self.0.flights);
        if let Some(existing) = f.get(&(key, digest)) {
            return existing.clone();
        }
        if f.len() >= MAX_FLIGHTS {
            // Entries nobody waits on any more (their requests went away).
            f.retain(|_, fl| Arc::strong_count(fl) > 1);
        }
        let fresh = Flight::default();
        if f.len() < MAX_FLIGHTS {
            f.insert((key, digest), fresh.clone());
        }
        fresh
    }

    fn leave(&self, key: IpAddr, digest: HeaderDigest, flight: &Flight) {
        let mut f = lock(&self.0.flights);
        if f.get(&(key, digest))
            .is_some_and(|x| Arc::ptr_eq(x, flight))
        {
            f.remove(&(key, digest));
        }
    }
}

impl Inner {
    fn credentials(&self) -> Arc<Credentials> {
        self.credentials
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The slow part: PBKDF2. Blocking; runs on the blocking pool holding a hash worker.
    fn check(
        &self,
        ip: IpAddr,
        key: IpAddr,
        header: &[u8],
        digest: HeaderDigest,
        failures: u32,
    ) -> Login {
        let creds = self.credentials();
        let ok = match basic(header) {
            Some((user, pass)) => {
                // Always run the hash, so a wrong user name costs as long as a wrong password.
                let pass_ok = creds.hash.verify(&pass);
                let user_ok: bool = user.as_bytes().ct_eq(creds.user.as_bytes()).into();
                pass_ok && user_ok
            }
            None => false,
        };
        if ok {
            let mut verified = lock(&self.verified);
            // Remembered only if the credentials are still the ones checked against.
            if self.credentials().generation == creds.generation {
                verified.insert(digest);
            }
            drop(verified);
            self.throttle.succeed(&key);
            Login::Ok
        } else {
            tracing::warn!(client = %ip, user = ?user_of(header), failures, "login failed: wrong credentials");
            Login::Wrong { failures }
        }
    }
}

/// Takes a counted attempt back unless disarmed.
struct Uncount<'a> {
    auth: &'a Auth,
    key: IpAddr,
    armed: bool,
}

impl Uncount<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Uncount<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.auth.0.throttle.cancel(&self.key);
        }
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

    /// The 503 answer when no login can be checked now, in the service's own error format.
    /// By default the 401 answer with the status changed.
    fn unavailable(&self, message: String) -> Response {
        let mut r = self.refuse(message);
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        r.headers_mut().remove(header::WWW_AUTHENTICATE);
        r
    }
}

fn retry_after(mut r: Response, after: Duration) -> Response {
    if let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
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
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    match state.auth().login(ip, header.as_deref()).await {
        Login::Ok => next.run(req).await,
        Login::NoCredentials => state.refuse(
            "HTTP Basic authentication with a valid user name and password is required".into(),
        ),
        Login::Wrong { .. } => state.refuse("the user name or password is not valid".into()),
        Login::Locked {
            failures,
            retry_after: after,
        } => retry_after(
            state.refuse(format!(
                "too many failed logins from {ip} ({failures} within {} s); try again in {} s",
                state.auth().window().as_secs(),
                after.as_secs().max(1)
            )),
            after,
        ),
        Login::Busy { retry_after: after } => retry_after(
            state.unavailable(format!(
                "too many logins are being checked right now; try again in {} s",
                after.as_secs().max(1)
            )),
            after,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn header(user: &str, pass: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            crate::crypto::b64(format!("{user}:{pass}").as_bytes())
        )
        .into_bytes()
    }

    fn auth(max: u32, table: usize, workers: usize) -> Auth {
        Auth::with_limits(
            "admin".into(),
            PasswordHash::new("right"),
            LoginLimits {
                max_failures: max,
                window: Duration::from_secs(60),
                table_size: table,
                hash_workers: workers,
                hash_wait: Duration::from_secs(30),
            },
        )
    }

    #[tokio::test]
    async fn the_failure_table_is_bounded() {
        let a = auth(3, 8, 2);
        let wrong = header("admin", "wrong");
        let mut busy = 0;
        for i in 0..40u8 {
            let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, i));
            match a.login(ip, Some(&wrong)).await {
                Login::Wrong { failures: 1 } => {}
                Login::Busy { .. } => busy += 1,
                other => panic!("{other:?}"),
            }
            assert!(a.tracked() <= 8);
        }
        assert_eq!(a.tracked(), 8);
        // A full table refuses new addresses rather than forgetting the failing ones.
        assert_eq!(busy, 32);
        assert_eq!(a.failures(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0))), 1);
        // No credentials: nothing counted, nothing tracked.
        let b = auth(3, 8, 2);
        for _ in 0..100 {
            assert_eq!(
                b.login(IpAddr::V4(Ipv4Addr::LOCALHOST), None).await,
                Login::NoCredentials
            );
        }
        assert_eq!(b.tracked(), 0);
    }

    /// New credentials take effect at once: the old password, even one remembered as right a
    /// moment ago, no longer logs in; the new one does.
    #[tokio::test]
    async fn changed_credentials_replace_the_old_ones_at_once() {
        let a = auth(10, 8, 2);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let old = header("admin", "right");
        assert_eq!(a.login(ip, Some(&old)).await, Login::Ok);
        a.set_credentials("root".into(), PasswordHash::new("newer"));
        assert_eq!(a.user(), "root");
        assert!(matches!(a.login(ip, Some(&old)).await, Login::Wrong { .. }));
        assert_eq!(a.login(ip, Some(&header("root", "newer"))).await, Login::Ok);
        assert!(matches!(
            a.login(ip, Some(&header("admin", "newer"))).await,
            Login::Wrong { .. }
        ));
    }

    #[test]
    fn the_basic_scheme_name_is_case_insensitive() {
        let creds = crate::crypto::b64(b"admin:pass");
        let want = Some(("admin".to_owned(), "pass".to_owned()));
        for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
            for sep in [" ", "   "] {
                let h = format!("{scheme}{sep}{creds}");
                assert_eq!(basic(h.as_bytes()), want, "{h}");
            }
        }
        for bad in [
            format!("Bearer {creds}"),
            format!("Basics {creds}"),
            format!("Basic{creds}"),
            "Basic".to_owned(),
            "Basic ".to_owned(),
            format!("Basic\t{creds}"),
        ] {
            assert_eq!(basic(bad.as_bytes()), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn locked_out_even_with_the_right_password_and_only_a_hashed_success_clears() {
        let a = auth(2, 100, 1);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let right = header("admin", "right");
        assert_eq!(a.login(ip, Some(&right)).await, Login::Ok);
        assert_eq!(
            a.login(ip, Some(&header("admin", "x"))).await,
            Login::Wrong { failures: 1 }
        );
        // A remembered header passes but does not clear the failure …
        assert_eq!(a.login(ip, Some(&right)).await, Login::Ok);
        assert_eq!(a.failures(ip), 1);
        // … a fresh, hashed success does (the same credentials, spelled differently).
        let respelled = [b"basic ".as_slice(), &right[6..]].concat();
        assert_eq!(a.login(ip, Some(&respelled)).await, Login::Ok);
        assert_eq!(a.failures(ip), 0);
        for n in 1..=2 {
            assert_eq!(
                a.login(ip, Some(&header("root", "right"))).await,
                Login::Wrong { failures: n }
            );
        }
        // Locked: the right (and remembered) password is refused too, and counted.
        assert!(matches!(
            a.login(ip, Some(&right)).await,
            Login::Locked { failures: 3, .. }
        ));
        // Another address is not affected.
        assert_eq!(
            a.login(IpAddr::V4(Ipv4Addr::new(10, 1, 1, 1)), Some(&right))
                .await,
            Login::Ok
        );
    }

    #[tokio::test]
    async fn a_remembered_header_does_not_clear_failures() {
        let a = auth(10, 100, 1);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let right = header("admin", "right");
        // Hashed once: remembered from here on.
        assert_eq!(a.login(ip, Some(&right)).await, Login::Ok);
        for n in 1..=9 {
            assert_eq!(
                a.login(ip, Some(&header("admin", &format!("guess{n}"))))
                    .await,
                Login::Wrong { failures: n }
            );
        }
        assert_eq!(a.login(ip, Some(&right)).await, Login::Ok);
        assert_eq!(
            a.failures(ip),
            9,
            "the remembered header cleared the failures"
        );
        assert_eq!(
            a.login(ip, Some(&header("admin", "guess10"))).await,
            Login::Wrong { failures: 10 }
        );
        assert!(matches!(
            a.login(ip, Some(&header("admin", "guess11"))).await,
            Login::Locked { .. }
        ));
        assert!(matches!(
            a.login(ip, Some(&right)).await,
            Login::Locked { .. }
        ));
    }

    #[test]
    fn the_verified_cache_is_bounded() {
        let mut v = Verified::default();
        for i in 0..(VERIFIED_CACHE as u32 * 3) {
            let d: HeaderDigest = Sha256::digest(i.to_le_bytes()).into();
            v.insert(d);
            v.insert(d);
            assert!(v.set.len() <= VERIFIED_CACHE && v.order.len() == v.set.len());
        }
        let newest: HeaderDigest =
            Sha256::digest((VERIFIED_CACHE as u32 * 3 - 1).to_le_bytes()).into();
        let oldest: HeaderDigest = Sha256::digest(0u32.to_le_bytes()).into();
        assert!(v.contains(&newest) && !v.contains(&oldest));
    }
}
