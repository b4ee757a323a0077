//! The admin CLI over a running host's own API: `keybridge licences`, `licence
//! show|activate|update`, `memory read|write|passwd|reset`, `sessions list|release`,
//! `connections`. Each call sends a fresh QueryID and checks the answer's signature against
//! the host's public key before a word of it is shown; an answer that does not verify is an
//! error, said loudly, never a table. Tables for people (aligned, dates in local time); `--json`
//! prints the host's JSON as it came, for scripts.

use super::{CliResult, DataArgs};
use crate::crypto::{self, PublicKey};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// `println!` that ends the program quietly when the reader has gone (`| head`), instead of
/// panicking on the broken pipe.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($t)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

/// Where the host is and how to talk to it.
#[derive(Args, Clone)]
pub struct ApiArgs {
    /// The host's API [default: http://LISTEN from the config, else http://127.0.0.1:9099]
    #[arg(long, env = "KEYBRIDGE_URL", value_name = "URL")]
    pub url: Option<String>,
    /// API user [default: [api] user from the config, else admin]
    #[arg(long, env = "KEYBRIDGE_USER")]
    pub user: Option<String>,
    /// API password [default: admin]. Prefer the environment variable to the flag, which
    /// other local users can see.
    #[arg(long, env = "KEYBRIDGE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// The host's public key (PEM, `keybridge key public`) its answers must verify against
    /// [default: made from the data directory's server-key.pem, when readable]
    #[arg(long, env = "KEYBRIDGE_PUBLIC_KEY", value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// CA certificates (PEM) for a host serving HTTPS with a private CA.
    #[arg(long, env = "KEYBRIDGE_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Print the host's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Subcommand)]
pub enum MemoryCommand {
    /// Read a key's user memory.
    Read {
        key_no: u64,
        /// The read password [default: empty]
        #[arg(long, env = "KEYBRIDGE_MEMORY_PASSWORD", hide_env_values = true)]
        memory_password: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Write a key's user memory (at most 4096 bytes of UTF-8).
    Write {
        key_no: u64,
        value: String,
        /// The write password [default: empty]
        #[arg(long, env = "KEYBRIDGE_MEMORY_PASSWORD", hide_env_values = true)]
        memory_password: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Change both memory passwords (both current ones are checked).
    Passwd {
        key_no: u64,
        #[arg(long, default_value = "")]
        read_password: String,
        #[arg(long, default_value = "")]
        write_password: String,
        #[arg(long, default_value = "")]
        new_read_password: String,
        #[arg(long, default_value = "")]
        new_write_password: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Empty the memory and both passwords, and clear a lock.
    Reset {
        key_no: u64,
        /// Confirm: the value and passwords are gone for good.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand)]
pub enum SessionsCommand {
    /// The live sessions.
    List(ApiArgs),
    /// Release a session now, freeing its licence.
    Release {
        /// The session's ID (`sessions list`).
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// A running host's API, every answer checked.
struct HostApi {
    base: String,
    http: reqwest::Client,
    user: String,
    password: String,
    key: PublicKey,
}

/// The longest answer read (a list of 10,000 sessions is far below it).
const MAX_ANSWER: usize = 64 << 20;

impl HostApi {
    fn new(a: &ApiArgs) -> Result<HostApi, String> {
        // The config (often readable by root and the keybridge group only) is read only for
        // what the flags and environment leave open.
        let config = if a.url.is_some() && a.user.is_some() && a.public_key.is_some() {
            crate::config::Config::default()
        } else {
            a.data.config()?
        };
        let base = match &a.url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => {
                let listen = config
                    .listen
                    .unwrap_or_else(|| ([127, 0, 0, 1], 9099).into());
                let scheme = if config.api.tls_cert.is_some() {
                    "https"
                } else {
                    "http"
                };
                // A host listening on every address is reached on loopback.
                let host = if listen.ip().is_unspecified() {
                    "127.0.0.1".to_owned()
                } else {
                    listen.ip().to_string()
                };
                format!("{scheme}://{host}:{}", listen.port())
            }
        };
        let key = match &a.public_key {
            Some(p) => {
                let pem =
                    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                PublicKey::from_pem(&pem).map_err(|e| format!("{}: {e}", p.display()))?
            }
            None => {
                let dir = a.data.data_dir(&config, false);
                let file = dir.join(crate::store::keyfile::SERVER_KEY_FILE);
                crate::store::keyfile::load(&file)
                    .map_err(|e| {
                        format!(
                            "cannot check the host's answers: {e}; give the host's public key with --public-key FILE \
                             (`keybridge key public > host.pem` as the host's user)"
                        )
                    })?
                    .public_key()
                    .clone()
            }
        };
        let http = crate::web::client::http_client(a.ca_file.as_deref(), Duration::from_secs(120))
            .map_err(|e| format!("--ca-file: {e}"))?;
        Ok(HostApi {
            base,
            http,
            user: a.user.clone().unwrap_or_else(|| config.api.user.clone()),
            password: a.password.clone().unwrap_or_else(|| "admin".into()),
            key,
        })
    }

    /// Sends one request; returns the status, the verified body and `X-Total-Count`.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value, Option<usize>), String> {
        let query_id = hex::encode(crypto::random_bytes::<16>());
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.user, Some(&self.password))
            .header("Licence-QueryID", &query_id);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let mut r = rb.send().await.map_err(|e| format!("{}: {e}", self.base))?;
        let status = r.status().as_u16();
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (echoed, signature, total) = (
            header("licence-queryid"),
            header("licence-signature"),
            header("x-total-count").and_then(|t| t.parse().ok()),
        );
        let mut bytes = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Err(format!("the answer from {} is too large", self.base));
            }
            bytes.extend_from_slice(&chunk);
        }
        let forged = |why: &str| {
            format!(
                "REFUSED: the answer from {} is not the host's own ({why}); nothing of it is shown. \
                 Check --url and --public-key, and whether someone is in between.",
                self.base
            )
        };
        if echoed.as_deref() != Some(query_id.as_str()) {
            return Err(forged("it does not echo this request's QueryID"));
        }
        let sig = signature
            .as_deref()
            .and_then(crypto::unb64)
            .ok_or_else(|| forged("it carries no signature"))?;
        let mut message = query_id.into_bytes();
        message.extend_from_slice(&bytes);
        self.key
            .verify_raw(&message, &sig)
            .map_err(|_| forged("its signature does not verify against the host's key"))?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the host's answer is not JSON: {e}"))?;
        if status >= 400 {
            return Err(format!(
                "{status} {}: {}",
                v["Exception"].as_str().unwrap_or("error"),
                v["Message"].as_str().unwrap_or_default()
            ));
        }
        Ok((status, v, total))
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        Ok(self.send(reqwest::Method::GET, path, None).await?.1)
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        Ok(self.send(reqwest::Method::POST, path, Some(&body)).await?.1)
    }

    /// Every entry of a paged list (`/api/sessions`, `/api/connections`).
    async fn all(&self, path: &str, member: &str) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        loop {
            let page = format!("{path}?Offset={}&Limit=10000", out.len());
            let (_, v, total) = self.send(reqwest::Method::GET, &page, None).await?;
            let items = v[member].as_array().cloned().unwrap_or_default();
            let done = items.is_empty() || total.is_none_or(|t| out.len() + items.len() >= t);
            out.extend(items);
            if done {
                return Ok(out);
            }
        }
    }
}

/// Shows that a slow call is alive, on a terminal only (a pipe gets nothing).
struct Progress(Option<tokio::task::JoinHandle<()>>);

impl Progress {
    fn start(what: &'static str) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        Progress(Some(tokio::spawn(async move {
            let started = std::time::Instant::now();
            loop {
                eprint!("\r{what}… {} s", started.elapsed().as_secs());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })))
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
            eprint!("\r\x1b[K");
        }
    }
}

