use super::LicenceError;
use crate::time::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Where a licence may be used.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Binding {
    /// A software key on the machine with this ComputerID.
    Computer(String),
    /// A key installed on the USB key (blank) with this serial number.
    Device(u64),
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Binding::Computer(id) => write!(f, "computer {id}"),
            Binding::Device(s) => write!(f, "USB key {s}"),
        }
    }
}

/// KeyType in the API: 3 main, 4 additional, 5 demonstration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Main,
    Additional,
    Demo,
}

impl KeyType {
    pub fn code(self) -> u8 {
        match self {
            KeyType::Main => 3,
            KeyType::Additional => 4,
            KeyType::Demo => 5,
        }
    }

    pub fn from_code(c: u64) -> Option<Self> {
        match c {
            3 => Some(KeyType::Main),
            4 => Some(KeyType::Additional),
            5 => Some(KeyType::Demo),
            _ => None,
        }
    }
}

impl Serialize for KeyType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for KeyType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let c = u64::deserialize(d)?;
        KeyType::from_code(c).ok_or_else(|| serde::de::Error::custom("KeyType must be 3, 4 or 5"))
    }
}

/// ИНН: 10 digits (organisation) or 12 (person). Kept as text so leading zeros survive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Itn(String);

impl Itn {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number the wire shows (the spec's examples give ITN as a JSON number).
    pub fn as_number(&self) -> u64 {
        self.0.parse().unwrap_or(0)
    }
}

impl TryFrom<String> for Itn {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let s = s.trim().to_owned();
        if (s.len() == 10 || s.len() == 12) && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Itn(s))
        } else {
            Err(format!("ITN {s:?} must be 10 or 12 digits"))
        }
    }
}

impl From<Itn> for String {
    fn from(i: Itn) -> String {
        i.0
    }
}

/// КПП: 9 digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Iec(String);

impl Iec {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Iec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let s = s.trim().to_owned();
        if s.len() == 9 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Iec(s))
        } else {
            Err(format!("IEC {s:?} must be 9 digits"))
        }
    }
}

impl From<Iec> for String {
    fn from(i: Iec) -> String {
        i.0
    }
}

/// The 32 functionality flags, shown on the wire as 32 characters `0`/`1`, flag 0 first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u32);

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for i in 0..32 {
            f.write_str(if self.0 & (1 << i) != 0 { "1" } else { "0" })?;
        }
        Ok(())
    }
}

impl Serialize for Flags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Flags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() != 32 || !s.bytes().all(|b| b == b'0' || b == b'1') {
            return Err(serde::de::Error::custom(
                "Flags must be 32 characters 0 or 1",
            ));
        }
        Ok(Flags(s.bytes().enumerate().fold(0u32, |acc, (i, b)| {
            acc | (u32::from(b == b'1') << i)
        })))
    }
}

/// Everything a centre says about one key. Field meanings follow the СЛК licence object
/// (`spec/licence-server-api.md` §4.4); derived values (ExpireDate, DaysLeft, Expired) are not
/// stored but computed by [`LicenceTerms::validity`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenceTerms {
    pub key_no: u64,
    pub key_id: String,
    pub reg_no: u64,
    pub key_type: KeyType,
    pub service_type: u32,
    pub licence_count: u32,
    pub product_version: u32,
    pub product_version_name: Option<String>,
    pub activation_code: String,
    pub activation_date: Timestamp,
    pub start_date: Option<Timestamp>,
    /// Validity in days counted from `start_date` (or the activation date); 0 = unlimited.
    pub period: u32,
    pub flags: Flags,
    pub itn: Option<Itn>,
    pub iec: Option<Iec>,
    pub product_name: String,
    pub article: String,
    pub article_name: String,
    pub message: Option<String>,
    pub message_type: Option<u8>,
    pub recovered: bool,
    pub support_date: Option<Timestamp>,
    pub support_end_date: Option<Timestamp>,
    pub support_type: Option<u8>,
    pub industry_support_date: Option<Timestamp>,
    pub industry_support_end_date: Option<Timestamp>,
    pub industry_support_type: Option<u8>,
    pub industry_support_level: Option<u8>,
    pub industry_support_preferentials: Option<u8>,
    pub update_date: Option<Timestamp>,
    pub binding: Binding,
    /// The customer account the licence belongs to, with its users' session restrictions
    /// as they stood when the centre signed it (absent: no account, no restrictions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountTerms>,
}

/// What a licence says about the account that owns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountTerms {
    /// The account's code at the centre.
    pub id: u64,
    /// Users of the account with a limit on simultaneous sessions, by login; a user not
    /// listed has none.
    #[serde(default)]
    pub session_limits: Vec<SessionLimit>,
}

