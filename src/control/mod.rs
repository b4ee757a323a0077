//! The local control socket, `control.sock` in the data directory: how `keybridge sim …`,
//! `keybridge licence import` (and the hot-plug helper) reach a running host. One JSON
//! request line in, one JSON answer line out. The socket is mode 0660, so only the service
//! user, its group and root can use it.

use crate::host::Host;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

pub const SOCKET_NAME: &str = "control.sock";
const MAX_LINE: usize = 1024 * 1024;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Command {
    SimPlug {
        serial: u64,
    },
    SimUnplug {
        serial: u64,
    },
    SimList,
    /// Make simulated key `serial` misbehave on its next command.
    SimFault {
        serial: u64,
        fault: crate::hal::sim::SimFault,
    },
    /// The proof from USB key `serial` that it is genuine and blank, answering `challenge`
    /// (64 hex digits; an offline activation request's, `hal::attest::offline_challenge`).
    AttestBlank {
        serial: u64,
        challenge: String,
    },
    /// A signed licence file, base64.
    InstallLicence {
        licence: String,
    },
    /// From the udev helper: a device node appeared or went away, or look at everything.
    Hotplug {
        action: HotplugAction,
        #[serde(default)]
        devnode: String,
    },
    /// The USB keys the host sees.
    Devices,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HotplugAction {
    Add,
    Remove,
    Rescan,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    pub message: String,
    #[serde(default)]
    pub data: Value,
}

impl Answer {
    fn ok(message: impl Into<String>, data: Value) -> Answer {
        Answer {
            ok: true,
            message: message.into(),
            data,
        }
    }
    fn err(message: impl Into<String>) -> Answer {
        Answer {
            ok: false,
            message: message.into(),
            data: Value::Null,
        }
    }
}

#[derive(Debug, Error)]
pub enum ControlError {
    #[error("no keybridge host is running with data directory {0} (cannot connect to its control socket)")]
    NotRunning(PathBuf),
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("control socket: unreadable answer: {0}")]
    Answer(String),
}

async fn execute(host: &Host, cmd: Command) -> Answer {
    match cmd {
        Command::SimPlug { serial } => match host.sim_plug(serial).await {
            Ok(s) => Answer::ok(
                match (s.key_no, &s.open_error) {
                    (_, Some(e)) => format!("simulated key {serial} plugged in, not workable: {e}"),
                    (Some(k), None) => {
                        format!("simulated key {serial} plugged in, holding licence {k}")
                    }
                    (None, None) => format!("simulated key {serial} plugged in (blank)"),
                },
                json!({"serial": serial, "blank": s.blank, "key_no": s.key_no}),
            ),
            Err(e) => Answer::err(e.to_string()),
        },
        Command::SimUnplug { serial } => match host.sim_unplug(serial) {
            Ok(()) => Answer::ok(format!("simulated key {serial} unplugged"), Value::Null),
            Err(e) => Answer::err(e.to_string()),
        },
        Command::SimList => {
            let plugged = host.sim().plugged();
            let all = host.sim().images();
            let rows: Vec<Value> = all
                .iter()
                .map(|s| json!({"serial": s, "plugged": plugged.contains(s)}))
                .collect();
            Answer::ok(
                format!("{} simulated key(s)", rows.len()),
                Value::Array(rows),
            )
        }
        Command::AttestBlank { serial, challenge } => {
            let mut c = [0u8; 32];
            if hex::decode_to_slice(&challenge, &mut c).is_err() {
                return Answer::err("the challenge must be 64 hex digits");
            }
            match host.attest_blank(serial, c).await {
                Ok(a) => Answer::ok(
                    format!("USB key {serial} is attached, blank and genuine"),
                    serde_json::to_value(crate::centre::wire::WireProof::from(&a))
                        .unwrap_or_default(),
                ),
                Err(e) => Answer::err(e.to_string()),
            }
        }
        Command::SimFault { serial, fault } => match host.sim_fault(serial, fault) {
            Ok(()) => Answer::ok(
                format!("simulated key {serial}: {fault:?} armed for its next command"),
                Value::Null,
            ),
            Err(e) => Answer::err(e.to_string()),
        },
        Command::Hotplug { action, devnode } => hotplug(host, action, devnode),
        Command::Devices => {
            let rows = host.devices();
            Answer::ok(
                format!("{} USB key(s)", rows.len()),
                serde_json::to_value(rows).unwrap_or_default(),
            )
        }
        Command::InstallLicence { licence } => {
            let Some(bytes) = crate::crypto::unb64(&licence) else {
                return Answer::err("the licence is not base64");
            };
            match host.install_licence(bytes).await {
                Ok(t) => Answer::ok(
                    format!(
                        "licence {}.{} installed ({})",
                        t.key_id, t.key_no, t.binding
                    ),
                    json!({"key_no": t.key_no, "key_id": t.key_id}),
                ),
                Err(e) => Answer::err(e.to_string()),
            }
        }
    }
}

fn hotplug(host: &Host, action: HotplugAction, devnode: String) -> Answer {
    use crate::host::HotplugEvent;
    if action != HotplugAction::Rescan && !devnode.starts_with("/dev/") {
        return Answer::err(format!("{devnode:?} is not a device node under /dev"));
    }
    let event = match action {
        HotplugAction::Add => HotplugEvent::Add {
            devnode: devnode.clone(),
        },
        HotplugAction::Remove => HotplugEvent::Remove {
            devnode: devnode.clone(),
        },
        HotplugAction::Rescan => HotplugEvent::Rescan,
    };
    match host.hotplug(event) {
        Ok(()) => Answer::ok(
            format!("{action:?} {devnode} passed to the host").to_lowercase(),
            Value::Null,
        ),
        Err(e) => Answer::err(e.to_string()),
    }
}

/// Binds the control socket and serves it until the returned task is aborted. Refuses to
/// take over the socket of another running host.
pub async fn serve(host: Arc<Host>, path: PathBuf) -> std::io::Result<tokio::task::JoinHandle<()>> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another keybridge host is running on {}", path.display()),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = tokio::net::UnixListener::bind(&path)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
    }
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let host = host.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut line = String::new();
                let mut reader = tokio::io::BufReader::new(r).take(MAX_LINE as u64);
                let answer = match reader.read_line(&mut line).await {
                    Ok(_) => match serde_json::from_str::<Command>(&line) {
                        Ok(cmd) => execute(&host, cmd).await,
                        Err(e) => Answer::err(format!("bad command: {e}")),
                    },
                    Err(e) => Answer::err(format!("read error: {e}")),
                };
                let mut out = serde_json::to_vec(&answer).unwrap_or_default();
                out.push(b'\n');
                let _ = w.write_all(&out).await;
            });
        }
    }))
}

/// Sends one command to the host whose data directory is `data_dir`.
pub fn call(data_dir: &Path, cmd: &Command) -> Result<Answer, ControlError> {
    let path = socket_path(data_dir);
    let mut s = std::os::unix::net::UnixStream::connect(&path)
        .map_err(|_| ControlError::NotRunning(data_dir.into()))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_vec(cmd).map_err(|e| ControlError::Answer(e.to_string()))?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer)?;
    serde_json::from_str(&answer).map_err(|e| ControlError::Answer(e.to_string()))
}