/// A time from the host (UTC) in local time, for people.
fn local(v: &Value) -> String {
    v.as_str()
        .and_then(crate::time::parse_client)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|| "—".into())
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prints rows under a header, each column as wide as its widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        say!("{}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        line(r.clone());
    }
}

fn print_json(v: &Value) {
    say!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// A licence's state in words: usable, or why not.
fn state(l: &Value) -> String {
    if l["IsBlank"] == true {
        "blank".into()
    } else if l["Workable"] != true {
        format!("NOT WORKABLE: {}", text(&l["OpenError"]))
    } else if l["Expired"] == true {
        "expired".into()
    } else {
        "workable".into()
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn run(f: impl std::future::Future<Output = Result<(), String>>) -> CliResult {
    runtime()?.block_on(f)?;
    Ok(ExitCode::SUCCESS)
}

/// `keybridge licences`: every licence with its state, sessions held, expiry and support.
pub fn licences(a: &ApiArgs) -> CliResult {
    run(async {
        let api = HostApi::new(a)?;
        let list = api.get("/api/licences").await?;
        if a.json {
            print_json(&list);
            return Ok(());
        }
        let sessions = api.all("/api/sessions", "Sessions").await?;
        let used = |key_no: &Value| {
            sessions
                .iter()
                .filter(|s| text(&s["UsedLicence"]) == text(key_no))
                .count()
        };
        let rows: Vec<Vec<String>> = list["Licences"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|l| {
                vec![
                    text(&l["KeyNo"]),
                    text(&l["KeyID"]),
                    text(&l["Type"]),
                    format!("{}/{}", used(&l["KeyNo"]), text(&l["LicenceCount"])),
                    local(&l["ExpireDate"]),
                    text(&l["DaysLeft"]),
                    local(&l["SupportEndDate"]),
                    state(l),
                ]
            })
            .collect();
        table(
            &[
                "KEYNO", "SERIES", "TYPE", "USED", "EXPIRES", "DAYS", "SUPPORT", "STATE",
            ],
            &rows,
        );
        Ok(())
    })
}

/// `keybridge licence show KEYNO`: every field of one licence.
pub fn licence_show(key_no: u64, a: &ApiArgs) -> CliResult {
    run(async {
        let l = HostApi::new(a)?
            .get(&format!("/api/licences/{key_no}"))
            .await?;
        if a.json {
            print_json(&l);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = l
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        let shown = if k.ends_with("Date") {
                            local(v)
                        } else {
                            text(v)
                        };
                        vec![k.clone(), shown]
                    })
                    .collect()
            })
            .unwrap_or_default();
        table(&["FIELD", "VALUE"], &rows);
        say!("state: {}", state(&l));
        Ok(())
    })
}

