//! `keybridge centre …`: run the licensing centre, and administer it on its own machine.

use super::CliResult;
use crate::centre::accounts::admin::{self, AccountBody, DefinitionBody, MemberBody, ServantBody};
use crate::centre::http::{self, CentreState, CodeBody, ProductBody, ProofLimits};
use crate::centre::releases::{ReleaseMeta, ReleaseSettings};
use crate::centre::{self, wire, Centre};
use crate::crypto::password::PasswordHash;
use crate::crypto::{CentreResponseKey, LicenceKey};
use crate::store::keyfile;
use crate::web::login::Auth;
use crate::web::{server, tls};
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_CENTRE_LISTEN: &str = "127.0.0.1:9100";
/// The licence-issuing key (its name predates the response key, and hosts trust it already).
pub const LICENCE_KEY_FILE: &str = "centre-key.pem";
/// The key that signs the centre's HTTP answers.
pub const RESPONSE_KEY_FILE: &str = "centre-response-key.pem";

#[derive(Args, Clone)]
pub struct CentreData {
    /// Centre data directory: its signing key and, by default, its SQLite database.
    #[arg(
        long,
        env = "KEYBRIDGE_CENTRE_DATA",
        value_name = "DIR",
        default_value = "/var/lib/keybridge-centre"
    )]
    pub data: PathBuf,
    /// Database URL: `postgres://user@host/db`, or `sqlite:///path` [default: centre.db in the data directory]
    #[arg(long, env = "KEYBRIDGE_CENTRE_DATABASE", value_name = "URL")]
    pub database: Option<String>,
    /// Where release files are stored, once each under their SHA-256; centres sharing a
    /// PostgreSQL database must share it too [default: releases in the data directory].
    #[arg(long, env = "KEYBRIDGE_CENTRE_RELEASES_DIR", value_name = "DIR")]
    pub releases_dir: Option<PathBuf>,
}

/// How the centre serves releases (`docs/releases.md`).
#[derive(Args, Clone)]
pub struct ReleaseArgs {
    /// Seconds a download link from the release list stays valid.
    #[arg(long, env = "KEYBRIDGE_CENTRE_RELEASE_LINK_TTL_SECONDS", value_name = "SECONDS",
          default_value_t = ReleaseSettings::DEFAULT_LINK_TTL.as_secs())]
    pub release_link_ttl_seconds: u64,
    /// Largest release upload (`POST /centre/v1/releases`, the whole multipart body), in bytes.
    #[arg(long, env = "KEYBRIDGE_CENTRE_RELEASE_MAX_UPLOAD_BYTES", value_name = "BYTES",
          default_value_t = ReleaseSettings::DEFAULT_MAX_UPLOAD)]
    pub release_max_upload_bytes: u64,
    /// Seconds a release upload may take, from its head to the answer.
    #[arg(long, env = "KEYBRIDGE_CENTRE_RELEASE_UPLOAD_TIMEOUT_SECONDS", value_name = "SECONDS",
          default_value_t = ReleaseSettings::DEFAULT_UPLOAD_TIMEOUT.as_secs())]
    pub release_upload_timeout_seconds: u64,
    /// The centre's URL as customers reach it (e.g. https://centre.example), for the download
    /// links of the release list; without it they are built from the request's Host header.
    #[arg(long, env = "KEYBRIDGE_CENTRE_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
}

