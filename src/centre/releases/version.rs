//! Versions as 1C writes them (`4.0.4.11`, `2.5.8.191`), compared numerically part by part:
//! `4.0.4.10` is newer than `4.0.4.9`, and missing trailing parts count as 0 (`4.0` = `4.0.0`).

use std::cmp::Ordering;

/// Most parts a version may have.
const MAX_PARTS: usize = 8;
/// Most digits in one part (keeps every part in a u64).
const MAX_DIGITS: usize = 9;

#[derive(Debug, Clone)]
pub struct Version(Vec<u64>);

impl Version {
    /// Parses 1-8 dot-separated parts of 1-9 digits each; the error says what is wrong.
    pub fn parse(s: &str) -> Result<Version, String> {
        if s.is_empty() {
            return Err("a version must not be empty".into());
        }
        let mut parts = Vec::new();
        for p in s.split('.') {
            if p.is_empty() || p.len() > MAX_DIGITS || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "{s:?} is not a version: 1-{MAX_PARTS} dot-separated numbers of 1-{MAX_DIGITS} digits, e.g. 4.0.4.11"
                ));
            }
            parts.push(p.parse::<u64>().map_err(|e| e.to_string())?);
        }
        if parts.len() > MAX_PARTS {
            return Err(format!("{s:?} has more than {MAX_PARTS} parts"));
        }
        Ok(Version(parts))
    }

    fn part(&self, i: usize) -> u64 {
        self.0.get(i).copied().unwrap_or(0)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.0.len().max(other.0.len());
        (0..n)
            .map(|i| self.part(i).cmp(&other.part(i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Version {}

#[cfg(test)]
mod tests {
    use super::Version;

    fn v(s: &str) -> Version {
        Version::parse(s).expect("version")
    }

    #[test]
    fn numeric_part_by_part() {
        assert!(v("4.0.4.10") > v("4.0.4.9"));
        assert!(v("4.0.4.11") > v("4.0.4.9"));
        assert!(v("10.0") > v("9.99.99"));
        assert_eq!(v("4.0"), v("4.0.0.0"));
        assert_eq!(v("4.00.1"), v("4.0.1"));
        assert!(v("2.5.8.191") < v("2.5.9"));
        for bad in [
            "",
            ".",
            "4..1",
            "4.0.",
            "a.b",
            "1.2.3.4.5.6.7.8.9",
            "1234567890",
            "-1",
            " 1",
            "1,2",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad:?}");
        }
    }
}