/// `keybridge licence activate`: a code onto this machine or an attached blank.
pub fn licence_activate(
    code: &str,
    itn: Option<String>,
    iec: Option<String>,
    blank_key_no: Option<u64>,
    a: &ApiArgs,
) -> CliResult {
    run(async {
        let api = HostApi::new(a)?;
        let body = json!({"ActivationCodeString": code, "ITN": itn, "IEC": iec, "BlankKeyNo": blank_key_no});
        let l = {
            let _p = Progress::start("activating at the centre");
            api.post("/api/licences", body).await?
        };
        if a.json {
            print_json(&l);
        } else {
            say!(
                "activated: {} {}.{} — {} licence(s), {}",
                text(&l["Type"]),
                text(&l["KeyID"]),
                text(&l["KeyNo"]),
                text(&l["LicenceCount"]),
                state(&l)
            );
        }
        Ok(())
    })
}

/// `keybridge licence update`: every licence asked of the centre again.
pub fn licence_update(a: &ApiArgs) -> CliResult {
    run(async {
        let api = HostApi::new(a)?;
        let list = {
            let _p = Progress::start("updating licences at the centre");
            api.post("/api/licences/update", json!({})).await?
        };
        if a.json {
            print_json(&list);
        } else {
            let n = list["Licences"].as_array().map_or(0, Vec::len);
            say!("updated: {n} licence(s) listed; `keybridge licences` shows them");
        }
        Ok(())
    })
}