#[derive(Subcommand)]
pub enum CentreCommand {
    /// Run the centre's HTTP service.
    Serve {
        #[arg(long, env = "KEYBRIDGE_CENTRE_LISTEN", default_value = DEFAULT_CENTRE_LISTEN)]
        listen: SocketAddr,
        /// Hash of the vendor's admin password (`keybridge auth hash`); absent means admin/admin,
        /// which is refused on a non-loopback address.
        #[arg(long, env = "KEYBRIDGE_CENTRE_ADMIN_HASH")]
        admin_password_hash: Option<String>,
        /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key.
        #[arg(
            long,
            env = "KEYBRIDGE_CENTRE_TLS_CERT",
            value_name = "FILE",
            requires = "tls_key"
        )]
        tls_cert: Option<PathBuf>,
        /// The private key (PEM) of --tls-cert.
        #[arg(
            long,
            env = "KEYBRIDGE_CENTRE_TLS_KEY",
            value_name = "FILE",
            requires = "tls_cert"
        )]
        tls_key: Option<PathBuf>,
        /// Allow plain HTTP on a non-loopback address (behind a TLS-terminating proxy, say).
        /// Deliberately a flag only, with no environment variable.
        #[arg(long)]
        insecure_http: bool,
        /// A host name the centre answers to in the `Host` header besides IP addresses and
        /// localhost (repeatable). Without --admin-password-hash only those are answered (a
        /// guard against DNS rebinding); with it, any name unless this is given.
        #[arg(
            long = "allowed-host",
            env = "KEYBRIDGE_CENTRE_ALLOWED_HOSTS",
            value_delimiter = ',',
            value_name = "NAME"
        )]
        allowed_host: Vec<String>,
        #[command(flatten)]
        http: CentreHttpArgs,
        #[command(flatten)]
        data: CentreData,
        #[command(flatten)]
        proofs: ProofArgs,
        #[command(flatten)]
        accounts: AccountApiArgs,
        #[command(flatten)]
        releases: ReleaseArgs,
    },
    /// Add a product series.
    ProductAdd {
        #[command(flatten)]
        product: ProductBody,
        #[command(flatten)]
        data: CentreData,
    },
    /// Issue an activation code for a product.
    CodeIssue {
        #[command(flatten)]
        code: CodeBody,
        #[command(flatten)]
        data: CentreData,
    },
    /// Change the validity (days from activation) a code grants; hosts get it on update.
    CodeExtend {
        #[arg(long)]
        code: String,
        #[arg(long)]
        period_days: u32,
        #[command(flatten)]
        data: CentreData,
    },
    /// Turn an offline activation request (`keybridge licence request`) into a licence file,
    /// under the same rules as an online activation.
    Fulfil {
        /// The request file.
        request: PathBuf,
        /// Where to write the licence file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        data: CentreData,
    },
    /// Move a licence to another machine or USB key (the vendor's restore, e.g. for a licence
    /// activated without an ITN or a broken key); counted as a restore, without a limit. Writes
    /// the new licence file for the customer.
    LicenceMove {
        #[arg(long)]
        key_id: String,
        #[arg(long)]
        key_no: u64,
        /// The new ComputerID…
        #[arg(long, conflicts_with = "device", required_unless_present = "device")]
        computer: Option<String>,
        /// …or the new USB key's serial.
        #[arg(long)]
        device: Option<u64>,
        /// Where to write the licence file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        data: CentreData,
    },
    /// List activation codes and their state.
    CodeList(CentreData),
    /// Create a customer account with its first owner (a new service user, whose password is
    /// generated and printed unless given, or an existing one); prints the account as JSON.
    AccountAdd {
        #[command(flatten)]
        account: AccountBody,
        #[command(flatten)]
        data: CentreData,
    },
    /// List the customer accounts.
    AccountList(CentreData),
    /// List an account's licences (where each is bound) and its unused codes.
    AccountLicences {
        /// The account's code.
        id: u64,
        #[command(flatten)]
        data: CentreData,
    },
    /// Attach a service user to an account (created if new), optionally until a date.
    AccountUserAdd {
        /// The account's code.
        #[arg(long)]
        account: u64,
        #[command(flatten)]
        member: MemberBody,
        #[command(flatten)]
        data: CentreData,
    },
    /// Make an account a servicing organisation (or change its settings).
    ServantAdd {
        #[command(flatten)]
        servant: ServantBody,
        #[command(flatten)]
        data: CentreData,
    },
    /// Have a servicing organisation serve an account.
    ServantServe {
        /// The served account's code.
        #[arg(long)]
        account: u64,
        /// The servicing organisation's code.
        #[arg(long)]
        servant: u64,
        #[command(flatten)]
        data: CentreData,
    },
    /// Publish (or replace) a servicing organisation's tariff from a JSON file shaped like
    /// `account/servant_tariffs/info`'s `servant_tariff` (docs/accounts.md).
    TariffAdd {
        /// The servicing organisation's code.
        #[arg(long)]
        servant: u64,
        /// The tariff (JSON).
        file: PathBuf,
        #[command(flatten)]
        data: CentreData,
    },
    /// Define an additional attribute or property accounts or their users may carry.
    AttachedDefine {
        #[command(flatten)]
        definition: DefinitionBody,
        #[command(flatten)]
        data: CentreData,
    },
    /// Set a service user's password (from KEYBRIDGE_USER_PASSWORD, or generated and printed).
    UserPassword {
        /// The user's login.
        login: String,
        #[command(flatten)]
        data: CentreData,
    },
    /// Publish a release of a distribution with its files (`docs/releases.md`).
    ReleaseAdd {
        #[command(flatten)]
        release: Box<ReleaseMeta>,
        /// A file of the release (repeatable; the first is its main distribution).
        #[arg(long = "file", value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        data: CentreData,
    },
    /// List releases with their download counts.
    ReleaseList(CentreData),
    /// Withdraw a release: no longer listed, its download links refused.
    ReleaseWithdraw {
        #[arg(long)]
        release_id: u64,
        #[command(flatten)]
        data: CentreData,
    },
    /// Stop an activation code (KEY) from listing and downloading releases.
    ReleaseKeyRevoke {
        #[arg(long)]
        code: String,
        #[command(flatten)]
        data: CentreData,
    },
    /// Print the centre's public licence key (PEM): hosts trust licences signed by it. With
    /// --response, the key that signs the centre's HTTP answers (`[centre] response_key`).
    KeyPublic {
        #[arg(long)]
        response: bool,
        #[command(flatten)]
        data: CentreData,
    },
}

