use super::error::ApiError;
use super::params;
use super::reply::Reply;
use super::wire::{LicenceJson, LicenceList};
use super::AppState;
use crate::host::HostError;
use axum::extract::{Path, State};
use std::sync::Arc;

pub async fn list(State(st): State<Arc<AppState>>) -> Reply {
    let now = crate::time::now();
    let licences = st
        .host
        .licences()
        .iter()
        .map(|e| LicenceJson::new(e, now))
        .collect();
    Reply::ok(&LicenceList { licences })
}

pub async fn one(
    State(st): State<Arc<AppState>>,
    Path(key_no): Path<String>,
) -> Result<Reply, ApiError> {
    let key_no = params::key_no(&key_no)?;
    let e = st.host.licence(key_no)?;
    Ok(Reply::ok(&LicenceJson::new(&e, crate::time::now())))
}

/// Activation needs a licensing centre; until the centre exists this says so plainly.
pub async fn install() -> ApiError {
    HostError::NotImplemented(
        "installing a licence by activation code needs a licensing centre, which this build does not have yet; \
         install a signed licence file with `keybridge licence import FILE`",
    )
    .into()
}

pub async fn update() -> ApiError {
    HostError::NotImplemented(
        "updating and restoring licences needs a licensing centre, which this build does not have yet",
    )
    .into()
}
