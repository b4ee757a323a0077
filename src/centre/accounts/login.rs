//! A service user's HTTP Basic login to the account API. Passwords are PBKDF2 hashes in the
//! database; like the vendor's login (`web::login`), every attempt is counted per client
//! address before its hash runs, at most `hash_workers` hashes run at once on the blocking
//! pool, and a header found right is remembered (bounded) so a busy client does not pay a hash
//! per call. The remembered digest covers the stored hash too, so a password reset forgets it.

use super::model::login_key;
use super::AccountError;
use crate::centre::Centre;
use crate::crypto::password::PasswordHash;
use crate::web::login::{basic, HeaderDigest, LoginLimits, Verified};
use crate::web::throttle::{client_key, Refused, Throttle, ThrottlePolicy};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Semaphore;

pub struct UserLogin {
    throttle: Throttle<IpAddr>,
    hashing: Arc<Semaphore>,
    hash_wait: Duration,
    verified: Mutex<Verified>,
    /// Checked against when the login is unknown or has no password, so such a refusal
    /// takes as long as a wrong password and does not tell which logins exist.
    decoy: Arc<PasswordHash>,
}

impl UserLogin {
    pub fn new(limits: LoginLimits) -> UserLogin {
        let workers = match limits.hash_workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        UserLogin {
            throttle: Throttle::new(ThrottlePolicy {
                max_failures: limits.max_failures,
                window: limits.window,
                capacity: limits.table_size,
            }),
            hashing: Arc::new(Semaphore::new(workers)),
            hash_wait: limits.hash_wait,
            verified: Mutex::new(Verified::default()),
            decoy: Arc::new(PasswordHash::new(&hex::encode(
                crate::crypto::random_bytes::<16>(),
            ))),
        }
    }

    /// The login key of the service user `header` proves, from client `ip`.
    pub async fn login(
        &self,
        centre: &Centre,
        ip: IpAddr,
        header: Option<&[u8]>,
    ) -> Result<String, AccountError> {
        let Some(h) = header else {
            return Err(AccountError::Unauthenticated(
                "credentials required: HTTP Basic with a service user's login and password".into(),
            ));
        };
        let Some((login, password)) = basic(h) else {
            return Err(AccountError::Unauthenticated(
                "the Authorization header is not HTTP Basic".into(),
            ));
        };
        let key = login_key(&login);
        let client = client_key(ip);
        let stored = centre.password_of(&key).await?;
        let digest: HeaderDigest = {
            let mut d = Sha256::new();
            d.update(h);
            d.update([0]);
            d.update(stored.as_deref().unwrap_or_default());
            d.finalize().into()
        };
        let max = self.throttle.policy().max_failures;
        if stored.is_some() && self.lock_verified().contains(&digest) {
            // The right credentials again: no guess, so not counted — unless this address is
            // locked out, which holds for every request from it.
            if self.throttle.failures(&client) >= max {
                match self.throttle.begin(&client) {
                    Err(r) => return Err(self.refused(r, ip, &login)),
                    // The window ended meanwhile: that count was not a guess; take it back.
                    Ok(_) => self.throttle.cancel(&client),
                }
            }
            return Ok(key);
        }
        let started = self
            .throttle
            .begin(&client)
            .map_err(|r| self.refused(r, ip, &login))?;
        let hash = match stored.as_deref().map(PasswordHash::parse) {
            Some(Ok(h)) => Arc::new(h),
            Some(Err(_)) => {
                tracing::error!("accounts: the stored password hash of {key:?} is malformed");
                self.decoy.clone()
            }
            None => self.decoy.clone(),
        };
        let permit = tokio::time::timeout(self.hash_wait, self.hashing.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok);
        let Some(permit) = permit else {
            if started.tracked() {
                self.throttle.cancel(&client);
            }
            return Err(AccountError::Busy(1));
        };
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hash.verify(&password)
        })
        .await
        .unwrap_or(false)
            && stored.is_some();
        if ok {
            self.throttle.succeed(&client);
            self.lock_verified().insert(digest);
            return Ok(key);
        }
        tracing::warn!(
            client = %ip,
            login = %login.chars().take(64).collect::<String>(),
            failures = started.failures,
            "accounts: failed login"
        );
        Err(AccountError::Unauthenticated(
            "wrong login or password".into(),
        ))
    }

    /// Hashes a new user's password on the blocking pool, within the hash workers.
    pub async fn hash(&self, password: String) -> Result<PasswordHash, AccountError> {
        let permit = tokio::time::timeout(self.hash_wait, self.hashing.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(AccountError::Busy(1))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            PasswordHash::new(&password)
        })
        .await
        .map_err(|_| AccountError::Internal)
    }

    fn lock_verified(&self) -> std::sync::MutexGuard<'_, Verified> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn refused(&self, r: Refused, ip: IpAddr, login: &str) -> AccountError {
        match r {
            Refused::Locked {
                retry_after,
                failures,
            } => {
                tracing::warn!(
                    client = %ip,
                    login = %login.chars().take(64).collect::<String>(),
                    failures,
                    "accounts: login refused, too many failures"
                );
                AccountError::Throttled(retry_after.as_secs().max(1))
            }
            Refused::Full => AccountError::Busy(60),
        }
    }
}
