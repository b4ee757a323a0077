//! The values of the account API and the one place that says what each role may do.

use super::AccountError;
use serde_json::Value;
use std::fmt;

/// An account's code: the spec's `Число (+12.0)`, 1 to 999 999 999 999.
pub type AccountId = u64;

/// Largest account code (12 digits).
pub const MAX_ACCOUNT_ID: AccountId = 999_999_999_999;

/// Users attached to one account at most; also bounds the session restrictions a licence
/// carries.
pub const MAX_USERS_PER_ACCOUNT: u64 = 1000;
/// Service users one account may create (they remain when detached, so creating and
/// detaching in a loop would otherwise grow the table without end).
pub const MAX_CREATED_PER_ACCOUNT: u64 = 5000;
/// Rows one list answer holds at most; lists take `offset` and `limit`.
pub const MAX_PAGE: u64 = 1000;

/// A role in an account (`account/users/set_role`'s enumeration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Manages the account: everything an administrator may, and its owners.
    Owner,
    /// Manages the account's users (not its owners) and its properties.
    Administrator,
    /// Administers adaptation tools; in this API, a plain member.
    ExtAdministrator,
    /// A servicing organisation's operator: held in the servicing organisation's own account,
    /// it lets the user read the accounts the organisation serves.
    Operator,
    /// Runs applications.
    User,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Owner,
        Role::Administrator,
        Role::ExtAdministrator,
        Role::Operator,
        Role::User,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Administrator => "administrator",
            Role::ExtAdministrator => "ext_administrator",
            Role::Operator => "operator",
            Role::User => "user",
        }
    }

    pub fn parse(s: &str) -> Result<Role, AccountError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                AccountError::BadRequest(format!(
                    "role {s:?} is not one of owner, administrator, ext_administrator, operator, user"
                ))
            })
    }

    /// Whether this role in a servicing organisation lets its holder read the accounts the
    /// organisation serves.
    pub fn serves(self) -> bool {
        matches!(self, Role::Owner | Role::Administrator | Role::Operator)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the caller reaches the account a call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The caller holds this role in the account.
    Member(Role),
    /// The caller acts for a servicing organisation that serves the account (`auth.account`
    /// names the organisation): it reads, it changes nothing.
    Serving,
}

impl Access {
    /// The role `account/list` shows.
    pub fn role(self) -> Role {
        match self {
            Access::Member(r) => r,
            Access::Serving => Role::Operator,
        }
    }

    /// Reads the account's users (list, and any user's info).
    pub fn reads_users(self) -> bool {
        matches!(
            self,
            Access::Serving | Access::Member(Role::Owner | Role::Administrator)
        )
    }

    /// Changes the account's properties and its users.
    pub fn changes(self) -> bool {
        matches!(self, Access::Member(Role::Owner | Role::Administrator))
    }

    /// Changes owners: makes one, unmakes one, detaches one, changes one's details.
    pub fn changes_owners(self) -> bool {
        self == Access::Member(Role::Owner)
    }
}

/// The reason a caller may not change something, in one wording per case.
pub fn require_changes(access: Access) -> Result<(), AccountError> {
    if access.changes() {
        Ok(())
    } else {
        Err(AccountError::Forbidden(format!(
            "your role in this account ({}) does not allow changes; an owner or administrator may make them",
            access.role()
        )))
    }
}

/// A service user's login: 1–32 characters; no `:` (which would end the login in an HTTP Basic
/// header), no control or format characters (zero-width, direction marks), no space but
/// U+0020 and none around it. Unique as [`Login::key`] compares (`licence::user_key`: NFKC,
/// lower case), so `ﬁle` and `file`, or `Café` and a decomposed `cafe\u{301}`, are one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login(String);

