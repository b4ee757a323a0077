//! User memory of a key: a UTF-8 value behind a read password and a write password, with a
//! failure counter that locks the memory for a while after repeated wrong passwords.
//!
//! The same rules hold for a software key (kept by [`crate::store`]) and for a USB key (kept by
//! its firmware; the simulated firmware in [`crate::hal::sim`] uses this type), so a client sees
//! one behaviour whatever holds the key.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// Largest memory value, in bytes of UTF-8. Documented in `docs/api.md`.
pub const MAX_VALUE_BYTES: usize = 4096;
/// Largest password, in bytes of UTF-8.
pub const MAX_PASSWORD_BYTES: usize = 256;

/// How many wrong passwords in a row lock the memory, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockPolicy {
    pub max_failures: u32,
    pub lock_for: Duration,
}

impl Default for LockPolicy {
    fn default() -> Self {
        LockPolicy {
            max_failures: 5,
            lock_for: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MemoryError {
    #[error("wrong password; {attempts_left} attempt(s) left before the memory locks")]
    WrongPassword { attempts_left: u32 },
    #[error("too many wrong passwords: the memory is locked for another {retry_after_secs} s")]
    Locked { retry_after_secs: u64 },
    #[error("the value is {got} bytes; user memory holds at most {max} bytes")]
    TooLarge { max: usize, got: usize },
    #[error("a password is {got} bytes; at most {max} bytes are allowed")]
    PasswordTooLong { max: usize, got: usize },
}

/// A salted SHA-256 of a password. Stored instead of the password itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordDigest {
    salt: String,
    digest: String,
}

impl PasswordDigest {
    pub fn of(password: &str) -> Self {
        use rand::RngCore;
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        let salt = hex::encode(salt);
        let digest = Self::compute(&salt, password);
        PasswordDigest { salt, digest }
    }

    fn compute(salt: &str, password: &str) -> String {
        let mut h = Sha256::new();
        h.update(salt.as_bytes());
        h.update(password.as_bytes());
        hex::encode(h.finalize())
    }

    fn matches(&self, password: &str) -> bool {
        let got = Self::compute(&self.salt, password);
        got.as_bytes().ct_eq(self.digest.as_bytes()).into()
    }
}

/// The state of one key's user memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserMemory {
    value: String,
    read: PasswordDigest,
    write: PasswordDigest,
    failures: u32,
    /// Unix time in milliseconds until which every password check is refused. Stored, so a
    /// restart does not lift a lock; only consulted when `lock_deadline` is unknown.
    locked_until_ms: Option<i64>,
    /// The same lock on the monotonic clock, which is what decides while this process runs:
    /// setting the wall clock forward must not end a lock early, nor back make it last longer.
    #[serde(skip)]
    lock_deadline: Option<Instant>,
}

/// Equality of what is stored: the monotonic deadline is this process's view of the stored
/// lock, not a change to save.
impl PartialEq for UserMemory {
    fn eq(&self, o: &Self) -> bool {
        self.value == o.value
            && self.read == o.read
            && self.write == o.write
            && self.failures == o.failures
            && self.locked_until_ms == o.locked_until_ms
    }
}

impl Eq for UserMemory {}

/// The current time on both clocks: monotonic for the lock, wall for what is stored.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub wall_ms: i64,
}

impl Now {
    pub fn current() -> Now {
        Now {
            mono: Instant::now(),
            wall_ms: now_ms(),
        }
    }
}

impl Default for UserMemory {
    fn default() -> Self {
        UserMemory {
            value: String::new(),
            read: PasswordDigest::of(""),
            write: PasswordDigest::of(""),
            failures: 0,
            locked_until_ms: None,
            lock_deadline: None,
        }
    }
}

