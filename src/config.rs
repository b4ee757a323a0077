//! Host configuration: `/etc/keybridge/keybridge.toml` (or `--config`), then `KEYBRIDGE_*`
//! environment variables and flags on top. `docs/configuration.md` lists every key.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/keybridge/keybridge.toml";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/keybridge";
/// Data directory of `serve --demo` when none is given: a folder beside the user.
pub const DEMO_DATA_DIR: &str = "./data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9099";

#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file cannot be read, or is not TOML of the expected shape (an unknown key, a wrong
    /// type); toml's message names the line and column.
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    /// A value that parsed but makes no sense (NaN, negative, out of range).
    #[error("{path}: {key}: {message}{}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
        /// Where the key is set in the file, if it is (not when it came from the environment).
        line: Option<usize>,
    },
    /// A `KEYBRIDGE_…` variable whose value is not of its key's type.
    #[error("environment variable {var} ({key}): {message}")]
    Env {
        var: String,
        key: String,
        message: String,
    },
}

/// What a key's value is, for reading it from an environment variable and for the table in
/// `docs/configuration.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Path,
    /// `address:port`.
    Address,
    Bool,
    Integer,
    /// A number of seconds (fractions allowed).
    Seconds,
    /// A list of text; in a variable, comma-separated.
    List,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Path => "path",
            Kind::Address => "address:port",
            Kind::Bool => "true/false",
            Kind::Integer => "whole number",
            Kind::Seconds => "seconds",
            Kind::List => "list (comma-separated in a variable)",
        }
    }
}

/// One key of the host's config file.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// `""` for a top-level key.
    pub section: &'static str,
    pub name: &'static str,
    pub kind: Kind,
    /// The `keybridge serve` flag that sets it, if any.
    pub flag: Option<&'static str>,
}

impl Key {
    /// `KEYBRIDGE_<SECTION>_<NAME>`, upper case.
    pub fn env(&self) -> String {
        let mut v = String::from("KEYBRIDGE_");
        if !self.section.is_empty() {
            v.push_str(&self.section.to_ascii_uppercase());
            v.push('_');
        }
        v.push_str(&self.name.to_ascii_uppercase());
        v
    }

    /// `[section] name`, as errors name it.
    pub fn dotted(&self) -> String {
        if self.section.is_empty() {
            self.name.to_owned()
        } else {
            format!("[{}] {}", self.section, self.name)
        }
    }
}

const fn key(section: &'static str, name: &'static str, kind: Kind) -> Key {
    Key {
        section,
        name,
        kind,
        flag: None,
    }
}

/// Every key of the config. A unit test checks it against what the config's types accept, so
/// it cannot drift; `keybridge config env-table` prints it for `docs/configuration.md`.
pub const KEYS: &[Key] = {
    use Kind::*;
    &[
        Key {
            flag: Some("--listen"),
            ..key("", "listen", Address)
        },
        Key {
            flag: Some("--data"),
            ..key("", "data", Path)
        },
        Key {
            flag: Some("--computer-id"),
            ..key("", "computer_id", Text)
        },
        key("api", "enabled", Bool),
        key("api", "user", Text),
        key("api", "password_hash", Text),
        key("api", "max_failed_logins", Integer),
        key("api", "login_window_seconds", Integer),
        key("api", "login_table_size", Integer),
        key("api", "login_hash_workers", Integer),
        key("api", "login_wait_ms", Integer),
        key("api", "max_failed_activations", Integer),
        key("api", "activation_window_seconds", Integer),
        key("api", "activation_table_size", Integer),
        key("api", "tls_cert", Path),
        key("api", "tls_key", Path),
        key("leases", "session_seconds", Seconds),
        key("leases", "max_sessions", Integer),
        key("leases", "max_connections", Integer),
        key("memory", "max_failures", Integer),
        key("memory", "lock_seconds", Seconds),
        key("licences", "trusted_centre_keys", List),
        Key {
            flag: Some("--centre-url"),
            ..key("centre", "url", Text)
        },
        key("centre", "ca_file", Path),
        key("centre", "response_key", Path),
        key("centre", "insecure_http", Bool),
        key("usb", "enabled", Bool),
        key("usb", "drivers_dir", Path),
        key("usb", "rescan_seconds", Seconds),
        key("usb", "libusb_hotplug", Bool),
        key("http", "header_timeout_seconds", Seconds),
        key("http", "request_timeout_seconds", Seconds),
        key("http", "idle_timeout_seconds", Seconds),
        key("http", "tls_handshake_timeout_seconds", Seconds),
        key("http", "max_connections", Integer),
        key("http", "fd_reserve", Integer),
        key("http", "shutdown_timeout_seconds", Seconds),
        key("http", "allowed_hosts", List),
        key("metrics", "enabled", Bool),
        key("metrics", "user", Text),
        key("metrics", "password_hash", Text),
        // Issue 12: the web console.
        key("console", "enabled", Bool),
        key("console", "local_only", Bool),
        key("console", "session_idle_seconds", Integer),
    ]
};

