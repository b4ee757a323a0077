//! Timestamps on the wire: UTC, `YYYY-MM-DDTHH:MM:SS.mmmZ`, because real СЛК clients parse
//! exactly three fractional digits and a `Z`.

use chrono::{DateTime, NaiveDateTime, Utc};

pub type Timestamp = DateTime<Utc>;

/// Current time, truncated to milliseconds so that what is stored equals what is shown.
pub fn now() -> Timestamp {
    let n = Utc::now();
    DateTime::from_timestamp_millis(n.timestamp_millis()).unwrap_or(n)
}

/// Formats a timestamp the way the wire wants it.
pub fn format(ts: &Timestamp) -> String {
    ts.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Parses a timestamp sent by a client: RFC 3339 with any zone, a zone-less
/// `YYYY-MM-DDTHH:MM:SS[.fff]` (as in the spec's own request example) read as UTC, or a date
/// alone (its midnight, UTC).
pub fn parse_client(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(n.and_utc());
        }
    }
    // A date alone means its midnight, UTC.
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|n| n.and_utc())
}

/// Serde helpers for the wire format, used by the API's JSON types.
pub mod wire {
    use super::Timestamp;
    use serde::Serializer;

    pub fn opt<S: Serializer>(v: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(t) => s.serialize_str(&super::format(t)),
            None => s.serialize_none(),
        }
    }

    pub fn req<S: Serializer>(v: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_three_digits_and_z() {
        let t = parse_client("2018-04-02T20:41:13.272Z").expect("parse");
        assert_eq!(format(&t), "2018-04-02T20:41:13.272Z");
        let t = parse_client("2020-01-01T12:52:20").expect("parse");
        assert_eq!(format(&t), "2020-01-01T12:52:20.000Z");
        let t = parse_client("2020-01-01T15:52:20+03:00").expect("parse");
        assert_eq!(format(&t), "2020-01-01T12:52:20.000Z");
        assert!(parse_client("yesterday").is_none());
        let t = parse_client("2030-01-01").expect("date");
        assert_eq!(format(&t), "2030-01-01T00:00:00.000Z");
    }
}