/// At most `sessions` simultaneous sessions for the user `user` (a login, matched to a
/// session's UserName regardless of case) across the account's licences on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionLimit {
    pub user: String,
    pub sessions: u32,
}

/// A user name as session restrictions compare it: NFKC (so `ﬁle` is `file` and a decomposed
/// `café` is the composed one), without format and control characters (zero-width spaces,
/// direction marks), trimmed, in lower case. The centre keys logins the same way, so a client
/// cannot step round a restriction with a name that only looks different.
pub fn user_key(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    let kept: String = name
        .nfkc()
        .filter(|c| {
            !matches!(
                c.general_category(),
                GeneralCategory::Format | GeneralCategory::Control
            )
        })
        .collect();
    kept.trim().to_lowercase()
}

/// Most session restrictions one licence carries (an account's users).
pub const MAX_SESSION_LIMITS: usize = 1000;

/// The validity of a licence at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub expire_date: Option<Timestamp>,
    /// Whole days left, rounded up; `None` for a licence without an end.
    pub days_left: Option<i64>,
    pub expired: bool,
    /// The start date lies in the future.
    pub not_yet_valid: bool,
}

const DAY_MS: i64 = 86_400_000;
/// Most licences one key may hold.
pub const MAX_LICENCE_COUNT: u32 = 1_000_000;
/// Longest validity: 100 years.
pub const MAX_PERIOD_DAYS: u32 = 36_525;

fn min_date() -> Timestamp {
    Timestamp::UNIX_EPOCH
}

fn max_date() -> Timestamp {
    chrono::NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|d| d.and_hms_opt(23, 59, 59))
        .map(|n| n.and_utc())
        .unwrap_or(Timestamp::MAX_UTC)
}

impl LicenceTerms {
    /// Terms for a main key with `count` licences, activated now, without an end date, with
    /// every optional field empty; callers set what their licence says beyond that.
    pub fn new(key_no: u64, key_id: &str, count: u32, binding: Binding) -> LicenceTerms {
        LicenceTerms {
            key_no,
            key_id: key_id.into(),
            reg_no: 0,
            key_type: KeyType::Main,
            service_type: 0,
            licence_count: count,
            product_version: 0,
            product_version_name: None,
            activation_code: String::new(),
            activation_date: crate::time::now(),
            start_date: None,
            period: 0,
            flags: Flags(0),
            itn: None,
            iec: None,
            product_name: String::new(),
            article: String::new(),
            article_name: String::new(),
            message: None,
            message_type: None,
            recovered: false,
            support_date: None,
            support_end_date: None,
            support_type: None,
            industry_support_date: None,
            industry_support_end_date: None,
            industry_support_type: None,
            industry_support_level: None,
            industry_support_preferentials: None,
            update_date: None,
            binding,
            account: None,
        }
    }

