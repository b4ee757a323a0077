//! Password hashes for the API's Basic-auth credentials: PBKDF2-HMAC-SHA256 in the text form
//! `pbkdf2-sha256$ITERATIONS$SALT_B64$HASH_B64`, so a config file can hold one.

use aws_lc_rs::pbkdf2;
use std::num::NonZeroU32;

const DEFAULT_ITERATIONS: u32 = 100_000;
const PREFIX: &str = "pbkdf2-sha256";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
#[error("not a password hash of the form pbkdf2-sha256$ITERATIONS$SALT$HASH")]
pub struct BadPasswordHash;

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    pub fn new(password: &str) -> Self {
        let salt = super::random_bytes::<16>().to_vec();
        let iterations = NonZeroU32::new(DEFAULT_ITERATIONS).unwrap_or(NonZeroU32::MIN);
        let mut hash = vec![0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            password.as_bytes(),
            &mut hash,
        );
        PasswordHash {
            iterations,
            salt,
            hash,
        }
    }

    /// Constant-time check of `password` against this hash.
    pub fn verify(&self, password: &str) -> bool {
        pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            self.iterations,
            &self.salt,
            password.as_bytes(),
            &self.hash,
        )
        .is_ok()
    }

    pub fn parse(text: &str) -> Result<Self, BadPasswordHash> {
        let mut parts = text.trim().split('$');
        let (Some(PREFIX), Some(iter), Some(salt), Some(hash), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(BadPasswordHash);
        };
        let iterations = iter
            .parse::<u32>()
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or(BadPasswordHash)?;
        let salt = super::unb64(salt).ok_or(BadPasswordHash)?;
        let hash = super::unb64(hash).ok_or(BadPasswordHash)?;
        if hash.is_empty() {
            return Err(BadPasswordHash);
        }
        Ok(PasswordHash {
            iterations,
            salt,
            hash,
        })
    }
}

impl std::fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{PREFIX}${}${}${}",
            self.iterations,
            super::b64(&self.salt),
            super::b64(&self.hash)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_check() {
        let h = PasswordHash::new("s3cret");
        let parsed = PasswordHash::parse(&h.to_string()).expect("parse");
        assert!(parsed.verify("s3cret"));
        assert!(!parsed.verify("s3creT"));
        assert!(PasswordHash::parse("plain").is_err());
        assert!(PasswordHash::parse("pbkdf2-sha256$0$AA==$AA==").is_err());
    }
}
