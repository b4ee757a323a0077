//! A bounded table of failed attempts per key (a client address, a licence being proven),
//! on the monotonic clock. Shared by the login gate and the centre's proof checks.
//!
//! An attempt is counted when it *starts* ([`Throttle::begin`]), before the slow check it
//! guards, so N parallel wrong guesses count as N and only the first `max_failures` of them
//! reach the check; a success takes its own attempt back and clears the key. The table holds
//! at most `capacity` keys: when full it first drops entries whose window has passed, and if
//! it is still full it never evicts a live entry (that would unlock a locked-out key). What a
//! new key gets then is the table's [`WhenFull`] policy: refused (fail closed, the default:
//! the login gate, where a password can be guessed) or let through untracked (the centre's
//! proofs, where the secret is a 63-bit code nobody guesses in a window's worth of tries, and
//! refusing would let anyone with enough addresses lock every customer out).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    /// Attempts that may fail within `window` before the key is refused.
    pub max_failures: u32,
    pub window: Duration,
    /// Most keys tracked at once.
    pub capacity: usize,
}

/// What a full table does with a key it does not track yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Refuse the attempt ([`Refused::Full`]).
    #[default]
    FailClosed,
    /// Let the attempt proceed without counting it ([`Started::failures`] is 0), and log that
    /// this happens (at most once per [`FULL_LOG_INTERVAL`]).
    Untracked,
}

/// How often a table letting keys through untracked says so in the log.
pub const FULL_LOG_INTERVAL: Duration = Duration::from_secs(60);

struct Entry {
    failures: u32,
    since: Instant,
}

struct Table<K> {
    entries: HashMap<K, Entry>,
    /// When an untracked attempt was last logged.
    full_logged: Option<Instant>,
}

pub struct Throttle<K> {
    policy: ThrottlePolicy,
    when_full: WhenFull,
    /// Names the table in log lines.
    name: &'static str,
    table: Mutex<Table<K>>,
}

/// Why an attempt may not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Too many failures: try again after this long. `failures` counts this attempt too.
    Locked {
        retry_after: Duration,
        failures: u32,
    },
    /// The table is full of other failing keys.
    Full,
}

/// The outcome of [`Throttle::begin`] for an attempt allowed to proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// Attempts counted for this key in the current window, this one included; 0 when the
    /// table was full and let the attempt through untracked ([`WhenFull::Untracked`]).
    pub failures: u32,
}

impl Started {
    /// Whether the attempt was counted (and so may be given back with [`Throttle::cancel`]).
    pub fn tracked(&self) -> bool {
        self.failures > 0
    }
}

