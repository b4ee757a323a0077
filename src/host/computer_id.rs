//! The ComputerID: 40 upper-case hex digits identifying this machine, to which software keys
//! are bound: the first 20 bytes of SHA-256 over the systemd/D-Bus machine ID. Only sources
//! every user can read are used, so the host and a CLI run by another user agree. Containers
//! whose machine ID changes on restart set `computer_id` in the config. See
//! `docs/computer-id.md`.

use sha2::{Digest, Sha256};

const SOURCES: [&str; 2] = ["/etc/machine-id", "/var/lib/dbus/machine-id"];

/// The ComputerID: `configured` when given (validated), else derived from this machine.
pub fn computer_id(configured: Option<&str>) -> Result<String, String> {
    if let Some(c) = configured {
        let c = c.trim().to_ascii_uppercase();
        if c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(c);
        }
        return Err(format!("computer_id {c:?} must be 40 hexadecimal digits"));
    }
    let machine_id = SOURCES
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.trim().to_owned())
        .find(|t| !t.is_empty())
        .ok_or("no machine identifier found (/etc/machine-id); set computer_id in the config")?;
    let mut h = Sha256::new();
    h.update(b"keybridge-computer-id/1\n");
    h.update(machine_id.as_bytes());
    Ok(hex::encode_upper(&h.finalize()[..20]))
}

#[cfg(test)]
mod tests {
    #[test]
    fn configured_id_is_validated() {
        assert_eq!(
            super::computer_id(Some("d365acc38180015cd3a30e62bf1072392d4dd5c1")).as_deref(),
            Ok("D365ACC38180015CD3A30E62BF1072392D4DD5C1")
        );
        assert!(super::computer_id(Some("xyz")).is_err());
    }
}
