//! What the centre does with products, codes and activations. Every rule is enforced inside
//! one database transaction, so two hosts racing with one code get one licence between them.

use super::{ActivationCode, Centre, CentreError};
use crate::licence::{self, Binding, Flags, Iec, Itn, KeyType, LicenceTerms};
use crate::time::{self, Timestamp};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A product series the vendor sells.
#[derive(Debug, Clone)]
pub struct Product {
    pub key_id: String,
    pub product_name: String,
    pub article: String,
    pub article_name: String,
    pub product_version: u32,
    pub product_version_name: Option<String>,
    pub flags: Flags,
    /// The first KeyNo to assign in this series (default 1000001).
    pub first_key_no: Option<u64>,
}

/// What a new activation code grants.
#[derive(Debug, Clone)]
pub struct CodeSpec {
    pub key_id: String,
    pub key_type: KeyType,
    pub service_type: u32,
    pub licence_count: u32,
    /// Days of validity from activation (or `start_date`); 0 = no end.
    pub period_days: u32,
    pub start_date: Option<Timestamp>,
    /// The code activates only for this ITN (and IEC, when given).
    pub itn: Option<Itn>,
    pub iec: Option<Iec>,
    pub support_date: Option<Timestamp>,
    pub support_end_date: Option<Timestamp>,
    pub support_type: Option<u8>,
    /// How often a licence from this code may be restored onto a new binding.
    pub restore_limit: u32,
    /// The customer account the code is issued to: its licences belong to it, and the
    /// code is reserved for the account's ITN and IEC unless others are given.
    pub account: Option<u64>,
}

impl CodeSpec {
    pub fn new(key_id: &str, licence_count: u32) -> CodeSpec {
        CodeSpec {
            key_id: key_id.into(),
            key_type: KeyType::Main,
            service_type: 0,
            licence_count,
            period_days: 0,
            start_date: None,
            itn: None,
            iec: None,
            support_date: None,
            support_end_date: None,
            support_type: None,
            restore_limit: 3,
            account: None,
        }
    }
}

/// A code as the vendor's listing shows it.
#[derive(Debug, Clone)]
pub struct CodeState {
    pub code: String,
    pub key_id: String,
    pub licence_count: u32,
    /// The account it was issued to.
    pub account: Option<u64>,
    /// `None` while new.
    pub activation: Option<ActivationState>,
}

#[derive(Debug, Clone)]
pub struct ActivationState {
    pub key_no: u64,
    pub binding: Binding,
    pub activated: Timestamp,
    pub restores: u32,
}

/// A host's activation.
#[derive(Debug, Clone)]
pub struct ActivationRequest {
    pub code: ActivationCode,
    pub itn: Option<Itn>,
    pub iec: Option<Iec>,
    pub binding: Binding,
    /// Required for a USB key binding: the key's proof that it is genuine and blank.
    pub device_proof: Option<crate::hal::Attestation>,
    /// What `device_proof` answers.
    pub challenge: DeviceChallenge,
}

/// The challenge a USB key's proof answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceChallenge {
    /// None given: a USB key binding is refused.
    None,
    /// Issued by this centre (`POST /centre/v1/challenge`) and consumed on use, so a recorded
    /// proof cannot be replayed: online activation.
    Issued([u8; 32]),
    /// Bound to the request itself ([`crate::hal::attest::offline_challenge`] of code, ITN,
    /// IEC and serial): offline requests fulfilled by the vendor (`centre fulfil`) and the
    /// demo's own provisioning. Never accepted over HTTP: such a proof can be shown twice.
    RequestBound,
}

impl ActivationRequest {
    /// The request a host's online JSON stands for. Its proof must answer a challenge this
    /// centre issued: there is no way to ask for the request-bound kind here.
    pub fn from_wire(b: &super::wire::ActivateBody) -> Result<ActivationRequest, String> {
        let challenge = match &b.challenge {
            None => DeviceChallenge::None,
            Some(h) => {
                let mut c = [0u8; 32];
                hex::decode_to_slice(h, &mut c)
                    .map_err(|_| "challenge must be 64 hex digits".to_owned())?;
                DeviceChallenge::Issued(c)
            }
        };
        Self::parse(b, challenge)
    }

