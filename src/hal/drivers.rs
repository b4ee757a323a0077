//! Device families as data: `drivers/*.toml`, one file per family, built into the binary and
//! extended (or overridden, by file name) from a directory the config names. Adding a key
//! that speaks the protocol needs a file, not a rebuild — the way fwupd keeps quirk files.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use thiserror::Error;

/// The driver files shipped in `drivers/`, compiled in so the binary needs no install tree.
/// `tests/usb_drivers.rs` fails when a file in `drivers/` is missing here.
pub const BUILT_IN: &[(&str, &str)] = &[(
    "keybridge-open-blank",
    include_str!("../../drivers/keybridge-open-blank.toml"),
)];

/// The only protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;

#[derive(Debug, Error)]
pub enum DriverError {
    #[error("driver {file}: {message}")]
    Invalid { file: String, message: String },
    #[error("drivers directory {0}: {1}")]
    Dir(PathBuf, String),
}

/// How the protocol's reports reach the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// The kernel's hidraw node, through hidapi.
    Hid,
    /// The HID interface's interrupt endpoints, through libusb (rusb).
    Usb,
}

impl TransportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Hid => "hid",
            TransportKind::Usb => "usb",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A USB vendor and product ID pair, written `1209:0001`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UsbId {
    pub vid: u16,
    pub pid: u16,
}

impl FromStr for UsbId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (v, p) = s.split_once(':').ok_or_else(|| {
            format!("{s:?} is not VID:PID (four hex digits each, e.g. 1209:0001)")
        })?;
        let hex4 = |x: &str| {
            (x.len() == 4)
                .then(|| u16::from_str_radix(x, 16).ok())
                .flatten()
                .ok_or_else(|| format!("{s:?}: {x:?} is not four hex digits"))
        };
        Ok(UsbId {
            vid: hex4(v)?,
            pid: hex4(p)?,
        })
    }
}

impl fmt::Display for UsbId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vid, self.pid)
    }
}

/// Longest `settle_ms` and `timeout_ms` a driver may ask for: longer is a typo, and a wait
/// beyond it would hold a device's worker for minutes.
pub const MAX_QUIRK_MS: u64 = 60_000;

/// Device quirks, each off unless the driver file says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quirks {
    /// `usb` transport: the kernel's usbhid driver holds the interface; detach it before
    /// claiming (and reattach on release).
    pub detach_kernel_driver: bool,
    /// Wait this long after arrival before the first command (firmware that boots slowly).
    pub settle_ms: u64,
    /// Per-command timeout, overriding the default of 2 s.
    pub timeout_ms: Option<u64>,
}

/// A number as a file writes it. Numbers are read as written and checked afterwards, so a
/// NaN, a fraction or a huge value is refused with the key's name and the allowed range
/// rather than a deserializer's type error.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    /// The value as a whole number in `lo..=hi`, or a message naming `key`.
    fn whole(self, key: &str, lo: u64, hi: u64) -> Result<u64, String> {
        let got = match self {
            Number::Int(i) => u64::try_from(i).ok().filter(|v| (lo..=hi).contains(v)),
            Number::Float(_) => None,
        };
        got.ok_or_else(|| {
            let shown = match self {
                Number::Int(i) => i.to_string(),
                Number::Float(f) => format!("{f:?}"),
            };
            format!("{key}: must be a whole number between {lo} and {hi}, got {shown}")
        })
    }
}

/// The file format, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DriverFile {
    name: String,
    devices: Vec<String>,
    transport: TransportKind,
    protocol: Number,
    report_size: Number,
    interface: Option<Number>,
    #[serde(default)]
    quirks: QuirksFile,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct QuirksFile {
    detach_kernel_driver: bool,
    settle_ms: Option<Number>,
    timeout_ms: Option<Number>,
}

/// One device family, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Driver {
    /// The file name without `.toml`; also the name udev rules carry.
    pub id: String,
    pub name: String,
    pub devices: Vec<UsbId>,
    pub transport: TransportKind,
    pub protocol: u8,
    pub report_size: usize,
    /// `usb` transport: the interface number whose interrupt endpoints carry the reports.
    pub interface: u8,
    pub quirks: Quirks,
}

