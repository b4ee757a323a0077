//! The centre over HTTP. Every answer is signed with the centre's response key (labelled, over
//! QueryID, status and body; `web::signing`), so a host can tell a genuine centre answer;
//! vendor administration (products, codes) needs Basic credentials. The JSON a host exchanges
//! with the centre is in [`super::wire`]; `docs/centre.md` describes it.

use super::wire::{
    ActivateBody, ChallengeBody, ChallengeRequest, LicenceBody, LicenceRef, RestoreBody,
    WireBinding,
};
use super::{
    ActivationCode, ActivationRequest, Centre, CentreError, CodeSpec, LicenceProof, Product,
    RestoreRequest,
};
use crate::crypto::CentreResponseKey;
use crate::licence::{Flags, Iec, Itn, KeyType};
use crate::web::login::{require_login, Auth, LoginGate};
use crate::web::server::{request_limits, RequestLimits};
use crate::web::signing::{self, CentreSigning};
use crate::web::throttle::{client_key, Refused, Throttle, ThrottlePolicy, WhenFull};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{header, request::Parts, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// How hard the centre pushes back on failed proofs and on challenge requests.
#[derive(Debug, Clone, Copy)]
pub struct ProofLimits {
    /// Failed proofs (unknown code, wrong code or ITN for a licence, an activated code from
    /// elsewhere) per client address and per activation code within `window`, before further
    /// attempts get 429.
    pub max_failures: u32,
    pub window: Duration,
    /// Most clients, and most codes, tracked at once (each table); a full table lets new
    /// keys through untracked (the challenge table refuses them).
    pub capacity: usize,
    /// Attestation challenges one client may ask for within `challenge_window`.
    pub max_challenges_per_client: u32,
    pub challenge_window: Duration,
}

impl Default for ProofLimits {
    fn default() -> Self {
        ProofLimits {
            max_failures: 10,
            window: Duration::from_secs(600),
            capacity: 10_000,
            max_challenges_per_client: 30,
            challenge_window: Duration::from_secs(60),
        }
    }
}

/// An activation code as a throttle key: a keyed hash (HMAC-SHA-256 under a key made at
/// start, truncated to 128 bits), so the table never holds a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CodeKey([u8; 16]);

/// The bounded failure tables behind [`ProofLimits`].
pub struct ProofThrottle {
    /// Failed proofs per client address (IPv6 by /64).
    clients: Throttle<IpAddr>,
    /// Failed proofs per activation code submitted — the secret every proof rests on. Not per
    /// licence: KeyNos are sequential, so anyone could lock a chosen customer out by failing
    /// on their KeyNo; only someone who has the code can lock the code.
    codes: Throttle<CodeKey>,
    /// The key of [`CodeKey`]'s hash; never leaves the process.
    code_hash_key: aws_lc_rs::hmac::Key,
    /// Challenges issued per client address.
    challenges: Throttle<IpAddr>,
}

impl ProofThrottle {
    pub fn new(l: ProofLimits) -> ProofThrottle {
        let failures = ThrottlePolicy {
            max_failures: l.max_failures,
            window: l.window,
            capacity: l.capacity,
        };
        // Full proof tables let new keys through untracked rather than refuse everyone: a
        // 63-bit code is not guessed in a window's worth of tries, while refusing would let
        // whoever fills the table (many addresses, many made-up codes) lock every customer out.
        ProofThrottle {
            clients: Throttle::new(failures).when_full(WhenFull::Untracked, "proof clients"),
            codes: Throttle::new(failures).when_full(WhenFull::Untracked, "proof codes"),
            code_hash_key: aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                &crate::crypto::random_bytes::<32>(),
            ),
            challenges: Throttle::new(ThrottlePolicy {
                max_failures: l.max_challenges_per_client,
                window: l.challenge_window,
                capacity: l.capacity,
            }),
        }
    }

    fn code_key(&self, code: &ActivationCode) -> CodeKey {
        let tag = aws_lc_rs::hmac::sign(&self.code_hash_key, code.digits());
        let mut k = [0u8; 16];
        k.copy_from_slice(&tag.as_ref()[..16]);
        CodeKey(k)
    }
}

pub struct CentreState {
    pub centre: Centre,
    pub admin: Auth,
    /// Signs every HTTP answer; never licences.
    pub response_key: Arc<CentreResponseKey>,
    pub throttle: ProofThrottle,
    /// Service users' logins to the account API.
    pub users: super::accounts::login::UserLogin,
    /// Where the account API is served (`accounts::http::DEFAULT_BASE`).
    pub account_base: String,
}

