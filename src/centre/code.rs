//! Activation codes: 20 digits in five groups of four (`4345-9320-2035-7421-5361`), 19 random
//! digits from the OS's CSPRNG (≈ 63 bits: unguessable) and a Damm check digit, which catches
//! every single-digit typo and every swap of adjacent digits — on the host, before any network
//! call.

use std::fmt;
use thiserror::Error;

const DIGITS: usize = 20;

/// The Damm algorithm's quasigroup table (order 10, weakly totally anti-symmetric).
const DAMM: [[u8; 10]; 10] = [
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
    [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
    [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
    [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
    [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
    [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
];

fn damm(digits: &[u8]) -> u8 {
    digits
        .iter()
        .fold(0u8, |i, &d| DAMM[usize::from(i)][usize::from(d)])
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodeError {
    #[error("an activation code has {DIGITS} digits in groups of four; this one has {0}")]
    Length(usize),
    #[error("an activation code has only digits and dashes")]
    Character,
    #[error("the activation code has a typo (its check digit does not match)")]
    CheckDigit,
}

/// A well-formed activation code (its check digit verified). `Debug` shows it
/// [redacted](ActivationCode::redacted), so a request logged by mistake does not carry it;
/// `Display` gives the code.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ActivationCode([u8; DIGITS]);

impl fmt::Debug for ActivationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActivationCode({})", self.redacted())
    }
}

impl ActivationCode {
    /// A fresh random code.
    pub fn generate() -> Self {
        use rand::Rng;
        let mut rng = rand::rngs::OsRng;
        let mut d = [0u8; DIGITS];
        for x in d.iter_mut().take(DIGITS - 1) {
            *x = rng.gen_range(0..10);
        }
        d[DIGITS - 1] = damm(&d[..DIGITS - 1]);
        ActivationCode(d)
    }

    /// Reads a code as a person types it: dashes and spaces are ignored.
    pub fn parse(text: &str) -> Result<Self, CodeError> {
        let mut d = Vec::with_capacity(DIGITS);
        for c in text.chars() {
            match c {
                '0'..='9' => d.push(c as u8 - b'0'),
                '-' | ' ' => {}
                _ => return Err(CodeError::Character),
            }
        }
        let digits: [u8; DIGITS] = d
            .as_slice()
            .try_into()
            .map_err(|_| CodeError::Length(d.len()))?;
        if damm(&digits) != 0 {
            return Err(CodeError::CheckDigit);
        }
        Ok(ActivationCode(digits))
    }
}

impl ActivationCode {
    /// The code with all but its last group masked (`****-****-****-****-5361`): enough for
    /// the vendor to find it in `centre code-list`, never enough to use it. Logs carry this,
    /// never the code.
    pub fn redacted(&self) -> String {
        let tail: String = self.0[DIGITS - 4..]
            .iter()
            .map(|d| char::from(b'0' + d))
            .collect();
        format!("****-****-****-****-{tail}")
    }

    /// The code's digits, for keyed hashing (`centre::http`), without a formatted copy.
    pub fn digits(&self) -> &[u8; DIGITS] {
        &self.0
    }
}

impl fmt::Display for ActivationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 && i % 4 == 0 {
                f.write_str("-")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_parse_and_typos_are_caught() {
        for _ in 0..200 {
            let c = ActivationCode::generate();
            let s = c.to_string();
            assert_eq!(s.len(), 24);
            assert_eq!(ActivationCode::parse(&s), Ok(c.clone()));
            assert_eq!(ActivationCode::parse(&s.replace('-', "")), Ok(c.clone()));
            // Every single-digit change and every adjacent swap is caught.
            let digits: Vec<u8> = c.0.to_vec();
            for i in 0..DIGITS {
                for v in 0..10u8 {
                    if v != digits[i] {
                        let mut t = digits.clone();
                        t[i] = v;
                        assert_ne!(damm(&t), 0);
                    }
                }
                if i + 1 < DIGITS && digits[i] != digits[i + 1] {
                    let mut t = digits.clone();
                    t.swap(i, i + 1);
                    assert_ne!(damm(&t), 0);
                }
            }
        }
        let c = ActivationCode::parse("4345-9320-2035-7421-5369").expect("code");
        assert_eq!(c.redacted(), "****-****-****-****-5369");
        assert_eq!(format!("{c:?}"), "ActivationCode(****-****-****-****-5369)");
        assert_eq!(ActivationCode::parse("1234"), Err(CodeError::Length(4)));
        assert_eq!(ActivationCode::parse("1234-x"), Err(CodeError::Character));
    }
}
