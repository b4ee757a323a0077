//! `keybridge centre …`: run the licensing centre, and administer it on its own machine.

use super::CliResult;
use crate::centre::http::{self, CentreState, CodeBody, ProductBody, ProofLimits};
use crate::centre::{self, wire, Centre};
use crate::crypto::password::PasswordHash;
use crate::crypto::{CentreResponseKey, LicenceKey};
use crate::store::keyfile;
use crate::web::login::Auth;
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
        #[command(flatten)]
        data: CentreData,
        #[command(flatten)]
        proofs: ProofArgs,
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
    /// Print the centre's public licence key (PEM): hosts trust licences signed by it. With
    /// --response, the key that signs the centre's HTTP answers (`[centre] response_key`).
    KeyPublic {
        #[arg(long)]
        response: bool,
        #[command(flatten)]
        data: CentreData,
    },
}

/// Limits on proofs and attestation challenges (`docs/centre.md`, "Proofs and throttling").
#[derive(Args, Clone)]
pub struct ProofArgs {
    /// Failed proofs (unknown code; wrong code, ITN or IEC for a licence) allowed per client
    /// address and per licence or code within the window; more get 429.
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
    /// Most client addresses, and most licences/codes, the failure tables track at once; when
    /// full of failing entries, new ones are refused (429) rather than old ones forgotten.
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

    async fn open(&self) -> Result<Centre, String> {
        // Private keys and (by default) every unused activation code live here.
        centre::ensure_private_dir(&self.data)
            .map_err(|e| format!("{}: {e}", self.data.display()))?;
        crate::store::atomic::ensure_dir(&self.manufacturers()).map_err(|e| e.to_string())?;
        let key = keyfile::load_or_create(&self.data.join(LICENCE_KEY_FILE))
            .map_err(|e| e.to_string())?;
        let centre = Centre::open(&self.url(), LicenceKey::new(key))
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

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Serves a centre on `listener` until the process ends.
pub async fn serve_centre(
    state: Arc<CentreState>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    // Peer addresses, so failed admin logins are throttled per client.
    let app = http::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).await
}

pub fn run(cmd: CentreCommand) -> CliResult {
    let rt = runtime()?;
    rt.block_on(async move {
        match cmd {
            CentreCommand::Serve { listen, admin_password_hash, data, proofs } => {
                if admin_password_hash.is_none() && !listen.ip().is_loopback() {
                    return Err(format!(
                        "refusing to listen on {listen} with the default admin password; pass --admin-password-hash"
                    ));
                }
                let hash = match admin_password_hash {
                    Some(h) => PasswordHash::parse(&h).map_err(|e| e.to_string())?,
                    None => PasswordHash::new("admin"),
                };
                let centre = data.open().await?.with_challenge_limits(
                    Duration::from_secs(proofs.challenge_ttl_seconds.max(1)),
                    proofs.max_challenges,
                );
                let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("{listen}: {e}"))?;
                let local = listener.local_addr().map_err(|e| e.to_string())?;
                println!("keybridge centre listening on http://{local}/centre/v1 (data: {})", data.data.display());
                use std::io::Write;
                let _ = std::io::stdout().flush();
                let admin = Auth::new("admin".into(), hash, 10, Duration::from_secs(60));
                let response_key = Arc::new(data.response_key()?);
                let state = Arc::new(CentreState::with_limits(centre, admin, response_key, proofs.limits()));
                serve_centre(state, listener).await.map_err(|e| e.to_string())?;
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
                crate::store::atomic::write(&out, &doc, 0o644).map_err(|e| e.to_string())?;
                println!("licence {}.{} for {} written to {}", terms.key_id, terms.key_no, terms.binding, out.display());
            }
            CentreCommand::LicenceMove { key_id, key_no, computer, device, out, data } => {
                let binding = match (computer, device) {
                    (Some(c), _) => crate::licence::Binding::Computer(c),
                    (None, Some(d)) => crate::licence::Binding::Device(d),
                    (None, None) => return Err("--computer or --device is required".into()),
                };
                let (terms, doc) = data.open().await?.move_licence(&key_id, key_no, &binding).await.map_err(|e| e.to_string())?;
                crate::store::atomic::write(&out, &doc, 0o644).map_err(|e| e.to_string())?;
                println!("licence {}.{} moved to {}; written to {}", terms.key_id, terms.key_no, terms.binding, out.display());
            }
            CentreCommand::CodeList(data) => {
                for c in data.open().await?.list_codes().await.map_err(|e| e.to_string())? {
                    match &c.activation {
                        None => println!("{}\t{}\t{}\tnew", c.code, c.key_id, c.licence_count),
                        Some(a) => println!(
                            "{}\t{}\t{}\tactivated {} as KeyNo {} on {}, restored {} time(s)",
                            c.code, c.key_id, c.licence_count, crate::time::format(&a.activated), a.key_no, a.binding, a.restores
                        ),
                    }
                }
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
    })
}
