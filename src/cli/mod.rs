//! The `keybridge` command line.

pub mod admin;
pub(crate) mod centre;
mod config;
mod demo;
mod serve;
mod tools;
mod usb;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "keybridge",
    version,
    about = "Open licence host speaking the 1C СЛК 3.0 external API, with USB key support",
    long_about = "keybridge serves the СЛК 3.0 external HTTP API (/api, port 9099): licences, key user \
memory, sessions and connections, every response signed. Software keys are files in the data \
directory; USB keys are reached through a hardware-abstraction layer (a simulated backend is built in).\n\n\
Quick start: keybridge serve --demo"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the licence host.
    Serve(serve::ServeArgs),
    /// The host's response-signing key.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Check the signature of a saved API response.
    Verify(tools::VerifyArgs),
    /// Install licence files.
    Licence {
        #[command(subcommand)]
        command: LicenceCommand,
    },
    /// Plug, unplug and list simulated USB keys on a running host.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// The vendor's licensing centre: serve it, add products, issue and list codes.
    Centre {
        // Boxed: `centre serve` has many options, the enum would be as large as all of them.
        #[command(subcommand)]
        command: Box<centre::CentreCommand>,
    },
    /// List the USB keys on this machine: driver, path, serial, state.
    Devices {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Tell the running host a USB device came or went (run by the udev rules).
    Hotplug {
        action: crate::control::HotplugAction,
        /// The device node, e.g. /dev/hidraw0 (udev's $devnode); not for `rescan`.
        devnode: Option<String>,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Print udev rules for this host's drivers (built-in plus [usb] drivers_dir).
    UdevRules {
        /// The group given access to the keys.
        #[arg(long, default_value = crate::hal::udev_rules::SERVICE_GROUP)]
        group: String,
        /// The keybridge binary udev runs.
        #[arg(long, default_value = crate::hal::udev_rules::BINARY)]
        binary: String,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Every licence of the running host: state, sessions held, expiry, support (over its API).
    Licences(admin::ApiArgs),
    /// User memory of a key: read, write, change passwords, reset (over the API).
    Memory {
        #[command(subcommand)]
        command: admin::MemoryCommand,
    },
    /// Live sessions: list, release (over the API).
    Sessions {
        #[command(subcommand)]
        command: admin::SessionsCommand,
    },
    /// Connections the sessions arrive on (over the API).
    Connections(admin::ApiArgs),
    /// API credentials.
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
    },
    /// Check a config file, or print every key with its variable and flag.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Check FILE (with the KEYBRIDGE_… variables over it) as `serve` would; exit 1 naming the
    /// bad key and its line.
    Check { file: PathBuf },
    /// Print the table of keys, environment variables and flags (docs/configuration.md).
    EnvTable,
}

/// Where the host's data is, for commands that work on it.
#[derive(Args, Clone)]
pub struct DataArgs {
    /// Data directory of the host [default: data from the config, else /var/lib/keybridge]
    #[arg(long, env = "KEYBRIDGE_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Config file [default: /etc/keybridge/keybridge.toml if it exists]
    #[arg(long, env = "KEYBRIDGE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Print the public key (PEM) that verifies this host's response signatures.
    Public(DataArgs),
}

#[derive(Subcommand)]
pub enum LicenceCommand {
    /// Install a signed licence file: a software key for this machine, or a key for an
    /// attached blank USB key (then the host must be running).
    Import {
        /// The licence file.
        file: PathBuf,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Write an offline activation request (for an air-gapped host): take it to the vendor,
    /// who turns it into a licence file with `keybridge centre fulfil`; then `licence import`.
    Request {
        #[command(flatten)]
        activation: ActivationArgs,
        /// Where to write the request.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Show every field of one licence (over the running host's API).
    Show {
        key_no: u64,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// Activate a code onto this machine, or onto an attached blank USB key (over the API).
    Activate {
        #[command(flatten)]
        activation: ActivationArgs,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// Ask the centre for every licence's current version (over the API).
    Update(admin::ApiArgs),
}

/// What an activation names: the code, the ITN and IEC it is reserved for, and the blank USB
/// key to put the licence on (none: this machine).
#[derive(Args, Clone)]
pub struct ActivationArgs {
    /// The activation code.
    #[arg(long)]
    pub code: String,
    /// ИНН, 10 or 12 digits.
    #[arg(long)]
    pub itn: Option<String>,
    /// КПП, 9 digits.
    #[arg(long)]
    pub iec: Option<String>,
    /// The blank USB key to put the licence on (attached to the running host).
    #[arg(long)]
    pub blank_key_no: Option<u64>,
}

#[derive(Subcommand)]
pub enum SimCommand {
    /// Plug in a simulated USB key; a new serial number makes a blank.
    Plug {
        /// Serial number of the key [default: a new random one]
        #[arg(long)]
        serial: Option<u64>,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Pull a simulated USB key out.
    Unplug {
        #[arg(long)]
        serial: u64,
        #[command(flatten)]
        data: DataArgs,
    },
    /// List simulated USB keys and whether each is plugged in.
    List(DataArgs),
    /// Make a simulated key misbehave on its next command (for trying out failure handling).
    Fault {
        #[arg(long)]
        serial: u64,
        /// silent: stops answering mid-command; unplug: pulled out mid-command;
        /// unplug-before-reply: pulled out after doing the command; bad-crc: answers with a
        /// corrupted checksum.
        kind: FaultKind,
        /// For silent and unplug: how many reports of the command arrive first.
        #[arg(long, default_value_t = 1)]
        after_reports: u32,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FaultKind {
    Silent,
    Unplug,
    UnplugBeforeReply,
    BadCrc,
}

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Read a password from standard input and print the `password_hash` line for the
    /// config's [api] section.
    Hash,
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => serve::run(a),
        Command::Key {
            command: KeyCommand::Public(d),
        } => tools::key_public(&d),
        Command::Verify(a) => tools::verify(&a),
        Command::Licence {
            command: LicenceCommand::Import { file, data },
        } => tools::licence_import(&file, &data),
        Command::Licence {
            command:
                LicenceCommand::Request {
                    activation: a,
                    out,
                    data,
                },
        } => tools::licence_request(&a.code, a.itn, a.iec, a.blank_key_no, &out, &data),
        Command::Licence {
            command: LicenceCommand::Show { key_no, api },
        } => admin::licence_show(key_no, &api),
        Command::Licence {
            command: LicenceCommand::Activate { activation: a, api },
        } => admin::licence_activate(&a.code, a.itn, a.iec, a.blank_key_no, &api),
        Command::Licence {
            command: LicenceCommand::Update(api),
        } => admin::licence_update(&api),
        Command::Licences(api) => admin::licences(&api),
        Command::Memory { command } => admin::memory(&command),
        Command::Sessions { command } => admin::sessions(&command),
        Command::Connections(api) => admin::connections(&api),
        Command::Sim { command } => tools::sim(command),
        Command::Centre { command } => centre::run(*command),
        Command::Devices { json, data } => usb::devices(&data, json),
        Command::Hotplug {
            action,
            devnode,
            data,
        } => usb::hotplug(action, devnode, &data),
        Command::UdevRules {
            group,
            binary,
            data,
        } => usb::udev_rules(&data, &group, &binary),
        Command::Auth {
            command: AuthCommand::Hash,
        } => tools::auth_hash(),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config::check(&file),
        Command::Config {
            command: ConfigCommand::EnvTable,
        } => config::env_table(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keybridge: {e}");
            ExitCode::from(2)
        }
    }
}

/// Errors of the CLI are messages for a person.
pub type CliResult = Result<ExitCode, String>;

impl DataArgs {
    /// The config (explicit file must exist; the default one may be absent).
    pub fn config(&self) -> Result<crate::config::Config, String> {
        match &self.config {
            Some(p) => crate::config::Config::load(p, true),
            None => crate::config::Config::load(
                std::path::Path::new(crate::config::DEFAULT_CONFIG_PATH),
                false,
            ),
        }
        .map_err(|e| e.to_string())
    }

    pub fn data_dir(&self, config: &crate::config::Config, demo: bool) -> PathBuf {
        self.data
            .clone()
            .or_else(|| config.data.clone())
            .unwrap_or_else(|| {
                PathBuf::from(if demo {
                    crate::config::DEMO_DATA_DIR
                } else {
                    crate::config::DEFAULT_DATA_DIR
                })
            })
    }
}
