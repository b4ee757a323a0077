//! `keybridge serve`: builds the host from config and flags and serves the API.

use super::{demo, CliResult, DataArgs};
use crate::api::{self, AppState, Auth};
use crate::centre::http::CentreState;
use crate::centre::{self, Centre};
use crate::config::{Config, DEFAULT_LISTEN};
use crate::crypto::password::PasswordHash;
use crate::crypto::HostResponseKey;
use crate::host::{self, Host, HostOptions};
use crate::licence::TrustStore;
use crate::store::keyfile;
use crate::web;
use clap::Args;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub struct ServeArgs {
    /// Address and port to listen on [default: 127.0.0.1:9099]. A non-loopback address is
    /// refused while the API password is the default one.
    #[arg(long, env = "KEYBRIDGE_LISTEN", value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Provision demo keys on first start (a software key, a simulated USB key with a
    /// licence, a blank simulated USB key) signed by a demo centre key the host trusts.
    /// Data goes to ./data unless --data or the config says otherwise.
    #[arg(long)]
    demo: bool,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long)]
    log_json: bool,
    /// Fixed ComputerID (containers) [config: computer_id; KEYBRIDGE_COMPUTER_ID]
    #[arg(long, value_name = "ID")]
    computer_id: Option<String>,
    /// The licensing centre's URL [config: [centre] url; KEYBRIDGE_CENTRE_URL]
    #[arg(long, value_name = "URL")]
    centre_url: Option<String>,
    #[command(flatten)]
    data: DataArgs,
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

pub fn run(args: ServeArgs) -> CliResult {
    init_logging(args.log_json);
    let mut config = args.data.config()?;
    if let Some(id) = args.computer_id.clone() {
        config.computer_id = Some(id);
    }
    if let Some(url) = args.centre_url.clone() {
        config.centre.url = Some(url);
    }
    let listen = args.listen.or(config.listen).unwrap_or_else(|| {
        DEFAULT_LISTEN
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9099)))
    });
    let data_dir = args.data.data_dir(&config, args.demo);

    let default_password = config.api.password_hash.is_none();
    if default_password && !listen.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {listen} with the default API password (admin/admin); \
             set password_hash in the [api] section of the config (make one with `keybridge auth hash`)"
        ));
    }
    let hash = match &config.api.password_hash {
        Some(h) => PasswordHash::parse(h).map_err(|e| format!("[api] password_hash: {e}"))?,
        None => PasswordHash::new("admin"),
    };

    let limits = config.http.limits()?;
    crate::metrics::Access::from_config(&config.metrics)?;
    let hosts = config.http.allowed_hosts(default_password)?;
    config.centre.check()?;
    let tls = match (&config.api.tls_cert, &config.api.tls_key) {
        (Some(cert), Some(key)) => {
            Some(web::tls::acceptor(cert, key).map_err(|e| format!("[api] TLS: {e}"))?)
        }
        (None, None) => None,
        _ => return Err("[api] tls_cert and tls_key must be given together".into()),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let served = runtime.block_on(serve(
        config,
        Serving {
            listen,
            limits,
            tls,
            hosts,
            data_args: args.data.clone(),
        },
        &data_dir,
        args.demo,
        hash,
    ));
    // Work on the blocking pool (a USB scan, say) does not hold up the exit for long.
    runtime.shutdown_timeout(EXIT_GRACE);
    served
}

/// How long the exit waits for blocking work after the server has stopped.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// How the API is served: where, with which limits, and whether over TLS.
struct Serving {
    listen: SocketAddr,
    limits: web::server::Limits,
    tls: web::server::Tls,
    /// The names the API answers to in `Host` (the DNS-rebinding guard).
    hosts: web::server::AllowedHosts,
    /// Where the config came from, to read it again on `SIGHUP`.
    data_args: DataArgs,
}

