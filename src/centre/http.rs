//! The centre over HTTP. Every answer is signed with the centre's response key (labelled, over
//! QueryID, status and body; `web::signing`), so a host can tell a genuine centre answer;
//! vendor administration (products, codes) needs Basic credentials. The JSON a host exchanges
//! with the centre is in [`super::wire`]; `docs/centre.md` describes it.

use super::wire::{ActivateBody, LicenceBody, LicenceRef, RestoreBody, WireBinding};
use super::{ActivationRequest, Centre, CentreError, CodeSpec, Product};
use crate::crypto::CentreResponseKey;
use crate::licence::{Flags, Iec, Itn, KeyType};
use crate::web::login::{require_login, Auth, LoginGate};
use crate::web::server::{request_limits, RequestLimits};
use crate::web::signing::{self, CentreSigning};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

pub struct CentreState {
    pub centre: Centre,
    pub admin: Auth,
    /// Signs every HTTP answer; never licences.
    pub response_key: Arc<CentreResponseKey>,
}

/// An error answer: `{"error": "...", "reason": "..."}` with a status.
pub struct CentreReply(StatusCode, Value);

impl IntoResponse for CentreReply {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<CentreError> for CentreReply {
    fn from(e: CentreError) -> Self {
        use StatusCode as S;
        let (status, reason) = match &e {
            CentreError::Code(_) | CentreError::Invalid(_) | CentreError::Licence(_) => {
                (S::BAD_REQUEST, "invalid")
            }
            CentreError::UnknownCode(_) => (S::NOT_FOUND, "unknown_code"),
            CentreError::UnknownProduct(_) => (S::NOT_FOUND, "unknown_product"),
            CentreError::UnknownLicence { .. } => (S::NOT_FOUND, "unknown_licence"),
            CentreError::ProductExists(_) => (S::CONFLICT, "product_exists"),
            CentreError::AlreadyActivated { .. } => (S::CONFLICT, "already_activated"),
            CentreError::ItnMismatch(_) => (S::FORBIDDEN, "itn_mismatch"),
            CentreError::RestoreLimit { .. } => (S::FORBIDDEN, "restore_limit"),
            CentreError::Device(_) => (S::FORBIDDEN, "device_not_genuine"),
            CentreError::Db(_) | CentreError::Migrate(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::error!("centre: {e}");
        }
        CentreReply(status, json!({"error": e.to_string(), "reason": reason}))
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

fn bad(message: impl Into<String>) -> CentreReply {
    CentreReply(
        StatusCode::BAD_REQUEST,
        json!({"error": message.into(), "reason": "invalid"}),
    )
}

fn licence_body(doc: &[u8]) -> Json<LicenceBody> {
    Json(LicenceBody {
        licence: crate::crypto::b64(doc),
    })
}

async fn activate(
    State(st): State<Arc<CentreState>>,
    CentreJson(b): CentreJson<ActivateBody>,
) -> Result<Json<LicenceBody>, CentreReply> {
    let req = ActivationRequest::from_wire(&b).map_err(bad)?;
    let (_, doc) = st.centre.activate(&req).await?;
    Ok(licence_body(&doc))
}

async fn current(
    State(st): State<Arc<CentreState>>,
    CentreJson(b): CentreJson<LicenceRef>,
) -> Result<Json<LicenceBody>, CentreReply> {
    let (_, doc) = st.centre.current(&b.key_id, b.key_no).await?;
    Ok(licence_body(&doc))
}

async fn restore(
    State(st): State<Arc<CentreState>>,
    CentreJson(b): CentreJson<RestoreBody>,
) -> Result<Json<LicenceBody>, CentreReply> {
    let (_, doc) = st
        .centre
        .restore(&b.key_id, b.key_no, &b.binding.into())
        .await?;
    Ok(licence_body(&doc))
}

/// A product series, as the vendor's HTTP request or `centre product-add` gives it.
#[derive(Debug, Serialize, Deserialize, clap::Args)]
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
#[derive(Debug, Serialize, Deserialize, clap::Args)]
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
        Ok(spec)
    }
}

async fn add_product(
    State(st): State<Arc<CentreState>>,
    CentreJson(b): CentreJson<ProductBody>,
) -> Result<Response, CentreReply> {
    st.centre.add_product(&b.to_product()).await?;
    Ok((StatusCode::CREATED, Json(json!({"key_id": b.key_id}))).into_response())
}

async fn issue_code(
    State(st): State<Arc<CentreState>>,
    CentreJson(b): CentreJson<CodeBody>,
) -> Result<Response, CentreReply> {
    let spec = b.to_spec().map_err(bad)?;
    let code = st.centre.issue_code(&spec).await?;
    Ok((StatusCode::CREATED, Json(json!({"code": code.to_string()}))).into_response())
}

async fn list_codes(State(st): State<Arc<CentreState>>) -> Result<Json<Value>, CentreReply> {
    let codes = st.centre.list_codes().await?;
    let rows: Vec<Value> = codes
        .iter()
        .map(|c| {
            let a = c.activation.as_ref();
            json!({
                "code": c.code,
                "key_id": c.key_id,
                "licence_count": c.licence_count,
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
        let mut r = CentreReply(
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
        CentreReply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": message, "reason": "busy"}),
        )
        .into_response()
    }
}

async fn not_found() -> CentreReply {
    CentreReply(
        StatusCode::NOT_FOUND,
        json!({"error": "no such endpoint", "reason": "not_found"}),
    )
}

async fn public_key(State(st): State<Arc<CentreState>>) -> Json<Value> {
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
        s if s.is_server_error() => "internal",
        _ => "error",
    };
    CentreReply(status, json!({"error": message, "reason": reason})).into_response()
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
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_login::<CentreState>,
        ));
    let app = Router::new()
        .route("/centre/v1/activate", post(activate))
        .route("/centre/v1/licence", post(current))
        .route("/centre/v1/restore", post(restore))
        .route("/centre/v1/publickey", get(public_key))
        .merge(admin)
        .fallback(not_found)
        .with_state(state);
    request_limits(app, limits, plain_error).layer(middleware::from_fn_with_state(
        key,
        signing::sign::<CentreSigning>,
    ))
}