pub fn memory(cmd: &MemoryCommand) -> CliResult {
    run(async {
        match cmd {
            MemoryCommand::Read {
                key_no,
                memory_password,
                api,
            } => {
                let pw = memory_password.clone().unwrap_or_default();
                let path = format!(
                    "/api/licences/{key_no}/memory?{}",
                    serde_urlencoded::to_string([("Password", pw.as_str())])
                        .map_err(|e| e.to_string())?
                );
                let v = HostApi::new(api)?.get(&path).await?;
                if api.json {
                    print_json(&v);
                } else {
                    say!("{}", text(&v["Value"]));
                }
            }
            MemoryCommand::Write {
                key_no,
                value,
                memory_password,
                api,
            } => {
                let body = json!({"Password": memory_password.clone().unwrap_or_default(), "Value": value});
                let v = HostApi::new(api)?
                    .post(&format!("/api/licences/{key_no}/memory"), body)
                    .await?;
                done(api, &v, &format!("memory of {key_no} written"));
            }
            MemoryCommand::Passwd {
                key_no,
                read_password,
                write_password,
                new_read_password,
                new_write_password,
                api,
            } => {
                let body = json!({"ReadPassword": read_password, "WritePassword": write_password,
                    "NewReadPassword": new_read_password, "NewWritePassword": new_write_password});
                let v = HostApi::new(api)?
                    .post(&format!("/api/licences/{key_no}/memory"), body)
                    .await?;
                done(api, &v, &format!("memory passwords of {key_no} changed"));
            }
            MemoryCommand::Reset { key_no, yes, api } => {
                if !yes {
                    return Err(format!(
                        "memory reset empties the value and both passwords of {key_no} for good; add --yes"
                    ));
                }
                let api_ = HostApi::new(api)?;
                let (_, v, _) = api_
                    .send(
                        reqwest::Method::DELETE,
                        &format!("/api/licences/{key_no}/memory"),
                        None,
                    )
                    .await?;
                done(api, &v, &format!("memory of {key_no} reset"));
            }
        }
        Ok(())
    })
}

fn done(a: &ApiArgs, v: &Value, said: &str) {
    if a.json {
        print_json(v);
    } else {
        say!("{said}");
    }
}

pub fn sessions(cmd: &SessionsCommand) -> CliResult {
    run(async {
        match cmd {
            SessionsCommand::List(a) => {
                let list = HostApi::new(a)?.all("/api/sessions", "Sessions").await?;
                if a.json {
                    print_json(&json!({"Sessions": list}));
                    return Ok(());
                }
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|s| {
                        vec![
                            text(&s["ID"]),
                            text(&s["UsedLicence"]),
                            text(&s["AppName"]),
                            text(&s["UserName"]),
                            text(&s["ComputerName"]),
                            local(&s["SessionStarted"]),
                            local(&s["ExpireTime"]),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "ID",
                        "KEYNO",
                        "APP",
                        "USER",
                        "COMPUTER",
                        "STARTED",
                        "LEASE ENDS",
                    ],
                    &rows,
                );
            }
            SessionsCommand::Release { id, api } => {
                let a = HostApi::new(api)?;
                let (_, v, _) = a
                    .send(
                        reqwest::Method::DELETE,
                        &format!("/api/sessions/{id}"),
                        None,
                    )
                    .await?;
                done(api, &v, &format!("session {id} released"));
            }
        }
        Ok(())
    })
}

pub fn connections(a: &ApiArgs) -> CliResult {
    run(async {
        let list = HostApi::new(a)?
            .all("/api/connections", "Connections")
            .await?;
        if a.json {
            print_json(&json!({"Connections": list}));
            return Ok(());
        }
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|c| {
                vec![
                    text(&c["ID"]),
                    text(&c["PeerIP"]),
                    text(&c["ComputerName"]),
                    text(&c["Process"]),
                    text(&c["KeyID"]),
                    local(&c["LastUsed"]),
                ]
            })
            .collect();
        table(
            &[
                "ID",
                "ADDRESS",
                "COMPUTER",
                "PROCESS",
                "SERIES",
                "LAST USED",
            ],
            &rows,
        );
        Ok(())
    })
}