async fn serve(
    config: Config,
    serving: Serving,
    data_dir: &Path,
    demo_mode: bool,
    hash: PasswordHash,
) -> CliResult {
    // 0750: licence files hold their codes and ITNs; the group reaches the control socket.
    let narrowed =
        crate::store::atomic::ensure_dir_narrowed(data_dir).map_err(|e| e.to_string())?;
    if let Some((old, new)) = narrowed {
        tracing::warn!(
            "data directory {}: permissions narrowed from {old:o} to {new:o} (licence files hold activation codes and ITNs)",
            data_dir.display()
        );
    }
    // Absolute, so FileName in the API and paths in logs are unambiguous.
    let data_dir =
        &std::fs::canonicalize(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let signer = Arc::new(HostResponseKey::new(
        keyfile::load_or_create(&data_dir.join(keyfile::SERVER_KEY_FILE))
            .map_err(|e| e.to_string())?,
    ));
    let computer_id = host::computer_id(config.computer_id.as_deref())?;
    let demo_centre = if demo_mode {
        Some(start_demo_centre(data_dir).await?)
    } else {
        None
    };
    let mut trust = TrustStore::default();
    trust.add_dir(&host::trust_dir(data_dir))?;
    for p in &config.licences.trusted_centre_keys {
        trust.add_file(p)?;
    }
    if trust.is_empty() {
        tracing::warn!(
            "no trusted centre keys: no licence can be opened (put centre public keys in {})",
            host::trust_dir(data_dir).display()
        );
    }
    let host = Arc::new(
        Host::new(HostOptions {
            data_dir: data_dir.into(),
            computer_id,
            trust,
            session_lease: config.leases.session(),
            memory_policy: config.memory.policy(),
            // A configured centre wins over the demo one.
            centre_url: config
                .centre
                .url
                .clone()
                .or_else(|| demo_centre.as_ref().map(|(_, url)| url.clone())),
            centre_ca_file: config.centre.ca_file.clone(),
            centre_response_key: demo::centre_response_key(&config, data_dir, demo_mode)?,
        })
        .map_err(|e| e.to_string())?,
    );
    for (serial, r) in host.attach_sim_images().await {
        if let Err(e) = r {
            tracing::error!("simulated key {serial}: {e}");
        }
    }
    if config.usb.enabled {
        let drivers = config.usb.drivers()?;
        let names: Vec<&str> = drivers.iter().map(|d| d.id.as_str()).collect();
        tracing::info!(drivers = ?names, "watching USB for keys");
        host.start_usb(
            crate::hal::usb::UsbBackend::new(drivers),
            host::UsbWatchOptions {
                rescan: config.usb.rescan(),
                libusb_hotplug: config.usb.libusb_hotplug,
            },
        )
        .map_err(|e| e.to_string())?;
    }
    if let Some((centre, url)) = &demo_centre {
        let account_api = format!("{url}{}", centre.account_base);
        let mut said = demo::provision(&host, &centre.centre, &account_api)
            .await
            .map_err(|e| format!("demo: {e}"))?;
        // Issue 10: the demo release and the curl command that lists it.
        said.extend(
            demo::release(&centre.centre, url)
                .await
                .map_err(|e| format!("demo: {e}"))?,
        );
        println!("demo data in {}:", data_dir.display());
        for line in said {
            println!("  {line}");
        }
    }
    let control_path = crate::control::socket_path(data_dir);
    let control = crate::control::serve(host.clone(), control_path.clone())
        .await
        .map_err(|e| format!("control socket {}: {e}", control_path.display()))?;

    let metrics_access = crate::metrics::Access::from_config(&config.metrics)?;
    let state = Arc::new(AppState {
        host: host.clone(),
        signer,
        auth: Auth::with_limits(config.api.user.clone(), hash, (&config.api).into()),
        activation_failures: (&config.api).into(),
        api_enabled: config.api.enabled.into(),
        server_version: crate::web::server_version_header(),
    });
    let ops = crate::metrics::Ops::new(host.clone(), metrics_access);
    // Before the "listening" line: a SIGHUP from then on reloads, never kills.
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| format!("cannot listen for SIGHUP: {e}"))?;
    let reloader = tokio::spawn(reload_on_hangup(
        hup,
        serving.data_args.clone(),
        ops.clone(),
    ));
    let listener = web::server::bind(serving.listen).await?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if serving.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!(
        "keybridge {} listening on {scheme}://{local}/api (data: {})",
        crate::VERSION,
        data_dir.display()
    );
    let _ = std::io::stdout().flush();

    let limits = web::server::RequestLimits {
        timeout: serving.limits.request_timeout,
        // The API's parameters stop reading at their own 64 KiB (api::params::MAX_BODY).
        max_body: None,
        hosts: serving.hosts,
    };
    // Issue 12: the web console beside the API; loopback only while the password is the
    // default one, unless the config says otherwise.
    let console = config.console.enabled.then(|| {
        crate::console::Console::new(
            state.clone(),
            crate::console::Options {
                secure: serving.tls.is_some(),
                local_only: config
                    .console
                    .local_only
                    .unwrap_or(config.api.password_hash.is_none()),
                idle: Duration::from_secs(config.console.session_idle_seconds.max(60)),
                config_path: serving
                    .data_args
                    .config
                    .clone()
                    .unwrap_or_else(|| crate::config::DEFAULT_CONFIG_PATH.into()),
                server_idle: serving.limits.idle_timeout,
            },
        )
    });
    let app = api::router(state, limits, ops, crate::console::router(console));
    web::server::serve(
        listener,
        app,
        serving.tls,
        serving.limits,
        web::server::shutdown_signal(),
    )
    .await;
    control.abort();
    reloader.abort();
    let _ = std::fs::remove_file(&control_path);
    Ok(ExitCode::SUCCESS)
}