impl CentreState {
    /// A centre's HTTP state with the default [`ProofLimits`].
    pub fn new(centre: Centre, admin: Auth, response_key: Arc<CentreResponseKey>) -> Self {
        Self::with_limits(centre, admin, response_key, ProofLimits::default())
    }

    pub fn with_limits(
        centre: Centre,
        admin: Auth,
        response_key: Arc<CentreResponseKey>,
        limits: ProofLimits,
    ) -> Self {
        CentreState {
            centre,
            admin,
            response_key,
            throttle: ProofThrottle::new(limits),
            users: super::accounts::login::UserLogin::new(crate::web::login::LoginLimits::new(
                10,
                Duration::from_secs(600),
            )),
            account_base: super::accounts::http::DEFAULT_BASE.to_owned(),
        }
    }

    /// Serves the account API at `base` (checked by `accounts::http::check_base`) and counts
    /// service users' failed logins by `limits`.
    pub fn with_accounts(mut self, base: String, limits: crate::web::login::LoginLimits) -> Self {
        self.account_base = base;
        self.users = super::accounts::login::UserLogin::new(limits);
        self
    }
}

/// An error answer: `{"error": "...", "reason": "..."}` with a status.
pub struct CentreReply(StatusCode, Value, Option<u64>);

impl CentreReply {
    pub(crate) fn new(status: StatusCode, body: Value) -> Self {
        CentreReply(status, body, None)
    }

    /// With `Retry-After` (seconds).
    fn with_retry(status: StatusCode, body: Value, seconds: u64) -> Self {
        CentreReply(status, body, Some(seconds))
    }
}

impl IntoResponse for CentreReply {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(self.1)).into_response();
        if let Some(s) = self.2 {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(s));
        }
        r
    }
}

impl From<CentreError> for CentreReply {
    fn from(e: CentreError) -> Self {
        use StatusCode as S;
        let (status, reason) = match &e {
            CentreError::Code(_) | CentreError::Invalid(_) | CentreError::Licence(_) => {
                (S::BAD_REQUEST, "invalid")
            }
            CentreError::UnknownCode => (S::NOT_FOUND, "unknown_code"),
            CentreError::UnknownProduct(_) => (S::NOT_FOUND, "unknown_product"),
            // UnknownLicence is the vendor's own error (CLI); over HTTP only NotProven is used.
            CentreError::NotProven | CentreError::UnknownLicence { .. } => {
                (S::NOT_FOUND, "unknown_licence")
            }
            CentreError::RestoreNeedsVendor { .. } => (S::FORBIDDEN, "restore_needs_vendor"),
            CentreError::Challenge(_) => (S::FORBIDDEN, "challenge_refused"),
            CentreError::ChallengesFull => (S::SERVICE_UNAVAILABLE, "challenges_full"),
            CentreError::NoChallenge => (S::NOT_FOUND, "unknown_code"),
            CentreError::UnknownKey => (S::FORBIDDEN, "unknown_key"),
            CentreError::ChallengesForCode { .. } => (S::TOO_MANY_REQUESTS, "throttled"),
            CentreError::ProductExists(_) => (S::CONFLICT, "product_exists"),
            CentreError::AlreadyActivated => (S::CONFLICT, "already_activated"),
            CentreError::ItnMismatch => (S::FORBIDDEN, "itn_mismatch"),
            CentreError::RestoreLimit { .. } => (S::FORBIDDEN, "restore_limit"),
            CentreError::Device(_) => (S::FORBIDDEN, "device_not_genuine"),
            CentreError::Account(a) => (a.status(), a.reason()),
            CentreError::Db(_) | CentreError::Migrate(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
        };
        if matches!(e, CentreError::ChallengesFull) {
            // Anyone holding codes can keep the table full; the log says so once a minute.
            if CHALLENGES_FULL_LOGGED.due() {
                tracing::error!("centre: {e} (logged at most once a minute)");
            }
        } else if status.is_server_error() {
            tracing::error!("centre: {e}");
        }
        // A database's own words (table names, values, connection details) stay in the log.
        let message = match &e {
            CentreError::Db(_) | CentreError::Migrate(_) => "internal error".to_owned(),
            _ => e.to_string(),
        };
        let body = json!({"error": message, "reason": reason});
        match e {
            CentreError::ChallengesForCode { retry_after } => {
                CentreReply::with_retry(status, body, retry_after)
            }
            _ => CentreReply::new(status, body),
        }
    }
}

/// When `challenges_full` was last logged (monotonic), so a flood writes one line a minute.
static CHALLENGES_FULL_LOGGED: LogEvery = LogEvery::new(Duration::from_secs(60));

/// Lets a log line through at most once per interval.
struct LogEvery {
    interval: Duration,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl LogEvery {
    const fn new(interval: Duration) -> Self {
        LogEvery {
            interval,
            last: std::sync::Mutex::new(None),
        }
    }

    /// Whether to log now (and, if so, remembers that it did).
    fn due(&self) -> bool {
        let now = std::time::Instant::now();
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|t| now.duration_since(t) < self.interval) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// A JSON body; a malformed one is answered in the centre's error format.
pub struct CentreJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S>
    for CentreJson<T>
{
    type Rejection = CentreReply;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(CentreJson(v)),
            Err(e) => Err(bad(format!("malformed request: {}", e.body_text()))),
        }
    }
}

pub(crate) fn bad(message: impl Into<String>) -> CentreReply {
    CentreReply::new(
        StatusCode::BAD_REQUEST,
        json!({"error": message.into(), "reason": "invalid"}),
    )
}

fn licence_body(doc: &[u8]) -> Json<LicenceBody> {
    Json(LicenceBody {
        licence: crate::crypto::b64(doc),
    })
}

/// The client's address, as the server saw it (`into_make_service_with_connect_info`). A
/// server started without it is a bug; the centre refuses rather than throttle nobody.
pub struct Peer(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = CentreReply;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(a)) => Ok(Peer(a.ip())),
            None => {
                tracing::error!("the centre is served without peer addresses; refusing");
                Err(CentreReply::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "the client's address is unknown", "reason": "internal"}),
                ))
            }
        }
    }
}