impl Driver {
    /// Parses and checks one driver file's text.
    pub fn parse(id: &str, text: &str) -> Result<Driver, DriverError> {
        let invalid = |message: String| DriverError::Invalid {
            file: format!("{id}.toml"),
            message,
        };
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                "the file name may hold only letters, digits, '-' and '_'".into(),
            ));
        }
        let f: DriverFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if f.devices.is_empty() {
            return Err(invalid("`devices` lists no VID:PID".into()));
        }
        let devices = f
            .devices
            .iter()
            .map(|d| d.parse::<UsbId>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let protocol = f
            .protocol
            .whole("protocol", 0, u8::MAX.into())
            .map_err(&invalid)?;
        if protocol != u64::from(PROTOCOL_VERSION) {
            return Err(invalid(format!(
                "protocol {protocol} is not supported by this build (it speaks protocol {PROTOCOL_VERSION})"
            )));
        }
        let report_size = f
            .report_size
            .whole("report_size", 0, u16::MAX.into())
            .map_err(&invalid)?;
        if report_size != crate::hal::protocol::report::REPORT_SIZE as u64 {
            return Err(invalid(format!(
                "report_size {report_size} is not supported (the protocol uses {}-byte reports)",
                crate::hal::protocol::report::REPORT_SIZE
            )));
        }
        let interface = match f.interface {
            Some(n) => u8::try_from(n.whole("interface", 0, u8::MAX.into()).map_err(&invalid)?)
                .map_err(|e| invalid(format!("interface: {e}")))?,
            None => 0,
        };
        let settle_ms = match f.quirks.settle_ms {
            Some(n) => n
                .whole("[quirks] settle_ms", 0, MAX_QUIRK_MS)
                .map_err(&invalid)?,
            None => 0,
        };
        let timeout_ms = f
            .quirks
            .timeout_ms
            .map(|n| n.whole("[quirks] timeout_ms", 1, MAX_QUIRK_MS))
            .transpose()
            .map_err(&invalid)?;
        if f.quirks.detach_kernel_driver && f.transport != TransportKind::Usb {
            return Err(invalid(
                "quirk detach_kernel_driver applies to transport \"usb\" only".into(),
            ));
        }
        Ok(Driver {
            id: id.into(),
            name: f.name,
            devices,
            transport: f.transport,
            protocol: PROTOCOL_VERSION,
            report_size: crate::hal::protocol::report::REPORT_SIZE,
            interface,
            quirks: Quirks {
                detach_kernel_driver: f.quirks.detach_kernel_driver,
                settle_ms,
                timeout_ms,
            },
        })
    }

    pub fn matches(&self, id: UsbId) -> bool {
        self.devices.contains(&id)
    }
}

/// Every driver the host knows, by id.
#[derive(Debug, Clone, Default)]
pub struct DriverSet {
    drivers: BTreeMap<String, Driver>,
}

impl DriverSet {
    /// The built-in drivers, then every `*.toml` in `extra` (a file named like a built-in one
    /// replaces it). A broken file is an error: a driver silently ignored is a key that
    /// silently does not work.
    pub fn load(extra: Option<&Path>) -> Result<DriverSet, DriverError> {
        let mut set = DriverSet::default();
        for (id, text) in BUILT_IN {
            set.insert(Driver::parse(id, text)?);
        }
        if let Some(dir) = extra {
            for (id, text) in read_dir(dir)? {
                set.insert(Driver::parse(&id, &text)?);
            }
        }
        Ok(set)
    }

    /// Exactly the files in `dir`, no built-ins: what `drivers/` itself says.
    pub fn from_dir(dir: &Path) -> Result<DriverSet, DriverError> {
        let mut set = DriverSet::default();
        for (id, text) in read_dir(dir)? {
            set.insert(Driver::parse(&id, &text)?);
        }
        Ok(set)
    }

    pub fn insert(&mut self, d: Driver) {
        self.drivers.insert(d.id.clone(), d);
    }

    pub fn iter(&self) -> impl Iterator<Item = &Driver> {
        self.drivers.values()
    }

    pub fn get(&self, id: &str) -> Option<&Driver> {
        self.drivers.get(id)
    }

