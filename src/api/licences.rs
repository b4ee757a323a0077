use super::error::ApiError;
use super::params::{self, Accepts, Params, Segment};
use super::reply::Reply;
use super::wire::{LicenceJson, LicenceList};
use super::AppState;
use crate::host::ActivationInput;
use crate::web::throttle::{client_key, Refused, Throttle, ThrottlePolicy};
use axum::extract::ConnectInfo;
use axum::extract::State;
use axum::http::StatusCode;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Parameters of `POST /api/licences` (spec §4.9).
pub const INSTALL: Accepts = &["ActivationCodeString", "ITN", "IEC", "BlankKeyNo"];

fn list_reply(entries: &[crate::host::LicenceEntry]) -> Reply {
    let now = crate::time::now();
    let licences = entries.iter().map(|e| LicenceJson::new(e, now)).collect();
    Reply::ok(&LicenceList { licences })
}

#[utoipa::path(get, path = "/api/licences", tag = "api",
    description = "Every licence (software keys, USB keys, blanks) with its state.",
    security(("basic" = [])),
    responses(
        (status = 200, description = "OK", body = Value),
        (status = 401, description = "EUnauthorized: credentials required", body = super::openapi::ErrorBody),
    ))]
pub async fn list(State(st): State<Arc<AppState>>) -> Reply {
    list_reply(&st.host.licences())
}

#[utoipa::path(get, path = "/api/licences/{KeyNo}", tag = "api",
    description = "One licence.",
    params(("KeyNo" = u64, Path, description = "the key's number")),
    security(("basic" = [])),
    responses(
        (status = 200, description = "OK", body = Value),
        (status = 401, description = "EUnauthorized: credentials required", body = super::openapi::ErrorBody),
        (status = 404, description = "EKeyNotFound", body = super::openapi::ErrorBody),
    ))]
pub async fn one(
    State(st): State<Arc<AppState>>,
    Segment(key_no): Segment,
) -> Result<Reply, ApiError> {
    let key_no = params::key_no(&key_no)?;
    let e = st.host.licence(key_no)?;
    Ok(Reply::ok(&LicenceJson::new(&e, crate::time::now())))
}

/// The header of `POST /api/licences/update` that says how many licences the centre refused.
pub const UPDATE_FAILED: &str = "X-Update-Failed";

/// Activations the centre refused as unproven, per API client. The centre counts such
/// refusals against the *host's* address and, past its limit, refuses the whole host for its
/// window — activations and updates of every client. So the host stops a client that keeps
/// failing before it can spend that standing: counted when an activation starts (parallel
/// ones count too), given back unless the centre refused it as unproven, refused (429)
/// without asking the centre once over the limit. Fail closed when the table is full.
pub struct ActivationThrottle(Throttle<IpAddr>);

impl From<&crate::config::ApiConfig> for ActivationThrottle {
    fn from(c: &crate::config::ApiConfig) -> Self {
        ActivationThrottle(Throttle::new(ThrottlePolicy {
            max_failures: c.max_failed_activations,
            window: Duration::from_secs(c.activation_window_seconds),
            capacity: c.activation_table_size,
        }))
    }
}

/// The throttle key of an API client: its address (IPv6 by /64), and every loopback address
/// as one — 127.0.0.2 is the same machine as 127.0.0.1, and would otherwise double a local
/// client's allowance.
fn activation_client(ip: IpAddr) -> IpAddr {
    match client_key(ip) {
        k if k.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        k => k,
    }
}

fn too_many_failures(r: Refused, client: IpAddr, max: u32) -> ApiError {
    let (message, retry) = match r {
        Refused::Locked {
            retry_after,
            failures,
        } => {
            // Logged once, when the client first goes over; its later tries are not news.
            if failures == max.saturating_add(1) {
                tracing::warn!(%client, "activations refused for this client: the centre refused {max} of its activations as unproven within the window; the centre is not asked again until it passes");
            }
            (
                format!(
                    "too many activations from this client were refused by the centre as unproven; try again in {} s",
                    retry_after.as_secs().max(1)
                ),
                retry_after.as_secs().max(1),
            )
        }
        Refused::Full => (
            "too many clients are failing activations right now; try again later".to_owned(),
            60,
        ),
    };
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "ETooManyActivationFailures",
        message,
    )
    .retry_after(retry)
}