fn throttled(r: Refused, whose: &str) -> CentreReply {
    let (message, retry) = match r {
        Refused::Locked { retry_after, .. } => (
            format!(
                "too many attempts for {whose} (failed proofs, and attempts still in progress); try again in {} s",
                retry_after.as_secs().max(1)
            ),
            retry_after.as_secs().max(1),
        ),
        Refused::Full => (
            "too many clients are failing proofs right now; try again later".to_owned(),
            60,
        ),
    };
    CentreReply::with_retry(
        StatusCode::TOO_MANY_REQUESTS,
        json!({"error": message, "reason": "throttled"}),
        retry,
    )
}

/// Runs `check` as an attempt at proving a right with `code`, throttled per client and per
/// code. The attempt counts before the check, so parallel guesses count too and a throttled
/// one never reaches the database; a check that did not fail a proof gives its attempt back
/// (it never erases earlier failures). The log names the code only by its last group.
pub(crate) async fn proven<T>(
    st: &CentreState,
    peer: IpAddr,
    what: &str,
    code: &ActivationCode,
    check: impl std::future::Future<Output = Result<T, CentreError>>,
) -> Result<T, CentreReply> {
    let client = client_key(peer);
    let t = &st.throttle;
    let by_client = t
        .clients
        .begin(&client)
        .map_err(|r| throttled(r, "this address"))?;
    let key = t.code_key(code);
    let by_code = match t.codes.begin(&key) {
        Ok(s) => s,
        Err(r) => {
            if by_client.tracked() {
                // Refused before any check: not a failed proof of this client's.
                t.clients.cancel(&client);
            }
            return Err(throttled(r, "this activation code"));
        }
    };
    let out = check.await;
    match &out {
        Err(e) if e.is_failed_proof() => {
            tracing::warn!(client = %client, code = %code.redacted(), "failed proof ({what}): {e}");
        }
        _ => {
            if by_client.tracked() {
                t.clients.cancel(&client);
            }
            if by_code.tracked() {
                t.codes.cancel(&key);
            }
        }
    }
    out.map_err(CentreReply::from)
}