    /// The request an offline request file stands for (`centre fulfil`): its proof answers
    /// the request-bound challenge.
    pub fn from_offline(b: &super::wire::ActivateBody) -> Result<ActivationRequest, String> {
        if b.challenge.is_some() {
            return Err("an offline request carries no challenge (its USB key proof is bound to the request)".into());
        }
        Self::parse(b, DeviceChallenge::RequestBound)
    }

    fn parse(
        b: &super::wire::ActivateBody,
        challenge: DeviceChallenge,
    ) -> Result<ActivationRequest, String> {
        Ok(ActivationRequest {
            code: ActivationCode::parse(&b.code).map_err(|e| e.to_string())?,
            itn: b.itn.clone().map(Itn::try_from).transpose()?,
            iec: b.iec.clone().map(Iec::try_from).transpose()?,
            binding: b.binding.clone().into(),
            device_proof: b
                .device_proof
                .as_ref()
                .map(super::wire::WireProof::to_attestation)
                .transpose()?,
            challenge,
        })
    }
}

/// Proof of holding a licence: which it is, the activation code it was issued from, and the
/// ITN and IEC it was activated for (none when it had none) — all of which the holder's copy
/// of the licence says. Without the ITN here, the code alone would fetch the ITN and then
/// pass a restore's proof.
#[derive(Debug, Clone)]
pub struct LicenceProof {
    pub key_id: String,
    pub key_no: u64,
    pub code: ActivationCode,
    pub itn: Option<Itn>,
    pub iec: Option<Iec>,
}

/// A restore: the licence onto `binding`, proven by its activation code and the ITN (and
/// IEC, when it had one) it was activated for.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub key_id: String,
    pub key_no: u64,
    pub code: ActivationCode,
    pub itn: Option<Itn>,
    pub iec: Option<Iec>,
    pub binding: Binding,
}

fn binding_key(b: &Binding) -> String {
    match b {
        Binding::Computer(id) => format!("computer:{id}"),
        Binding::Device(s) => format!("device:{s}"),
    }
}

/// What a licence demands of its binding (`LicenceTerms::validate`), checked before anything
/// is stored or spent — a code, a KeyNo, a restore, a challenge — so a request whose licence
/// could not be made changes nothing. (Licences are also signed before the commit, which
/// catches anything this misses.)
fn check_binding(b: &Binding) -> Result<(), CentreError> {
    match b {
        Binding::Computer(id) if id.is_empty() || id.len() > 128 => Err(CentreError::Invalid(
            "the ComputerID of the binding must be 1-128 characters".into(),
        )),
        Binding::Device(0) => Err(CentreError::Invalid(
            "the USB key serial of the binding is 0".into(),
        )),
        _ => Ok(()),
    }
}

fn parse_binding(s: &str) -> Result<Binding, CentreError> {
    let bad = || CentreError::Invalid(format!("stored binding {s:?} is malformed"));
    match s.split_once(':').ok_or_else(bad)? {
        ("computer", id) => Ok(Binding::Computer(id.into())),
        ("device", n) => n.parse().map(Binding::Device).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

fn ts(s: Option<String>) -> Result<Option<Timestamp>, CentreError> {
    s.map(|s| {
        time::parse_client(&s).ok_or_else(|| CentreError::Invalid(format!("stored time {s:?}")))
    })
    .transpose()
}

fn num<T: TryFrom<i64>>(row: &AnyRow, col: &str) -> Result<T, CentreError> {
    let v: i64 = row.try_get(col)?;
    T::try_from(v).map_err(|_| CentreError::Invalid(format!("{col} {v} out of range")))
}

fn opt_num<T: TryFrom<i64>>(row: &AnyRow, col: &str) -> Result<Option<T>, CentreError> {
    let v: Option<i64> = row.try_get(col)?;
    v.map(|v| T::try_from(v).map_err(|_| CentreError::Invalid(format!("{col} {v} out of range"))))
        .transpose()
}

/// The SHA-256 (hex) of a code, as the challenges table holds it: the table never holds a
/// code, only which one a challenge serves.
fn code_hash(code: &ActivationCode) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, code.digits()).as_ref())
}

const FIRST_KEY_NO: i64 = 1_000_001;
/// KeyNos a series must have room for above its first: KeyNos are stored as BIGINT, so a
/// first KeyNo near `i64::MAX` would overflow the series' counter within a few activations.
const KEY_NO_ROOM: u64 = 1_000_000_000;