/// Installs a licence by activation code: a software key for this machine, or onto the blank
/// USB key `BlankKeyNo`. 201 with the licence.
#[utoipa::path(method(post, put), path = "/api/licences", tag = "api",
    description = "Activates a code at the centre onto this machine, or onto the attached blank `BlankKeyNo`.",
    request_body(content = Value, description = "`ActivationCodeString` (required), `ITN`, `IEC`, `BlankKeyNo`"),
    security(("basic" = [])),
    responses(
        (status = 201, description = "The licence installed", body = Value),
        (status = 401, description = "EUnauthorized: credentials required", body = super::openapi::ErrorBody),
        (status = 400, description = "EBadRequest, EActivationRefused", body = super::openapi::ErrorBody),
        (status = 403, description = "EActivationRefused: the centre refused", body = super::openapi::ErrorBody),
        (status = 503, description = "ECentreUnavailable", body = super::openapi::ErrorBody),
    ))]
pub async fn install(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    p: Params,
) -> Result<Reply, ApiError> {
    let input = ActivationInput {
        code: p.required("ActivationCodeString", 64)?,
        itn: p.itn("ITN")?,
        iec: p.iec("IEC")?,
        blank_key_no: p.positive("BlankKeyNo")?,
    };
    let e = activate_throttled(&st, peer.ip(), input).await?;
    Ok(Reply::json(
        StatusCode::CREATED,
        &LicenceJson::new(&e, crate::time::now()),
    ))
}

/// Why an activation under the throttle did not install.
pub enum Refusal {
    /// Too many of this client's activations were refused as unproven: the centre is not asked.
    Throttled(Refused),
    Host(crate::host::HostError),
}

/// An activation from `peer` under the failed-activation throttle; the web console
/// (`crate::console`) activates through here too, so both count against one allowance.
pub async fn activate_counted(
    st: &AppState,
    peer: IpAddr,
    input: ActivationInput,
) -> Result<crate::host::LicenceEntry, Refusal> {
    let client = activation_client(peer);
    let throttle = &st.activation_failures.0;
    let max = throttle.policy().max_failures;
    let started = throttle.begin(&client).map_err(Refusal::Throttled)?;
    let result = st.host.activate(input).await;
    match &result {
        Err(e) if e.is_unproven_activation() => {
            tracing::warn!(%client, failures = started.failures, max, "activation refused by the centre as unproven: {e}");
        }
        // A success, a typo caught here, a busy centre: not a failed proof. Given back, but
        // earlier failures stay (a success must not reset them, or a client holding one good
        // code could interleave it with guesses).
        _ => throttle.cancel(&client),
    }
    result.map_err(Refusal::Host)
}

/// [`activate_counted`] with its refusal as the API's error.
pub async fn activate_throttled(
    st: &AppState,
    peer: IpAddr,
    input: ActivationInput,
) -> Result<crate::host::LicenceEntry, ApiError> {
    activate_counted(st, peer, input)
        .await
        .map_err(|r| match r {
            Refusal::Throttled(r) => too_many_failures(
                r,
                activation_client(peer),
                st.activation_failures.0.policy().max_failures,
            ),
            Refusal::Host(e) => e.into(),
        })
}

/// Updates every licence from the centre, restoring those whose binding changed. 200 with
/// the licence list, as clients expect; [`UPDATE_FAILED`] says how many the centre refused
/// (their reasons are in the log), so a refusal is never silent.
#[utoipa::path(method(post, put), path = "/api/licences/update", tag = "api",
    description = "Asks the centre for every licence's current version; `X-Update-Failed` counts refusals.",
    security(("basic" = [])),
    responses(
        (status = 200, description = "OK", body = Value),
        (status = 401, description = "EUnauthorized: credentials required", body = super::openapi::ErrorBody),
        (status = 503, description = "ECentreUnavailable", body = super::openapi::ErrorBody),
    ))]
pub async fn update(State(st): State<Arc<AppState>>) -> Result<Reply, ApiError> {
    let updated = st.host.update_licences().await?;
    Ok(list_reply(&updated.licences).with_header(UPDATE_FAILED, updated.failed))
}