/// The Markdown table of every key, its variable and its flag (`keybridge config env-table`).
pub fn env_table() -> String {
    let mut out =
        String::from("| key | environment variable | flag | value |\n|---|---|---|---|\n");
    for k in KEYS {
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            k.dotted(),
            k.env(),
            k.flag.map(|f| format!("`{f}`")).unwrap_or_default(),
            k.kind.describe()
        ));
    }
    out
}

/// The TOML value of `raw`, read as `kind`; the error says what was expected.
fn env_value(kind: Kind, raw: &str) -> Result<toml::Value, String> {
    use toml::Value as V;
    Ok(match kind {
        Kind::Text | Kind::Path | Kind::Address => V::String(raw.to_owned()),
        Kind::Bool => match raw.trim() {
            "true" | "1" | "yes" => V::Boolean(true),
            "false" | "0" | "no" => V::Boolean(false),
            _ => return Err(format!("expected true or false, got {raw:?}")),
        },
        Kind::Integer => V::Integer(
            raw.trim()
                .parse()
                .map_err(|_| format!("expected a whole number, got {raw:?}"))?,
        ),
        Kind::Seconds => V::Float(
            raw.trim()
                .parse()
                .map_err(|_| format!("expected a number of seconds, got {raw:?}"))?,
        ),
        Kind::List => V::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| V::String(s.to_owned()))
                .collect(),
        ),
    })
}

/// Puts every `KEYBRIDGE_…` variable `var` finds over the keys of `table`.
fn apply_env(
    table: &mut toml::Table,
    var: impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for k in KEYS {
        let name = k.env();
        let Some(raw) = var(&name) else { continue };
        let value = env_value(k.kind, &raw).map_err(|message| ConfigError::Env {
            var: name.clone(),
            key: k.dotted(),
            message,
        })?;
        let target = if k.section.is_empty() {
            &mut *table
        } else {
            let entry = table
                .entry(k.section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Env {
                        var: name,
                        key: k.dotted(),
                        message: format!("[{}] in the file is not a section", k.section),
                    })
                }
            }
        };
        target.insert(k.name.to_owned(), value);
    }
    Ok(())
}

/// `keybridge config check`: the config at `path` with the environment over it, checked as
/// `serve` would; the error is one line, `FILE:LINE: [section] key: what is wrong`.
pub fn check_file(path: &Path) -> Result<Config, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    if let Err(e) = toml::from_str::<Config>(&text) {
        let Some(span) = e.span() else {
            return Err(format!("{shown}: {}", e.message()));
        };
        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
        // The key set on that line (an unknown key, or one whose value has the wrong type).
        let at = text
            .lines()
            .nth(line - 1)
            .and_then(|l| l.split_once('='))
            .map(|(k, _)| k.trim().trim_matches('"'))
            .filter(|k| !k.is_empty() && !k.starts_with('['));
        // The section the line is in, to name the key as `[section] key`.
        let section = text
            .lines()
            .take(line)
            .filter_map(|l| l.trim().strip_prefix('['))
            .last()
            .and_then(|h| h.split(']').next())
            .map(str::trim);
        let key = match (section, at) {
            (_, None) => String::new(),
            (Some(sec), Some(at)) => format!("[{sec}] {at}: "),
            (None, Some(at)) => format!("{at}: "),
        };
        let message = e.message().trim().replace('\n', "; ");
        return Err(format!("{shown}:{line}: {key}{message}"));
    }
    let config = Config::load(path, true).map_err(|e| match e {
        ConfigError::Invalid {
            key,
            message,
            line: Some(line),
            ..
        } => format!("{shown}:{line}: {key}: {message}"),
        other => other.to_string(),
    })?;
    config.check().map_err(|m| {
        let key = m
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .map(|(sec, rest)| {
                let k = rest
                    .trim_start()
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or("");
                format!("[{sec}] {k}")
            })
            .or_else(|| m.split(' ').next().map(str::to_owned));
        match key.and_then(|k| line_of(&text, &k)) {
            Some(line) => format!("{shown}:{line}: {m}"),
            None => format!("{shown}: {m}"),
        }
    })?;
    Ok(config)
}

