//! User memory of a key: a UTF-8 value behind a read password and a write password, with a
//! failure counter that locks the memory for a while after repeated wrong passwords.
//!
//! The same rules hold for a software key (kept by [`crate::store`]) and for a USB key (kept by
//! its firmware; the simulated firmware in [`crate::hal::sim`] uses this type), so a client sees
//! one behaviour whatever holds the key.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMemory {
    value: String,
    read: PasswordDigest,
    write: PasswordDigest,
    failures: u32,
    /// Unix time in milliseconds until which every password check is refused.
    locked_until_ms: Option<i64>,
}

impl Default for UserMemory {
    fn default() -> Self {
        UserMemory {
            value: String::new(),
            read: PasswordDigest::of(""),
            write: PasswordDigest::of(""),
            failures: 0,
            locked_until_ms: None,
        }
    }
}

/// Milliseconds since the Unix epoch, the clock the lock uses.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl UserMemory {
    /// Reads the value with the read password.
    pub fn read(
        &mut self,
        password: &str,
        p: LockPolicy,
        now_ms: i64,
    ) -> Result<String, MemoryError> {
        self.check(|m| m.read.matches(password), p, now_ms)?;
        Ok(self.value.clone())
    }

    /// Writes the value with the write password. Nothing changes on any error.
    pub fn write(
        &mut self,
        password: &str,
        value: &str,
        p: LockPolicy,
        now_ms: i64,
    ) -> Result<(), MemoryError> {
        check_len(value, MAX_VALUE_BYTES, true)?;
        self.check(|m| m.write.matches(password), p, now_ms)?;
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
        now_ms: i64,
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
            now_ms,
        )?;
        self.read = PasswordDigest::of(new_read);
        self.write = PasswordDigest::of(new_write);
        Ok(())
    }

    /// Empties the value and both passwords, and clears the lock (spec §4.8).
    pub fn reset(&mut self) {
        *self = UserMemory::default();
    }

    fn check(
        &mut self,
        ok: impl FnOnce(&Self) -> bool,
        p: LockPolicy,
        now_ms: i64,
    ) -> Result<(), MemoryError> {
        if let Some(until) = self.locked_until_ms {
            if now_ms < until {
                let left = (until - now_ms + 999) / 1000;
                return Err(MemoryError::Locked {
                    retry_after_secs: left.max(1) as u64,
                });
            }
            self.locked_until_ms = None;
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
            self.locked_until_ms = Some(now_ms.saturating_add(ms));
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

    #[test]
    fn passwords_guard_and_lock() {
        let mut m = UserMemory::default();
        m.write("", "hello", pol(), 0).expect("write");
        m.set_passwords("", "", "r", "w", pol(), 0).expect("set");
        assert_eq!(m.read("r", pol(), 0).expect("read"), "hello");
        assert!(matches!(
            m.read("x", pol(), 0),
            Err(MemoryError::WrongPassword { attempts_left: 2 })
        ));
        let before = m.clone();
        assert!(m.write("r", "changed", pol(), 0).is_err());
        assert_eq!(m.value, before.value);
        assert!(matches!(
            m.read("x", pol(), 0),
            Err(MemoryError::Locked { .. })
        ));
        // Locked: even the right password is refused until the lock ends.
        assert!(matches!(
            m.read("r", pol(), 5_000),
            Err(MemoryError::Locked { .. })
        ));
        assert_eq!(m.read("r", pol(), 10_001).expect("read"), "hello");
        m.reset();
        assert_eq!(m.read("", pol(), 0).expect("read"), "");
    }

    #[test]
    fn size_limit_changes_nothing() {
        let mut m = UserMemory::default();
        let big = "я".repeat(MAX_VALUE_BYTES / 2 + 1);
        assert!(matches!(
            m.write("", &big, pol(), 0),
            Err(MemoryError::TooLarge { .. })
        ));
        assert_eq!(m, {
            let mut d = m.clone();
            d.value = String::new();
            d
        });
    }
}