    /// The driver for a device with this ID on this transport, if any.
    pub fn find(&self, transport: TransportKind, id: UsbId) -> Option<&Driver> {
        self.iter()
            .find(|d| d.transport == transport && d.matches(id))
    }

    pub fn is_empty(&self) -> bool {
        self.drivers.is_empty()
    }
}

fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, DriverError> {
    let err = |e: std::io::Error| DriverError::Dir(dir.into(), e.to_string());
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let Some(id) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).map_err(err)?;
        out.push((id.to_string(), text));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_ins_parse() {
        let set = DriverSet::load(None).expect("built-in drivers");
        let d = set.get("keybridge-open-blank").expect("open blank");
        assert_eq!(
            d.devices,
            vec![UsbId {
                vid: 0x1209,
                pid: 0x0001
            }]
        );
        assert_eq!(d.transport, TransportKind::Hid);
    }

    #[test]
    fn bad_files_say_why() {
        let base = "name='x'\ntransport='hid'\nprotocol=1\nreport_size=64\n";
        let e = Driver::parse("x", &format!("{base}devices=['12:34']")).unwrap_err();
        assert!(e.to_string().contains("four hex digits"), "{e}");
        let e = Driver::parse("x", &format!("{base}devices=[]")).unwrap_err();
        assert!(e.to_string().contains("no VID:PID"), "{e}");
        let e = Driver::parse(
            "x",
            "name='x'\ndevices=['1209:0001']\ntransport='serial'\nprotocol=1\nreport_size=64",
        )
        .unwrap_err();
        assert!(e.to_string().contains("serial"), "{e}");
        let e =
            Driver::parse("x", &format!("{base}devices=['1209:0001']\ncolour='red'")).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = Driver::parse(
            "x",
            "name='x'\ndevices=['1209:0001']\ntransport='hid'\nprotocol=2\nreport_size=64",
        )
        .unwrap_err();
        assert!(e.to_string().contains("protocol 2"), "{e}");
        let e = Driver::parse("../x", &format!("{base}devices=['1209:0001']")).unwrap_err();
        assert!(e.to_string().contains("file name"), "{e}");
    }

    #[test]
    fn bad_numbers_name_the_key() {
        let base = "name='x'\ndevices=['1209:0001']\ntransport='hid'\n";
        let ok = "protocol=1\nreport_size=64\n";
        for (text, key, got) in [
            (
                format!("{ok}[quirks]\nsettle_ms = nan\n"),
                "[quirks] settle_ms",
                "NaN",
            ),
            (
                format!("{ok}[quirks]\nsettle_ms = -1\n"),
                "[quirks] settle_ms",
                "-1",
            ),
            (
                format!("{ok}[quirks]\nsettle_ms = 2.5\n"),
                "[quirks] settle_ms",
                "2.5",
            ),
            (
                format!("{ok}[quirks]\ntimeout_ms = 1e300\n"),
                "[quirks] timeout_ms",
                "1e300",
            ),
            (
                format!("{ok}[quirks]\ntimeout_ms = 0\n"),
                "[quirks] timeout_ms",
                "0",
            ),
            (
                format!("{ok}[quirks]\ntimeout_ms = inf\n"),
                "[quirks] timeout_ms",
                "inf",
            ),
            (format!("{ok}interface = 300\n"), "interface", "300"),
            (
                "protocol=1\nreport_size=1e300\n".to_string(),
                "report_size",
                "1e300",
            ),
            (
                "protocol=nan\nreport_size=64\n".to_string(),
                "protocol",
                "NaN",
            ),
        ] {
            let e = Driver::parse("acme", &format!("{base}{text}"))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("driver acme.toml: ") && e.contains(&format!("{key}: must be")),
                "{text}: {e}"
            );
            assert!(e.ends_with(&format!("got {got}")), "{text}: {e}");
        }
        let d = Driver::parse(
            "acme",
            &format!("{base}{ok}interface=2\n[quirks]\nsettle_ms=60000\ntimeout_ms=1\n"),
        )
        .expect("at the limits");
        assert_eq!(
            (d.interface, d.quirks.settle_ms, d.quirks.timeout_ms),
            (2, 60_000, Some(1))
        );
    }
}
