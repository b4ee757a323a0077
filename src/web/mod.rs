//! What both HTTP services — the host's СЛК API and the licensing centre — share: the login
//! gate with its throttle, the response-signing layer, the serve loop with its limits, TLS,
//! and the outgoing HTTP client. Each service brings its own key and its own error format
//! through a small trait, so neither imports the other.

pub mod allowed_hosts;
pub mod api_page;
pub mod client;
pub mod login;
pub mod server;
pub mod signing;
pub mod throttle;
pub mod tls;

/// `Licence-ServerVersion`: `VERSION,OS,CPU`, as the spec's example header shows.
pub fn server_version_header() -> String {
    let os = match std::env::consts::OS {
        "linux" => "Linux",
        "windows" => "Windows",
        "macos" => "macOS",
        other => other,
    };
    let cpu = match std::env::consts::ARCH {
        "x86" => "i386",
        a => a,
    };
    format!("{},{os},{cpu}", crate::VERSION)
}