impl<K: Hash + Eq + Clone> Throttle<K> {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Throttle {
            policy: ThrottlePolicy {
                max_failures: policy.max_failures.max(1),
                capacity: policy.capacity.max(1),
                ..policy
            },
            when_full: WhenFull::FailClosed,
            name: "throttle",
            table: Mutex::new(Table {
                entries: HashMap::new(),
                full_logged: None,
            }),
        }
    }

    /// What a full table does with new keys (default [`WhenFull::FailClosed`]); `name` says
    /// which table it is in the log.
    pub fn when_full(mut self, when_full: WhenFull, name: &'static str) -> Self {
        self.when_full = when_full;
        self.name = name;
        self
    }

    pub fn policy(&self) -> ThrottlePolicy {
        self.policy
    }

    /// Counts an attempt by `key` as failed until [`Throttle::succeed`] says otherwise.
    pub fn begin(&self, key: &K) -> Result<Started, Refused> {
        let now = Instant::now();
        let w = self.policy.window;
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let t = &mut table.entries;
        if !t.contains_key(key) && t.len() >= self.policy.capacity {
            t.retain(|_, e| now.duration_since(e.since) < w);
            if t.len() >= self.policy.capacity {
                return match self.when_full {
                    WhenFull::FailClosed => Err(Refused::Full),
                    WhenFull::Untracked => {
                        if table
                            .full_logged
                            .is_none_or(|at| now.duration_since(at) >= FULL_LOG_INTERVAL)
                        {
                            table.full_logged = Some(now);
                            tracing::warn!(
                                table = self.name,
                                capacity = self.policy.capacity,
                                "failure table full of keys failing within the window: new keys proceed untracked (logged at most once a minute)"
                            );
                        }
                        Ok(Started { failures: 0 })
                    }
                };
            }
        }
        let e = t.entry(key.clone()).or_insert(Entry {
            failures: 0,
            since: now,
        });
        if now.duration_since(e.since) >= w {
            *e = Entry {
                failures: 0,
                since: now,
            };
        }
        e.failures = e.failures.saturating_add(1);
        if e.failures > self.policy.max_failures {
            let retry_after = w.saturating_sub(now.duration_since(e.since));
            return Err(Refused::Locked {
                retry_after: retry_after.max(Duration::from_secs(1)),
                failures: e.failures,
            });
        }
        Ok(Started {
            failures: e.failures,
        })
    }

    /// The attempt succeeded: forget the key's failures.
    pub fn succeed(&self, key: &K) {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .remove(key);
    }

    /// The attempt was not really one (e.g. no credentials were sent): give it back.
    pub fn cancel(&self, key: &K) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let t = &mut table.entries;
        if let Some(e) = t.get_mut(key) {
            e.failures = e.failures.saturating_sub(1);
            if e.failures == 0 {
                t.remove(key);
            }
        }
    }

    /// Failures counted for `key` in its current window.
    pub fn failures(&self, key: &K) -> u32 {
        let t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        t.entries
            .get(key)
            .filter(|e| e.since.elapsed() < self.policy.window)
            .map_or(0, |e| e.failures)
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The throttle key for a client address: IPv6 clients by their /64, since one host usually
/// holds a whole /64 and could otherwise pick a fresh address per guess.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max: u32, cap: usize) -> ThrottlePolicy {
        ThrottlePolicy {
            max_failures: max,
            window: Duration::from_secs(60),
            capacity: cap,
        }
    }

    #[test]
    fn counts_every_attempt_and_locks() {
        let t = Throttle::new(policy(3, 10));
        for n in 1..=3 {
            assert_eq!(t.begin(&1), Ok(Started { failures: n }));
        }
        assert!(matches!(
            t.begin(&1),
            Err(Refused::Locked { failures: 4, .. })
        ));
        assert_eq!(t.failures(&1), 4);
        t.succeed(&2);
        assert!(t.begin(&2).is_ok());
        t.succeed(&2);
        assert_eq!(t.failures(&2), 0);
    }

    #[test]
    fn bounded_and_fails_closed() {
        let t = Throttle::new(policy(3, 2));
        assert!(t.begin(&1).is_ok());
        assert!(t.begin(&2).is_ok());
        assert_eq!(t.begin(&3), Err(Refused::Full));
        assert_eq!(t.len(), 2);
        t.cancel(&1);
        assert!(t.begin(&3).is_ok());
    }

    #[test]
    fn untracked_when_full_lets_new_keys_through_uncounted() {
        let t = Throttle::new(policy(1, 2)).when_full(WhenFull::Untracked, "test");
        assert!(t.begin(&1).is_ok());
        assert!(t.begin(&2).is_ok());
        // Full: a new key proceeds, uncounted, as often as it likes; the table stays bounded.
        for _ in 0..5 {
            let s = t.begin(&3).expect("untracked");
            assert!(!s.tracked());
        }
        assert_eq!((t.len(), t.failures(&3)), (2, 0));
        // Tracked keys are still counted and locked: nothing was evicted.
        assert!(matches!(t.begin(&1), Err(Refused::Locked { .. })));
        assert!(matches!(t.begin(&2), Err(Refused::Locked { .. })));
        // The default stays fail closed.
        let closed = Throttle::new(policy(1, 1));
        assert!(closed.begin(&1).is_ok());
        assert_eq!(closed.begin(&2), Err(Refused::Full));
    }

    #[test]
    fn ipv6_by_prefix() {
        let a: IpAddr = "2001:db8::1".parse().expect("ip");
        let b: IpAddr = "2001:db8::ffff:2".parse().expect("ip");
        assert_eq!(client_key(a), client_key(b));
        let m: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        assert_eq!(client_key(m), "10.0.0.1".parse::<IpAddr>().expect("ip"));
    }
}