/// The account API (`docs/accounts.md`).
#[derive(Args, Clone)]
pub struct AccountApiArgs {
    /// Where the Service Manager account API is served.
    #[arg(
        long,
        env = "KEYBRIDGE_CENTRE_ACCOUNT_API_PATH",
        value_name = "PATH",
        default_value = centre::accounts::http::DEFAULT_BASE
    )]
    pub account_api_path: String,
    /// Failed service-user logins allowed per client address within the window; more get
    /// 10429.
    #[arg(
        long,
        env = "KEYBRIDGE_CENTRE_ACCOUNT_MAX_FAILED_LOGINS",
        default_value_t = 10
    )]
    pub account_max_failed_logins: u32,
    #[arg(
        long,
        env = "KEYBRIDGE_CENTRE_ACCOUNT_LOGIN_WINDOW_SECONDS",
        default_value_t = 600
    )]
    pub account_login_window_seconds: u64,
}

/// Prints an administration answer as JSON.
fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// Limits on proofs and attestation challenges (`docs/centre.md`, "Proofs and throttling").
#[derive(Args, Clone)]
pub struct ProofArgs {
    /// Failed proofs (unknown code; wrong code, ITN or IEC for a licence; an activated code
    /// from another binding) allowed per client address and per activation code within the
    /// window; more get 429.
    #[arg(
        long,
        env = "KEYBRIDGE_CENTRE_PROOF_MAX_FAILURES",
        default_value_t = 10
    )]
    pub proof_max_failures: u32,
    #[arg(
        long,
        env = "KEYBRIDGE_CENTRE_PROOF_WINDOW_SECONDS",
        default_value_t = 600
    )]
    pub proof_window_seconds: u64,
    /// Most client addresses, and most activation codes, the failure tables track at once;
    /// when full of failing entries, new ones proceed untracked (logged) rather than old ones
    /// being forgotten or everyone refused. Also bounds the challenge table (full: 429).
    #[arg(
        long,
        env = "KEYBRIDGE_CENTRE_THROTTLE_CAPACITY",
        default_value_t = 10_000
    )]
    pub throttle_capacity: usize,
    /// Attestation challenges one client address may ask for per minute.
    #[arg(
        long,
        env = "KEYBRIDGE_CENTRE_CHALLENGES_PER_MINUTE",
        default_value_t = 30
    )]
    pub challenges_per_minute: u32,
    /// How long an attestation challenge stays valid.
    #[arg(
        long,
        env = "KEYBRIDGE_CENTRE_CHALLENGE_TTL_SECONDS",
        default_value_t = 300
    )]
    pub challenge_ttl_seconds: u64,
    /// Most attestation challenges outstanding at once; beyond it, 503 `challenges_full`.
    #[arg(long, env = "KEYBRIDGE_CENTRE_MAX_CHALLENGES", default_value_t = centre::MAX_CHALLENGES)]
    pub max_challenges: u64,
    /// Most attestation challenges outstanding for one activation code; beyond it, 429.
    #[arg(long, env = "KEYBRIDGE_CENTRE_CHALLENGES_PER_CODE", default_value_t = centre::MAX_CHALLENGES_PER_CODE)]
    pub challenges_per_code: u64,
}