/// The line (from 1) of `text` where `dotted` (`[section] key`, or a top-level `key`) is set.
pub fn line_of(text: &str, dotted: &str) -> Option<usize> {
    let (section, key) = match dotted.strip_prefix('[') {
        Some(rest) => {
            let (s, k) = rest.split_once("] ")?;
            (s, k)
        }
        None => ("", dotted),
    };
    let mut current = "";
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(h) = t.strip_prefix('[') {
            current = h.split(']').next().unwrap_or("").trim();
            continue;
        }
        let Some((k, _)) = t.split_once('=') else {
            continue;
        };
        let k = k.trim().trim_matches('"');
        if current == section && k == key {
            return Some(i + 1);
        }
        // A dotted key at the top: `leases.session_seconds = 1`.
        if current.is_empty() && !section.is_empty() && k == format!("{section}.{key}") {
            return Some(i + 1);
        }
    }
    None
}

/// Longest session lease: a year.
pub const MAX_SESSION_SECONDS: f64 = 365.0 * 86_400.0;
/// Shortest session lease; shorter would expire before a client could renew.
pub const MIN_SESSION_SECONDS: f64 = 0.05;
/// Longest memory lock: thirty days.
pub const MAX_LOCK_SECONDS: f64 = 30.0 * 86_400.0;
/// Rescan interval bounds (0 turns the rescan off).
pub const MIN_RESCAN_SECONDS: f64 = 0.05;
pub const MAX_RESCAN_SECONDS: f64 = 86_400.0;
/// Largest cap on sessions or connections: each costs memory, and lists are paged anyway.
pub const MAX_LEASE_CAP: usize = 10_000_000;
/// Largest login window: a year.
pub const MAX_LOGIN_WINDOW_SECONDS: u64 = 365 * 86_400;

/// Checks that `v` is a number in `lo..=hi` (or exactly 0 when `zero_ok`), saying so with
/// the key's name otherwise. `{:?}` shows NaN, inf and 1e300 as written.
fn check_seconds(v: f64, lo: f64, hi: f64, zero_ok: bool) -> Result<(), String> {
    if (zero_ok && v == 0.0) || (lo..=hi).contains(&v) {
        return Ok(());
    }
    let or_zero = if zero_ok { "0 (off) or " } else { "" };
    Err(format!(
        "must be {or_zero}a number between {lo} and {hi}, got {v:?}"
    ))
}

fn check_count(v: usize, lo: usize, hi: usize) -> Result<(), String> {
    if (lo..=hi).contains(&v) {
        return Ok(());
    }
    Err(format!(
        "must be a whole number between {lo} and {hi}, got {v}"
    ))
}

/// A duration of `v` seconds, for values [`Config::validate`] has already checked; anything
/// else (a config built in code) falls back to `default` rather than panicking.
fn seconds(v: f64, lo: f64, hi: f64, default: Duration) -> Duration {
    if v.is_finite() {
        Duration::try_from_secs_f64(v.clamp(lo, hi)).unwrap_or(default)
    } else {
        default
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address and port to serve the API on.
    pub listen: Option<SocketAddr>,
    /// Data directory: server key, software keys, simulated key images.
    pub data: Option<PathBuf>,
    /// Fixed ComputerID, for containers whose machine identifiers change on restart.
    pub computer_id: Option<String>,
    pub api: ApiConfig,
    pub leases: LeaseConfig,
    pub memory: MemoryConfig,
    pub licences: LicenceConfig,
    pub centre: CentreConfig,
    pub usb: UsbConfig,
    pub http: HttpConfig,
    pub metrics: crate::metrics::MetricsConfig,
    pub console: ConsoleConfig,
}

/// `[console]`: the web console on the API's port (issue 12, `crate::console`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// `false`: nothing is served at `/` but the API.
    pub enabled: bool,
    /// Serve the console only to loopback clients. Unset: only while the API password is the
    /// default one, since anyone who reaches the port could otherwise log in as admin/admin.
    pub local_only: Option<bool>,
    /// A console session ends after this long without a request.
    pub session_idle_seconds: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            local_only: None,
            session_idle_seconds: 1800,
        }
    }
}