impl Login {
    pub fn parse(s: &str) -> Result<Login, AccountError> {
        let n = s.chars().count();
        if n == 0 || n > 32 {
            return Err(AccountError::BadRequest(format!(
                "login must be 1-32 characters, not {n}"
            )));
        }
        use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
        let bad = |c: char| {
            c == ':'
                || (c.is_whitespace() && c != ' ')
                || matches!(
                    c.general_category(),
                    GeneralCategory::Control | GeneralCategory::Format
                )
        };
        if s.trim() != s || s.chars().any(bad) {
            return Err(AccountError::BadRequest(
                "login may not contain ':', control or invisible characters, spaces other than an ordinary one, or surrounding spaces".into(),
            ));
        }
        Ok(Login(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key(&self) -> String {
        login_key(&self.0)
    }
}

/// The form of a login the database keys on (`licence::user_key`).
pub fn login_key(login: &str) -> String {
    crate::licence::user_key(login)
}

/// A password for a new service user: 6–256 characters and not the login itself. (The
/// spec's own example password, `w13p-3q`, is 7 characters.)
pub fn check_password(password: &str, login: &Login) -> Result<(), AccountError> {
    let n = password.chars().count();
    if !(6..=256).contains(&n) {
        return Err(AccountError::BadRequest(
            "password must be 6-256 characters".into(),
        ));
    }
    if login_key(password) == login.key() {
        return Err(AccountError::BadRequest(
            "password may not be the login".into(),
        ));
    }
    Ok(())
}

/// Checks a text parameter's length (the spec's `Строка переменная (N)`).
pub fn bounded(field: &str, s: &str, max: usize) -> Result<(), AccountError> {
    let n = s.chars().count();
    if n > max {
        return Err(AccountError::BadRequest(format!(
            "{field} must be at most {max} characters, not {n}"
        )));
    }
    // Direction overrides and isolates make a text display as something it is not.
    let bidi = |c: char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if s.chars()
        .any(|c| (c.is_control() && c != '\n' && c != '\r' && c != '\t') || bidi(c))
    {
        return Err(AccountError::BadRequest(format!(
            "{field} may not contain control characters or direction overrides"
        )));
    }
    Ok(())
}

/// Where additional information is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// An account's additional attributes (`fields`).
    AccountField,
    /// An account's additional properties (`properties`).
    AccountProperty,
    /// An account user's additional attributes (`fields`).
    UserField,
}

impl Target {
    pub const ALL: [Target; 3] = [
        Target::AccountField,
        Target::AccountProperty,
        Target::UserField,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Target::AccountField => "account_field",
            Target::AccountProperty => "account_property",
            Target::UserField => "user_field",
        }
    }

    pub fn parse(s: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// How the 10406 message names one (the spec's `Свойство 'ИНН' не найдено.`).
    pub fn noun(self) -> &'static str {
        match self {
            Target::AccountProperty => "Property",
            Target::AccountField | Target::UserField => "Attribute",
        }
    }
}

/// The type of an additional attribute or property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Number,
    /// An ISO 8601 date-time; stored and answered in UTC (`2026-11-24T10:00:00.000Z`).
    Date,
    Boolean,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::String, Kind::Number, Kind::Date, Kind::Boolean];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Number => "number",
            Kind::Date => "date",
            Kind::Boolean => "boolean",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The value as stored (JSON text), after checking it is of this kind. Strings are at
    /// most 1024 characters.
    pub fn check(self, name: &str, v: &Value) -> Result<Value, AccountError> {
        let wrong =
            |what: &str| AccountError::BadRequest(format!("the value of {name:?} must be {what}"));
        match (self, v) {
            (Kind::Boolean, Value::Bool(_)) | (Kind::Number, Value::Number(_)) => Ok(v.clone()),
            (Kind::String, Value::String(s)) => {
                bounded(name, s, 1024)?;
                Ok(v.clone())
            }
            (Kind::Date, Value::String(s)) => crate::time::parse_client(s)
                .map(|t| Value::String(crate::time::format(&t)))
                .ok_or_else(|| wrong("an ISO 8601 date")),
            (Kind::Boolean, _) => Err(wrong("true or false")),
            (Kind::Number, _) => Err(wrong("a number")),
            (Kind::String, _) => Err(wrong("a string")),
            (Kind::Date, _) => Err(wrong("an ISO 8601 date in a string")),
        }
    }
}

/// One element of a `fields` or `properties` array: a name, its value (absent or null clears
/// it), and optionally the type the caller believes it has (checked against the definition).
#[derive(Debug, Clone)]
pub struct AttachedItem {
    pub key: String,
    pub value: Option<Value>,
    pub kind: Option<Kind>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_by_role() {
        let owner = Access::Member(Role::Owner);
        let admin = Access::Member(Role::Administrator);
        assert!(owner.changes() && owner.changes_owners() && owner.reads_users());
        assert!(admin.changes() && !admin.changes_owners() && admin.reads_users());
        for r in [Role::ExtAdministrator, Role::Operator, Role::User] {
            let a = Access::Member(r);
            assert!(
                !a.changes() && !a.changes_owners() && !a.reads_users(),
                "{r}"
            );
        }
        assert!(Access::Serving.reads_users() && !Access::Serving.changes());
        assert_eq!(Access::Serving.role(), Role::Operator);
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()).ok(), Some(r));
        }
        assert!(Role::parse("Owner").is_err());
    }

    #[test]
    fn logins() {
        assert!(Login::parse("Abramov").is_ok());
        assert!(Login::parse("Иващенко").is_ok());
        for bad in [
            "",
            " a",
            "a:b",
            "a\u{0}",
            "user\u{200b}",
            "a\u{a0}b",
            "a\tb",
            &"x".repeat(33),
        ] {
            assert!(Login::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Login::parse("NeStor").map(|l| l.key()).ok(),
            Some("nestor".into())
        );
        let key = |s: &str| Login::parse(s).map(|l| l.key()).ok();
        assert_eq!(key("\u{fb01}le"), key("file"));
        assert_eq!(key("Caf\u{e9}"), key("cafe\u{301}"));
        assert!(Login::parse("Иванов Иван").is_ok());
        let l = Login::parse("nestor").expect("login");
        assert!(check_password("w13p-3q", &l).is_ok());
        assert!(check_password("short", &l).is_err());
        assert!(check_password("NESTOR", &l).is_err());
    }

    #[test]
    fn kinds() {
        use serde_json::json;
        assert!(Kind::Boolean.check("x", &json!(true)).is_ok());
        assert!(Kind::Boolean.check("x", &json!("true")).is_err());
        assert!(Kind::Number.check("x", &json!(1.5)).is_ok());
        assert_eq!(
            Kind::Date.check("x", &json!("2026-11-24")).ok(),
            Some(json!("2026-11-24T00:00:00.000Z"))
        );
        assert!(Kind::Date.check("x", &json!("yesterday")).is_err());
    }
}