/// The first KeyNo a new series starts from: the default, or the vendor's, which must be at
/// least 1 and leave [`KEY_NO_ROOM`] numbers below `i64::MAX`.
fn first_key_no(asked: Option<u64>) -> Result<i64, CentreError> {
    let max = i64::MAX.unsigned_abs() - KEY_NO_ROOM;
    match asked {
        None => Ok(FIRST_KEY_NO),
        Some(n) if n == 0 || n > max => Err(CentreError::Invalid(format!(
            "first_key_no must be between 1 and {max} (a series needs room for {KEY_NO_ROOM} KeyNos)"
        ))),
        Some(n) => i64::try_from(n).map_err(|_| CentreError::Invalid("first_key_no".into())),
    }
}
const FIRST_REG_NO: i64 = 1;

const LICENCE_QUERY: &str = "SELECT a.key_id, a.key_no, a.reg_no, a.binding, a.itn, a.iec, a.activated, a.updated, a.restores, \
     c.code, c.account_id, c.key_type, c.service_type, c.licence_count, c.period_days, c.start_date, c.support_date, c.support_end_date, c.support_type, c.restore_limit, \
     p.product_name, p.article, p.article_name, p.product_version, p.product_version_name, p.flags \
     FROM activations a JOIN codes c ON c.code = a.code JOIN products p ON p.key_id = a.key_id";

/// `terms` with the account its code was issued to and the session restrictions of that
/// account's users as they stand now (read on `c`, inside the caller's transaction if any).
async fn with_account(
    c: &mut sqlx::AnyConnection,
    row: &AnyRow,
    mut terms: LicenceTerms,
) -> Result<LicenceTerms, CentreError> {
    let account: Option<i64> = row.try_get("account_id")?;
    if let Some(a) = account {
        let id = u64::try_from(a).map_err(|_| CentreError::Invalid("stored account".into()))?;
        terms.account = Some(licence::AccountTerms {
            id,
            session_limits: super::accounts::store::session_limits(c, id).await?,
        });
    }
    Ok(terms)
}

/// The licence an activation stands for, from its stored rows: the same rows give the same
/// terms, so re-issuing is idempotent down to the signature bytes.
fn terms_from_row(row: &AnyRow) -> Result<LicenceTerms, CentreError> {
    let key_type = KeyType::from_code(num::<u64>(row, "key_type")?)
        .ok_or_else(|| CentreError::Invalid("stored key type".into()))?;
    let activated = ts(Some(row.try_get("activated")?))?.unwrap_or_else(time::now);
    let updated = ts(Some(row.try_get("updated")?))?;
    let itn: Option<String> = row.try_get("itn")?;
    let iec: Option<String> = row.try_get("iec")?;
    let restores: i64 = row.try_get("restores")?;
    Ok(LicenceTerms {
        reg_no: num(row, "reg_no")?,
        key_type,
        service_type: num(row, "service_type")?,
        product_version: num(row, "product_version")?,
        product_version_name: row.try_get("product_version_name")?,
        activation_code: row.try_get("code")?,
        activation_date: activated,
        start_date: ts(row.try_get("start_date")?)?,
        period: num(row, "period_days")?,
        flags: Flags(num(row, "flags")?),
        itn: itn
            .map(Itn::try_from)
            .transpose()
            .map_err(CentreError::Invalid)?,
        iec: iec
            .map(Iec::try_from)
            .transpose()
            .map_err(CentreError::Invalid)?,
        product_name: row.try_get("product_name")?,
        article: row.try_get("article")?,
        article_name: row.try_get("article_name")?,
        recovered: restores > 0,
        support_date: ts(row.try_get("support_date")?)?,
        support_end_date: ts(row.try_get("support_end_date")?)?,
        support_type: opt_num(row, "support_type")?,
        update_date: updated.filter(|u| *u != activated),
        ..LicenceTerms::new(
            num(row, "key_no")?,
            &row.try_get::<String, _>("key_id")?,
            num(row, "licence_count")?,
            parse_binding(&row.try_get::<String, _>("binding")?)?,
        )
    })
}

