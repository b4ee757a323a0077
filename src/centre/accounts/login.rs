//! A service user's HTTP Basic login to the account API. Passwords are PBKDF2 hashes in the
//! database; like the vendor's login (`web::login`), every attempt is counted per client
//! address before its hash runs, at most `hash_workers` hashes run at once on the blocking
//! pool, identical headers in flight from one address share one check, and a header found
//! right is remembered (bounded) so a busy client does not pay a hash per call. The remembered
//! digest covers the stored hash too, so a password reset forgets it. Unlike the vendor's
//! single-user login, a success takes back only its own attempt: many users share an address,
//! and one's right password must not reset the count of another's guesses.

use super::model::login_key;
use super::AccountError;
use crate::centre::Centre;
use crate::crypto::password::PasswordHash;
use crate::web::login::{basic, HeaderDigest, LoginLimits, Verified};
use crate::web::throttle::{client_key, Refused, Throttle};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OnceCell, Semaphore};

/// How many distinct checks may be shared at once before new ones run on their own.
const MAX_FLIGHTS: usize = 1024;

/// What one check found, shared by every identical request in flight.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Ok,
    Wrong,
    Throttled(u64),
    Busy(u64),
}

type Flight = Arc<OnceCell<Outcome>>;

pub struct UserLogin {
    flights: Mutex<HashMap<(IpAddr, HeaderDigest), Flight>>,
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
        UserLogin {
            flights: Mutex::new(HashMap::new()),
            throttle: limits.throttle(),
            hashing: limits.hash_semaphore(),
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
        // Identical headers from one address in flight at once share one check (and one
        // count), so a client's burst of calls with the right password is not locked out by
        // its own parallelism; beyond MAX_FLIGHTS distinct checks each runs on its own.
        let flight = {
            let mut f = self.lock_flights();
            if f.len() < MAX_FLIGHTS || f.contains_key(&(client, digest)) {
                Some(f.entry((client, digest)).or_default().clone())
            } else {
                None
            }
        };
        let check = || self.check(&client, ip, &login, &password, stored.as_deref(), digest);
        let outcome = match &flight {
            Some(cell) => *cell.get_or_init(check).await,
            None => check().await,
        };
        if let Some(cell) = flight {
            let mut f = self.lock_flights();
            if f.get(&(client, digest))
                .is_some_and(|c| Arc::ptr_eq(c, &cell))
            {
                f.remove(&(client, digest));
            }
        }
        match outcome {
            Outcome::Ok => Ok(key),
            Outcome::Wrong => Err(AccountError::Unauthenticated(
                "wrong login or password".into(),
            )),
            Outcome::Throttled(s) => Err(AccountError::Throttled(s)),
            Outcome::Busy(s) => Err(AccountError::Busy(s)),
        }
    }

    /// One counted, hashed check of a password against the stored hash (`None`: no such
    /// user, or no password: checked against the decoy and refused).
    async fn check(
        &self,
        client: &IpAddr,
        ip: IpAddr,
        login: &str,
        password: &str,
        stored: Option<&str>,
        digest: HeaderDigest,
    ) -> Outcome {
        let started = match self.throttle.begin(client) {
            Ok(s) => s,
            Err(r) => {
                return match self.refused(r, ip, login) {
                    AccountError::Throttled(s) => Outcome::Throttled(s),
                    _ => Outcome::Busy(60),
                }
            }
        };
        let hash = match stored.map(PasswordHash::parse) {
            Some(Ok(h)) => Arc::new(h),
            Some(Err(_)) => {
                tracing::error!("accounts: the stored password hash of {login:?} is malformed");
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
                self.throttle.cancel(client);
            }
            return Outcome::Busy(1);
        };
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hash.verify(&password)
        })
        .await
        .unwrap_or(false)
            && stored.is_some();
        if ok {
            // Only this attempt is taken back: one user's right password must not wipe the
            // failures others' guesses from this address have run up.
            if started.tracked() {
                self.throttle.cancel(client);
            }
            self.lock_verified().insert(digest);
            return Outcome::Ok;
        }
        tracing::warn!(
            client = %ip,
            login = %login.chars().take(64).collect::<String>(),
            failures = started.failures,
            "accounts: failed login"
        );
        Outcome::Wrong
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

    fn lock_flights(&self) -> std::sync::MutexGuard<'_, HashMap<(IpAddr, HeaderDigest), Flight>> {
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
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
