//! The accounts in the centre's database. Every change runs in one transaction that first
//! bumps the account's `revision` (taking its row lock on PostgreSQL; SQLite has one writer),
//! so concurrent changes to one account's users run one after another, and the checks made
//! inside — at least one owner, one login once — hold when it commits.

use super::model::{
    bounded, login_key, require_changes, Access, AccountId, AttachedItem, Kind, Login, Role,
    Target, MAX_ACCOUNT_ID, MAX_CREATED_PER_ACCOUNT, MAX_USERS_PER_ACCOUNT,
};
use super::AccountError;
use crate::centre::Centre;
use crate::crypto::password::PasswordHash;
use crate::licence::{Iec, Itn, SessionLimit};
use crate::time;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// An account's card (`account/info`).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct AccountCard {
    pub id: AccountId,
    pub name: String,
    pub site: String,
    pub city: String,
    pub email: String,
    pub phone: String,
}

/// Changes to an account's card; a field not given keeps its value.
#[derive(Debug, Clone, Default)]
pub struct CardChanges {
    pub name: Option<String>,
    pub site: Option<String>,
    pub city: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

impl CardChanges {
    pub fn check(&self) -> Result<(), AccountError> {
        if let Some(n) = &self.name {
            if n.trim().is_empty() {
                return Err(AccountError::BadRequest("name may not be empty".into()));
            }
            bounded("name", n, 150)?;
        }
        for (field, v, max) in [
            ("site", &self.site, 255),
            ("city", &self.city, 255),
            ("email", &self.email, 254),
            ("phone", &self.phone, 500),
        ] {
            if let Some(v) = v {
                bounded(field, v, max)?;
            }
        }
        Ok(())
    }
}

/// A service user's details, and their place in one account.
#[derive(Debug, Clone)]
pub struct Member {
    pub login: String,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub description: String,
    pub session_restriction: u32,
    pub is_temporary: bool,
}

/// A new service user (`account/users/create`, or an account's first owner).
#[derive(Debug, Clone)]
pub struct NewUser {
    pub login: Login,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub timezone: String,
    /// Already hashed (slow: done before the transaction); `None` cannot log in.
    pub password: Option<PasswordHash>,
}

impl NewUser {
    pub fn check(&self) -> Result<(), AccountError> {
        if self.name.trim().is_empty() {
            return Err(AccountError::BadRequest("name may not be empty".into()));
        }
        bounded("name", &self.name, 150)?;
        bounded("email", &self.email, 254)?;
        bounded("phone", &self.phone, 500)?;
        bounded("timezone", &self.timezone, 100)
    }
}

/// How a user is placed in an account.
#[derive(Debug, Clone)]
pub struct Placement {
    pub role: Role,
    pub description: String,
    /// Access ends at this time (`is_temporary`); only the vendor sets it.
    pub until: Option<time::Timestamp>,
    /// Additional attributes to set with it.
    pub fields: Vec<AttachedItem>,
}

/// A servicing organisation as `account/servants/list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Servant {
    pub id: AccountId,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub servant_id: String,
    #[serde(default)]
    pub city: String,
    #[serde(default)]
    pub site: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub tariff_subscribe_allowed: bool,
    #[serde(default)]
    pub automatic_billing_allowed: bool,
    #[serde(default)]
    pub tariff_override_allowed: bool,
    #[serde(default)]
    pub tariff_selection_page_only: bool,
}

