//! The vendor's side of accounts: create accounts with their first owner, attach users,
//! make servicing organisations and their tariffs, define attached information, reset
//! passwords. Each operation is one function over a body that both the authenticated admin
//! endpoint (JSON) and `keybridge centre …` (flags) give, so the two cannot drift apart.

use super::model::{AccountId, Kind, Login, Role, Target};
use super::store::{CardChanges, NewAccount, NewUser, Placement, Servant, Tariff};
use super::AccountError;
use crate::centre::Centre;
use crate::crypto::password::PasswordHash;
use crate::licence::{Iec, Itn};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A password made for a user the vendor creates without one: 18 hex digits (72 bits).
pub fn generated_password() -> String {
    hex::encode(crate::crypto::random_bytes::<9>())
}

/// The password given (checked), or a generated one — returned a second time to be answered
/// once, since nobody else will ever see it.
fn password_or_generated(
    given: Option<&str>,
    login: &Login,
) -> Result<(String, Option<String>), AccountError> {
    match given {
        Some(p) => {
            super::model::check_password(p, login)?;
            Ok((p.to_owned(), None))
        }
        None => {
            let p = generated_password();
            Ok((p.clone(), Some(p)))
        }
    }
}

async fn hash(password: String) -> Result<PasswordHash, AccountError> {
    tokio::task::spawn_blocking(move || PasswordHash::new(&password))
        .await
        .map_err(|_| AccountError::Internal)
}

/// A user the vendor names: an existing service user is attached; a new one is created with
/// the name and password given (a password is generated when none is, and answered once).
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    /// The service user's login.
    #[arg(long = "login")]
    pub login: String,
    /// A new user's full name [default: the login].
    #[arg(long = "user-name")]
    #[serde(default)]
    pub name: Option<String>,
    #[arg(long = "user-email")]
    #[serde(default)]
    pub email: Option<String>,
    /// A new user's password (at least 6 characters); generated and printed when absent.
    /// Prefer KEYBRIDGE_USER_PASSWORD over the flag, which other local users can see.
    #[arg(
        long = "password",
        env = "KEYBRIDGE_USER_PASSWORD",
        hide_env_values = true
    )]
    #[serde(default)]
    pub password: Option<String>,
}

/// The new user's details and whether a password was generated, or `None` when `u.login`
/// exists (attach it; a name or password given then is an error).
async fn new_user(
    centre: &Centre,
    u: &UserBody,
) -> Result<(Login, Option<(NewUser, Option<String>)>), AccountError> {
    let login = Login::parse(&u.login)?;
    if centre.service_user_exists(&login.key()).await? {
        if u.password.is_some() || u.name.is_some() || u.email.is_some() {
            return Err(AccountError::Conflict(format!(
                "service user {:?} exists: it is attached as it is (leave out its name, e-mail and password)",
                login.as_str()
            )));
        }
        return Ok((login, None));
    }
    let (password, generated) = password_or_generated(u.password.as_deref(), &login)?;
    let user = NewUser {
        login: login.clone(),
        name: u.name.clone().unwrap_or_else(|| login.as_str().to_owned()),
        email: u.email.clone().unwrap_or_default(),
        phone: String::new(),
        timezone: String::new(),
        password: Some(hash(password).await?),
    };
    user.check()?;
    Ok((login, Some((user, generated))))
}

/// A new account (`POST /centre/v1/accounts`, `centre account-add`).
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountBody {
    /// The account's code [default: the next free one, from 1001].
    #[arg(long)]
    #[serde(default)]
    pub id: Option<AccountId>,
    #[arg(long)]
    pub name: String,
    /// The account's ITN (ИНН): codes issued to the account are reserved for it.
    #[arg(long)]
    #[serde(default)]
    pub itn: Option<String>,
    /// … and IEC (КПП).
    #[arg(long)]
    #[serde(default)]
    pub iec: Option<String>,
    #[arg(long, default_value = "")]
    #[serde(default)]
    pub site: String,
    #[arg(long, default_value = "")]
    #[serde(default)]
    pub city: String,
    #[arg(long, default_value = "")]
    #[serde(default)]
    pub email: String,
    #[arg(long, default_value = "")]
    #[serde(default)]
    pub phone: String,
    /// The first owner.
    #[command(flatten)]
    pub owner: UserBody,
}

pub async fn add_account(centre: &Centre, b: &AccountBody) -> Result<Value, AccountError> {
    let itn = b
        .itn
        .clone()
        .map(Itn::try_from)
        .transpose()
        .map_err(AccountError::BadRequest)?;
    let iec = b
        .iec
        .clone()
        .map(Iec::try_from)
        .transpose()
        .map_err(AccountError::BadRequest)?;
    if iec.is_some() && itn.is_none() {
        return Err(AccountError::BadRequest("an IEC needs an ITN".into()));
    }
    let (owner, new) = new_user(centre, &b.owner).await?;
    let (new_owner, generated) = match new {
        Some((u, g)) => (Some(u), g),
        None => (None, None),
    };
    let id = centre
        .create_account(&NewAccount {
            id: b.id,
            card: CardChanges {
                name: Some(b.name.clone()),
                site: Some(b.site.clone()),
                city: Some(b.city.clone()),
                email: Some(b.email.clone()),
                phone: Some(b.phone.clone()),
            },
            itn,
            iec,
            owner: owner.clone(),
            new_owner,
        })
        .await?;
    Ok(json!({"id": id, "owner": owner.as_str(), "password": generated}))
}

