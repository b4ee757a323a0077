//! Each method of the account API: its parameters (strict: an unknown one is an error that
//! names it), the caller's right to call it, and its answer's members. [`METHODS`] is the one
//! list of them.

use super::envelope::AccountError;
use super::login::UserLogin;
use super::model::{
    login_key, Access, AccountId, AttachedItem, Kind, Login, Role, Target, MAX_PAGE,
};
use super::store::{CardChanges, Member, NewUser, Placement, Tariff};
use crate::centre::Centre;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Who calls, and for which account (`auth.account`).
pub struct Caller<'a> {
    pub centre: &'a Centre,
    pub login: &'a UserLogin,
    /// The caller's login key.
    pub user: String,
    pub acting: Option<AccountId>,
}

impl Caller<'_> {
    fn acting(&self) -> Result<AccountId, AccountError> {
        self.acting.ok_or_else(|| {
            AccountError::BadRequest(
                "auth.account is required: the code of the account you call on behalf of".into(),
            )
        })
    }

    /// The caller's access to account `id`, acting for `auth.account`.
    async fn access(&self, id: AccountId) -> Result<Access, AccountError> {
        self.centre.access(&self.user, self.acting()?, id).await
    }

    /// Checks the caller may see servicing organisation `servant`: it serves the account
    /// the caller acts for, or is that account.
    async fn servant(&self, servant: AccountId) -> Result<(), AccountError> {
        let acting = self.acting()?;
        self.access(acting).await?;
        if servant == acting || self.centre.serves(servant, acting).await? {
            Ok(())
        } else {
            Err(AccountError::NotFound(format!(
                "servicing organisation {servant} does not serve account {acting}"
            )))
        }
    }
}

type Answer = Result<Map<String, Value>, AccountError>;

/// Every method, by its name.
pub const METHODS: &[&str] = &[
    "account/list",
    "account/info",
    "account/update_info",
    "account/servant_info",
    "account/attached_info",
    "account/update_attached_info",
    "account/users/list",
    "account/users/info",
    "account/users/add",
    "account/users/create",
    "account/users/delete",
    "account/users/set_role",
    "account/users/set_session_restriction",
    "account/users/update_attached_info",
    "account/servants/list",
    "account/servants/tariff_selection_page",
    "account/servant_tariffs/list",
    "account/servant_tariffs/info",
];

/// Runs `method` with `params` (the request's members other than `general` and `auth`).
pub async fn call(c: &Caller<'_>, method: &str, params: Map<String, Value>) -> Answer {
    match method {
        "account/list" => list(c, p(method, params)?).await,
        "account/info" => info(c, p(method, params)?).await,
        "account/update_info" => update_info(c, p(method, params)?).await,
        "account/servant_info" => servant_info(c, p(method, params)?).await,
        "account/attached_info" => attached_info(c, p(method, params)?).await,
        "account/update_attached_info" => update_attached_info(c, p(method, params)?).await,
        "account/users/list" => users_list(c, p(method, params)?).await,
        "account/users/info" => users_info(c, p(method, params)?).await,
        "account/users/add" => users_add(c, p(method, params)?).await,
        "account/users/create" => users_create(c, p(method, params)?).await,
        "account/users/delete" => users_delete(c, p(method, params)?).await,
        "account/users/set_role" => users_set_role(c, p(method, params)?).await,
        "account/users/set_session_restriction" => users_restrict(c, p(method, params)?).await,
        "account/users/update_attached_info" => users_attached(c, p(method, params)?).await,
        "account/servants/list" => servants_list(c, p(method, params)?).await,
        "account/servants/tariff_selection_page" => tariff_page(c, p(method, params)?).await,
        "account/servant_tariffs/list" => tariffs_list(c, p(method, params)?).await,
        "account/servant_tariffs/info" => tariffs_info(c, p(method, params)?).await,
        other => Err(AccountError::UnknownMethod(
            other.chars().take(100).collect(),
        )),
    }
}

/// A method's parameters from the request's members.
fn p<T: DeserializeOwned>(method: &str, params: Map<String, Value>) -> Result<T, AccountError> {
    serde_json::from_value(Value::Object(params))
        .map_err(|e| AccountError::BadRequest(format!("parameters of {method}: {e}")))
}

