//! Console sessions: a random token in an `HttpOnly`, `SameSite=Strict` cookie, held in a
//! bounded table by its SHA-256 (so a timing difference in the map lookup reveals nothing
//! about a live token), each with its own CSRF token and an idle and an absolute expiry.
//! A login always starts a new session (and ends the one the browser held, so a planted
//! cookie never becomes a logged-in one); a change of the API's credentials ends them all.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Sessions held at once; the least recently used is dropped to make room (one admin, a few
/// browsers).
pub const MAX_SESSIONS: usize = 64;
/// A session ends this long after login whatever its use.
pub const ABSOLUTE_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// A live session as a request sees it.
#[derive(Debug, Clone)]
pub struct Current {
    pub user: String,
    pub csrf: String,
    /// The address of this request (not of the login): what the audit log records.
    pub from: IpAddr,
    digest: [u8; 32],
}

struct Entry {
    user: String,
    csrf: String,
    created: Instant,
    last: Instant,
}

pub struct Sessions {
    idle: Duration,
    table: Mutex<HashMap<[u8; 32], Entry>>,
}

/// A fresh random token, URL-safe (32 bytes from the OS generator).
pub fn token() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether a submitted CSRF token is the session's, compared in constant time.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Sessions {
    pub fn new(idle: Duration) -> Sessions {
        Sessions {
            idle,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a session for `user`; returns its cookie token.
    pub fn create(&self, user: &str) -> String {
        let now = Instant::now();
        let t = token();
        let mut table = self.lock();
        let idle = self.idle;
        table.retain(|_, e| live(e, now, idle));
        while table.len() >= MAX_SESSIONS {
            let Some(oldest) = table.iter().min_by_key(|(_, e)| e.last).map(|(k, _)| *k) else {
                break;
            };
            table.remove(&oldest);
        }
        table.insert(
            digest(&t),
            Entry {
                user: user.to_owned(),
                csrf: token(),
                created: now,
                last: now,
            },
        );
        t
    }

    /// The live session of `token` for a request from `from`. `touch` restarts its idle
    /// clock: a person's request does, a page's own background refresh does not (an open
    /// page must not keep a session alive). An ended one is removed.
    pub fn get(&self, token: &str, from: IpAddr, touch: bool) -> Option<Current> {
        let now = Instant::now();
        let d = digest(token);
        let mut table = self.lock();
        let e = table.get_mut(&d)?;
        if !live(e, now, self.idle) {
            table.remove(&d);
            return None;
        }
        if touch {
            e.last = now;
        }
        Some(Current {
            user: e.user.clone(),
            csrf: e.csrf.clone(),
            from,
            digest: d,
        })
    }

    /// Whether `token` is a live session, its clock untouched.
    pub fn is_live(&self, token: &str) -> bool {
        let d = digest(token);
        let table = self.lock();
        table
            .get(&d)
            .is_some_and(|e| live(e, Instant::now(), self.idle))
    }

    /// Ends the session of `token`, if any (at login: the browser's earlier one).
    pub fn end_token(&self, token: &str) {
        self.lock().remove(&digest(token));
    }

    pub fn end(&self, current: &Current) {
        self.lock().remove(&current.digest);
    }

    /// Ends every session: the API's credentials changed, so no cookie issued under the old
    /// ones may go on.
    pub fn end_all(&self) {
        self.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn live(e: &Entry, now: Instant, idle: Duration) -> bool {
    now.duration_since(e.last) < idle && now.duration_since(e.created) < ABSOLUTE_LIFETIME
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn sessions_expire_are_bounded_and_end() {
        let s = Sessions::new(Duration::from_millis(50));
        let t = s.create("admin");
        let c = s.get(&t, IP, true).expect("live");
        assert!(s.get("not a token", IP, true).is_none());
        std::thread::sleep(Duration::from_millis(80));
        assert!(s.get(&t, IP, true).is_none(), "idle session still live");
        let s = Sessions::new(Duration::from_secs(60));
        let first = s.create("admin");
        for _ in 0..MAX_SESSIONS * 2 {
            s.create("admin");
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(
            s.get(&first, IP, true).is_none(),
            "the oldest was not dropped"
        );
        let t = s.create("admin");
        let c2 = s.get(&t, IP, true).expect("live");
        assert_ne!(c.csrf, c2.csrf);
        s.end(&c2);
        assert!(s.get(&t, IP, true).is_none());
        let t = s.create("admin");
        s.end_token(&t);
        assert!(!s.is_live(&t));
        let (a, b) = (s.create("admin"), s.create("admin"));
        s.end_all();
        assert!(!s.is_live(&a) && !s.is_live(&b) && s.is_empty());
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }

    /// A background refresh does not keep a session alive; a person's request does.
    #[test]
    fn only_a_touch_restarts_the_idle_clock() {
        let s = Sessions::new(Duration::from_millis(150));
        let t = s.create("admin");
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(50));
            let _ = s.get(&t, IP, false);
        }
        assert!(s.get(&t, IP, false).is_none(), "refreshes kept it alive");
        let t = s.create("admin");
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(50));
            assert!(s.get(&t, IP, true).is_some(), "a used session idled out");
        }
    }
}