/// Milliseconds since the Unix epoch, the clock the stored lock uses.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl UserMemory {
    /// Reads the value with the read password.
    pub fn read(&mut self, password: &str, p: LockPolicy, now: Now) -> Result<String, MemoryError> {
        self.check(|m| m.read.matches(password), p, now)?;
        Ok(self.value.clone())
    }

    /// Writes the value with the write password. Nothing changes on any error.
    pub fn write(
        &mut self,
        password: &str,
        value: &str,
        p: LockPolicy,
        now: Now,
    ) -> Result<(), MemoryError> {
        check_len(value, MAX_VALUE_BYTES, true)?;
        self.check(|m| m.write.matches(password), p, now)?;
        self.value = value.to_owned();
        Ok(())
    }

    /// Replaces both passwords; both current ones must match.
    pub fn set_passwords(
        &mut self,
        read: &str,
        write: &str,
        new_read: &str,
        new_write: &str,
        p: LockPolicy,
        now: Now,
    ) -> Result<(), MemoryError> {
        for pw in [read, write, new_read, new_write] {
            check_len(pw, MAX_PASSWORD_BYTES, false)?;
        }
        // Both digests are always computed so timing does not tell which one was wrong.
        self.check(
            |m| {
                let r = m.read.matches(read);
                let w = m.write.matches(write);
                r & w
            },
            p,
            now,
        )?;
        self.read = PasswordDigest::of(new_read);
        self.write = PasswordDigest::of(new_write);
        Ok(())
    }

    /// Empties the value and both passwords, and clears the lock (spec §4.8).
    pub fn reset(&mut self) {
        *self = UserMemory::default();
    }

    /// The monotonic end of the current lock, if the memory is locked at `now`. A stored
    /// lock whose monotonic end this process does not know (it was read from storage after a
    /// restart) takes what the wall clock says is left, but never more than the policy's lock.
    pub fn lock_deadline(&mut self, p: LockPolicy, now: Now) -> Option<Instant> {
        let Some(until_ms) = self.locked_until_ms else {
            self.lock_deadline = None;
            return None;
        };
        let deadline = self.lock_deadline.unwrap_or_else(|| {
            let max_ms = i64::try_from(p.lock_for.as_millis()).unwrap_or(i64::MAX);
            let left_ms = until_ms.saturating_sub(now.wall_ms).clamp(0, max_ms);
            now.mono + Duration::from_millis(left_ms.unsigned_abs())
        });
        if now.mono < deadline {
            self.lock_deadline = Some(deadline);
            Some(deadline)
        } else {
            self.locked_until_ms = None;
            self.lock_deadline = None;
            None
        }
    }

    /// Gives this memory (just read from storage) the monotonic lock deadline this process
    /// recorded for it, so a lock runs on the monotonic clock across reloads.
    pub fn resume_lock(&mut self, deadline: Option<Instant>) {
        if self.locked_until_ms.is_some() {
            self.lock_deadline = deadline;
        }
    }

    fn check(
        &mut self,
        ok: impl FnOnce(&Self) -> bool,
        p: LockPolicy,
        now: Now,
    ) -> Result<(), MemoryError> {
        if let Some(deadline) = self.lock_deadline(p, now) {
            let left = deadline.saturating_duration_since(now.mono);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            return Err(MemoryError::Locked {
                retry_after_secs: secs.max(1),
            });
        }
        if ok(self) {
            self.failures = 0;
            return Ok(());
        }
        self.failures += 1;
        let max = p.max_failures.max(1);
        if self.failures >= max {
            self.failures = 0;
            let ms = i64::try_from(p.lock_for.as_millis()).unwrap_or(i64::MAX / 2);
            self.locked_until_ms = Some(now.wall_ms.saturating_add(ms));
            self.lock_deadline = Some(now.mono + p.lock_for);
            return Err(MemoryError::Locked {
                retry_after_secs: p.lock_for.as_secs().max(1),
            });
        }
        Err(MemoryError::WrongPassword {
            attempts_left: max - self.failures,
        })
    }
}