/// A user the vendor attaches to an account, optionally for a limited time.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    #[command(flatten)]
    #[serde(flatten)]
    pub user: UserBody,
    /// owner, administrator, ext_administrator, operator or user.
    #[arg(long, default_value = "user")]
    #[serde(default = "user_role")]
    pub role: String,
    /// Access ends at this time (ISO 8601): the user shows `is_temporary`.
    #[arg(long)]
    #[serde(default)]
    pub until: Option<String>,
}

fn user_role() -> String {
    "user".into()
}

pub async fn add_member(
    centre: &Centre,
    id: AccountId,
    b: &MemberBody,
) -> Result<Value, AccountError> {
    let role = Role::parse(&b.role)?;
    let until = b
        .until
        .as_deref()
        .map(|s| {
            crate::time::parse_client(s).ok_or_else(|| {
                AccountError::BadRequest(format!("until {s:?} is not an ISO 8601 date"))
            })
        })
        .transpose()?;
    if until.is_some() && role == Role::Owner {
        return Err(AccountError::BadRequest(
            "an owner's access does not end; give a temporary user another role".into(),
        ));
    }
    if until.is_some_and(|t| t <= crate::time::now()) {
        return Err(AccountError::BadRequest("until lies in the past".into()));
    }
    let (login, new) = new_user(centre, &b.user).await?;
    let p = Placement {
        role,
        description: String::new(),
        until,
        fields: Vec::new(),
    };
    // The vendor acts with an owner's rights.
    let vendor = super::Access::Member(Role::Owner);
    let generated = match new {
        Some((u, g)) => {
            centre.create_user(id, vendor, &u, &p, None).await?;
            g
        }
        None => {
            centre.attach_user(id, vendor, &login, &p, None).await?;
            None
        }
    };
    Ok(
        json!({"account": id, "login": login.as_str(), "role": role.as_str(), "password": generated}),
    )
}

/// Makes an account a servicing organisation (`POST /centre/v1/servants`, `centre servant-add`).
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServantBody {
    /// The account's code.
    #[arg(long)]
    pub id: AccountId,
    /// Its «Идентификатор» (servant_id).
    #[arg(long, default_value = "")]
    #[serde(default)]
    pub servant_id: String,
    #[arg(long)]
    #[serde(default)]
    pub tariff_subscribe_allowed: bool,
    #[arg(long)]
    #[serde(default)]
    pub automatic_billing_allowed: bool,
    #[arg(long)]
    #[serde(default)]
    pub tariff_override_allowed: bool,
    #[arg(long)]
    #[serde(default)]
    pub tariff_selection_page_only: bool,
    /// Its tariff-selection page (HTML).
    #[arg(long)]
    #[serde(default)]
    pub tariff_selection_page: Option<String>,
}

pub async fn add_servant(centre: &Centre, b: &ServantBody) -> Result<Value, AccountError> {
    let s = Servant {
        id: b.id,
        servant_id: b.servant_id.clone(),
        tariff_subscribe_allowed: b.tariff_subscribe_allowed,
        automatic_billing_allowed: b.automatic_billing_allowed,
        tariff_override_allowed: b.tariff_override_allowed,
        tariff_selection_page_only: b.tariff_selection_page_only,
        ..Servant::default()
    };
    centre
        .put_servant(&s, b.tariff_selection_page.as_deref())
        .await?;
    Ok(json!({"servant": b.id}))
}

/// Has a servicing organisation serve an account.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServeBody {
    pub servant: AccountId,
}

pub async fn add_tariff(
    centre: &Centre,
    servant: AccountId,
    t: &Tariff,
) -> Result<Value, AccountError> {
    centre.put_tariff(servant, t).await?;
    Ok(json!({"servant": servant, "id": t.id}))
}

/// An attached-information definition.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefinitionBody {
    /// account_field, account_property or user_field.
    #[arg(long)]
    pub target: String,
    #[arg(long)]
    pub name: String,
    /// string, number, date or boolean.
    #[arg(long = "type")]
    #[serde(rename = "type")]
    pub kind: String,
}

pub async fn define(centre: &Centre, b: &DefinitionBody) -> Result<Value, AccountError> {
    let target = Target::parse(&b.target).ok_or_else(|| {
        AccountError::BadRequest(format!(
            "target {:?} is not one of account_field, account_property, user_field",
            b.target
        ))
    })?;
    let kind = Kind::parse(&b.kind).ok_or_else(|| {
        AccountError::BadRequest(format!(
            "type {:?} is not one of string, number, date, boolean",
            b.kind
        ))
    })?;
    centre.define_attached(target, &b.name, kind).await?;
    Ok(json!({"target": target.as_str(), "name": b.name, "type": kind.as_str()}))
}

/// A new password for a service user; generated (and answered once) when absent.
#[derive(Debug, Clone, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    #[serde(default)]
    pub password: Option<String>,
}

pub async fn reset_password(
    centre: &Centre,
    login: &str,
    b: &PasswordBody,
) -> Result<Value, AccountError> {
    let login = Login::parse(login)?;
    let (password, generated) = password_or_generated(b.password.as_deref(), &login)?;
    centre.set_password(&login, &hash(password).await?).await?;
    Ok(json!({"login": login.as_str(), "password": generated}))
}

/// The vendor's account listing.
pub async fn list(centre: &Centre) -> Result<Value, AccountError> {
    let rows = centre.list_accounts().await?;
    let list: Vec<Value> = rows
        .into_iter()
        .map(|(card, itn)| json!({"id": card.id, "name": card.name, "itn": itn}))
        .collect();
    Ok(json!({"accounts": list}))
}

/// An account's licences and unused codes.
pub async fn licences(centre: &Centre, id: AccountId) -> Result<Value, AccountError> {
    centre.account_card(id).await?;
    Ok(json!({"account": id, "licences": centre.account_licences(id).await?}))
}