impl ProofArgs {
    fn limits(&self) -> ProofLimits {
        ProofLimits {
            max_failures: self.proof_max_failures,
            window: Duration::from_secs(self.proof_window_seconds.max(1)),
            capacity: self.throttle_capacity,
            max_challenges_per_client: self.challenges_per_minute,
            challenge_window: Duration::from_secs(60),
        }
    }
}

impl CentreData {
    fn url(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| centre::sqlite_url(&self.data.join("centre.db")))
    }

    /// The folder of trusted USB key manufacturers' public keys (`*.pem`).
    fn manufacturers(&self) -> PathBuf {
        self.data.join("manufacturers")
    }

    fn release_settings(&self) -> ReleaseSettings {
        ReleaseSettings::new(
            self.releases_dir
                .clone()
                .unwrap_or_else(|| self.data.join("releases")),
        )
    }

    async fn open(&self) -> Result<Centre, String> {
        self.open_with(self.release_settings()).await
    }

    async fn open_with(&self, releases: ReleaseSettings) -> Result<Centre, String> {
        // Private keys and (by default) every unused activation code live here.
        centre::ensure_private_dir(&self.data)
            .map_err(|e| format!("{}: {e}", self.data.display()))?;
        crate::store::atomic::ensure_dir(&self.manufacturers()).map_err(|e| e.to_string())?;
        let key = keyfile::load_or_create(&self.data.join(LICENCE_KEY_FILE))
            .map_err(|e| e.to_string())?;
        let centre = Centre::open(&self.url(), LicenceKey::new(key))
            .await
            .map_err(|e| e.to_string())?
            .enable_releases(releases)
            .await
            .map_err(|e| e.to_string())?;
        Ok(centre.with_manufacturers(self.manufacturers()))
    }

    /// The key that signs the centre's HTTP answers (never licences).
    fn response_key(&self) -> Result<CentreResponseKey, String> {
        keyfile::load_or_create(&self.data.join(RESPONSE_KEY_FILE))
            .map(CentreResponseKey::new)
            .map_err(|e| e.to_string())
    }
}

/// Publishes a release from local files, streamed through the same store as an upload.
pub async fn add_release(
    centre: &Centre,
    meta: &ReleaseMeta,
    files: &[PathBuf],
) -> Result<u64, String> {
    use tokio::io::AsyncReadExt;
    centre
        .check_release(meta)
        .await
        .map_err(|e| e.to_string())?;
    let store = &centre.releases().map_err(|e| e.to_string())?.store;
    let mut staged = Vec::with_capacity(files.len());
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| centre::releases::file_name_ok(n))
            .ok_or_else(|| format!("{}: not a usable file name", path.display()))?
            .to_owned();
        let mut f = tokio::fs::File::open(path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut s = store.stage().await.map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f
                .read(&mut buf)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            s.write(axum::body::Bytes::copy_from_slice(&buf[..n]))
                .await
                .map_err(|e| e.to_string())?;
        }
        staged.push(s.finish(name).await.map_err(|e| e.to_string())?);
    }
    centre
        .publish_release(meta, staged)
        .await
        .map_err(|e| e.to_string())
}

