use super::error::ApiError;
use super::params::{self, Accepts, Params, Segment};
use super::reply::Reply;
use super::wire::{LicenceJson, LicenceList};
use super::AppState;
use crate::host::ActivationInput;
use axum::extract::State;
use axum::http::StatusCode;
use std::sync::Arc;

/// Parameters of `POST /api/licences` (spec §4.9).
pub const INSTALL: Accepts = &["ActivationCodeString", "ITN", "IEC", "BlankKeyNo"];

fn list_reply(entries: &[crate::host::LicenceEntry]) -> Reply {
    let now = crate::time::now();
    let licences = entries.iter().map(|e| LicenceJson::new(e, now)).collect();
    Reply::ok(&LicenceList { licences })
}

pub async fn list(State(st): State<Arc<AppState>>) -> Reply {
    list_reply(&st.host.licences())
}

pub async fn one(
    State(st): State<Arc<AppState>>,
    Segment(key_no): Segment,
) -> Result<Reply, ApiError> {
    let key_no = params::key_no(&key_no)?;
    let e = st.host.licence(key_no)?;
    Ok(Reply::ok(&LicenceJson::new(&e, crate::time::now())))
}

/// Installs a licence by activation code: a software key for this machine, or onto the blank
/// USB key `BlankKeyNo`. 201 with the licence.
pub async fn install(State(st): State<Arc<AppState>>, p: Params) -> Result<Reply, ApiError> {
    let input = ActivationInput {
        code: p.required("ActivationCodeString", 64)?,
        itn: p.itn("ITN")?,
        iec: p.iec("IEC")?,
        blank_key_no: p.positive("BlankKeyNo")?,
    };
    let e = st.host.activate(input).await?;
    Ok(Reply::json(
        StatusCode::CREATED,
        &LicenceJson::new(&e, crate::time::now()),
    ))
}

/// Updates every licence from the centre, restoring those whose binding changed. 200 with
/// the licence list.
pub async fn update(State(st): State<Arc<AppState>>) -> Result<Reply, ApiError> {
    Ok(list_reply(&st.host.update_licences().await?))
}