fn check_len(s: &str, max: usize, value: bool) -> Result<(), MemoryError> {
    if s.len() <= max {
        return Ok(());
    }
    Err(if value {
        MemoryError::TooLarge { max, got: s.len() }
    } else {
        MemoryError::PasswordTooLong { max, got: s.len() }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pol() -> LockPolicy {
        LockPolicy {
            max_failures: 3,
            lock_for: Duration::from_secs(10),
        }
    }

    /// `ms` after a fixed start on both clocks.
    fn at(t0: Instant, ms: u64) -> Now {
        Now {
            mono: t0 + Duration::from_millis(ms),
            wall_ms: 1_700_000_000_000 + i64::try_from(ms).expect("ms"),
        }
    }

    #[test]
    fn passwords_guard_and_lock() {
        let t0 = Instant::now();
        let mut m = UserMemory::default();
        m.write("", "hello", pol(), at(t0, 0)).expect("write");
        m.set_passwords("", "", "r", "w", pol(), at(t0, 0))
            .expect("set");
        assert_eq!(m.read("r", pol(), at(t0, 0)).expect("read"), "hello");
        assert!(matches!(
            m.read("x", pol(), at(t0, 0)),
            Err(MemoryError::WrongPassword { attempts_left: 2 })
        ));
        let before = m.clone();
        assert!(m.write("r", "changed", pol(), at(t0, 0)).is_err());
        assert_eq!(m.value, before.value);
        assert!(matches!(
            m.read("x", pol(), at(t0, 0)),
            Err(MemoryError::Locked { .. })
        ));
        // Locked: even the right password is refused until the lock ends.
        assert!(matches!(
            m.read("r", pol(), at(t0, 5_000)),
            Err(MemoryError::Locked {
                retry_after_secs: 5
            })
        ));
        assert_eq!(m.read("r", pol(), at(t0, 10_001)).expect("read"), "hello");
        m.reset();
        assert_eq!(m.read("", pol(), at(t0, 0)).expect("read"), "");
    }

    fn locked_memory(t0: Instant) -> UserMemory {
        let mut m = UserMemory::default();
        for _ in 0..3 {
            let _ = m.read("wrong", pol(), at(t0, 0));
        }
        assert!(matches!(
            m.read("", pol(), at(t0, 0)),
            Err(MemoryError::Locked { .. })
        ));
        m
    }

    #[test]
    fn the_lock_runs_on_the_monotonic_clock() {
        let t0 = Instant::now();
        // The wall clock jumps a day forward: still locked.
        let mut m = locked_memory(t0);
        let jumped = Now {
            mono: t0 + Duration::from_secs(1),
            wall_ms: at(t0, 0).wall_ms + 86_400_000,
        };
        assert!(matches!(
            m.read("", pol(), jumped),
            Err(MemoryError::Locked {
                retry_after_secs: 9
            })
        ));
        // The wall clock goes a day back: the lock still ends after its 10 s.
        let back = Now {
            mono: t0 + Duration::from_millis(10_001),
            wall_ms: at(t0, 0).wall_ms - 86_400_000,
        };
        assert_eq!(m.read("", pol(), back).expect("unlocked"), "");
    }

    #[test]
    fn a_stored_lock_survives_a_restart_but_never_outlasts_the_policy() {
        let t0 = Instant::now();
        let original = locked_memory(t0);
        let stored = serde_json::to_vec(&original).expect("save");
        // Read back (a restart): the wall clock says 4 s are left.
        let mut m: UserMemory = serde_json::from_slice(&stored).expect("load");
        assert_eq!(m, original, "what is stored is equal");
        let later = at(t0, 6_000);
        assert!(matches!(
            m.read("", pol(), later),
            Err(MemoryError::Locked {
                retry_after_secs: 4
            })
        ));
        assert_eq!(m.read("", pol(), at(t0, 10_001)).expect("unlocked"), "");
        // The wall clock was set back a year before the restart: at most the policy's 10 s.
        let mut m: UserMemory = serde_json::from_slice(&stored).expect("load");
        let restarted = Now {
            mono: t0 + Duration::from_secs(100),
            wall_ms: at(t0, 0).wall_ms - 365 * 86_400_000,
        };
        assert!(matches!(
            m.read("", pol(), restarted),
            Err(MemoryError::Locked {
                retry_after_secs: 10
            })
        ));
        let after = Now {
            mono: restarted.mono + Duration::from_millis(10_001),
            wall_ms: restarted.wall_ms,
        };
        assert_eq!(m.read("", pol(), after).expect("unlocked"), "");
        // A process that knows the monotonic deadline hands it to a freshly loaded copy.
        let mut a = original;
        let deadline = a.lock_deadline(pol(), at(t0, 0));
        assert!(deadline.is_some());
        let mut b: UserMemory = serde_json::from_slice(&stored).expect("load");
        b.resume_lock(deadline);
        let jumped = Now {
            mono: t0 + Duration::from_secs(2),
            wall_ms: at(t0, 0).wall_ms + 86_400_000,
        };
        assert!(matches!(
            b.read("", pol(), jumped),
            Err(MemoryError::Locked {
                retry_after_secs: 8
            })
        ));
    }

    #[test]
    fn size_limit_changes_nothing() {
        let mut m = UserMemory::default();
        let big = "я".repeat(MAX_VALUE_BYTES / 2 + 1);
        assert!(matches!(
            m.write("", &big, pol(), Now::current()),
            Err(MemoryError::TooLarge { .. })
        ));
        assert_eq!(m, {
            let mut d = m.clone();
            d.value = String::new();
            d
        });
    }
}
