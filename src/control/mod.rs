//! The local control socket, `control.sock` in the data directory: how `keybridge sim …`,
//! `keybridge licence import` (and the hot-plug helper) reach a running host. One JSON
//! request line in, one JSON answer line out, within [`IDLE_TIMEOUT`]. The socket is mode 0660
//! from the moment it exists (see [`bind_0660`]), so only the service user, its group and root
//! can use it.

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

/// How long a client may take to send its request line before it is answered with an error
/// and dropped: an idle client must not hold a task and a file descriptor for ever.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to read its answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Clients served at once; more wait in the kernel's listen queue.
const MAX_CLIENTS: usize = 64;
/// Pause after a failed accept (EMFILE, ENFILE, ENOBUFS…), doubling up to the maximum: the
/// condition lasts until something is freed, and retrying at once would spin a core.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(100);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Binds the control socket and serves it until the returned task is aborted. Refuses to
/// take over the socket of another running host.
pub async fn serve(host: Arc<Host>, path: PathBuf) -> std::io::Result<tokio::task::JoinHandle<()>> {
    serve_with(host, path, IDLE_TIMEOUT).await
}

async fn serve_with(
    host: Arc<Host>,
    path: PathBuf,
    idle: Duration,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    if path.exists() && std::os::unix::net::UnixStream::connect(&path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("another keybridge host is running on {}", path.display()),
        ));
    }
    // A stale socket of a host that died is replaced by the rename in bind_0660.
    let listener = bind_0660(&path)?;
    let clients = Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    Ok(tokio::spawn(async move {
        let mut backoff = ACCEPT_BACKOFF_MIN;
        loop {
            let Ok(permit) = clients.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((stream, _)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    stream
                }
                Err(e) => {
                    tracing::warn!(
                        "control socket: accept failed ({e}); retrying in {} ms",
                        backoff.as_millis()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            };
            let host = host.clone();
            tokio::spawn(async move {
                serve_client(&host, stream, idle).await;
                drop(permit);
            });
        }
    }))
}

/// One client: a request line within `idle`, one answer line, close.
async fn serve_client(host: &Host, stream: tokio::net::UnixStream, idle: Duration) {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(r).take(MAX_LINE as u64);
    let answer = match tokio::time::timeout(idle, reader.read_line(&mut line)).await {
        Err(_) => Answer::err(format!(
            "no request line within {} ms; closing",
            idle.as_millis()
        )),
        Ok(Ok(_)) => match serde_json::from_str::<Command>(&line) {
            Ok(cmd) => execute(host, cmd).await,
            Err(e) => Answer::err(format!("bad command: {e}")),
        },
        Ok(Err(e)) => Answer::err(format!("read error: {e}")),
    };
    let mut out = serde_json::to_vec(&answer).unwrap_or_default();
    out.push(b'\n');
    let _ = tokio::time::timeout(WRITE_TIMEOUT, w.write_all(&out)).await;
}

/// Binds a Unix socket at `path` that is mode 0660 from the moment anyone can reach it.
///
/// bind() creates the socket file with 0777 & ~umask, and chmod after it leaves a window in
/// which anyone may connect; changing the umask would affect every thread of the process, and
/// fchmod before bind is not honoured on Linux. So the socket is bound inside a fresh private
/// directory (0700: nobody else can reach into it), set to 0660 there, then renamed into place
/// — the rename is atomic, and the bound listener follows the inode.
fn bind_0660(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a file path", path.display()),
        )
    })?;
    let staging = dir.join(format!(
        ".{}.{}.{:08x}.d",
        name.to_string_lossy(),
        std::process::id(),
        rand::random::<u32>()
    ));
    // create, not create_all: it must be new, and ours.
    std::fs::DirBuilder::new().mode(0o700).create(&staging)?;
    let bound = (|| {
        let inside = staging.join(name);
        let listener = std::os::unix::net::UnixListener::bind(&inside)?;
        std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o660))?;
        std::fs::rename(&inside, path)?;
        listener.set_nonblocking(true)?;
        tokio::net::UnixListener::from_std(listener)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    bound
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostOptions;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    use std::time::Instant;

    fn host(dir: &Path) -> Arc<Host> {
        Arc::new(
            Host::new(HostOptions {
                data_dir: dir.into(),
                computer_id: "0".repeat(40),
                trust: crate::licence::TrustStore::default(),
                session_lease: Default::default(),
                memory_policy: crate::keymem::LockPolicy::default(),
                centre_url: None,
                centre_ca_file: None,
                centre_response_key: None,
            })
            .expect("host"),
        )
    }

    #[tokio::test]
    async fn socket_is_0660_and_an_idle_client_is_dropped() {
        let d = tempfile::tempdir().expect("tempdir");
        let path = socket_path(d.path());
        // A stale socket file of a dead host is replaced.
        drop(std::os::unix::net::UnixListener::bind(&path).expect("stale"));
        let idle = Duration::from_millis(300);
        let task = serve_with(host(d.path()), path.clone(), idle)
            .await
            .expect("serve");

        let meta = std::fs::metadata(&path).expect("socket");
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
        let names: Vec<String> = std::fs::read_dir(d.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".control"))
            .collect();
        assert!(names.is_empty(), "staging left behind: {names:?}");

        // Silent client: answered with an error after the idle time, then closed.
        let started = Instant::now();
        let silent = tokio::net::UnixStream::connect(&path)
            .await
            .expect("connect");
        let mut r = tokio::io::BufReader::new(silent);
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line))
            .await
            .expect("the host must give up on an idle client")
            .expect("read");
        let waited = started.elapsed();
        assert!(waited >= idle, "answered after {waited:?}");
        let a: Answer = serde_json::from_str(&line).expect("answer");
        assert!(!a.ok && a.message.contains("no request line"), "{line}");
        line.clear();
        assert_eq!(r.read_line(&mut line).await.expect("eof"), 0, "closed");

        // Someone who talks is served as before.
        let dir = d.path().to_path_buf();
        let a = tokio::task::spawn_blocking(move || call(&dir, &Command::SimList))
            .await
            .expect("join")
            .expect("call");
        assert!(a.ok, "{}", a.message);

        // A second host on the same data directory is refused.
        let again = serve_with(host(d.path()), path.clone(), idle).await;
        assert_eq!(
            again.err().map(|e| e.kind()),
            Some(std::io::ErrorKind::AddrInUse)
        );
        task.abort();
    }
}