/// Logs to stderr, colourless unless it is a terminal; `RUST_LOG` filters, else `default`.
/// Warnings — an unverified PostgreSQL connection, failed proofs — must reach the operator
/// from `centre serve` and the administration commands alike.
fn init_logging(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // A second initialisation (tests calling `run` twice) keeps the first.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Licence files carry their activation code, ITN and IEC: the vendor's copies are written
/// for the vendor's user alone, to be handed to the customer deliberately.
const LICENCE_OUT_MODE: u32 = 0o600;

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Largest request body the centre reads by default (its JSON requests are a few KiB).
pub const DEFAULT_CENTRE_MAX_BODY: usize = 1024 * 1024;

/// How the centre's HTTP server bounds connections and requests (`web::server`); the same
/// defaults as the host's `[http]` section.
#[derive(Args, Clone, Debug)]
pub struct CentreHttpArgs {
    /// Seconds a client has to send a request's head, from when the server starts waiting.
    #[arg(long, env = "KEYBRIDGE_CENTRE_HEADER_TIMEOUT_SECONDS", value_name = "SECONDS",
          default_value_t = server::DEFAULT_HEADER_TIMEOUT)]
    header_timeout_seconds: f64,
    /// Seconds to receive the rest of a request and answer it; then a signed 408.
    #[arg(long, env = "KEYBRIDGE_CENTRE_REQUEST_TIMEOUT_SECONDS", value_name = "SECONDS",
          default_value_t = server::DEFAULT_REQUEST_TIMEOUT)]
    request_timeout_seconds: f64,
    /// Seconds a connection may sit with no request in progress and no byte moving.
    #[arg(long, env = "KEYBRIDGE_CENTRE_IDLE_TIMEOUT_SECONDS", value_name = "SECONDS",
          default_value_t = server::DEFAULT_IDLE_TIMEOUT)]
    idle_timeout_seconds: f64,
    /// Seconds a TLS handshake may take.
    #[arg(long, env = "KEYBRIDGE_CENTRE_TLS_HANDSHAKE_TIMEOUT_SECONDS", value_name = "SECONDS",
          default_value_t = server::DEFAULT_TLS_HANDSHAKE_TIMEOUT)]
    tls_handshake_timeout_seconds: f64,
    /// Connections at once; never more than RLIMIT_NOFILE less --fd-reserve.
    #[arg(long, env = "KEYBRIDGE_CENTRE_MAX_CONNECTIONS", value_name = "N",
          default_value_t = server::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// File descriptors kept for the database and files.
    #[arg(long, env = "KEYBRIDGE_CENTRE_FD_RESERVE", value_name = "N",
          default_value_t = server::DEFAULT_FD_RESERVE)]
    fd_reserve: u64,
    /// Seconds a shutdown waits for requests in progress.
    #[arg(long, env = "KEYBRIDGE_CENTRE_SHUTDOWN_TIMEOUT_SECONDS", value_name = "SECONDS",
          default_value_t = server::DEFAULT_SHUTDOWN_TIMEOUT)]
    shutdown_timeout_seconds: f64,
    /// Largest request body, in bytes.
    #[arg(long, env = "KEYBRIDGE_CENTRE_MAX_BODY_BYTES", value_name = "BYTES",
          default_value_t = DEFAULT_CENTRE_MAX_BODY)]
    max_body_bytes: usize,
}

impl CentreHttpArgs {
    fn limits(&self) -> Result<CentreLimits, String> {
        let s = |flag: &str, v: f64| server::seconds(&format!("--{flag}"), v);
        if self.max_connections == 0 || self.max_body_bytes == 0 {
            return Err("--max-connections and --max-body-bytes must be at least 1".into());
        }
        let request_timeout = s("request-timeout-seconds", self.request_timeout_seconds)?;
        Ok(CentreLimits {
            server: server::Limits {
                header_timeout: s("header-timeout-seconds", self.header_timeout_seconds)?,
                request_timeout,
                idle_timeout: s("idle-timeout-seconds", self.idle_timeout_seconds)?,
                tls_handshake_timeout: s(
                    "tls-handshake-timeout-seconds",
                    self.tls_handshake_timeout_seconds,
                )?,
                max_connections: self.max_connections,
                fd_reserve: self.fd_reserve,
                shutdown_timeout: s("shutdown-timeout-seconds", self.shutdown_timeout_seconds)?,
            },
            request: server::RequestLimits {
                timeout: request_timeout,
                max_body: Some(self.max_body_bytes),
                hosts: Default::default(),
            },
        })
    }
}

