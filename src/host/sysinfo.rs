//! What `GET /api/serverinfo` reports about this machine and process.

use crate::time::Timestamp;

#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub computer_name: String,
    pub local_ip: String,
    pub os_type: String,
    pub os_version: String,
    pub module_name: String,
    pub pid: u32,
    pub cpu: String,
    pub version: String,
    pub started: Timestamp,
    pub computer_id: String,
}

/// `Linux`, `Windows`, or the OS name as Rust knows it.
pub fn os_type() -> String {
    match std::env::consts::OS {
        "linux" => "Linux".into(),
        "windows" => "Windows".into(),
        "macos" => "macOS".into(),
        other => other.into(),
    }
}

/// `i386` for 32-bit x86, else the architecture name (`x86_64`, `aarch64`).
pub fn cpu() -> String {
    match std::env::consts::ARCH {
        "x86" => "i386".into(),
        a => a.into(),
    }
}

fn os_version() -> String {
    let pretty = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(os_type);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| format!(" {}", k.trim()))
        .unwrap_or_default();
    format!("{pretty}{kernel} ({})", std::env::consts::ARCH)
}

/// The machine's IPv4 addresses, loopback last, comma-separated as the spec shows them.
fn local_ipv4() -> String {
    let mut addrs: Vec<std::net::Ipv4Addr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| match i.ip() {
            std::net::IpAddr::V4(a) => Some(a),
            std::net::IpAddr::V6(_) => None,
        })
        .collect();
    addrs.sort_by_key(|a| (a.is_loopback(), a.octets()));
    addrs.dedup();
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn collect(started: Timestamp, computer_id: &str) -> ServerInfo {
    ServerInfo {
        computer_name: gethostname::gethostname().to_string_lossy().into_owned(),
        local_ip: local_ipv4(),
        os_type: os_type(),
        os_version: os_version(),
        module_name: std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        pid: std::process::id(),
        cpu: cpu(),
        version: crate::VERSION.into(),
        started,
        computer_id: computer_id.into(),
    }
}
