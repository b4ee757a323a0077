//! `/api/licences/{KeyNo}/memory`: read (GET), write or change passwords (POST/PUT), reset
//! (DELETE). POST changes passwords when any of ReadPassword, WritePassword, NewReadPassword,
//! NewWritePassword is present and writes otherwise; both kinds at once is a 400.

use super::error::ApiError;
use super::params::{self, Accepts, Params, Segment};
use super::reply::Reply;
use super::wire::{MemoryJson, Updated};
use super::AppState;
use crate::hal::PasswordChange;
use crate::keymem::{MAX_PASSWORD_BYTES, MAX_VALUE_BYTES};
use axum::extract::State;
use std::sync::Arc;

/// Parameters of `GET` (spec §4.5).
pub const READ: Accepts = &["Password"];
/// Parameters of `POST`/`PUT`: a write (§4.6) or a password change (§4.7).
pub const WRITE: Accepts = &[
    "Password",
    "Value",
    "ReadPassword",
    "WritePassword",
    "NewReadPassword",
    "NewWritePassword",
];
/// `DELETE` takes none (§4.8).
pub const RESET: Accepts = &[];

const PASSWORD_FIELDS: [&str; 4] = [
    "ReadPassword",
    "WritePassword",
    "NewReadPassword",
    "NewWritePassword",
];

fn password(p: &Params, name: &str) -> Result<String, ApiError> {
    Ok(p.text_max(name, MAX_PASSWORD_BYTES)?.unwrap_or_default())
}

#[utoipa::path(get, path = "/api/licences/{KeyNo}/memory", tag = "api",
    description = "Reads the key's user memory with its read password.",
    params(("KeyNo" = u64, Path, description = "the key's number"), ("Password" = Option<String>, Query, description = "the read password (default empty)")),
    security(("basic" = [])),
    responses(
        (status = 200, description = "OK", body = Value),
        (status = 401, description = "EUnauthorized: credentials required", body = super::openapi::ErrorBody),
        (status = 403, description = "EWrongPassword, EMemoryLocked", body = super::openapi::ErrorBody),
        (status = 404, description = "EKeyNotFound", body = super::openapi::ErrorBody),
    ))]
pub async fn read(
    State(st): State<Arc<AppState>>,
    Segment(key_no): Segment,
    p: Params,
) -> Result<Reply, ApiError> {
    let key_no = params::key_no(&key_no)?;
    let value = st
        .host
        .memory_read(key_no, password(&p, "Password")?)
        .await?;
    Ok(Reply::ok(&MemoryJson { key_no, value }))
}

#[utoipa::path(method(post, put), path = "/api/licences/{KeyNo}/memory", tag = "api",
    description = "Writes the memory (`Password`, `Value`) or changes both passwords (`ReadPassword`, `WritePassword`, `NewReadPassword`, `NewWritePassword`).",
    params(("KeyNo" = u64, Path, description = "the key's number")),
    request_body(content = Value, description = "either `Password` and `Value` (≤ 4096 bytes), or the four password fields"),
    security(("basic" = [])),
    responses(
        (status = 202, description = "Updated", body = Value),
        (status = 401, description = "EUnauthorized: credentials required", body = super::openapi::ErrorBody),
        (status = 400, description = "EBadRequest, EValueTooLarge", body = super::openapi::ErrorBody),
        (status = 403, description = "EWrongPassword, EMemoryLocked", body = super::openapi::ErrorBody),
        (status = 404, description = "EKeyNotFound", body = super::openapi::ErrorBody),
    ))]
pub async fn write_or_passwords(
    State(st): State<Arc<AppState>>,
    Segment(key_no): Segment,
    p: Params,
) -> Result<Reply, ApiError> {
    let key_no = params::key_no(&key_no)?;
    let changes_passwords = PASSWORD_FIELDS.iter().any(|f| p.has(f));
    let writes = p.has("Password") || p.has("Value");
    if changes_passwords && writes {
        return Err(ApiError::bad_request(
            "a request either writes memory (Password, Value) or changes passwords \
             (ReadPassword, WritePassword, NewReadPassword, NewWritePassword), not both",
        ));
    }
    if changes_passwords {
        let change = PasswordChange {
            read: password(&p, "ReadPassword")?,
            write: password(&p, "WritePassword")?,
            new_read: password(&p, "NewReadPassword")?,
            new_write: password(&p, "NewWritePassword")?,
        };
        st.host.memory_set_passwords(key_no, change).await?;
        return Ok(Reply::updated(&Updated::memory(
            "SetMemoryPasswords",
            key_no,
        )));
    }
    let value = p.text("Value")?.unwrap_or_default();
    if value.len() > MAX_VALUE_BYTES {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "EValueTooLarge",
            format!(
                "the value is {} bytes; user memory holds at most {MAX_VALUE_BYTES} bytes",
                value.len()
            ),
        ));
    }
    st.host
        .memory_write(key_no, password(&p, "Password")?, value)
        .await?;
    Ok(Reply::updated(&Updated::memory("WriteMemory", key_no)))
}

#[utoipa::path(delete, path = "/api/licences/{KeyNo}/memory", tag = "api",
    description = "Empties the memory and both passwords and clears a lock.",
    params(("KeyNo" = u64, Path, description = "the key's number")),
    security(("basic" = [])),
    responses(
        (status = 202, description = "Updated", body = Value),
        (status = 401, description = "EUnauthorized: credentials required", body = super::openapi::ErrorBody),
        (status = 404, description = "EKeyNotFound", body = super::openapi::ErrorBody),
    ))]
pub async fn reset(
    State(st): State<Arc<AppState>>,
    Segment(key_no): Segment,
) -> Result<Reply, ApiError> {
    let key_no = params::key_no(&key_no)?;
    st.host.memory_reset(key_no).await?;
    Ok(Reply::updated(&Updated::memory("ResetMemory", key_no)))
}