/// The centre's connection limits and per-request limits.
#[derive(Debug, Clone)]
pub struct CentreLimits {
    pub server: server::Limits,
    pub request: server::RequestLimits,
}

impl Default for CentreLimits {
    fn default() -> Self {
        let server = server::Limits::default();
        CentreLimits {
            request: server::RequestLimits {
                timeout: server.request_timeout,
                max_body: Some(DEFAULT_CENTRE_MAX_BODY),
                hosts: Default::default(),
            },
            server,
        }
    }
}

/// Serves a centre on `listener` until `shutdown` resolves (and its connections drain).
pub async fn serve_centre(
    state: Arc<CentreState>,
    listener: tokio::net::TcpListener,
    tls: server::Tls,
    limits: CentreLimits,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let app = http::router(state, limits.request);
    server::serve(listener, app, tls, limits.server, shutdown).await;
}

pub fn run(cmd: CentreCommand) -> CliResult {
    // The service logs what it does; an administration command only what is wrong (its
    // stdout is often read by scripts). PostgreSQL's notices ("already exists, skipping")
    // are noise either way.
    init_logging(match cmd {
        CentreCommand::Serve { .. } => "info,sqlx::postgres::notice=warn",
        _ => "warn",
    });
    let rt = runtime()?;
    let done = rt.block_on(async move {
        match cmd {
            CentreCommand::Serve { listen, admin_password_hash, tls_cert, tls_key, insecure_http, allowed_host, http, data, proofs, accounts, releases } => {
                centre::accounts::http::check_base(&accounts.account_api_path)?;
                if admin_password_hash.is_none() && !listen.ip().is_loopback() {
                    return Err(format!(
                        "refusing to listen on {listen} with the default admin password; pass --admin-password-hash"
                    ));
                }
                let mut limits = http.limits()?;
                limits.request.hosts = server::AllowedHosts::new(
                    admin_password_hash.is_none(),
                    &allowed_host,
                    if allowed_host.is_empty() {
                        "with the default admin password only IP addresses and localhost are answered (a guard against DNS rebinding); pass --admin-password-hash, or --allowed-host NAME"
                    } else {
                        "only IP addresses, localhost and the --allowed-host names are answered"
                    },
                )
                .map_err(|e| format!("--allowed-host: {e}"))?;
                let tls = match (&tls_cert, &tls_key) {
                    (Some(cert), Some(key)) => Some(tls::acceptor(cert, key).map_err(|e| format!("TLS: {e}"))?),
                    (None, None) => None,
                    _ => return Err("--tls-cert and --tls-key must be given together".into()),
                };
                if tls.is_none() && !listen.ip().is_loopback() {
                    if !insecure_http {
                        return Err(format!(
                            "refusing to serve plain HTTP on {listen}: activation codes, admin passwords and licences \
                             would cross the network unencrypted; give --tls-cert and --tls-key, or --insecure-http \
                             if a TLS-terminating proxy in front of the centre encrypts the traffic"
                        ));
                    }
                    tracing::warn!("serving plain HTTP on {listen} (--insecure-http)");
                }
                let hash = match admin_password_hash {
                    Some(h) => PasswordHash::parse(&h).map_err(|e| e.to_string())?,
                    None => PasswordHash::new("admin"),
                };
                let mut settings = data.release_settings();
                settings.link_ttl = Duration::from_secs(releases.release_link_ttl_seconds.max(1));
                settings.max_upload = releases.release_max_upload_bytes.max(1);
                settings.upload_timeout = Duration::from_secs(releases.release_upload_timeout_seconds.max(1));
                settings.scheme = if tls.is_some() { "https" } else { "http" };
                if let Some(u) = &releases.public_url {
                    if !(u.starts_with("https://") || u.starts_with("http://")) || u.contains(['?', '#', ' ']) {
                        return Err("--public-url must be an http(s) URL without query or fragment".into());
                    }
                }
                settings.public_url = releases.public_url.clone();
                let centre = data.open_with(settings).await?.with_challenge_limits(
                    Duration::from_secs(proofs.challenge_ttl_seconds.max(1)),
                    proofs.max_challenges,
                )
                .with_challenges_per_code(proofs.challenges_per_code);
                let listener = server::bind(listen).await?;
                let local = listener.local_addr().map_err(|e| e.to_string())?;
                let scheme = if tls.is_some() { "https" } else { "http" };
                println!("keybridge centre listening on {scheme}://{local}/centre/v1 (data: {})", data.data.display());
                use std::io::Write;
                let _ = std::io::stdout().flush();
                let admin = Auth::new("admin".into(), hash, 10, Duration::from_secs(60));
                let response_key = Arc::new(data.response_key()?);
                let state = Arc::new(
                    CentreState::with_limits(centre, admin, response_key, proofs.limits()).with_accounts(
                        accounts.account_api_path.clone(),
                        crate::web::login::LoginLimits::new(
                            accounts.account_max_failed_logins.max(1),
                            Duration::from_secs(accounts.account_login_window_seconds.max(1)),
                        ),
                    ),
                );
                serve_centre(state, listener, tls, limits, server::shutdown_signal()).await;
            }
            CentreCommand::ProductAdd { product, data } => {
                data.open().await?.add_product(&product.to_product()).await.map_err(|e| e.to_string())?;
                println!("product {} added", product.key_id);
            }
            CentreCommand::CodeIssue { code, data } => {
                let spec = code.to_spec()?;
                let code = data.open().await?.issue_code(&spec).await.map_err(|e| e.to_string())?;
                println!("{code}");
            }
            CentreCommand::CodeExtend { code, period_days, data } => {
                let code = centre::ActivationCode::parse(&code).map_err(|e| e.to_string())?;
                data.open().await?.set_period(&code, period_days).await.map_err(|e| e.to_string())?;
                println!("code {code} now grants {period_days} day(s)");
            }
            CentreCommand::Fulfil { request, out, data } => {
                let text = std::fs::read(&request).map_err(|e| format!("{}: {e}", request.display()))?;
                let r: wire::OfflineRequest = serde_json::from_slice(&text)
                    .map_err(|e| format!("{}: not an activation request: {e}", request.display()))?;
                if r.format != wire::REQUEST_FORMAT {
                    return Err(format!("{}: format {:?}, expected {:?}", request.display(), r.format, wire::REQUEST_FORMAT));
                }
                // The vendor's own path: the USB key's proof answers the request-bound challenge.
                let req = centre::ActivationRequest::from_offline(&r.activation)?;
                let (terms, doc) = data.open().await?.activate(&req).await.map_err(|e| e.to_string())?;
                crate::store::atomic::write(&out, &doc, LICENCE_OUT_MODE).map_err(|e| e.to_string())?;
                println!("licence {}.{} for {} written to {}", terms.key_id, terms.key_no, terms.binding, out.display());
            }
            CentreCommand::LicenceMove { key_id, key_no, computer, device, out, data } => {
                let binding = match (computer, device) {
                    (Some(c), _) => crate::licence::Binding::Computer(c),
                    (None, Some(d)) => crate::licence::Binding::Device(d),
                    (None, None) => return Err("--computer or --device is required".into()),
                };
                let (terms, doc) = data.open().await?.move_licence(&key_id, key_no, &binding).await.map_err(|e| e.to_string())?;
                crate::store::atomic::write(&out, &doc, LICENCE_OUT_MODE).map_err(|e| e.to_string())?;
                println!("licence {}.{} moved to {}; written to {}", terms.key_id, terms.key_no, terms.binding, out.display());
            }
            CentreCommand::CodeList(data) => {
                for c in data.open().await?.list_codes().await.map_err(|e| e.to_string())? {
                    // The state stays the last column: scripts look for lines ending in "new".
                    let account = c.account.map_or("-".to_owned(), |a| format!("account {a}"));
                    match &c.activation {
                        None => println!("{}\t{}\t{}\t{account}\tnew", c.code, c.key_id, c.licence_count),
                        Some(a) => println!(
                            "{}\t{}\t{}\t{account}\tactivated {} as KeyNo {} on {}, restored {} time(s)",
                            c.code, c.key_id, c.licence_count, crate::time::format(&a.activated), a.key_no, a.binding, a.restores
                        ),
                    }
                }
            }
            CentreCommand::AccountAdd { account, data } => {
                print_json(&admin::add_account(&data.open().await?, &account).await.map_err(|e| e.to_string())?);
            }
            CentreCommand::AccountList(data) => {
                print_json(&admin::list(&data.open().await?).await.map_err(|e| e.to_string())?);
            }
            CentreCommand::AccountLicences { id, data } => {
                print_json(&admin::licences(&data.open().await?, id).await.map_err(|e| e.to_string())?);
            }
            CentreCommand::AccountUserAdd { account, member, data } => {
                print_json(&admin::add_member(&data.open().await?, account, &member).await.map_err(|e| e.to_string())?);
            }
            CentreCommand::ServantAdd { servant, data } => {
                print_json(&admin::add_servant(&data.open().await?, &servant).await.map_err(|e| e.to_string())?);
            }
            CentreCommand::ServantServe { account, servant, data } => {
                data.open().await?.add_served(account, servant).await.map_err(|e| e.to_string())?;
                println!("account {account} is served by {servant}");
            }
            CentreCommand::TariffAdd { servant, file, data } => {
                let text = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                let t: centre::accounts::store::Tariff = serde_json::from_slice(&text)
                    .map_err(|e| format!("{}: not a tariff: {e}", file.display()))?;
                print_json(&admin::add_tariff(&data.open().await?, servant, &t).await.map_err(|e| e.to_string())?);
            }
            CentreCommand::AttachedDefine { definition, data } => {
                print_json(&admin::define(&data.open().await?, &definition).await.map_err(|e| e.to_string())?);
            }
            CentreCommand::UserPassword { login, data } => {
                let body = admin::PasswordBody { password: std::env::var("KEYBRIDGE_USER_PASSWORD").ok() };
                print_json(&admin::reset_password(&data.open().await?, &login, &body).await.map_err(|e| e.to_string())?);
            }
            CentreCommand::ReleaseAdd { release, files, data } => {
                let centre = data.open().await?;
                let id = add_release(&centre, &release, &files).await?;
                println!("release {id}: {} {} published", release.type_, release.version);
            }
            CentreCommand::ReleaseList(data) => {
                for r in data.open().await?.list_releases().await.map_err(|e| e.to_string())? {
                    let state = match &r.withdrawn {
                        Some(w) => format!("withdrawn {w}"),
                        None => "listed".into(),
                    };
                    println!(
                        "{}\t{}\t{}\t{}\t{}\tpublished {}\t{}\t{} download(s)",
                        r.release_id, r.type_, r.version, r.lic_product_id, r.name, r.published, state, r.downloads
                    );
                    for f in &r.files {
                        println!("\t{}\t{} bytes\tmd5 {}\tsha256 {}", f.name, f.size, f.md5, f.sha256);
                    }
                }
            }
            CentreCommand::ReleaseWithdraw { release_id, data } => {
                let when = data.open().await?.withdraw_release(release_id).await.map_err(|e| e.to_string())?;
                println!("release {release_id} withdrawn {}", crate::time::format(&when));
            }
            CentreCommand::ReleaseKeyRevoke { code, data } => {
                let code = centre::ActivationCode::parse(&code).map_err(|e| e.to_string())?;
                data.open().await?.revoke_release_key(&code).await.map_err(|e| e.to_string())?;
                println!("code {} no longer lists releases", code.redacted());
            }
            CentreCommand::KeyPublic { response, data } => {
                if response {
                    print!("{}", data.response_key()?.public_key().pem());
                } else {
                    print!("{}", data.open().await?.licence_key().public_key().pem());
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    });
    // Blocking work still running after the server stopped does not hold up the exit.
    rt.shutdown_timeout(Duration::from_millis(500));
    done
}