/// `[http]`: how the API's HTTP server bounds connections and requests (`web::server`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Time a client has to send a request's head, from when the server starts waiting.
    pub header_timeout_seconds: f64,
    /// Time to receive the rest of a request and answer it; then a signed 408.
    pub request_timeout_seconds: f64,
    /// A connection with no request in progress and no byte moving is closed after this.
    pub idle_timeout_seconds: f64,
    pub tls_handshake_timeout_seconds: f64,
    /// Connections at once; never more than RLIMIT_NOFILE less `fd_reserve`.
    pub max_connections: usize,
    /// File descriptors kept for files, devices and the control socket.
    pub fd_reserve: u64,
    /// How long a shutdown waits for requests in progress.
    pub shutdown_timeout_seconds: f64,
    /// Host names the API answers to in the `Host` header, besides IP addresses and
    /// `localhost` (the guard against DNS rebinding). Empty: any name once `[api]
    /// password_hash` is set, none but those while the default password is in use.
    pub allowed_hosts: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        use crate::web::server as d;
        HttpConfig {
            header_timeout_seconds: d::DEFAULT_HEADER_TIMEOUT,
            request_timeout_seconds: d::DEFAULT_REQUEST_TIMEOUT,
            idle_timeout_seconds: d::DEFAULT_IDLE_TIMEOUT,
            tls_handshake_timeout_seconds: d::DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            max_connections: d::DEFAULT_MAX_CONNECTIONS,
            fd_reserve: d::DEFAULT_FD_RESERVE,
            shutdown_timeout_seconds: d::DEFAULT_SHUTDOWN_TIMEOUT,
            allowed_hosts: Vec::new(),
        }
    }
}

impl HttpConfig {
    /// The limits, or which key is out of range.
    pub fn limits(&self) -> Result<crate::web::server::Limits, String> {
        use crate::web::server::seconds;
        let s = |key: &str, v: f64| seconds(&format!("[http] {key}"), v);
        if self.max_connections == 0 {
            return Err("[http] max_connections must be at least 1".into());
        }
        Ok(crate::web::server::Limits {
            header_timeout: s("header_timeout_seconds", self.header_timeout_seconds)?,
            request_timeout: s("request_timeout_seconds", self.request_timeout_seconds)?,
            idle_timeout: s("idle_timeout_seconds", self.idle_timeout_seconds)?,
            tls_handshake_timeout: s(
                "tls_handshake_timeout_seconds",
                self.tls_handshake_timeout_seconds,
            )?,
            max_connections: self.max_connections,
            fd_reserve: self.fd_reserve,
            shutdown_timeout: s("shutdown_timeout_seconds", self.shutdown_timeout_seconds)?,
        })
    }

