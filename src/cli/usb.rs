//! `keybridge devices`, `keybridge hotplug`, `keybridge udev-rules`: USB keys for the person
//! setting up a machine, and the helper udev runs.

use super::{CliResult, DataArgs};
use crate::control::{self, Command, ControlError, HotplugAction};
use crate::hal::udev_rules;
use crate::hal::usb::UsbBackend;
use crate::host::DeviceRow;
use std::process::ExitCode;

/// Lists the USB keys: the running host's view when it runs (it owns the devices; opening
/// them beside it would interleave commands), otherwise a scan and probe of our own.
pub fn devices(d: &DataArgs, json: bool) -> CliResult {
    let config = d.config()?;
    let dir = d.data_dir(&config, false);
    let (rows, source) = match control::call(&dir, &Command::Devices) {
        Ok(a) if a.ok => (
            serde_json::from_value::<Vec<DeviceRow>>(a.data).map_err(|e| e.to_string())?,
            format!("as the running host sees them ({})", dir.display()),
        ),
        Ok(a) => return Err(a.message),
        Err(ControlError::NotRunning(_)) => (
            probe_directly(&config)?,
            "no host is running; probed directly".to_string(),
        ),
        Err(e) => return Err(e.to_string()),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("USB keys {source}:");
    if rows.is_empty() {
        println!("  none (drivers: {})", driver_names(&config)?);
    }
    for r in &rows {
        println!(
            "  {}\tdriver {}\tserial {}\t{}",
            r.path,
            r.driver,
            r.serial.map_or("-".into(), |s| s.to_string()),
            r.state()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn driver_names(config: &crate::config::Config) -> Result<String, String> {
    let drivers = config.usb.drivers()?;
    Ok(drivers
        .iter()
        .map(|d| d.id.clone())
        .collect::<Vec<_>>()
        .join(", "))
}

fn probe_directly(config: &crate::config::Config) -> Result<Vec<DeviceRow>, String> {
    let backend = UsbBackend::new(config.usb.drivers()?);
    let scan = backend.scan();
    for e in &scan.errors {
        eprintln!("keybridge: scan: {e}");
    }
    let mut rows = Vec::new();
    for f in scan.found {
        let mut row = DeviceRow {
            id: f.id.clone(),
            driver: f.driver.id.clone(),
            path: format!("{}:{}", f.driver.transport, f.place.devnode()),
            serial: None,
            attached: true,
            blank: false,
            key_no: None,
            error: None,
        };
        match backend.open(&f) {
            Err(e) => row.error = Some(e.to_string()),
            Ok(mut dev) => match dev.info() {
                Ok(info) => {
                    row.serial = Some(info.serial);
                    row.blank = info.blank;
                }
                Err(e) => row.error = Some(format!("probe failed: {e}")),
            },
        }
        rows.push(row);
    }
    Ok(rows)
}

/// What udev runs: tells the running host and exits at once. A host that is not running
/// is not an error here — it scans on start.
pub fn hotplug(action: HotplugAction, devnode: Option<String>, d: &DataArgs) -> CliResult {
    let devnode = devnode.unwrap_or_default();
    if action != HotplugAction::Rescan && devnode.is_empty() {
        return Err("give the device node, e.g. /dev/hidraw0 (udev passes $devnode)".into());
    }
    let config = d.config()?;
    let dir = d.data_dir(&config, false);
    match control::call(&dir, &Command::Hotplug { action, devnode }) {
        Ok(a) if a.ok => {
            println!("{}", a.message);
            Ok(ExitCode::SUCCESS)
        }
        Ok(a) => Err(a.message),
        Err(ControlError::NotRunning(_)) => {
            println!("no keybridge host is running; it will find the key when it starts");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Prints the udev rules for this host's drivers (built-ins plus `[usb] drivers_dir`).
pub fn udev_rules(d: &DataArgs, group: &str, binary: &str) -> CliResult {
    let config = d.config()?;
    print!(
        "{}",
        udev_rules::render(&config.usb.drivers()?, group, binary)
    );
    Ok(ExitCode::SUCCESS)
}