#[utoipa::path(post, path = "/centre/v1/activate", tag = "licensing",
    request_body = ActivateBody,
    responses(
        (status = 200, description = "The signed licence (base64)", body = LicenceBody),
        (status = 400, description = "Malformed request", body = crate::centre::openapi::ErrorBody),
        (status = 404, description = "unknown_code / unknown_licence: not proven", body = crate::centre::openapi::ErrorBody),
        (status = 429, description = "Too many failed proofs from this address or for this code", body = crate::centre::openapi::ErrorBody),
        (status = 403, description = "itn_mismatch, device_not_genuine, challenge_refused", body = crate::centre::openapi::ErrorBody),
        (status = 409, description = "already_activated", body = crate::centre::openapi::ErrorBody),
    ))]
pub(crate) async fn activate(
    State(st): State<Arc<CentreState>>,
    Peer(peer): Peer,
    CentreJson(b): CentreJson<ActivateBody>,
) -> Result<Json<LicenceBody>, CentreReply> {
    let req = ActivationRequest::from_wire(&b).map_err(bad)?;
    let (_, doc) = proven(&st, peer, "activate", &req.code, st.centre.activate(&req)).await?;
    Ok(licence_body(&doc))
}

fn code(text: &str) -> Result<ActivationCode, CentreReply> {
    ActivationCode::parse(text).map_err(|e| bad(e.to_string()))
}

/// A series as licences have it (1-16 ASCII letters and digits): checked before it becomes a
/// throttle key, so no request can park large strings in the table.
fn key_id(text: String) -> Result<String, CentreReply> {
    if (1..=16).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(text)
    } else {
        Err(bad("key_id is 1-16 letters and digits"))
    }
}

#[utoipa::path(post, path = "/centre/v1/licence", tag = "licensing",
    request_body = LicenceRef,
    responses(
        (status = 200, description = "The licence as the centre has it now", body = LicenceBody),
        (status = 400, description = "Malformed request", body = crate::centre::openapi::ErrorBody),
        (status = 404, description = "unknown_code / unknown_licence: not proven", body = crate::centre::openapi::ErrorBody),
        (status = 429, description = "Too many failed proofs from this address or for this code", body = crate::centre::openapi::ErrorBody),
    ))]
pub(crate) async fn current(
    State(st): State<Arc<CentreState>>,
    Peer(peer): Peer,
    CentreJson(b): CentreJson<LicenceRef>,
) -> Result<Json<LicenceBody>, CentreReply> {
    let proof = LicenceProof {
        code: code(&b.code)?,
        itn: b.itn.map(Itn::try_from).transpose().map_err(bad)?,
        iec: b.iec.map(Iec::try_from).transpose().map_err(bad)?,
        key_id: key_id(b.key_id)?,
        key_no: b.key_no,
    };
    let (_, doc) = proven(&st, peer, "licence", &proof.code, st.centre.current(&proof)).await?;
    Ok(licence_body(&doc))
}

#[utoipa::path(post, path = "/centre/v1/restore", tag = "licensing",
    request_body = RestoreBody,
    responses(
        (status = 200, description = "The licence on its new binding", body = LicenceBody),
        (status = 400, description = "Malformed request", body = crate::centre::openapi::ErrorBody),
        (status = 404, description = "unknown_code / unknown_licence: not proven", body = crate::centre::openapi::ErrorBody),
        (status = 429, description = "Too many failed proofs from this address or for this code", body = crate::centre::openapi::ErrorBody),
        (status = 403, description = "restore_needs_vendor, restore_limit", body = crate::centre::openapi::ErrorBody),
    ))]
pub(crate) async fn restore(
    State(st): State<Arc<CentreState>>,
    Peer(peer): Peer,
    CentreJson(b): CentreJson<RestoreBody>,
) -> Result<Json<LicenceBody>, CentreReply> {
    let req = RestoreRequest {
        code: code(&b.code)?,
        itn: b.itn.map(Itn::try_from).transpose().map_err(bad)?,
        iec: b.iec.map(Iec::try_from).transpose().map_err(bad)?,
        binding: b.binding.into(),
        key_id: key_id(b.key_id)?,
        key_no: b.key_no,
    };
    let (_, doc) = proven(&st, peer, "restore", &req.code, st.centre.restore(&req)).await?;
    Ok(licence_body(&doc))
}

/// A fresh attestation challenge, for a host about to activate `code` onto a blank USB key.
/// Only for a code that exists and is not yet activated: a proof like any other, throttled
/// per client and per code, so nobody without such codes can fill the challenge table.
#[utoipa::path(post, path = "/centre/v1/challenge", tag = "licensing",
    request_body = ChallengeRequest,
    responses(
        (status = 200, description = "A fresh attestation challenge", body = ChallengeBody),
        (status = 400, description = "Malformed request", body = crate::centre::openapi::ErrorBody),
        (status = 404, description = "unknown_code / unknown_licence: not proven", body = crate::centre::openapi::ErrorBody),
        (status = 429, description = "Too many failed proofs from this address or for this code", body = crate::centre::openapi::ErrorBody),
        (status = 503, description = "challenges_full", body = crate::centre::openapi::ErrorBody),
    ))]