fn members(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// `offset` and `limit` (ours: the spec's lists have no paging) within [`MAX_PAGE`].
#[derive(Deserialize, Default, Clone, Copy)]
struct Page {
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    limit: Option<u64>,
}

impl Page {
    fn limit(self) -> Result<u64, AccountError> {
        match self.limit {
            None => Ok(MAX_PAGE),
            Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            Some(n) => Err(AccountError::BadRequest(format!(
                "limit {n} must be 1 to {MAX_PAGE}"
            ))),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    limit: Option<u64>,
}

async fn list(c: &Caller<'_>, q: ListParams) -> Answer {
    let page = Page {
        offset: q.offset,
        limit: q.limit,
    };
    let rows = c
        .centre
        .accounts_of(&c.user, page.offset, page.limit()?)
        .await?;
    let list: Vec<Value> = rows
        .into_iter()
        .map(|(id, name, role)| json!({"id": id, "name": name, "role": role.as_str()}))
        .collect();
    Ok(members(vec![("account", Value::Array(list))]))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Id {
    id: AccountId,
}

async fn info(c: &Caller<'_>, q: Id) -> Answer {
    c.access(q.id).await?;
    let card = c.centre.account_card(q.id).await?;
    Ok(members(vec![("account", json!(card))]))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateInfo {
    id: AccountId,
    name: Option<String>,
    site: Option<String>,
    city: Option<String>,
    email: Option<String>,
    phone: Option<String>,
}

async fn update_info(c: &Caller<'_>, q: UpdateInfo) -> Answer {
    let access = c.access(q.id).await?;
    let ch = CardChanges {
        name: q.name,
        site: q.site,
        city: q.city,
        email: q.email,
        phone: q.phone,
    };
    c.centre.update_card(q.id, access, &ch).await?;
    Ok(Map::new())
}

async fn servant_info(c: &Caller<'_>, q: Id) -> Answer {
    c.access(q.id).await?;
    let s = c
        .centre
        .servants_of(q.id)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            AccountError::NotFound(format!("account {} has no servicing organisation", q.id))
        })?;
    Ok(members(vec![(
        "servant",
        json!({"id": s.id, "name": s.name, "site": s.site, "city": s.city, "email": s.email, "phone": s.phone}),
    )]))
}

fn attached_json(rows: Vec<(String, Kind, Value)>) -> Value {
    Value::Array(
        rows.into_iter()
            .map(|(k, kind, v)| json!({"key": k, "value": v, "type": kind.as_str()}))
            .collect(),
    )
}

async fn attached_info(c: &Caller<'_>, q: Id) -> Answer {
    c.access(q.id).await?;
    let fields = c.centre.attached(Target::AccountField, q.id, "").await?;
    let props = c.centre.attached(Target::AccountProperty, q.id, "").await?;
    Ok(members(vec![
        ("fields", attached_json(fields)),
        ("properties", attached_json(props)),
    ]))
}

/// An element of `fields` / `properties` as sent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    key: String,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// Most elements one `fields` or `properties` array may hold.
const MAX_ITEMS: usize = 200;

fn items(what: &str, v: Option<Vec<Item>>) -> Result<Vec<AttachedItem>, AccountError> {
    let v = v.unwrap_or_default();
    if v.len() > MAX_ITEMS {
        return Err(AccountError::BadRequest(format!(
            "{what} holds at most {MAX_ITEMS} elements"
        )));
    }
    v.into_iter()
        .map(|i| {
            let kind = i
                .kind
                .map(|k| {
                    Kind::parse(&k).ok_or_else(|| {
                        AccountError::BadRequest(format!(
                            "{what}: type {k:?} is not one of string, number, date, boolean"
                        ))
                    })
                })
                .transpose()?;
            Ok(AttachedItem {
                key: i.key,
                value: i.value,
                kind,
            })
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateAttached {
    id: AccountId,
    fields: Option<Vec<Item>>,
    properties: Option<Vec<Item>>,
}

async fn update_attached_info(c: &Caller<'_>, q: UpdateAttached) -> Answer {
    let access = c.access(q.id).await?;
    let fields = items("fields", q.fields)?;
    let props = items("properties", q.properties)?;
    c.centre
        .update_account_attached(q.id, access, &fields, &props)
        .await?;
    Ok(Map::new())
}

fn require_reads_users(access: Access) -> Result<(), AccountError> {
    if access.reads_users() {
        Ok(())
    } else {
        Err(AccountError::Forbidden(format!(
            "your role in this account ({}) does not show its users; an owner or administrator sees them",
            access.role()
        )))
    }
}

fn member_json(m: &Member) -> Value {
    json!({
        "login": m.login,
        "name": m.name,
        "email": m.email,
        "role": m.role.as_str(),
        "session_restriction": m.session_restriction,
        "is_temporary": m.is_temporary,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersList {
    id: AccountId,
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    limit: Option<u64>,
}

async fn users_list(c: &Caller<'_>, q: UsersList) -> Answer {
    require_reads_users(c.access(q.id).await?)?;
    let page = Page {
        offset: q.offset,
        limit: q.limit,
    };
    let list = c.centre.members(q.id, page.offset, page.limit()?).await?;
    Ok(members(vec![(
        "user",
        Value::Array(list.iter().map(member_json).collect()),
    )]))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRef {
    id: AccountId,
    login: String,
}

async fn users_info(c: &Caller<'_>, q: UserRef) -> Answer {
    let access = c.access(q.id).await?;
    // Anyone sees themselves; others need a role that shows the account's users.
    if login_key(&q.login) != c.user || access == Access::Serving {
        require_reads_users(access)?;
    }
    let m = c.centre.member(q.id, &q.login).await?;
    let fields = c
        .centre
        .attached(Target::UserField, q.id, &login_key(&m.login))
        .await?;
    let mut u = member_json(&m);
    if let Value::Object(o) = &mut u {
        o.insert("description".into(), json!(m.description));
        o.insert("fields".into(), attached_json(fields));
    }
    Ok(members(vec![("user", u)]))
}

fn role(r: Option<String>) -> Result<Role, AccountError> {
    r.map_or(Ok(Role::User), |r| Role::parse(&r))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersAdd {
    id: AccountId,
    login: String,
    role: Option<String>,
    #[serde(default)]
    description: String,
    /// "Execute even if there are warnings": this API has no warnings, so it changes nothing.
    #[serde(default)]
    #[allow(dead_code)]
    force: bool,
    fields: Option<Vec<Item>>,
}

async fn users_add(c: &Caller<'_>, q: UsersAdd) -> Answer {
    let access = c.access(q.id).await?;
    let login = Login::parse(&q.login)?;
    let p = Placement {
        role: role(q.role)?,
        description: q.description,
        until: None,
        fields: items("fields", q.fields)?,
    };
    c.centre
        .attach_user(q.id, access, &login, &p, Some(&c.user))
        .await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersCreate {
    id: AccountId,
    login: String,
    role: Option<String>,
    password: Option<String>,
    #[serde(default)]
    email: String,
    #[serde(default)]
    email_required: bool,
    name: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    timezone: String,
    #[serde(default)]
    description: String,
    fields: Option<Vec<Item>>,
}

async fn users_create(c: &Caller<'_>, q: UsersCreate) -> Answer {
    let access = c.access(q.id).await?;
    super::model::require_changes(access)?;
    let login = Login::parse(&q.login)?;
    if q.email_required && q.email.trim().is_empty() {
        return Err(AccountError::BadRequest(
            "email is required (email_required is true)".into(),
        ));
    }
    if !q.email.is_empty() && !q.email.contains('@') {
        return Err(AccountError::BadRequest(format!(
            "email {:?} is not an e-mail address",
            q.email
        )));
    }
    let p = Placement {
        role: role(q.role)?,
        description: q.description,
        until: None,
        fields: items("fields", q.fields)?,
    };
    let mut u = NewUser {
        login,
        name: q.name,
        email: q.email,
        phone: q.phone,
        timezone: q.timezone,
        password: None,
    };
    u.check()?;
    if let Some(pw) = q.password {
        super::model::check_password(&pw, &u.login)?;
        u.password = Some(c.login.hash(pw).await?);
    }
    c.centre
        .create_user(q.id, access, &u, &p, Some(q.id))
        .await?;
    Ok(Map::new())
}

async fn users_delete(c: &Caller<'_>, q: UserRef) -> Answer {
    let access = c.access(q.id).await?;
    c.centre.detach_user(q.id, access, &q.login).await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRole {
    id: AccountId,
    login: String,
    role: String,
}

async fn users_set_role(c: &Caller<'_>, q: SetRole) -> Answer {
    let access = c.access(q.id).await?;
    let r = Role::parse(&q.role)?;
    c.centre.set_role(q.id, access, &q.login, r).await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Restrict {
    id: AccountId,
    login: String,
    /// Absent means 0: any number of sessions.
    #[serde(default)]
    restriction: u32,
}

async fn users_restrict(c: &Caller<'_>, q: Restrict) -> Answer {
    let access = c.access(q.id).await?;
    c.centre
        .set_restriction(q.id, access, &q.login, q.restriction)
        .await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserAttached {
    id: AccountId,
    login: String,
    fields: Option<Vec<Item>>,
}

async fn users_attached(c: &Caller<'_>, q: UserAttached) -> Answer {
    let access = c.access(q.id).await?;
    let fields = items("fields", q.fields)?;
    c.centre
        .update_user_attached(q.id, access, &q.login, &fields)
        .await?;
    Ok(Map::new())
}

async fn servants_list(c: &Caller<'_>, q: Id) -> Answer {
    c.access(q.id).await?;
    let list = c.centre.servants_of(q.id).await?;
    Ok(members(vec![("servants", json!(list))]))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TariffPage {
    servant: AccountId,
    /// The account the page is for: the one the caller acts for (`auth.account`).
    account: Option<AccountId>,
}

async fn tariff_page(c: &Caller<'_>, q: TariffPage) -> Answer {
    if q.account.is_some_and(|a| Some(a) != c.acting) {
        return Err(AccountError::BadRequest(
            "account must be the account you act for (auth.account)".into(),
        ));
    }
    c.servant(q.servant).await?;
    Ok(match c.centre.tariff_page(q.servant).await? {
        Some(html) => members(vec![("html", json!(html))]),
        None => Map::new(),
    })
}

/// A validity period's cost as the spec prints it: whole roubles as an integer.
fn cost(c: f64) -> Value {
    if c.fract() == 0.0 && c.abs() < 1e15 {
        json!(c as i64)
    } else {
        json!(c)
    }
}

fn periods_json(t: &Tariff) -> Value {
    Value::Array(
        t.validity_periods
            .iter()
            .map(|p| {
                let mut v = json!({
                    "id": p.id, "name": p.name, "quantity": p.quantity, "comment": p.comment,
                    "period": p.period, "recommended": p.recommended,
                });
                if let (Some(c), Value::Object(o)) = (p.cost, &mut v) {
                    o.insert("cost".into(), cost(c));
                }
                v
            })
            .collect(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TariffsList {
    servant: AccountId,
    #[serde(default)]
    scope: Vec<String>,
    available_tariffs: Option<Vec<String>>,
}

async fn tariffs_list(c: &Caller<'_>, q: TariffsList) -> Answer {
    for s in &q.scope {
        if s != "validity_periods" && s != "is_extension" {
            return Err(AccountError::BadRequest(format!(
                "scope {s:?} is not one of validity_periods, is_extension"
            )));
        }
    }
    if q.available_tariffs
        .as_ref()
        .is_some_and(|a| a.len() > MAX_ITEMS)
    {
        return Err(AccountError::BadRequest(format!(
            "available_tariffs holds at most {MAX_ITEMS} codes"
        )));
    }
    c.servant(q.servant).await?;
    let with_periods = q.scope.iter().any(|s| s == "validity_periods");
    let extensions = q.scope.iter().any(|s| s == "is_extension");
    let list = c
        .centre
        .tariffs(
            q.servant,
            with_periods,
            extensions,
            q.available_tariffs.as_deref(),
        )
        .await?;
    let out: Vec<Value> = list
        .iter()
        .map(|t| {
            let mut v = json!({
                "id": t.id, "name": t.name, "tariff_id": t.tariff_id,
                "brief_description": t.brief_description,
            });
            if let (true, Value::Object(o)) = (with_periods, &mut v) {
                o.insert("validity_periods".into(), periods_json(t));
            }
            v
        })
        .collect();
    Ok(members(vec![("servant_tariff", Value::Array(out))]))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TariffInfo {
    servant: AccountId,
    /// A tariff code: the spec types it Number, its examples show strings with leading
    /// zeros ("099"); a string is matched exactly, a number by its value.
    id: Value,
}

async fn tariffs_info(c: &Caller<'_>, q: TariffInfo) -> Answer {
    c.servant(q.servant).await?;
    let code = match &q.id {
        Value::String(s) => s.clone(),
        Value::Number(n) => {
            let n = n.as_u64().ok_or_else(|| {
                AccountError::BadRequest(
                    "id must be a tariff code (a string or a whole number)".into(),
                )
            })?;
            let all = c.centre.tariffs(q.servant, false, false, None).await?;
            all.into_iter()
                .find(|t| t.id.parse::<u64>().ok() == Some(n))
                .map(|t| t.id)
                .unwrap_or_else(|| n.to_string())
        }
        _ => {
            return Err(AccountError::BadRequest(
                "id must be a tariff code (a string or a whole number)".into(),
            ))
        }
    };
    let t = c.centre.tariff(q.servant, &code).await?;
    let images: Vec<Value> = t
        .description_for_subscribers
        .images
        .iter()
        .map(|i| json!({"name": i.name, "data": i.data}))
        .collect();
    Ok(members(vec![(
        "servant_tariff",
        json!({
            "id": t.id,
            "name": t.name,
            "tariff_id": t.tariff_id,
            "description_for_subscribers": {"html": t.description_for_subscribers.html, "images": images},
            "validity_periods": periods_json(&t),
        }),
    )]))
}