/// `systemctl reload` (SIGHUP): reads the config again and applies what can change while
/// serving — who may read `/metrics` — and reads the licence files again. Sessions and
/// connections are untouched. A config that does not pass is logged and the running one kept;
/// the rest (listen address, TLS, [api], [http], [leases]) takes a restart.
async fn reload_on_hangup(
    mut hup: tokio::signal::unix::Signal,
    data: DataArgs,
    ops: Arc<crate::metrics::Ops>,
) {
    while hup.recv().await.is_some() {
        let data = data.clone();
        let host = ops.host.clone();
        // Reading files (config, licence files) is blocking work.
        let done = tokio::task::spawn_blocking(move || {
            let config = data.config()?;
            config.check()?;
            let access = crate::metrics::Access::from_config(&config.metrics)?;
            host.reload_software_keys().map_err(|e| e.to_string())?;
            Ok::<_, String>(access)
        })
        .await;
        match done {
            Ok(Ok(access)) => {
                ops.set_access(access);
                tracing::info!("SIGHUP: config and licence files read again ([metrics] applied; listen, TLS, [api], [http], [leases] take a restart)");
            }
            Ok(Err(e)) => {
                tracing::error!("SIGHUP: the config was not reloaded, the running one is kept: {e}")
            }
            Err(e) => tracing::error!("SIGHUP: reload failed: {e}"),
        }
    }
}

/// Runs the demo centre in-process on a loopback port; returns it and its URL.
async fn start_demo_centre(data_dir: &Path) -> Result<(Arc<CentreState>, String), String> {
    let (signer, response_key) = demo::prepare_centre(data_dir).map_err(|e| e.to_string())?;
    // The demo centre trusts the simulator's factory as a manufacturer of USB keys.
    let centre = Centre::open(&centre::sqlite_url(&demo::centre_db(data_dir)), signer)
        .await
        .map_err(|e| format!("demo centre: {e}"))?
        .with_manufacturers(crate::hal::sim::SimBus::factory_public_dir(&host::sim_dir(
            data_dir,
        )))
        // Issue 10: the demo centre serves releases too.
        .enable_releases(demo::release_settings(data_dir))
        .await
        .map_err(|e| format!("demo centre: {e}"))?;
    // Vendor operations in the demo go straight to the database; the HTTP admin side gets a
    // random password nobody knows.
    let admin_password = crate::crypto::b64(&rand::random::<[u8; 24]>());
    let admin = Auth::new(
        "admin".into(),
        PasswordHash::new(&admin_password),
        10,
        Duration::from_secs(60),
    );
    let state = Arc::new(CentreState::new(centre, admin, Arc::new(response_key)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("demo centre: {e}"))?;
    let url = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    // On loopback, in-process: plain HTTP with the default limits; it ends with the host.
    let serving = state.clone();
    tokio::spawn(super::centre::serve_centre(
        serving,
        listener,
        None,
        super::centre::CentreLimits::default(),
        std::future::pending(),
    ));
    tracing::info!("demo licensing centre at {url}");
    Ok((state, url))
}