    /// Rejects terms no centre should sign and no host should use: every number within
    /// what the wire, the centre's database and date arithmetic can hold, so no later step
    /// can overflow or panic on a licence that passed.
    pub fn validate(&self) -> Result<(), LicenceError> {
        let bad = |m: String| Err(LicenceError::Invalid(m));
        let max_id = i64::MAX as u64;
        if self.key_no == 0 || self.key_no > max_id {
            return bad(format!("KeyNo must be between 1 and {max_id}"));
        }
        if self.reg_no > max_id {
            return bad(format!("RegNo must be at most {max_id}"));
        }
        if self.key_id.is_empty()
            || self.key_id.len() > 16
            || !self.key_id.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return bad("KeyID must be 1-16 letters or digits".into());
        }
        if self.licence_count == 0 || self.licence_count > MAX_LICENCE_COUNT {
            return bad(format!(
                "LicenceCount must be between 1 and {MAX_LICENCE_COUNT}"
            ));
        }
        if self.period > MAX_PERIOD_DAYS {
            return bad(format!(
                "Period must be at most {MAX_PERIOD_DAYS} days (0 = no end)"
            ));
        }
        for (name, value, max) in [
            ("ProductName", Some(&self.product_name), 256),
            ("Article", Some(&self.article), 64),
            ("ArticleName", Some(&self.article_name), 100),
            (
                "ProductVersionName",
                self.product_version_name.as_ref(),
                256,
            ),
            ("ActivationCode", Some(&self.activation_code), 64),
            ("Message", self.message.as_ref(), 4096),
        ] {
            if value.is_some_and(|v| v.chars().count() > max) {
                return bad(format!("{name} is limited to {max} characters"));
            }
        }
        if let Some(a) = &self.account {
            if a.id == 0 || a.id > max_id {
                return bad(format!("the account code must be between 1 and {max_id}"));
            }
            if a.session_limits.len() > MAX_SESSION_LIMITS {
                return bad(format!(
                    "a licence carries at most {MAX_SESSION_LIMITS} session restrictions"
                ));
            }
            if a.session_limits
                .iter()
                .any(|l| l.sessions == 0 || l.user.is_empty() || l.user.chars().count() > 32)
            {
                return bad(
                    "a session restriction names a user of 1-32 characters and at least 1 session"
                        .into(),
                );
            }
        }
        if self.message_type.is_some_and(|t| t > 2) {
            return bad("MessageType must be 0, 1 or 2".into());
        }
        if self.support_type.is_some_and(|t| t > 2) {
            return bad("SupportType must be 0, 1 or 2".into());
        }
        for (name, t) in [
            ("ActivationDate", Some(self.activation_date)),
            ("StartDate", self.start_date),
            ("SupportDate", self.support_date),
            ("SupportEndDate", self.support_end_date),
            ("IndustrySupportDate", self.industry_support_date),
            ("IndustrySupportEndDate", self.industry_support_end_date),
            ("UpdateDate", self.update_date),
        ] {
            if t.is_some_and(|t| !(min_date()..=max_date()).contains(&t)) {
                return bad(format!("{name} must lie between the years 1970 and 9999"));
            }
        }
        match &self.binding {
            Binding::Computer(id)
                if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                return bad(
                    "the ComputerID of the binding must be 1-128 printable ASCII characters".into(),
                )
            }
            Binding::Device(0) => return bad("the USB key serial of the binding is 0".into()),
            _ => {}
        }
        Ok(())
    }

    /// Checks that this licence may be used where `actual` says it is.
    pub fn check_binding(&self, actual: &Binding) -> Result<(), LicenceError> {
        if &self.binding == actual {
            Ok(())
        } else {
            Err(LicenceError::WrongBinding {
                expected: actual.to_string(),
                found: self.binding.to_string(),
            })
        }
    }

    /// End date, days left and expiry at `now`.
    pub fn validity(&self, now: Timestamp) -> Validity {
        let start = self.start_date.unwrap_or(self.activation_date);
        // Validated terms cannot overflow here; unvalidated ones saturate instead of panicking.
        let expire_date = (self.period > 0).then(|| {
            start
                .checked_add_signed(chrono::Duration::days(i64::from(self.period)))
                .unwrap_or(max_date())
        });
        let days_left = expire_date.map(|e| {
            let ms = (e - now).num_milliseconds();
            if ms <= 0 {
                0
            } else {
                (ms + DAY_MS - 1) / DAY_MS
            }
        });
        Validity {
            expire_date,
            days_left,
            expired: expire_date.is_some_and(|e| now >= e),
            not_yet_valid: self.start_date.is_some_and(|s| now < s),
        }
    }

    /// The device serial this licence is installed on, if any (the API's BlankKeyNo).
    pub fn blank_key_no(&self) -> Option<u64> {
        match self.binding {
            Binding::Device(s) => Some(s),
            Binding::Computer(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip() {
        let f = Flags(0b101);
        let s = serde_json::to_string(&f).expect("ser");
        assert_eq!(s, "\"10100000000000000000000000000000\"");
        let back: Flags = serde_json::from_str(&s).expect("de");
        assert_eq!(back, f);
        assert!(serde_json::from_str::<Flags>("\"102\"").is_err());
    }

    #[test]
    fn out_of_range_terms_are_refused() {
        let ok = LicenceTerms::new(1, "672B", 1, Binding::Device(5));
        assert!(ok.validate().is_ok());
        for t in [
            LicenceTerms {
                licence_count: 0,
                ..ok.clone()
            },
            LicenceTerms {
                period: u32::MAX,
                ..ok.clone()
            },
            LicenceTerms {
                key_no: u64::MAX,
                ..ok.clone()
            },
            LicenceTerms {
                key_id: "67 2B".into(),
                ..ok.clone()
            },
            LicenceTerms {
                binding: Binding::Device(0),
                ..ok.clone()
            },
            LicenceTerms {
                support_type: Some(9),
                ..ok.clone()
            },
        ] {
            assert!(t.validate().is_err(), "{t:?}");
            // Even unvalidated, nothing panics.
            let _ = t.validity(crate::time::now());
        }
        let mut json = serde_json::to_value(&ok).expect("json");
        json["licence_count_max"] = serde_json::json!(5);
        assert!(serde_json::from_value::<LicenceTerms>(json).is_err());
    }

    #[test]
    fn itn_keeps_leading_zero() {
        let i = Itn::try_from("0123456789".to_string()).expect("itn");
        assert_eq!(i.as_str(), "0123456789");
        assert!(Itn::try_from("12345".to_string()).is_err());
    }
}