impl Centre {
    pub async fn add_product(&self, p: &Product) -> Result<(), CentreError> {
        first_key_no(p.first_key_no)?;
        LicenceTerms {
            product_name: p.product_name.clone(),
            article_name: p.article_name.clone(),
            ..LicenceTerms::new(1, &p.key_id, 1, Binding::Device(1))
        }
        .validate()?;
        let exists = sqlx::query("SELECT key_id FROM products WHERE key_id = $1")
            .bind(p.key_id.clone())
            .fetch_optional(&self.db)
            .await?;
        if exists.is_some() {
            return Err(CentreError::ProductExists(p.key_id.clone()));
        }
        sqlx::query(
            "INSERT INTO products (key_id, product_name, article, article_name, product_version, product_version_name, flags, next_key_no, next_reg_no) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(p.key_id.clone())
        .bind(p.product_name.clone())
        .bind(p.article.clone())
        .bind(p.article_name.clone())
        .bind(i64::from(p.product_version))
        .bind(p.product_version_name.clone())
        .bind(i64::from(p.flags.0))
        .bind(first_key_no(p.first_key_no)?)
        .bind(FIRST_REG_NO)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Issues a new activation code for a product.
    pub async fn issue_code(&self, spec: &CodeSpec) -> Result<ActivationCode, CentreError> {
        if spec.licence_count == 0 {
            return Err(CentreError::Invalid(
                "a code must grant at least one licence".into(),
            ));
        }
        // The limits every licence has (LicenceCount, Period), checked now: a code its
        // licence could not carry would fail at every activation.
        LicenceTerms {
            period: spec.period_days,
            service_type: spec.service_type,
            ..LicenceTerms::new(1, &spec.key_id, spec.licence_count, Binding::Device(1))
        }
        .validate()?;
        let product = sqlx::query("SELECT key_id FROM products WHERE key_id = $1")
            .bind(spec.key_id.clone())
            .fetch_optional(&self.db)
            .await?;
        if product.is_none() {
            return Err(CentreError::UnknownProduct(spec.key_id.clone()));
        }
        let (mut itn, mut iec) = (
            spec.itn.as_ref().map(|i| i.as_str().to_owned()),
            spec.iec.as_ref().map(|i| i.as_str().to_owned()),
        );
        let account = match spec.account {
            None => None,
            Some(id) => {
                let (a_itn, a_iec) = self.account_itn(id).await?;
                if itn.is_none() {
                    (itn, iec) = (a_itn, a_iec);
                } else if a_itn.is_some() && (itn != a_itn || (iec.is_some() && iec != a_iec)) {
                    return Err(CentreError::Invalid(format!(
                        "the ITN and IEC given differ from account {id}'s; leave them out to use the account's"
                    )));
                }
                Some(super::accounts::store::db_id(id)?)
            }
        };
        let code = ActivationCode::generate();
        let fmt = |t: &Option<Timestamp>| t.as_ref().map(time::format);
        sqlx::query(
            "INSERT INTO codes (code, key_id, key_type, service_type, licence_count, period_days, start_date, itn, iec, \
             support_date, support_end_date, support_type, restore_limit, created, account_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(code.to_string())
        .bind(spec.key_id.clone())
        .bind(i64::from(spec.key_type.code()))
        .bind(i64::from(spec.service_type))
        .bind(i64::from(spec.licence_count))
        .bind(i64::from(spec.period_days))
        .bind(fmt(&spec.start_date))
        .bind(itn)
        .bind(iec)
        .bind(fmt(&spec.support_date))
        .bind(fmt(&spec.support_end_date))
        .bind(spec.support_type.map(i64::from))
        .bind(i64::from(spec.restore_limit))
        .bind(time::format(&time::now()))
        .bind(account)
        .execute(&self.db)
        .await?;
        Ok(code)
    }

    /// Changes the validity a code grants (its licence's Period); a host sees it at its next
    /// update.
    pub async fn set_period(&self, code: &ActivationCode, days: u32) -> Result<(), CentreError> {
        let mut tx = self.db.begin().await?;
        let done = sqlx::query("UPDATE codes SET period_days = $1 WHERE code = $2")
            .bind(i64::from(days))
            .bind(code.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(CentreError::UnknownCode);
        }
        sqlx::query("UPDATE activations SET updated = $1 WHERE code = $2")
            .bind(time::format(&time::now()))
            .bind(code.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every code with its state, newest first.
    pub async fn list_codes(&self) -> Result<Vec<CodeState>, CentreError> {
        let rows = sqlx::query(
            "SELECT c.code, c.key_id, c.licence_count, c.account_id, c.created, a.key_no, a.binding, a.activated, a.restores \
             FROM codes c LEFT JOIN activations a ON a.code = c.code ORDER BY c.created DESC, c.code",
        )
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                let binding: Option<String> = r.try_get("binding")?;
                let activation = match binding {
                    None => None,
                    Some(b) => Some(ActivationState {
                        key_no: num(r, "key_no")?,
                        binding: parse_binding(&b)?,
                        activated: ts(r.try_get("activated")?)?.unwrap_or_else(time::now),
                        restores: num(r, "restores")?,
                    }),
                };
                Ok(CodeState {
                    code: r.try_get("code")?,
                    key_id: r.try_get("key_id")?,
                    licence_count: num(r, "licence_count")?,
                    account: opt_num(r, "account_id")?,
                    activation,
                })
            })
            .collect()
    }

    /// Turns an activation code into a signed licence for a binding. A code activates once;
    /// asking again with the binding, ITN and IEC it was activated for returns the same
    /// licence; anything else is refused with one answer ([`CentreError::AlreadyActivated`]).
    /// A USB key binding needs the key's proof, answering a challenge this centre issued
    /// (consumed here) or, offline, the request-bound one.
    pub async fn activate(
        &self,
        req: &ActivationRequest,
    ) -> Result<(LicenceTerms, Vec<u8>), CentreError> {
        check_binding(&req.binding)?;
        if let Binding::Device(serial) = req.binding {
            self.check_device(req, serial).await?;
        }
        // Two first activations of one code can race past the "already activated?" check; the
        // loser's insert violates the key, and its retry sees the winner's row.
        let mut attempt = 0;
        loop {
            match self.activate_once(req).await {
                Err(CentreError::Db(sqlx::Error::Database(e)))
                    if e.is_unique_violation() && attempt < 3 =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Checks a USB key's proof (genuine, blank, this serial, answering the challenge) and
    /// uses up an issued challenge. Outside the activation's retry loop, so a retry never
    /// spends the challenge twice.
    async fn check_device(&self, req: &ActivationRequest, serial: u64) -> Result<(), CentreError> {
        let proof = req.device_proof.clone().ok_or_else(|| {
            CentreError::Device("no proof from the USB key that it is genuine and blank".into())
        })?;
        let challenge = match &req.challenge {
            DeviceChallenge::None => {
                return Err(CentreError::Challenge(
                    "a USB key proves itself by answering a fresh challenge: ask POST /centre/v1/challenge, have the key attest to it, and send it as `challenge`".into(),
                ))
            }
            DeviceChallenge::Issued(c) => *c,
            DeviceChallenge::RequestBound => crate::hal::attest::offline_challenge(
                &req.code.to_string(),
                req.itn.as_ref().map(Itn::as_str),
                req.iec.as_ref().map(Iec::as_str),
                serial,
            ),
        };
        let dir = self.manufacturers_dir.clone();
        tokio::task::spawn_blocking(move || {
            let manufacturers = Centre::manufacturers(dir.as_deref());
            crate::hal::attest::verify(&proof, serial, &challenge, &manufacturers)
        })
        .await
        .map_err(|e| CentreError::Invalid(format!("worker failed: {e}")))?
        .map_err(|e| CentreError::Device(e.to_string()))?;
        if let DeviceChallenge::Issued(c) = &req.challenge {
            self.consume_challenge(c, &req.code).await?;
        }
        Ok(())
    }

    async fn activate_once(
        &self,
        req: &ActivationRequest,
    ) -> Result<(LicenceTerms, Vec<u8>), CentreError> {
        let code = req.code.to_string();
        let mut tx = self.db.begin().await?;
        let row = sqlx::query("SELECT key_id, itn, iec FROM codes WHERE code = $1")
            .bind(code.clone())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(CentreError::UnknownCode)?;
        let key_id: String = row.try_get("key_id")?;
        let reserved_itn: Option<String> = row.try_get("itn")?;
        let reserved_iec: Option<String> = row.try_get("iec")?;
        let asked_itn = req.itn.as_ref().map(|i| i.as_str().to_owned());
        let asked_iec = req.iec.as_ref().map(|i| i.as_str().to_owned());
        if reserved_itn
            .as_ref()
            .is_some_and(|r| Some(r) != asked_itn.as_ref())
            || reserved_iec
                .as_ref()
                .is_some_and(|r| Some(r) != asked_iec.as_ref())
        {
            return Err(CentreError::ItnMismatch);
        }
        let existing = sqlx::query("SELECT binding, itn, iec FROM activations WHERE code = $1")
            .bind(code.clone())
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = existing {
            // The licence again only for the binding, ITN and IEC it was activated for, all
            // three: the code alone must not fetch the licence (its ITN, IEC and terms) nor
            // learn where it is bound. Every other asker gets the same answer.
            let bound = parse_binding(&row.try_get::<String, _>("binding")?)?;
            let itn: Option<String> = row.try_get("itn")?;
            let iec: Option<String> = row.try_get("iec")?;
            if bound != req.binding || itn != asked_itn || iec != asked_iec {
                return Err(CentreError::AlreadyActivated);
            }
        } else {
            // Take the next KeyNo and RegNo of the series; the row update serialises issuers.
            sqlx::query("UPDATE products SET next_key_no = next_key_no + 1, next_reg_no = next_reg_no + 1 WHERE key_id = $1")
                .bind(key_id.clone())
                .execute(&mut *tx)
                .await?;
            let p = sqlx::query("SELECT next_key_no, next_reg_no FROM products WHERE key_id = $1")
                .bind(key_id.clone())
                .fetch_one(&mut *tx)
                .await?;
            let key_no: i64 = p.try_get::<i64, _>("next_key_no")? - 1;
            let reg_no: i64 = p.try_get::<i64, _>("next_reg_no")? - 1;
            let now = time::format(&time::now());
            sqlx::query(
                "INSERT INTO activations (code, key_id, key_no, reg_no, binding, itn, iec, activated, updated, restores) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0)",
            )
            .bind(code.clone())
            .bind(key_id.clone())
            .bind(key_no)
            .bind(reg_no)
            .bind(binding_key(&req.binding))
            .bind(asked_itn)
            .bind(asked_iec)
            .bind(now.clone())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let row = sqlx::query(&format!("{LICENCE_QUERY} WHERE a.code = $1"))
            .bind(code)
            .fetch_one(&mut *tx)
            .await?;
        // Signed before the commit: a licence that cannot be made leaves the code unused.
        let terms = with_account(&mut tx, &row, terms_from_row(&row)?).await?;
        let signed = self.sign(terms).await?;
        tx.commit().await?;
        Ok(signed)
    }

    /// Signs a licence on the blocking pool (RSA).
    async fn sign(&self, terms: LicenceTerms) -> Result<(LicenceTerms, Vec<u8>), CentreError> {
        let key = self.licence_key.clone();
        tokio::task::spawn_blocking(move || {
            let doc = licence::sign(&terms, &key)?;
            Ok((terms, doc))
        })
        .await
        .map_err(|e| CentreError::Invalid(format!("worker failed: {e}")))?
    }

    /// The stored row of the licence `key_id.key_no` issued from `code`, if there is one:
    /// the three must match together, so a wrong code reads exactly like an unknown licence.
    async fn proven_row<'e, E>(
        executor: E,
        key_id: &str,
        key_no: u64,
        code: &ActivationCode,
    ) -> Result<AnyRow, CentreError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let Ok(n) = i64::try_from(key_no) else {
            return Err(CentreError::NotProven);
        };
        sqlx::query(&format!(
            "{LICENCE_QUERY} WHERE a.key_id = $1 AND a.key_no = $2 AND a.code = $3"
        ))
        .bind(key_id.to_owned())
        .bind(n)
        .bind(code.to_string())
        .fetch_optional(executor)
        .await?
        .ok_or(CentreError::NotProven)
    }

    /// The current version of a licence this centre issued (dates, product names, support
    /// periods as they are now), signed afresh — for whoever proves they hold it: its code,
    /// and its ITN and IEC exactly as activated.
    pub async fn current(
        &self,
        proof: &LicenceProof,
    ) -> Result<(LicenceTerms, Vec<u8>), CentreError> {
        let row = Self::proven_row(&self.db, &proof.key_id, proof.key_no, &proof.code).await?;
        let stored_itn: Option<String> = row.try_get("itn")?;
        let stored_iec: Option<String> = row.try_get("iec")?;
        if proof.itn.as_ref().map(Itn::as_str) != stored_itn.as_deref()
            || proof.iec.as_ref().map(Iec::as_str) != stored_iec.as_deref()
        {
            return Err(CentreError::NotProven);
        }
        let mut c = self.db.acquire().await?;
        let terms = with_account(&mut c, &row, terms_from_row(&row)?).await?;
        drop(c);
        self.sign(terms).await
    }

    /// Moves a licence to a new binding (a changed ComputerID), within the code's restore
    /// limit, for whoever proves they own it: its activation code and the ITN (and IEC) it
    /// was activated for. The new licence says `Recovered`.
    pub async fn restore(
        &self,
        req: &RestoreRequest,
    ) -> Result<(LicenceTerms, Vec<u8>), CentreError> {
        check_binding(&req.binding)?;
        let mut tx = self.db.begin().await?;
        let row = Self::proven_row(&mut *tx, &req.key_id, req.key_no, &req.code).await?;
        let stored_itn: Option<String> = row.try_get("itn")?;
        let stored_iec: Option<String> = row.try_get("iec")?;
        let Some(stored_itn) = stored_itn else {
            return Err(CentreError::RestoreNeedsVendor {
                key_id: req.key_id.clone(),
                key_no: req.key_no,
            });
        };
        if req.itn.as_ref().map(Itn::as_str) != Some(stored_itn.as_str())
            || req.iec.as_ref().map(Iec::as_str) != stored_iec.as_deref()
        {
            return Err(CentreError::NotProven);
        }
        let current = terms_from_row(&row)?;
        // Restore follows a machine whose ComputerID changed. A licence on a USB key stays on
        // it: nothing here proves the licence left the old key, so moving it (to another key
        // or to a machine) needs the vendor.
        if let Binding::Device(_) = current.binding {
            if current.binding != req.binding {
                return Err(CentreError::Device(format!(
                    "licence {}.{} is bound to {}; moving it off that USB key needs the vendor",
                    req.key_id, req.key_no, current.binding
                )));
            }
        }
        if matches!(req.binding, Binding::Device(_)) && current.binding != req.binding {
            return Err(CentreError::Device(format!(
                "licence {}.{} is bound to {}; moving it to a USB key needs the vendor",
                req.key_id, req.key_no, current.binding
            )));
        }
        let code = req.code.to_string();
        // One statement decides and counts, so concurrent restores (PostgreSQL runs them in
        // parallel) never exceed the limit: each re-checks `restores` under the row lock.
        // Moving to where it already is costs nothing (`binding <> $1`).
        let moved = sqlx::query(
            "UPDATE activations SET binding = $1, restores = restores + 1, updated = $2 \
             WHERE code = $3 AND binding <> $1 \
             AND restores < (SELECT c.restore_limit FROM codes c WHERE c.code = activations.code)",
        )
        .bind(binding_key(&req.binding))
        .bind(time::format(&time::now()))
        .bind(code)
        .execute(&mut *tx)
        .await?;
        let row = Self::proven_row(&mut *tx, &req.key_id, req.key_no, &req.code).await?;
        let terms = with_account(&mut tx, &row, terms_from_row(&row)?).await?;
        if moved.rows_affected() == 0 && terms.binding != req.binding {
            return Err(CentreError::RestoreLimit {
                key_id: req.key_id.clone(),
                key_no: req.key_no,
                limit: num(&row, "restore_limit")?,
            });
        }
        // Signed before the commit: a licence that cannot be made costs no restore.
        let signed = self.sign(terms).await?;
        tx.commit().await?;
        Ok(signed)
    }

    /// The vendor moves a licence to a new binding — a machine or a USB key — having satisfied
    /// itself some other way that the customer owns it and the old binding is gone (a licence
    /// activated without an ITN, a broken USB key). Counted as a restore, without a limit.
    pub async fn move_licence(
        &self,
        key_id: &str,
        key_no: u64,
        binding: &Binding,
    ) -> Result<(LicenceTerms, Vec<u8>), CentreError> {
        let unknown = || CentreError::UnknownLicence {
            key_id: key_id.into(),
            key_no,
        };
        let n = i64::try_from(key_no).map_err(|_| unknown())?;
        check_binding(binding)?;
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "UPDATE activations SET binding = $1, restores = restores + 1, updated = $2 \
             WHERE key_id = $3 AND key_no = $4 AND binding <> $1",
        )
        .bind(binding_key(binding))
        .bind(time::format(&time::now()))
        .bind(key_id.to_owned())
        .bind(n)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!(
            "{LICENCE_QUERY} WHERE a.key_id = $1 AND a.key_no = $2"
        ))
        .bind(key_id.to_owned())
        .bind(n)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(unknown)?;
        let terms = with_account(&mut tx, &row, terms_from_row(&row)?).await?;
        let signed = self.sign(terms).await?;
        tx.commit().await?;
        Ok(signed)
    }

    /// A fresh attestation challenge for activating `code` onto a blank USB key, and when it
    /// expires. Only for a code this centre issued (else [`CentreError::NoChallenge`], a
    /// failed proof), so nobody without one can fill the table; at most
    /// `max_challenges_per_code` are outstanding per code ([`CentreError::ChallengesForCode`])
    /// and `max_challenges` in all (`ChallengesFull`, a last resort). Expired ones are purged
    /// first.
    ///
    /// An activated code gets one too: an activation onto a USB key that was cut off after
    /// the centre recorded it (a crash, an unplug) leaves the key blank, and the same key
    /// proving itself again is how it fetches its licence — the activation answers only that
    /// key, with the ITN and IEC it was activated for. The answer says nothing of whether the
    /// code is activated, or where.
    pub async fn issue_challenge(
        &self,
        code: &ActivationCode,
    ) -> Result<([u8; 32], Timestamp), CentreError> {
        sqlx::query("SELECT code FROM codes WHERE code = $1")
            .bind(code.to_string())
            .fetch_optional(&self.db)
            .await?
            .ok_or(CentreError::NoChallenge)?;
        let now = time::now();
        let ttl = chrono::Duration::from_std(self.challenge_ttl)
            .unwrap_or_else(|_| chrono::Duration::seconds(300));
        let expires = now + ttl;
        sqlx::query("DELETE FROM challenges WHERE expires_ms <= $1")
            .bind(now.timestamp_millis())
            .execute(&self.db)
            .await?;
        let challenge = crate::crypto::random_bytes::<32>();
        let hash = code_hash(code);
        // Both caps are checked in the insert itself; concurrent inserts can overshoot them by
        // at most the pool's connections.
        let done = sqlx::query(
            "INSERT INTO challenges (challenge, expires_ms, code_hash) \
             SELECT $1, $2, $3 WHERE (SELECT COUNT(*) FROM challenges WHERE code_hash = $3) < $4 \
             AND (SELECT COUNT(*) FROM challenges) < $5",
        )
        .bind(hex::encode(challenge))
        .bind(expires.timestamp_millis())
        .bind(hash.clone())
        .bind(i64::try_from(self.max_challenges_per_code).unwrap_or(i64::MAX))
        .bind(i64::try_from(self.max_challenges).unwrap_or(i64::MAX))
        .execute(&self.db)
        .await?;
        if done.rows_affected() == 0 {
            // Which cap: this code's (its oldest challenge frees a place when it expires), or
            // the global one.
            let row = sqlx::query(
                "SELECT COUNT(*) AS n, MIN(expires_ms) AS first FROM challenges WHERE code_hash = $1",
            )
            .bind(hash)
            .fetch_one(&self.db)
            .await?;
            let n: u64 = num(&row, "n")?;
            if n >= self.max_challenges_per_code {
                let first: Option<i64> = row.try_get("first")?;
                let ms = first.unwrap_or(0).saturating_sub(now.timestamp_millis());
                return Err(CentreError::ChallengesForCode {
                    retry_after: u64::try_from(ms / 1000 + 1).unwrap_or(1).max(1),
                });
            }
            return Err(CentreError::ChallengesFull);
        }
        Ok((challenge, expires))
    }

    /// Uses up a challenge issued for `code`: exactly one use succeeds, only before it
    /// expires, and only for the code it was issued for.
    async fn consume_challenge(
        &self,
        challenge: &[u8; 32],
        code: &ActivationCode,
    ) -> Result<(), CentreError> {
        let done = sqlx::query(
            "DELETE FROM challenges WHERE challenge = $1 AND code_hash = $2 AND expires_ms > $3",
        )
        .bind(hex::encode(challenge))
        .bind(code_hash(code))
        .bind(time::now().timestamp_millis())
        .execute(&self.db)
        .await?;
        if done.rows_affected() != 1 {
            return Err(CentreError::Challenge(
                "the challenge is unknown, already used, expired or issued for another activation code; ask POST /centre/v1/challenge for a fresh one".into(),
            ));
        }
        Ok(())
    }

    /// Attestation challenges outstanding now (expired ones included until purged).
    pub async fn outstanding_challenges(&self) -> Result<u64, CentreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM challenges")
            .fetch_one(&self.db)
            .await?;
        num(&row, "n")
    }
}