pub(crate) async fn challenge(
    State(st): State<Arc<CentreState>>,
    Peer(peer): Peer,
    CentreJson(b): CentreJson<ChallengeRequest>,
) -> Result<Json<ChallengeBody>, CentreReply> {
    let code = code(&b.code)?;
    // Every challenge counts here: asking is cheap for a client and costs the centre a row.
    st.throttle
        .challenges
        .begin(&client_key(peer))
        .map_err(|r| match r {
            Refused::Locked { retry_after, .. } => CentreReply::with_retry(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": format!("too many challenges asked from this address; try again in {} s", retry_after.as_secs().max(1)), "reason": "throttled"}),
                retry_after.as_secs().max(1),
            ),
            Refused::Full => throttled(r, "this address"),
        })?;
    let (c, expires) = proven(
        &st,
        peer,
        "challenge",
        &code,
        st.centre.issue_challenge(&code),
    )
    .await?;
    Ok(Json(ChallengeBody {
        challenge: hex::encode(c),
        expires: crate::time::format(&expires),
    }))
}

/// A product series, as the vendor's HTTP request or `centre product-add` gives it.
#[derive(Debug, Serialize, Deserialize, clap::Args, utoipa::ToSchema)]
pub struct ProductBody {
    /// Series (KeyID), e.g. 672B.
    #[arg(long)]
    pub key_id: String,
    #[arg(long = "name")]
    pub product_name: String,
    #[serde(default)]
    #[arg(long, default_value = "")]
    pub article: String,
    /// At most 100 characters.
    #[serde(default)]
    #[arg(long, default_value = "")]
    pub article_name: String,
    #[serde(default)]
    #[arg(long, default_value_t = 0)]
    pub product_version: u32,
    #[arg(long)]
    pub product_version_name: Option<String>,
    /// The 32 functionality flags as a number, flag 0 the lowest bit.
    #[serde(default)]
    #[arg(long, default_value_t = 0)]
    pub flags: u32,
    /// The first KeyNo to assign in this series [default: 1000001].
    #[arg(long)]
    pub first_key_no: Option<u64>,
}

impl ProductBody {
    pub fn to_product(&self) -> Product {
        Product {
            key_id: self.key_id.clone(),
            product_name: self.product_name.clone(),
            article: self.article.clone(),
            article_name: self.article_name.clone(),
            product_version: self.product_version,
            product_version_name: self.product_version_name.clone(),
            flags: Flags(self.flags),
            first_key_no: self.first_key_no,
        }
    }
}

/// What a new activation code grants, as the vendor's HTTP request or `centre code-issue`
/// gives it. Dates are ISO 8601 (UTC when no zone is given).
#[derive(Debug, Serialize, Deserialize, clap::Args, utoipa::ToSchema)]
pub struct CodeBody {
    /// The product series (KeyID).
    #[arg(long)]
    pub key_id: String,
    /// Licences the key will hold.
    #[arg(long = "count")]
    pub licence_count: u32,
    /// 3 main, 4 additional, 5 demo.
    #[serde(default = "main_type")]
    #[arg(long, default_value_t = 3)]
    pub key_type: u8,
    /// 0 ordinary use, 1 demo server, 2, 3 Fresh, ...
    #[serde(default)]
    #[arg(long, default_value_t = 0)]
    pub service_type: u32,
    /// Days of validity from activation (or start date); 0 = no end.
    #[serde(default)]
    #[arg(long, default_value_t = 0)]
    pub period_days: u32,
    /// Validity starts on this date instead of at activation.
    #[arg(long)]
    pub start_date: Option<String>,
    /// Reserve the code for this ITN (ИНН).
    #[arg(long)]
    pub itn: Option<String>,
    /// … and IEC (КПП).
    #[arg(long)]
    pub iec: Option<String>,
    /// ИТС support contract start date.
    #[arg(long)]
    pub support_date: Option<String>,
    /// … its end date.
    #[arg(long)]
    pub support_end_date: Option<String>,
    /// … its type: 0 unknown, 1 ИТС Проф, 2 ИТС Техно.
    #[arg(long)]
    pub support_type: Option<u8>,
    /// How often the licence may be restored onto a new machine [default: 3].
    #[arg(long)]
    pub restore_limit: Option<u32>,
    /// The customer account the code is issued to (its licences belong to the account, and
    /// the code is reserved for the account's ITN and IEC).
    #[arg(long)]
    #[serde(default)]
    pub account: Option<u64>,
}