    /// The names the API answers to: with the default password (`default_password`) only IP
    /// addresses, `localhost` and `allowed_hosts`; with a real one, any name unless
    /// `allowed_hosts` lists some.
    pub fn allowed_hosts(
        &self,
        default_password: bool,
    ) -> Result<crate::web::server::AllowedHosts, String> {
        let hint = if self.allowed_hosts.is_empty() {
            "with the default API password only IP addresses and localhost are answered (a guard \
             against DNS rebinding); set [api] password_hash, or list the name in [http] allowed_hosts"
        } else {
            "only IP addresses, localhost and the names in [http] allowed_hosts are answered"
        };
        crate::web::server::AllowedHosts::new(default_password, &self.allowed_hosts, hint)
            .map_err(|e| format!("[http] allowed_hosts: {e}"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsbConfig {
    /// `false` leaves real USB keys alone (simulated keys still work).
    pub enabled: bool,
    /// Extra driver files (`*.toml`), beside the built-in ones; a file named like a built-in
    /// driver replaces it.
    pub drivers_dir: Option<PathBuf>,
    /// How often to look for keys that came or went without an event (hosts without udev or
    /// libusb hot-plug), and to retry keys that failed; 0 turns the rescan off.
    pub rescan_seconds: f64,
    /// Listen for libusb's hot-plug events where the platform has them.
    pub libusb_hotplug: bool,
}

impl Default for UsbConfig {
    fn default() -> Self {
        UsbConfig {
            enabled: true,
            drivers_dir: None,
            rescan_seconds: 2.0,
            libusb_hotplug: true,
        }
    }
}

impl UsbConfig {
    pub fn rescan(&self) -> Option<Duration> {
        (self.rescan_seconds > 0.0).then(|| {
            seconds(
                self.rescan_seconds,
                MIN_RESCAN_SECONDS,
                MAX_RESCAN_SECONDS,
                Duration::from_secs(2),
            )
        })
    }

    pub fn drivers(&self) -> Result<crate::hal::drivers::DriverSet, String> {
        crate::hal::drivers::DriverSet::load(self.drivers_dir.as_deref()).map_err(|e| e.to_string())
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CentreConfig {
    /// The licensing centre activations and updates go to, e.g. `https://centre.example:9100`.
    pub url: Option<String>,
    /// CA certificates (PEM) trusted for an `https://` centre, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// The centre's response key (PEM, from `keybridge centre key-public --response`): the
    /// host accepts only answers signed by it. Required for a centre off loopback; unset for
    /// one on loopback, answers are trusted on the licence signature alone (a warning says so).
    pub response_key: Option<PathBuf>,
    /// Allow a plain `http://` centre off loopback (a TLS-terminating proxy between, say).
    pub insecure_http: bool,
}

impl CentreConfig {
    /// Refuses a centre URL that would send activation codes and ITNs where anyone on the
    /// way could read or answer them: plain HTTP off loopback (unless `insecure_http`), and a
    /// centre off loopback whose answers the host could not check (no `response_key`).
    pub fn check(&self) -> Result<(), String> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("[centre] url {url:?}: {e}"))?;
        let Some(host) = parsed.host_str() else {
            return Err(format!(
                "[centre] url {url:?}: must be http:// or https:// and name a host"
            ));
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = match bare.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => host.eq_ignore_ascii_case("localhost"),
        };
        match parsed.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" if self.insecure_http => tracing::warn!(
                "the centre at {url} is reached over plain HTTP ([centre] insecure_http): activation codes and ITNs cross the network unencrypted"
            ),
            "http" => {
                return Err(format!(
                    "[centre] url {url:?}: plain HTTP to a centre off loopback would send activation codes \
                     and ITNs unencrypted; use https://, or set [centre] insecure_http = true if a \
                     TLS-terminating proxy or a private link protects the traffic"
                ))
            }
            other => {
                return Err(format!(
                    "[centre] url {url:?}: scheme {other:?}; must be http:// or https://"
                ))
            }
        }
        if !loopback && self.response_key.is_none() {
            return Err(format!(
                "[centre] response_key is required for a centre off loopback ({url}): without it the \
                 host could not tell the centre's answers from anyone else's; get the key with \
                 `keybridge centre key-public --response` on the centre"
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// `false` answers every API request with 503, as the spec's "API disabled in settings".
    pub enabled: bool,
    pub user: String,
    /// `pbkdf2-sha256$…` from `keybridge auth hash`; absent means the default password `admin`.
    pub password_hash: Option<String>,
    /// Failed logins from one address within `login_window_seconds` before it is refused.
    pub max_failed_logins: u32,
    pub login_window_seconds: u64,
    /// Client addresses the failed-login table tracks at once; when all of them are failing,
    /// logins from new addresses are answered 503 until their window passes.
    pub login_table_size: usize,
    /// Password hashes (PBKDF2) computed at once; 0 means one per CPU.
    pub login_hash_workers: usize,
    /// How long a login waits for a free hash worker before it is answered 503.
    pub login_wait_ms: u64,
    /// Activations from one client address (all of loopback counting as one) that the centre
    /// may refuse as unproven within `activation_window_seconds` before the host refuses that
    /// client's activations itself, without asking the centre (which counts such refusals
    /// against the host's address and would cut the whole host off).
    pub max_failed_activations: u32,
    pub activation_window_seconds: u64,
    /// Client addresses the failed-activation table tracks at once; when all of them are
    /// failing, activations from new addresses are refused (429) until a window passes.
    pub activation_table_size: usize,
    /// Serve the API over HTTPS with this certificate chain (PEM) …
    pub tls_cert: Option<PathBuf>,
    /// … and its private key (PEM). Both or neither.
    pub tls_key: Option<PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            user: "admin".into(),
            password_hash: None,
            max_failed_logins: 10,
            login_window_seconds: 60,
            login_table_size: 10_000,
            login_hash_workers: 0,
            login_wait_ms: 2_000,
            max_failed_activations: 5,
            activation_window_seconds: 600,
            activation_table_size: 1_000,
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseConfig {
    /// Lifetime of an external session; a repeated POST with its ClientSessionID renews it.
    pub session_seconds: f64,
    /// Live sessions the host holds at most; a new session beyond it is refused (503).
    pub max_sessions: usize,
    /// Connections the host keeps at most; an idle one (no session) makes room for a new one.
    pub max_connections: usize,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            session_seconds: 300.0,
            max_sessions: crate::host::DEFAULT_MAX_SESSIONS,
            max_connections: crate::host::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl LeaseConfig {
    /// The lease length and the caps, as the host takes them.
    pub fn session(&self) -> crate::host::LeasePolicy {
        crate::host::LeasePolicy {
            session: seconds(
                self.session_seconds,
                MIN_SESSION_SECONDS,
                MAX_SESSION_SECONDS,
                Duration::from_secs(300),
            ),
            max_sessions: self.max_sessions.clamp(1, MAX_LEASE_CAP),
            max_connections: self.max_connections.clamp(1, MAX_LEASE_CAP),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Wrong memory passwords in a row before a key's memory locks.
    pub max_failures: u32,
    /// How long it stays locked.
    pub lock_seconds: f64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            max_failures: 5,
            lock_seconds: 300.0,
        }
    }
}

impl MemoryConfig {
    pub fn policy(&self) -> crate::keymem::LockPolicy {
        crate::keymem::LockPolicy {
            max_failures: self.max_failures.max(1),
            lock_for: seconds(
                self.lock_seconds,
                0.0,
                MAX_LOCK_SECONDS,
                Duration::from_secs(300),
            ),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LicenceConfig {
    /// Centre public keys (PEM) whose licences this host accepts, in addition to the
    /// `trust/` folder of the data directory.
    pub trusted_centre_keys: Vec<PathBuf>,
}

impl Config {
    /// Reads `path`, then the `KEYBRIDGE_…` variables over it; with `required` false a
    /// missing file gives the defaults.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        Config::load_with(path, required, |v| std::env::var(v).ok())
    }

    /// [`Config::load`] with the environment given (tests).
    pub fn load_with(
        path: &Path,
        required: bool,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let err = |message: String| ConfigError::Read {
            path: path.into(),
            message,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => String::new(),
            Err(e) => return Err(err(e.to_string())),
        };
        // First the file alone, so that toml's errors (unknown key, wrong type) name its line.
        let _: Config = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        apply_env(&mut table, var)?;
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| err(e.message().to_owned()))?;
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                path: path.into(),
                key,
                message,
                line: line_of(&text, key),
            })?;
        Ok(config)
    }

    /// Everything `keybridge serve` would refuse in this config before it starts, beyond
    /// [`Config::validate`]: the HTTP limits and host names, the centre's URL, the password
    /// hashes, the TLS pair. The error names the key.
    pub fn check(&self) -> Result<(), String> {
        self.http.limits()?;
        let default_password = self.api.password_hash.is_none();
        self.http.allowed_hosts(default_password)?;
        self.centre.check()?;
        if let Some(h) = &self.api.password_hash {
            crate::crypto::password::PasswordHash::parse(h)
                .map_err(|e| format!("[api] password_hash: {e}"))?;
        }
        crate::metrics::Access::from_config(&self.metrics)?;
        if self.api.tls_cert.is_some() != self.api.tls_key.is_some() {
            return Err("[api] tls_cert and tls_key must be given together".into());
        }
        let listen = self
            .listen
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9099)));
        if default_password && !listen.ip().is_loopback() {
            return Err(format!(
                "listen = {listen}: a non-loopback address needs [api] password_hash"
            ));
        }
        Ok(())
    }

    /// Checks every number whose type lets through values that make no sense: NaN, infinite,
    /// negative or out of range. The error names the key (`[section] key`).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let at = |key: &'static str| move |m: String| (key, m);
        check_seconds(
            self.leases.session_seconds,
            MIN_SESSION_SECONDS,
            MAX_SESSION_SECONDS,
            false,
        )
        .map_err(at("[leases] session_seconds"))?;
        check_count(self.leases.max_sessions, 1, MAX_LEASE_CAP)
            .map_err(at("[leases] max_sessions"))?;
        check_count(self.leases.max_connections, 1, MAX_LEASE_CAP)
            .map_err(at("[leases] max_connections"))?;
        check_seconds(self.memory.lock_seconds, 0.0, MAX_LOCK_SECONDS, false)
            .map_err(at("[memory] lock_seconds"))?;
        check_seconds(
            self.usb.rescan_seconds,
            MIN_RESCAN_SECONDS,
            MAX_RESCAN_SECONDS,
            true,
        )
        .map_err(at("[usb] rescan_seconds"))?;
        if !(1..=MAX_LOGIN_WINDOW_SECONDS).contains(&self.api.activation_window_seconds) {
            return Err((
                "[api] activation_window_seconds",
                format!(
                    "must be a whole number between 1 and {MAX_LOGIN_WINDOW_SECONDS}, got {}",
                    self.api.activation_window_seconds
                ),
            ));
        }
        check_count(self.api.max_failed_activations as usize, 1, 1_000_000)
            .map_err(at("[api] max_failed_activations"))?;
        check_count(self.api.activation_table_size, 1, MAX_LEASE_CAP)
            .map_err(at("[api] activation_table_size"))?;
        if self.api.login_window_seconds > MAX_LOGIN_WINDOW_SECONDS {
            return Err((
                "[api] login_window_seconds",
                format!(
                    "must be a whole number between 0 and {MAX_LOGIN_WINDOW_SECONDS}, got {}",
                    self.api.login_window_seconds
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, String> {
        let d = tempfile::tempdir().map_err(|e| e.to_string())?;
        let p = d.path().join("k.toml");
        std::fs::write(&p, text).map_err(|e| e.to_string())?;
        Config::load(&p, true).map_err(|e| e.to_string())
    }

    #[test]
    fn environment_variables_cover_every_key_and_name_themselves() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("k.toml");
        std::fs::write(&p, "[leases]\nsession_seconds = 10\n").expect("write");
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |v: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == v)
                    .map(|(_, x)| (*x).to_owned())
            }
        };
        let c = Config::load_with(
            &p,
            true,
            env(&[
                ("KEYBRIDGE_LEASES_SESSION_SECONDS", "2.5"),
                ("KEYBRIDGE_API_USER", "1234"),
                ("KEYBRIDGE_USB_ENABLED", "false"),
                ("KEYBRIDGE_HTTP_ALLOWED_HOSTS", "a.example, b.example"),
                ("KEYBRIDGE_LISTEN", "127.0.0.1:9"),
            ]),
        )
        .expect("loads");
        assert_eq!(c.leases.session_seconds, 2.5);
        assert_eq!(c.api.user, "1234");
        assert!(!c.usb.enabled);
        assert_eq!(c.http.allowed_hosts, ["a.example", "b.example"]);
        assert_eq!(c.listen, Some(SocketAddr::from(([127, 0, 0, 1], 9))));
        let e = Config::load_with(&p, true, env(&[("KEYBRIDGE_MEMORY_MAX_FAILURES", "many")]))
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains("KEYBRIDGE_MEMORY_MAX_FAILURES ([memory] max_failures)"),
            "{e}"
        );
        let e = Config::load_with(
            &p,
            true,
            env(&[("KEYBRIDGE_LEASES_SESSION_SECONDS", "nan")]),
        )
        .expect_err("refused")
        .to_string();
        // From the environment: no line of the file to name.
        assert!(e.contains("[leases] session_seconds: must be"), "{e}");
    }

    /// The keys serde accepts, read off its own "unknown field … expected one of" message.
    fn accepted(section: &str) -> Vec<String> {
        let doc = if section.is_empty() {
            "zz_unknown = 1\n".to_owned()
        } else {
            format!("[{section}]\nzz_unknown = 1\n")
        };
        let e = toml::from_str::<Config>(&doc)
            .expect_err("unknown key refused")
            .to_string();
        let list = e.split("expected").nth(1).unwrap_or_else(|| panic!("{e}"));
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_key_table_is_every_key_the_config_accepts() {
        let mut from_serde = Vec::new();
        for top in accepted("") {
            let nested = format!("[{top}]\nzz_unknown = 1\n");
            if toml::from_str::<Config>(&nested)
                .expect_err("refused")
                .to_string()
                .contains("unknown field")
            {
                from_serde.extend(accepted(&top).into_iter().map(|k| format!("[{top}] {k}")));
            } else {
                from_serde.push(top);
            }
        }
        let mut table: Vec<String> = KEYS.iter().map(Key::dotted).collect();
        from_serde.sort();
        table.sort();
        assert_eq!(table, from_serde);
        assert!(from_serde.len() > 30);
    }

    #[test]
    fn lines_of_keys_are_found() {
        let text = "listen = \"x\"\n\n[api]\nuser = \"a\"\n[leases]\n  session_seconds = nan\n";
        assert_eq!(line_of(text, "listen"), Some(1));
        assert_eq!(line_of(text, "[api] user"), Some(4));
        assert_eq!(line_of(text, "[leases] session_seconds"), Some(6));
        assert_eq!(line_of(text, "[memory] lock_seconds"), None);
    }

    #[test]
    fn nonsense_numbers_name_their_key() {
        for (text, key, got) in [
            (
                "[leases]\nsession_seconds = nan\n",
                "[leases] session_seconds",
                "NaN",
            ),
            (
                "[leases]\nsession_seconds = -1\n",
                "[leases] session_seconds",
                "-1.0",
            ),
            (
                "[leases]\nsession_seconds = 0.01\n",
                "[leases] session_seconds",
                "0.01",
            ),
            (
                "[leases]\nsession_seconds = inf\n",
                "[leases] session_seconds",
                "inf",
            ),
            (
                "[usb]\nrescan_seconds = 1e300\n",
                "[usb] rescan_seconds",
                "1e300",
            ),
            (
                "[usb]\nrescan_seconds = -0.5\n",
                "[usb] rescan_seconds",
                "-0.5",
            ),
            (
                "[memory]\nlock_seconds = -inf\n",
                "[memory] lock_seconds",
                "-inf",
            ),
            (
                "[memory]\nlock_seconds = nan\n",
                "[memory] lock_seconds",
                "NaN",
            ),
            (
                "[api]\nlogin_window_seconds = 99999999999\n",
                "[api] login_window_seconds",
                "99999999999",
            ),
            (
                "[api]\nactivation_window_seconds = 0\n",
                "[api] activation_window_seconds",
                "0",
            ),
            (
                "[api]\nmax_failed_activations = 0\n",
                "[api] max_failed_activations",
                "0",
            ),
            (
                "[api]\nactivation_table_size = 0\n",
                "[api] activation_table_size",
                "0",
            ),
        ] {
            let e = load(text).expect_err(text);
            assert!(
                e.contains(&format!("k.toml: {key}: must be")),
                "{text}: {e}"
            );
            assert!(e.ends_with(&format!("got {got} (line 2)")), "{text}: {e}");
        }
    }

    #[test]
    fn sensible_numbers_load() {
        let c = load(
            "[leases]\nsession_seconds = 2\nmax_sessions = 3\n[usb]\nrescan_seconds = 0\n\
             [memory]\nlock_seconds = 0\n",
        )
        .expect("valid");
        let p = c.leases.session();
        assert_eq!(
            (p.session, p.max_sessions, p.max_connections),
            (
                Duration::from_secs(2),
                3,
                crate::host::DEFAULT_MAX_CONNECTIONS
            )
        );
        assert_eq!(c.usb.rescan(), None);
        assert_eq!(c.memory.policy().lock_for, Duration::ZERO);
        // A config built in code with nonsense still gives durations, never a panic.
        let mut odd = Config::default();
        odd.leases.session_seconds = f64::NAN;
        odd.usb.rescan_seconds = 1e300;
        assert_eq!(odd.leases.session().session, Duration::from_secs(300));
        assert_eq!(odd.usb.rescan(), Some(Duration::from_secs(86_400)));
    }
}
