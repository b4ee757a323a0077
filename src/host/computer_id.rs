//! The ComputerID: 40 upper-case hex digits identifying this machine, to which software keys
//! are bound. It is the first 20 bytes of SHA-256 over stable identifiers: the systemd/D-Bus
//! machine ID and, where readable, the DMI product UUID. Containers whose identifiers change
//! on restart set `computer_id` in the config instead. See `docs/computer-id.md`.

use sha2::{Digest, Sha256};

const SOURCES: [&str; 3] = [
    "/etc/machine-id",
    "/var/lib/dbus/machine-id",
    "/sys/class/dmi/id/product_uuid",
];

/// The ComputerID: `configured` when given (validated), else derived from this machine.
pub fn computer_id(configured: Option<&str>) -> Result<String, String> {
    if let Some(c) = configured {
        let c = c.trim().to_ascii_uppercase();
        if c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(c);
        }
        return Err(format!("computer_id {c:?} must be 40 hexadecimal digits"));
    }
    let mut h = Sha256::new();
    h.update(b"keybridge-computer-id/1");
    let mut any = false;
    let mut seen_machine_id = false;
    for path in SOURCES {
        // The two machine-id files are usually the same ID; take the first present.
        let is_machine_id = path.ends_with("machine-id");
        if is_machine_id && seen_machine_id {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(path) {
            let t = text.trim();
            if !t.is_empty() {
                h.update(b"\n");
                h.update(t.as_bytes());
                any = true;
                seen_machine_id |= is_machine_id;
            }
        }
    }
    if !any {
        return Err(
            "no machine identifier found (/etc/machine-id); set computer_id in the config".into(),
        );
    }
    Ok(hex::encode_upper(&h.finalize()[..20]))
}