fn main_type() -> u8 {
    3
}

fn date(field: &str, v: &Option<String>) -> Result<Option<crate::time::Timestamp>, String> {
    v.as_deref()
        .map(|s| {
            crate::time::parse_client(s).ok_or(format!("{field} {s:?} is not an ISO 8601 date"))
        })
        .transpose()
}

impl CodeBody {
    pub fn to_spec(&self) -> Result<CodeSpec, String> {
        let mut spec = CodeSpec::new(&self.key_id, self.licence_count);
        spec.key_type =
            KeyType::from_code(u64::from(self.key_type)).ok_or("key_type must be 3, 4 or 5")?;
        spec.service_type = self.service_type;
        spec.period_days = self.period_days;
        spec.start_date = date("start_date", &self.start_date)?;
        spec.itn = self.itn.clone().map(Itn::try_from).transpose()?;
        spec.iec = self.iec.clone().map(Iec::try_from).transpose()?;
        spec.support_date = date("support_date", &self.support_date)?;
        spec.support_end_date = date("support_end_date", &self.support_end_date)?;
        if self.support_type.is_some_and(|t| t > 2) {
            return Err("support_type must be 0, 1 or 2".into());
        }
        spec.support_type = self.support_type;
        if let Some(l) = self.restore_limit {
            spec.restore_limit = l;
        }
        spec.account = self.account;
        Ok(spec)
    }
}

#[utoipa::path(post, path = "/centre/v1/products", tag = "vendor",
    request_body = ProductBody,
    security(("basic" = [])),
    responses(
        (status = 201, description = "Added", body = Value),
        (status = 400, description = "Malformed product", body = crate::centre::openapi::ErrorBody),
        (status = 401, description = "Vendor credentials are required", body = crate::centre::openapi::ErrorBody),
        (status = 409, description = "product_exists", body = crate::centre::openapi::ErrorBody),
    ))]
pub(crate) async fn add_product(
    State(st): State<Arc<CentreState>>,
    CentreJson(b): CentreJson<ProductBody>,
) -> Result<Response, CentreReply> {
    st.centre.add_product(&b.to_product()).await?;
    Ok((StatusCode::CREATED, Json(json!({"key_id": b.key_id}))).into_response())
}

#[utoipa::path(post, path = "/centre/v1/codes", tag = "vendor",
    request_body = CodeBody,
    security(("basic" = [])),
    responses(
        (status = 201, description = "The new activation code", body = Value),
        (status = 400, description = "Malformed request", body = crate::centre::openapi::ErrorBody),
        (status = 401, description = "Vendor credentials are required", body = crate::centre::openapi::ErrorBody),
        (status = 404, description = "unknown_product", body = crate::centre::openapi::ErrorBody),
    ))]
pub(crate) async fn issue_code(
    State(st): State<Arc<CentreState>>,
    CentreJson(b): CentreJson<CodeBody>,
) -> Result<Response, CentreReply> {
    let spec = b.to_spec().map_err(bad)?;
    let code = st.centre.issue_code(&spec).await?;
    Ok((StatusCode::CREATED, Json(json!({"code": code.to_string()}))).into_response())
}

#[utoipa::path(get, path = "/centre/v1/codes", tag = "vendor",
    security(("basic" = [])),
    responses(
        (status = 200, description = "Every activation code and its state", body = Value),
        (status = 401, description = "Vendor credentials are required", body = crate::centre::openapi::ErrorBody),
    ))]
pub(crate) async fn list_codes(
    State(st): State<Arc<CentreState>>,
) -> Result<Json<Value>, CentreReply> {
    let codes = st.centre.list_codes().await?;
    let rows: Vec<Value> = codes
        .iter()
        .map(|c| {
            let a = c.activation.as_ref();
            json!({
                "code": c.code,
                "key_id": c.key_id,
                "licence_count": c.licence_count,
                "account": c.account,
                "state": if a.is_some() { "activated" } else { "new" },
                "key_no": a.map(|a| a.key_no),
                "binding": a.map(|a| WireBinding::from(&a.binding)),
                "activated": a.map(|a| crate::time::format(&a.activated)),
                "restores": a.map(|a| a.restores),
            })
        })
        .collect();
    Ok(Json(json!({"codes": rows})))
}

