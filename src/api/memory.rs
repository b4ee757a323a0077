//! `/api/licences/{KeyNo}/memory`: read (GET), write or change passwords (POST/PUT), reset
//! (DELETE). POST changes passwords when any of ReadPassword, WritePassword, NewReadPassword,
//! NewWritePassword is present and writes otherwise; both kinds at once is a 400.

use super::error::ApiError;
use super::params::{self, Params};
use super::reply::Reply;
use super::wire::MemoryJson;
use super::AppState;
use crate::hal::PasswordChange;
use crate::keymem::{MAX_PASSWORD_BYTES, MAX_VALUE_BYTES};
use axum::extract::{Path, State};
use std::sync::Arc;

const PASSWORD_FIELDS: [&str; 4] = [
    "ReadPassword",
    "WritePassword",
    "NewReadPassword",
    "NewWritePassword",
];

fn password(p: &Params, name: &str) -> Result<String, ApiError> {
    Ok(p.text_max(name, MAX_PASSWORD_BYTES)?.unwrap_or_default())
}

pub async fn read(
    State(st): State<Arc<AppState>>,
    Path(key_no): Path<String>,
    p: Params,
) -> Result<Reply, ApiError> {
    let key_no = params::key_no(&key_no)?;
    let value = st
        .host
        .memory_read(key_no, password(&p, "Password")?)
        .await?;
    Ok(Reply::ok(&MemoryJson { key_no, value }))
}

pub async fn write_or_passwords(
    State(st): State<Arc<AppState>>,
    Path(key_no): Path<String>,
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
    } else {
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
    }
    Ok(Reply::updated())
}

pub async fn reset(
    State(st): State<Arc<AppState>>,
    Path(key_no): Path<String>,
) -> Result<Reply, ApiError> {
    let key_no = params::key_no(&key_no)?;
    st.host.memory_reset(key_no).await?;
    Ok(Reply::updated())
}