/// A servicing organisation's tariff, in the shape `account/servant_tariffs/info` answers
/// and the vendor publishes it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tariff {
    pub id: String,
    pub name: String,
    pub tariff_id: String,
    #[serde(default)]
    pub brief_description: String,
    #[serde(default)]
    pub is_extension: bool,
    #[serde(default)]
    pub description_for_subscribers: Description,
    #[serde(default)]
    pub validity_periods: Vec<Period>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Description {
    #[serde(default)]
    pub html: String,
    #[serde(default)]
    pub images: Vec<Image>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub name: String,
    /// Base64, as the spec's example carries it (line breaks allowed).
    pub data: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Period {
    pub id: String,
    pub name: String,
    pub period: String,
    pub quantity: u32,
    /// Roubles with at most two decimals.
    #[serde(default)]
    pub cost: Option<f64>,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub recommended: bool,
}

impl Tariff {
    pub fn check(&self) -> Result<(), AccountError> {
        let code = |field: &str, s: &str, max: usize| {
            if s.is_empty() || s.chars().count() > max || !s.chars().all(|c| c.is_alphanumeric()) {
                Err(AccountError::BadRequest(format!(
                    "{field} must be 1-{max} letters or digits"
                )))
            } else {
                Ok(())
            }
        };
        code("id", &self.id, 9)?;
        code("tariff_id", &self.tariff_id, 9)?;
        bounded("name", &self.name, 150)?;
        bounded("brief_description", &self.brief_description, 1024)?;
        bounded(
            "description_for_subscribers.html",
            &self.description_for_subscribers.html,
            65_536,
        )?;
        if self.description_for_subscribers.images.len() > 16 || self.validity_periods.len() > 32 {
            return Err(AccountError::BadRequest(
                "a tariff has at most 16 images and 32 validity periods".into(),
            ));
        }
        for i in &self.description_for_subscribers.images {
            bounded("images[].name", &i.name, 100)?;
            let clean: String = i.data.chars().filter(|c| !c.is_whitespace()).collect();
            if clean.len() > 350_000 || crate::crypto::unb64(&clean).is_none() {
                return Err(AccountError::BadRequest(format!(
                    "image {:?} must be base64 of at most 256 KiB",
                    i.name
                )));
            }
        }
        for p in &self.validity_periods {
            code("validity_periods[].id", &p.id, 10)?;
            bounded("validity_periods[].name", &p.name, 50)?;
            bounded("validity_periods[].period", &p.period, 50)?;
            bounded("validity_periods[].comment", &p.comment, 1024)?;
            if let Some(c) = p.cost {
                if !(0.0..1e10).contains(&c) || (c * 100.0 - (c * 100.0).round()).abs() > 1e-6 {
                    return Err(AccountError::BadRequest(
                        "cost must be 0 to 9999999999.99 with at most two decimals".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A licence an account owns (the vendor's listing).
#[derive(Debug, Clone, Serialize)]
pub struct OwnedLicence {
    pub code: String,
    pub key_id: String,
    pub key_no: Option<u64>,
    pub binding: Option<String>,
    pub activated: Option<String>,
}

/// A new account with its first owner.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// The account's code; the next free one (from 1001) when not given.
    pub id: Option<AccountId>,
    pub card: CardChanges,
    pub itn: Option<Itn>,
    pub iec: Option<Iec>,
    pub owner: Login,
    /// The owner as a new service user; `None` attaches an existing one.
    pub new_owner: Option<NewUser>,
}

fn flag(row: &AnyRow, col: &str) -> Result<bool, sqlx::Error> {
    Ok(row.try_get::<i64, _>(col)? != 0)
}

fn id_of(row: &AnyRow, col: &str) -> Result<AccountId, AccountError> {
    let v: i64 = row.try_get(col)?;
    u64::try_from(v).map_err(|_| AccountError::Internal)
}

/// An account code as the database keys it; a code out of range names no account.
pub fn db_id(id: AccountId) -> Result<i64, AccountError> {
    if id == 0 || id > MAX_ACCOUNT_ID {
        return Err(AccountError::BadRequest(format!(
            "account code {id} must be 1 to {MAX_ACCOUNT_ID}"
        )));
    }
    i64::try_from(id).map_err(|_| AccountError::Internal)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

fn now_text() -> String {
    time::format(&time::now())
}

const MEMBER_QUERY: &str = "SELECT s.login, s.name, s.email, u.role, u.description, u.session_restriction, u.temporary_until \
     FROM account_users u JOIN service_users s ON s.login_key = u.login_key";

fn member(row: &AnyRow) -> Result<Member, AccountError> {
    let role: String = row.try_get("role")?;
    let until: Option<String> = row.try_get("temporary_until")?;
    let restriction: i64 = row.try_get("session_restriction")?;
    Ok(Member {
        login: row.try_get("login")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        role: Role::parse(&role).map_err(|_| AccountError::Internal)?,
        description: row.try_get("description")?,
        session_restriction: u32::try_from(restriction).unwrap_or(u32::MAX),
        is_temporary: until.is_some(),
    })
}

/// Opens a change to account `id`: bumps its revision (its row lock); an unknown account is
/// [`AccountError::NotFound`].
async fn lock_account(c: &mut AnyConnection, id: AccountId) -> Result<(), AccountError> {
    let done = sqlx::query("UPDATE accounts SET revision = revision + 1 WHERE id = $1")
        .bind(db_id(id)?)
        .execute(&mut *c)
        .await?;
    if done.rows_affected() == 0 {
        return Err(not_available(id));
    }
    Ok(())
}

/// The one answer for an account that does not exist or that the caller may not see.
pub fn not_available(id: AccountId) -> AccountError {
    AccountError::NotFound(format!("account {id} not found or not available to you"))
}

fn no_member(login: &str, id: AccountId) -> AccountError {
    AccountError::NotFound(format!("user {login:?} is not attached to account {id}"))
}

async fn role_of(
    c: &mut AnyConnection,
    id: AccountId,
    key: &str,
) -> Result<Option<Role>, AccountError> {
    let row =
        sqlx::query("SELECT role FROM account_users WHERE account_id = $1 AND login_key = $2")
            .bind(db_id(id)?)
            .bind(key.to_owned())
            .fetch_optional(&mut *c)
            .await?;
    row.map(|r| {
        let s: String = r.try_get("role")?;
        Role::parse(&s).map_err(|_| AccountError::Internal)
    })
    .transpose()
}

async fn owners(c: &mut AnyConnection, id: AccountId) -> Result<i64, AccountError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM account_users WHERE account_id = $1 AND role = 'owner' \
         AND (temporary_until IS NULL OR temporary_until > $2)",
    )
    .bind(db_id(id)?)
    .bind(now_text())
    .fetch_one(&mut *c)
    .await?;
    Ok(row.try_get("n")?)
}

async fn is_servant(c: &mut AnyConnection, id: AccountId) -> Result<bool, AccountError> {
    Ok(
        sqlx::query("SELECT 1 AS one FROM servants WHERE account_id = $1")
            .bind(db_id(id)?)
            .fetch_optional(&mut *c)
            .await?
            .is_some(),
    )
}

/// Whether `access` may give `new` to (or take `old` from) a user of account `id`.
async fn check_role_change(
    c: &mut AnyConnection,
    id: AccountId,
    access: Access,
    old: Option<Role>,
    new: Option<Role>,
) -> Result<(), AccountError> {
    require_changes(access)?;
    if (old == Some(Role::Owner) || new == Some(Role::Owner)) && !access.changes_owners() {
        return Err(AccountError::Forbidden(
            "only an owner may make, unmake or detach an owner".into(),
        ));
    }
    if new == Some(Role::Operator) && !is_servant(c, id).await? {
        return Err(AccountError::BadRequest(format!(
            "operator is the role of a servicing organisation's users; account {id} is not one"
        )));
    }
    Ok(())
}

/// Refuses a change that left account `id` without an owner (the transaction then rolls
/// back). Owners are never temporary (`set_role`, `admin::add_member`); an expired one would
/// not count anyway.
async fn keep_an_owner(c: &mut AnyConnection, id: AccountId) -> Result<(), AccountError> {
    if owners(c, id).await? == 0 {
        return Err(AccountError::Conflict(
            "an account keeps at least one owner; make another user owner first".into(),
        ));
    }
    Ok(())
}

async fn definitions(
    c: &mut AnyConnection,
    target: Target,
) -> Result<Vec<(String, Kind)>, AccountError> {
    let rows =
        sqlx::query("SELECT name, kind FROM attached_definitions WHERE target = $1 ORDER BY name")
            .bind(target.as_str())
            .fetch_all(&mut *c)
            .await?;
    rows.iter()
        .map(|r| {
            let k: String = r.try_get("kind")?;
            Ok((
                r.try_get("name")?,
                Kind::parse(&k).ok_or(AccountError::Internal)?,
            ))
        })
        .collect()
}

/// Sets attached values: every name must be defined for `target` (else 10406 naming each
/// unknown one, and nothing changes); a value of `None` (or JSON null) clears it; names not
/// given keep their values.
async fn write_attached(
    c: &mut AnyConnection,
    target: Target,
    id: AccountId,
    key: &str,
    items: &[AttachedItem],
) -> Result<(), AccountError> {
    let defs = definitions(c, target).await?;
    let unknown: Vec<String> = items
        .iter()
        .filter(|i| !defs.iter().any(|(d, _)| *d == i.key))
        .map(|i| format!("{} '{}' not found.", target.noun(), i.key))
        .collect();
    if !unknown.is_empty() {
        return Err(AccountError::UnknownAttached(unknown));
    }
    let mut checked = Vec::with_capacity(items.len());
    for AttachedItem {
        key: name,
        value,
        kind: said,
    } in items
    {
        let kind = defs
            .iter()
            .find(|(d, _)| d == name)
            .map(|(_, k)| *k)
            .ok_or(AccountError::Internal)?;
        if said.is_some_and(|s| s != kind) {
            return Err(AccountError::BadRequest(format!(
                "{name:?} is of type {}, not {}",
                kind.as_str(),
                said.map_or("", Kind::as_str)
            )));
        }
        let v = match value {
            None | Some(Value::Null) => None,
            Some(v) => Some(kind.check(name, v)?.to_string()),
        };
        checked.push((name, v));
    }
    for (name, v) in checked {
        sqlx::query("DELETE FROM attached_values WHERE target = $1 AND account_id = $2 AND login_key = $3 AND name = $4")
            .bind(target.as_str())
            .bind(db_id(id)?)
            .bind(key.to_owned())
            .bind(name.clone())
            .execute(&mut *c)
            .await?;
        if let Some(v) = v {
            sqlx::query("INSERT INTO attached_values (target, account_id, login_key, name, value) VALUES ($1, $2, $3, $4, $5)")
                .bind(target.as_str())
                .bind(db_id(id)?)
                .bind(key.to_owned())
                .bind(name.clone())
                .bind(v)
                .execute(&mut *c)
                .await?;
        }
    }
    Ok(())
}

/// The account's users attached now, counted.
async fn user_count(c: &mut AnyConnection, id: AccountId) -> Result<u64, AccountError> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM account_users WHERE account_id = $1")
        .bind(db_id(id)?)
        .fetch_one(&mut *c)
        .await?;
    Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
}

async fn insert_member(
    c: &mut AnyConnection,
    id: AccountId,
    key: &str,
    p: &Placement,
) -> Result<(), AccountError> {
    if user_count(c, id).await? >= MAX_USERS_PER_ACCOUNT {
        return Err(AccountError::Conflict(format!(
            "account {id} has {MAX_USERS_PER_ACCOUNT} users, the most an account may have"
        )));
    }
    bounded("description", &p.description, 300)?;
    sqlx::query(
        "INSERT INTO account_users (account_id, login_key, role, description, session_restriction, temporary_until) \
         VALUES ($1, $2, $3, $4, 0, $5)",
    )
    .bind(db_id(id)?)
    .bind(key.to_owned())
    .bind(p.role.as_str())
    .bind(p.description.clone())
    .bind(p.until.as_ref().map(time::format))
    .execute(&mut *c)
    .await?;
    write_attached(c, Target::UserField, id, key, &p.fields).await
}

async fn insert_user(
    c: &mut AnyConnection,
    u: &NewUser,
    created_by: Option<AccountId>,
) -> Result<(), AccountError> {
    u.check()?;
    let exists = sqlx::query("SELECT 1 AS one FROM service_users WHERE login_key = $1")
        .bind(u.login.key())
        .fetch_optional(&mut *c)
        .await?;
    let taken = || AccountError::Conflict(format!("login {:?} is taken", u.login.as_str()));
    if exists.is_some() {
        return Err(taken());
    }
    if let Some(by) = created_by {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM service_users WHERE created_by = $1")
            .bind(db_id(by)?)
            .fetch_one(&mut *c)
            .await?;
        if u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0) >= MAX_CREATED_PER_ACCOUNT {
            return Err(AccountError::Conflict(format!(
                "account {by} has created {MAX_CREATED_PER_ACCOUNT} service users, the most it may"
            )));
        }
    }
    let r = sqlx::query(
        "INSERT INTO service_users (login_key, login, name, email, phone, timezone, password_hash, created, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(u.login.key())
    .bind(u.login.as_str().to_owned())
    .bind(u.name.clone())
    .bind(u.email.clone())
    .bind(u.phone.clone())
    .bind(u.timezone.clone())
    .bind(u.password.as_ref().map(PasswordHash::to_string))
    .bind(now_text())
    .bind(created_by.map(db_id).transpose()?)
    .execute(&mut *c)
    .await;
    match r {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(taken()),
        Err(e) => Err(e.into()),
    }
}

impl Centre {
    // ----- the vendor's side -----

    /// Creates an account with its first owner (a new service user, or an existing one).
    pub async fn create_account(&self, a: &NewAccount) -> Result<AccountId, AccountError> {
        a.card.check()?;
        let name = a
            .card
            .name
            .clone()
            .ok_or_else(|| AccountError::BadRequest("an account needs a name".into()))?;
        let mut tx = self.db.begin().await?;
        let id = match a.id {
            Some(id) => id,
            None => {
                let row = sqlx::query("SELECT MAX(id) AS m FROM accounts")
                    .fetch_one(&mut *tx)
                    .await?;
                let m: Option<i64> = row.try_get("m")?;
                u64::try_from(m.unwrap_or(1000).max(1000)).map_err(|_| AccountError::Internal)? + 1
            }
        };
        let r = sqlx::query(
            "INSERT INTO accounts (id, name, site, city, email, phone, itn, iec, revision, created) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9)",
        )
        .bind(db_id(id)?)
        .bind(name)
        .bind(a.card.site.clone().unwrap_or_default())
        .bind(a.card.city.clone().unwrap_or_default())
        .bind(a.card.email.clone().unwrap_or_default())
        .bind(a.card.phone.clone().unwrap_or_default())
        .bind(a.itn.as_ref().map(|i| i.as_str().to_owned()))
        .bind(a.iec.as_ref().map(|i| i.as_str().to_owned()))
        .bind(now_text())
        .execute(&mut *tx)
        .await;
        match r {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(AccountError::Conflict(format!("account {id} exists")))
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(u) = &a.new_owner {
            insert_user(&mut tx, u, None).await?;
        } else if !self.user_exists(&mut tx, &a.owner.key()).await? {
            return Err(AccountError::NotFound(format!(
                "no service user {:?}",
                a.owner.as_str()
            )));
        }
        let owner = Placement {
            role: Role::Owner,
            description: String::new(),
            until: None,
            fields: Vec::new(),
        };
        insert_member(&mut tx, id, &a.owner.key(), &owner).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Whether a service user with this login key exists.
    pub async fn service_user_exists(&self, key: &str) -> Result<bool, AccountError> {
        let mut c = self.db.acquire().await?;
        self.user_exists(&mut c, key).await
    }

    async fn user_exists(&self, c: &mut AnyConnection, key: &str) -> Result<bool, AccountError> {
        Ok(
            sqlx::query("SELECT 1 AS one FROM service_users WHERE login_key = $1")
                .bind(key.to_owned())
                .fetch_optional(&mut *c)
                .await?
                .is_some(),
        )
    }

    /// The accounts, by code (the vendor's listing).
    pub async fn list_accounts(&self) -> Result<Vec<(AccountCard, Option<String>)>, AccountError> {
        let rows =
            sqlx::query("SELECT id, name, site, city, email, phone, itn FROM accounts ORDER BY id")
                .fetch_all(&self.db)
                .await?;
        rows.iter()
            .map(|r| Ok((card(r)?, r.try_get("itn")?)))
            .collect()
    }

    /// Makes account `s.id` a servicing organisation (or changes its settings), with its
    /// tariff-selection page.
    pub async fn put_servant(&self, s: &Servant, page: Option<&str>) -> Result<(), AccountError> {
        bounded("servant_id", &s.servant_id, 50)?;
        if let Some(p) = page {
            bounded("tariff_selection_page", p, 65_536)?;
        }
        let mut tx = self.db.begin().await?;
        lock_account(&mut tx, s.id).await?;
        sqlx::query("DELETE FROM servants WHERE account_id = $1")
            .bind(db_id(s.id)?)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO servants (account_id, servant_id, tariff_subscribe_allowed, automatic_billing_allowed, \
             tariff_override_allowed, tariff_selection_page_only, tariff_selection_page) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(db_id(s.id)?)
        .bind(s.servant_id.clone())
        .bind(i64::from(s.tariff_subscribe_allowed))
        .bind(i64::from(s.automatic_billing_allowed))
        .bind(i64::from(s.tariff_override_allowed))
        .bind(i64::from(s.tariff_selection_page_only))
        .bind(page.map(str::to_owned))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Has servicing organisation `servant` serve account `account`.
    pub async fn add_served(
        &self,
        account: AccountId,
        servant: AccountId,
    ) -> Result<(), AccountError> {
        let mut tx = self.db.begin().await?;
        lock_account(&mut tx, account).await?;
        if !is_servant(&mut tx, servant).await? {
            return Err(AccountError::NotFound(format!(
                "account {servant} is not a servicing organisation"
            )));
        }
        if account == servant {
            return Err(AccountError::BadRequest(
                "an account does not serve itself".into(),
            ));
        }
        sqlx::query("DELETE FROM account_servants WHERE account_id = $1 AND servant = $2")
            .bind(db_id(account)?)
            .bind(db_id(servant)?)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO account_servants (account_id, servant) VALUES ($1, $2)")
            .bind(db_id(account)?)
            .bind(db_id(servant)?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Publishes (or replaces) a servicing organisation's tariff.
    pub async fn put_tariff(&self, servant: AccountId, t: &Tariff) -> Result<(), AccountError> {
        t.check()?;
        let mut tx = self.db.begin().await?;
        if !is_servant(&mut tx, servant).await? {
            return Err(AccountError::NotFound(format!(
                "account {servant} is not a servicing organisation"
            )));
        }
        let s = db_id(servant)?;
        for table in ["servant_tariffs", "tariff_images", "tariff_periods"] {
            let col = if table == "servant_tariffs" {
                "id"
            } else {
                "tariff"
            };
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE servant = $1 AND {col} = $2"
            ))
            .bind(s)
            .bind(t.id.clone())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO servant_tariffs (servant, id, name, tariff_id, brief_description, description_html, is_extension) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(s)
        .bind(t.id.clone())
        .bind(t.name.clone())
        .bind(t.tariff_id.clone())
        .bind(t.brief_description.clone())
        .bind(t.description_for_subscribers.html.clone())
        .bind(i64::from(t.is_extension))
        .execute(&mut *tx)
        .await?;
        for (i, img) in t.description_for_subscribers.images.iter().enumerate() {
            sqlx::query("INSERT INTO tariff_images (servant, tariff, name, data, position) VALUES ($1, $2, $3, $4, $5)")
                .bind(s)
                .bind(t.id.clone())
                .bind(img.name.clone())
                .bind(img.data.clone())
                .bind(i64::try_from(i).unwrap_or(0))
                .execute(&mut *tx)
                .await
                .map_err(|e| if is_unique_violation(&e) {
                    AccountError::BadRequest(format!("image {:?} is given twice", img.name))
                } else {
                    e.into()
                })?;
        }
        for (i, p) in t.validity_periods.iter().enumerate() {
            sqlx::query(
                "INSERT INTO tariff_periods (servant, tariff, id, name, period, quantity, cost_kopecks, comment, recommended, position) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(s)
            .bind(t.id.clone())
            .bind(p.id.clone())
            .bind(p.name.clone())
            .bind(p.period.clone())
            .bind(i64::from(p.quantity))
            // Checked: 0 to 1e10 with two decimals.
            .bind(p.cost.map(|c| (c * 100.0).round() as i64))
            .bind(p.comment.clone())
            .bind(i64::from(p.recommended))
            .bind(i64::try_from(i).unwrap_or(0))
            .execute(&mut *tx)
            .await
            .map_err(|e| if is_unique_violation(&e) {
                AccountError::BadRequest(format!("validity period {:?} is given twice", p.id))
            } else {
                e.into()
            })?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Defines an additional attribute or property (its name and type); redefining changes
    /// the type of values written from then on.
    pub async fn define_attached(
        &self,
        target: Target,
        name: &str,
        kind: Kind,
    ) -> Result<(), AccountError> {
        if name.trim().is_empty() {
            return Err(AccountError::BadRequest("a name may not be empty".into()));
        }
        bounded("name", name, 100)?;
        let mut tx = self.db.begin().await?;
        sqlx::query("DELETE FROM attached_definitions WHERE target = $1 AND name = $2")
            .bind(target.as_str())
            .bind(name.to_owned())
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO attached_definitions (target, name, kind) VALUES ($1, $2, $3)")
            .bind(target.as_str())
            .bind(name.to_owned())
            .bind(kind.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets a service user's password (the vendor's reset; also how a user created without
    /// one gets one).
    pub async fn set_password(
        &self,
        login: &Login,
        hash: &PasswordHash,
    ) -> Result<(), AccountError> {
        let done = sqlx::query("UPDATE service_users SET password_hash = $1 WHERE login_key = $2")
            .bind(hash.to_string())
            .bind(login.key())
            .execute(&self.db)
            .await?;
        if done.rows_affected() == 0 {
            return Err(AccountError::NotFound(format!(
                "no service user {:?}",
                login.as_str()
            )));
        }
        Ok(())
    }

    /// The licences activated from account `id`'s codes, and its codes not yet activated.
    pub async fn account_licences(&self, id: AccountId) -> Result<Vec<OwnedLicence>, AccountError> {
        let rows = sqlx::query(
            "SELECT c.code, c.key_id, a.key_no, a.binding, a.activated FROM codes c \
             LEFT JOIN activations a ON a.code = c.code WHERE c.account_id = $1 ORDER BY c.key_id, a.key_no, c.code",
        )
        .bind(db_id(id)?)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                let key_no: Option<i64> = r.try_get("key_no")?;
                Ok(OwnedLicence {
                    code: r.try_get("code")?,
                    key_id: r.try_get("key_id")?,
                    key_no: key_no.and_then(|n| u64::try_from(n).ok()),
                    binding: r.try_get("binding")?,
                    activated: r.try_get("activated")?,
                })
            })
            .collect()
    }

    /// Account `id`'s ITN and IEC, for a code issued to it; unknown is NotFound.
    pub async fn account_itn(
        &self,
        id: AccountId,
    ) -> Result<(Option<String>, Option<String>), AccountError> {
        let row = sqlx::query("SELECT itn, iec FROM accounts WHERE id = $1")
            .bind(db_id(id)?)
            .fetch_optional(&self.db)
            .await?
            .ok_or_else(|| AccountError::NotFound(format!("no account {id}")))?;
        Ok((row.try_get("itn")?, row.try_get("iec")?))
    }

    // ----- login and access -----

    /// A service user's stored password hash (text), if the user exists and has one.
    pub async fn password_of(&self, key: &str) -> Result<Option<String>, AccountError> {
        let row = sqlx::query("SELECT password_hash FROM service_users WHERE login_key = $1")
            .bind(key.to_owned())
            .fetch_optional(&self.db)
            .await?;
        Ok(match row {
            Some(r) => r.try_get("password_hash")?,
            None => None,
        })
    }

    /// The role `caller` holds in account `id` now (expired temporary access is none).
    async fn current_role(
        &self,
        caller: &str,
        id: AccountId,
    ) -> Result<Option<Role>, AccountError> {
        let row = sqlx::query(
            "SELECT role FROM account_users WHERE account_id = $1 AND login_key = $2 \
             AND (temporary_until IS NULL OR temporary_until > $3)",
        )
        .bind(db_id(id)?)
        .bind(caller.to_owned())
        .bind(now_text())
        .fetch_optional(&self.db)
        .await?;
        row.map(|r| {
            let s: String = r.try_get("role")?;
            Role::parse(&s).map_err(|_| AccountError::Internal)
        })
        .transpose()
    }

    /// How `caller`, acting for account `acting` (`auth.account`), reaches account `id`: a
    /// role of their own when the two are the same; as a servicing organisation they hold a
    /// serving role in when `acting` serves `id`. Anything else reads as "not found".
    pub async fn access(
        &self,
        caller: &str,
        acting: AccountId,
        id: AccountId,
    ) -> Result<Access, AccountError> {
        db_id(id)?;
        let role = self
            .current_role(caller, acting)
            .await?
            .ok_or_else(|| not_available(acting))?;
        if acting == id {
            return Ok(Access::Member(role));
        }
        if role.serves() && self.serves(acting, id).await? {
            return Ok(Access::Serving);
        }
        Err(not_available(id))
    }

    /// Whether servicing organisation `servant` serves account `id`.
    pub async fn serves(&self, servant: AccountId, id: AccountId) -> Result<bool, AccountError> {
        Ok(sqlx::query(
            "SELECT 1 AS one FROM account_servants WHERE account_id = $1 AND servant = $2",
        )
        .bind(db_id(id)?)
        .bind(db_id(servant)?)
        .fetch_optional(&self.db)
        .await?
        .is_some())
    }

    /// The accounts `caller` reaches, by code: those they hold a role in, and those served by
    /// a servicing organisation they hold a serving role in (shown as `operator`).
    pub async fn accounts_of(
        &self,
        caller: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<(AccountId, String, Role)>, AccountError> {
        let rows = sqlx::query(
            "SELECT a.id, a.name, u.role FROM account_users u JOIN accounts a ON a.id = u.account_id \
             WHERE u.login_key = $1 AND (u.temporary_until IS NULL OR u.temporary_until > $2) \
             UNION \
             SELECT a.id, a.name, 'operator' AS role FROM account_users u \
             JOIN account_servants s ON s.servant = u.account_id JOIN accounts a ON a.id = s.account_id \
             WHERE u.login_key = $1 AND u.role IN ('owner', 'administrator', 'operator') \
             AND (u.temporary_until IS NULL OR u.temporary_until > $2) \
             AND NOT EXISTS (SELECT 1 FROM account_users d WHERE d.account_id = a.id AND d.login_key = $1 \
             AND (d.temporary_until IS NULL OR d.temporary_until > $2)) \
             ORDER BY 1 LIMIT $3 OFFSET $4",
        )
        .bind(caller.to_owned())
        .bind(now_text())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                let role: String = r.try_get("role")?;
                Ok((
                    id_of(r, "id")?,
                    r.try_get("name")?,
                    Role::parse(&role).map_err(|_| AccountError::Internal)?,
                ))
            })
            .collect()
    }

    // ----- what the API reads and changes -----

    pub async fn account_card(&self, id: AccountId) -> Result<AccountCard, AccountError> {
        let row =
            sqlx::query("SELECT id, name, site, city, email, phone FROM accounts WHERE id = $1")
                .bind(db_id(id)?)
                .fetch_optional(&self.db)
                .await?
                .ok_or_else(|| not_available(id))?;
        card(&row)
    }

    pub async fn update_card(
        &self,
        id: AccountId,
        access: Access,
        ch: &CardChanges,
    ) -> Result<(), AccountError> {
        require_changes(access)?;
        ch.check()?;
        let mut tx = self.db.begin().await?;
        lock_account(&mut tx, id).await?;
        for (col, v) in [
            ("name", &ch.name),
            ("site", &ch.site),
            ("city", &ch.city),
            ("email", &ch.email),
            ("phone", &ch.phone),
        ] {
            if let Some(v) = v {
                sqlx::query(&format!("UPDATE accounts SET {col} = $1 WHERE id = $2"))
                    .bind(v.clone())
                    .bind(db_id(id)?)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The servicing organisations serving account `id`.
    pub async fn servants_of(&self, id: AccountId) -> Result<Vec<Servant>, AccountError> {
        let rows = sqlx::query(
            "SELECT a.id, a.name, a.site, a.city, a.email, a.phone, v.servant_id, v.tariff_subscribe_allowed, \
             v.automatic_billing_allowed, v.tariff_override_allowed, v.tariff_selection_page_only \
             FROM account_servants s JOIN servants v ON v.account_id = s.servant JOIN accounts a ON a.id = s.servant \
             WHERE s.account_id = $1 ORDER BY a.id",
        )
        .bind(db_id(id)?)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Servant {
                    id: id_of(r, "id")?,
                    name: r.try_get("name")?,
                    servant_id: r.try_get("servant_id")?,
                    city: r.try_get("city")?,
                    site: r.try_get("site")?,
                    email: r.try_get("email")?,
                    phone: r.try_get("phone")?,
                    tariff_subscribe_allowed: flag(r, "tariff_subscribe_allowed")?,
                    automatic_billing_allowed: flag(r, "automatic_billing_allowed")?,
                    tariff_override_allowed: flag(r, "tariff_override_allowed")?,
                    tariff_selection_page_only: flag(r, "tariff_selection_page_only")?,
                })
            })
            .collect()
    }

    /// The attached values of `target` for account `id` (and user `key`, for user fields),
    /// with their types, by name.
    pub async fn attached(
        &self,
        target: Target,
        id: AccountId,
        key: &str,
    ) -> Result<Vec<(String, Kind, Value)>, AccountError> {
        let rows = sqlx::query(
            "SELECT v.name, v.value, d.kind FROM attached_values v JOIN attached_definitions d \
             ON d.target = v.target AND d.name = v.name \
             WHERE v.target = $1 AND v.account_id = $2 AND v.login_key = $3 ORDER BY v.name",
        )
        .bind(target.as_str())
        .bind(db_id(id)?)
        .bind(key.to_owned())
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                let k: String = r.try_get("kind")?;
                let v: String = r.try_get("value")?;
                Ok((
                    r.try_get("name")?,
                    Kind::parse(&k).ok_or(AccountError::Internal)?,
                    serde_json::from_str(&v).map_err(|_| AccountError::Internal)?,
                ))
            })
            .collect()
    }

    /// `account/update_attached_info`: both arrays checked before anything is written.
    pub async fn update_account_attached(
        &self,
        id: AccountId,
        access: Access,
        fields: &[AttachedItem],
        properties: &[AttachedItem],
    ) -> Result<(), AccountError> {
        require_changes(access)?;
        let mut tx = self.db.begin().await?;
        lock_account(&mut tx, id).await?;
        // Both checked for unknown names first, so one 10406 names every unknown one.
        let mut unknown = Vec::new();
        for (target, items) in [
            (Target::AccountField, fields),
            (Target::AccountProperty, properties),
        ] {
            let defs = definitions(&mut tx, target).await?;
            unknown.extend(
                items
                    .iter()
                    .filter(|i| !defs.iter().any(|(d, _)| *d == i.key))
                    .map(|i| format!("{} '{}' not found.", target.noun(), i.key)),
            );
        }
        if !unknown.is_empty() {
            return Err(AccountError::UnknownAttached(unknown));
        }
        write_attached(&mut tx, Target::AccountField, id, "", fields).await?;
        write_attached(&mut tx, Target::AccountProperty, id, "", properties).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The users of account `id`, by login.
    pub async fn members(
        &self,
        id: AccountId,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<Member>, AccountError> {
        let rows = sqlx::query(&format!(
            "{MEMBER_QUERY} WHERE u.account_id = $1 ORDER BY u.login_key LIMIT $2 OFFSET $3"
        ))
        .bind(db_id(id)?)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(member).collect()
    }

    pub async fn member(&self, id: AccountId, login: &str) -> Result<Member, AccountError> {
        let row = sqlx::query(&format!(
            "{MEMBER_QUERY} WHERE u.account_id = $1 AND u.login_key = $2"
        ))
        .bind(db_id(id)?)
        .bind(login_key(login))
        .fetch_optional(&self.db)
        .await?
        .ok_or_else(|| no_member(login, id))?;
        member(&row)
    }

    /// `account/users/add`: attaches an existing service user. A caller (`None`: the vendor)
    /// may add only a user their account created or a user of another account they own or
    /// administer — not any login of any customer, which would show them that person's name
    /// and e-mail and put their account in the person's list. Any other login, existing or
    /// not, gets one answer.
    pub async fn attach_user(
        &self,
        id: AccountId,
        access: Access,
        login: &Login,
        p: &Placement,
        caller: Option<&str>,
    ) -> Result<(), AccountError> {
        let mut tx = self.db.begin().await?;
        lock_account(&mut tx, id).await?;
        check_role_change(&mut tx, id, access, None, Some(p.role)).await?;
        let reachable = match caller {
            None => self.user_exists(&mut tx, &login.key()).await?,
            Some(c) => sqlx::query(
                "SELECT 1 AS one FROM service_users s WHERE s.login_key = $1 AND (s.created_by = $2 \
                 OR EXISTS (SELECT 1 FROM account_users t JOIN account_users me ON me.account_id = t.account_id \
                 WHERE t.login_key = s.login_key AND me.login_key = $3 AND me.role IN ('owner', 'administrator') \
                 AND (me.temporary_until IS NULL OR me.temporary_until > $4)))",
            )
            .bind(login.key())
            .bind(db_id(id)?)
            .bind(c.to_owned())
            .bind(now_text())
            .fetch_optional(&mut *tx)
            .await?
            .is_some(),
        };
        if !reachable {
            return Err(AccountError::NotFound(format!(
                "no service user {:?} that you may add (one your account created, or a user of another account you own or administer)",
                login.as_str()
            )));
        }
        if role_of(&mut tx, id, &login.key()).await?.is_some() {
            return Err(AccountError::Conflict(format!(
                "user {:?} is already attached to account {id}",
                login.as_str()
            )));
        }
        insert_member(&mut tx, id, &login.key(), p).await?;
        tx.commit().await?;
        Ok(())
    }

    /// `account/users/create`: a new service user, attached. `created_by` is the account
    /// whose user made it (counted against [`MAX_CREATED_PER_ACCOUNT`]), `None` for the vendor.
    pub async fn create_user(
        &self,
        id: AccountId,
        access: Access,
        u: &NewUser,
        p: &Placement,
        created_by: Option<AccountId>,
    ) -> Result<(), AccountError> {
        let mut tx = self.db.begin().await?;
        lock_account(&mut tx, id).await?;
        check_role_change(&mut tx, id, access, None, Some(p.role)).await?;
        insert_user(&mut tx, u, created_by).await?;
        insert_member(&mut tx, id, &u.login.key(), p).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Opens a change to user `login` of account `id` (its lock taken), checked: `access` may
    /// take the user's role (an owner's needs an owner) and give `new`, and the user is
    /// attached. Returns the transaction and the user's key.
    async fn user_change(
        &self,
        id: AccountId,
        access: Access,
        login: &str,
        new: Option<Role>,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Any>, String), AccountError> {
        let key = login_key(login);
        let mut tx = self.db.begin().await?;
        lock_account(&mut tx, id).await?;
        let old = role_of(&mut tx, id, &key).await?;
        check_role_change(&mut tx, id, access, old, new).await?;
        if old.is_none() {
            return Err(no_member(login, id));
        }
        Ok((tx, key))
    }

    /// `account/users/delete`: detaches (the service user remains), never the last owner.
    pub async fn detach_user(
        &self,
        id: AccountId,
        access: Access,
        login: &str,
    ) -> Result<(), AccountError> {
        let (mut tx, key) = self.user_change(id, access, login, None).await?;
        for sql in [
            "DELETE FROM account_users WHERE account_id = $1 AND login_key = $2",
            "DELETE FROM attached_values WHERE target = 'user_field' AND account_id = $1 AND login_key = $2",
        ] {
            sqlx::query(sql)
                .bind(db_id(id)?)
                .bind(key.clone())
                .execute(&mut *tx)
                .await?;
        }
        keep_an_owner(&mut tx, id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// `account/users/set_role`: never leaves the account without an owner.
    pub async fn set_role(
        &self,
        id: AccountId,
        access: Access,
        login: &str,
        role: Role,
    ) -> Result<(), AccountError> {
        let (mut tx, key) = self.user_change(id, access, login, Some(role)).await?;
        if role == Role::Owner {
            let row = sqlx::query("SELECT temporary_until FROM account_users WHERE account_id = $1 AND login_key = $2")
                .bind(db_id(id)?)
                .bind(key.clone())
                .fetch_one(&mut *tx)
                .await?;
            if row
                .try_get::<Option<String>, _>("temporary_until")?
                .is_some()
            {
                return Err(AccountError::BadRequest(format!(
                    "{login:?} has temporary access; an owner's access does not end"
                )));
            }
        }
        sqlx::query("UPDATE account_users SET role = $1 WHERE account_id = $2 AND login_key = $3")
            .bind(role.as_str())
            .bind(db_id(id)?)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        keep_an_owner(&mut tx, id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// `account/users/set_session_restriction` (0: no limit).
    pub async fn set_restriction(
        &self,
        id: AccountId,
        access: Access,
        login: &str,
        n: u32,
    ) -> Result<(), AccountError> {
        let (mut tx, key) = self.user_change(id, access, login, None).await?;
        sqlx::query("UPDATE account_users SET session_restriction = $1 WHERE account_id = $2 AND login_key = $3")
            .bind(i64::from(n))
            .bind(db_id(id)?)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// `account/users/update_attached_info`.
    pub async fn update_user_attached(
        &self,
        id: AccountId,
        access: Access,
        login: &str,
        fields: &[AttachedItem],
    ) -> Result<(), AccountError> {
        let (mut tx, key) = self.user_change(id, access, login, None).await?;
        write_attached(&mut tx, Target::UserField, id, &key, fields).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A servicing organisation's tariffs, by code.
    pub async fn tariffs(
        &self,
        servant: AccountId,
        periods: bool,
        only_extensions: bool,
        only: Option<&[String]>,
    ) -> Result<Vec<Tariff>, AccountError> {
        let rows = sqlx::query("SELECT id FROM servant_tariffs WHERE servant = $1 ORDER BY id")
            .bind(db_id(servant)?)
            .fetch_all(&self.db)
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let id: String = r.try_get("id")?;
            if only.is_some_and(|o| !o.contains(&id)) {
                continue;
            }
            let mut t = self.tariff(servant, &id).await?;
            if only_extensions && !t.is_extension {
                continue;
            }
            if !periods {
                t.validity_periods.clear();
            }
            out.push(t);
        }
        Ok(out)
    }

    pub async fn tariff(&self, servant: AccountId, id: &str) -> Result<Tariff, AccountError> {
        let s = db_id(servant)?;
        let row = sqlx::query("SELECT id, name, tariff_id, brief_description, description_html, is_extension FROM servant_tariffs WHERE servant = $1 AND id = $2")
            .bind(s)
            .bind(id.to_owned())
            .fetch_optional(&self.db)
            .await?
            .ok_or_else(|| AccountError::NotFound(format!("servicing organisation {servant} has no tariff {id:?}")))?;
        let images = sqlx::query("SELECT name, data FROM tariff_images WHERE servant = $1 AND tariff = $2 ORDER BY position")
            .bind(s)
            .bind(id.to_owned())
            .fetch_all(&self.db)
            .await?;
        let periods = sqlx::query("SELECT id, name, period, quantity, cost_kopecks, comment, recommended FROM tariff_periods WHERE servant = $1 AND tariff = $2 ORDER BY position")
            .bind(s)
            .bind(id.to_owned())
            .fetch_all(&self.db)
            .await?;
        Ok(Tariff {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            tariff_id: row.try_get("tariff_id")?,
            brief_description: row.try_get("brief_description")?,
            is_extension: flag(&row, "is_extension")?,
            description_for_subscribers: Description {
                html: row.try_get("description_html")?,
                images: images
                    .iter()
                    .map(|r| {
                        Ok(Image {
                            name: r.try_get("name")?,
                            data: r.try_get("data")?,
                        })
                    })
                    .collect::<Result<_, sqlx::Error>>()?,
            },
            validity_periods: periods
                .iter()
                .map(|r| {
                    let q: i64 = r.try_get("quantity")?;
                    let cost: Option<i64> = r.try_get("cost_kopecks")?;
                    Ok(Period {
                        id: r.try_get("id")?,
                        name: r.try_get("name")?,
                        period: r.try_get("period")?,
                        quantity: u32::try_from(q).unwrap_or(0),
                        cost: cost.map(|c| c as f64 / 100.0),
                        comment: r.try_get("comment")?,
                        recommended: flag(r, "recommended")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()?,
        })
    }

    /// A servicing organisation's tariff-selection page, if it has one.
    pub async fn tariff_page(&self, servant: AccountId) -> Result<Option<String>, AccountError> {
        let row = sqlx::query("SELECT tariff_selection_page FROM servants WHERE account_id = $1")
            .bind(db_id(servant)?)
            .fetch_optional(&self.db)
            .await?
            .ok_or_else(|| {
                AccountError::NotFound(format!("account {servant} is not a servicing organisation"))
            })?;
        Ok(row.try_get("tariff_selection_page")?)
    }
}

fn card(r: &AnyRow) -> Result<AccountCard, AccountError> {
    Ok(AccountCard {
        id: id_of(r, "id")?,
        name: r.try_get("name")?,
        site: r.try_get("site")?,
        city: r.try_get("city")?,
        email: r.try_get("email")?,
        phone: r.try_get("phone")?,
    })
}

/// The session restrictions of account `id`'s users (those with a limit), by login: what a
/// licence of the account carries for hosts to enforce.
pub(crate) async fn session_limits(
    c: &mut AnyConnection,
    id: AccountId,
) -> Result<Vec<SessionLimit>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT s.login, u.session_restriction FROM account_users u JOIN service_users s ON s.login_key = u.login_key \
         WHERE u.account_id = $1 AND u.session_restriction > 0 ORDER BY u.login_key LIMIT $2",
    )
    .bind(i64::try_from(id).unwrap_or(-1))
    .bind(i64::try_from(MAX_USERS_PER_ACCOUNT).unwrap_or(1000))
    .fetch_all(&mut *c)
    .await?;
    rows.iter()
        .map(|r| {
            let n: i64 = r.try_get("session_restriction")?;
            Ok(SessionLimit {
                user: r.try_get("login")?,
                sessions: u32::try_from(n).unwrap_or(u32::MAX),
            })
        })
        .collect()
}