impl LoginGate for CentreState {
    fn auth(&self) -> &Auth {
        &self.admin
    }

    fn refuse(&self, message: String) -> Response {
        let mut r = CentreReply::new(
            StatusCode::UNAUTHORIZED,
            json!({"error": message, "reason": "unauthorized"}),
        )
        .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"keybridge centre\""),
        );
        r
    }

    fn unavailable(&self, message: String) -> Response {
        CentreReply::new(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": message, "reason": "busy"}),
        )
        .into_response()
    }
}

async fn not_found() -> CentreReply {
    CentreReply::new(
        StatusCode::NOT_FOUND,
        json!({"error": "no such endpoint", "reason": "not_found"}),
    )
}

#[utoipa::path(get, path = "/centre/v1/publickey", tag = "licensing",
    responses(
        (status = 200, description = "The licence key and the response key (PEM)", body = Value),
    ))]
pub(crate) async fn public_key(State(st): State<Arc<CentreState>>) -> Json<Value> {
    Json(json!({
        "licence_key": st.centre.licence_key().public_key().pem(),
        "response_key": st.response_key.public_key().pem(),
    }))
}

/// The centre's error body for a status, for layers that only know the status.
pub fn plain_error(status: StatusCode, message: String) -> Response {
    let reason = match status {
        StatusCode::BAD_REQUEST => "invalid",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::TOO_MANY_REQUESTS => "throttled",
        s if s.is_server_error() => "internal",
        _ => "error",
    };
    CentreReply::new(status, json!({"error": message, "reason": reason})).into_response()
}

/// Turns answers the framework makes by itself — a bare 405 from a route, a rejection — into
/// the centre's JSON error, so every answer is the centre's own JSON (and the signing layer
/// never sees an empty body).
pub async fn normalise(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => format!("{path} does not take {method}"),
        StatusCode::NOT_FOUND => "no such endpoint".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large".to_owned(),
        s if s.is_client_error() => "the request was rejected".to_owned(),
        _ => "internal error".to_owned(),
    };
    let allow = resp.headers().get(header::ALLOW).cloned();
    let mut out = plain_error(status, message);
    if let Some(a) = allow {
        out.headers_mut().insert(header::ALLOW, a);
    }
    out
}

/// The centre's router; `limits` bound each request (`web::server::request_limits`).
pub fn router(state: Arc<CentreState>, limits: RequestLimits) -> Router {
    let key = Arc::new(CentreSigning {
        key: state.response_key.clone(),
        server_version: crate::web::server_version_header(),
        error: plain_error,
    });
    let admin = Router::new()
        .route("/centre/v1/products", post(add_product))
        .route("/centre/v1/codes", post(issue_code).get(list_codes))
        .merge(super::accounts::http::admin_routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_login::<CentreState>,
        ));
    let state_base = state.account_base.clone();
    let app = Router::new()
        .route("/centre/v1/activate", post(activate))
        .route("/centre/v1/licence", post(current))
        .route("/centre/v1/restore", post(restore))
        .route("/centre/v1/challenge", post(challenge))
        .route("/centre/v1/publickey", get(public_key))
        .merge(admin)
        .merge(super::accounts::http::routes(&state.account_base))
        .merge(super::releases::routes(&state)) // issue 10: releases
        .merge(super::openapi::routes()) // issue 10: the API description and its page
        .fallback(not_found)
        .with_state(state.clone())
        // Layers run outermost last-added first: sign ← limits ← normalise ← routes.
        .layer(middleware::from_fn(normalise));
    // Issue 10: the release upload has its own request limits (size, time).
    let uploads = super::releases::upload_routes(state, &limits);
    let account_base: Arc<str> = Arc::from(state_base.as_str());
    request_limits(app, limits, plain_error)
        .merge(uploads)
        // Inside the signature, outside the limits: what the limits answer under the
        // account API's path is put in its envelope.
        .layer(middleware::from_fn_with_state(
            account_base,
            super::accounts::http::envelope_errors,
        ))
        .layer(middleware::from_fn_with_state(
            key,
            signing::sign::<CentreSigning>,
        ))
}
