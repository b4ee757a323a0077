//! The udev rules for the drivers: access for the service group to exactly the devices the
//! drivers list, and the hot-plug helper run on their arrival and removal. `udev/` holds
//! them rendered for the built-in drivers; `keybridge udev-rules` renders them for a host's
//! own set (built-ins plus its drivers directory).

use super::drivers::{DriverSet, TransportKind};
use std::fmt::Write;

/// The group the service runs in; the Debian package creates it.
pub const SERVICE_GROUP: &str = "keybridge";
/// Where the package installs the binary.
pub const BINARY: &str = "/usr/bin/keybridge";
/// The file in `udev/`, as installed into `/etc/udev/rules.d/`.
pub const FILE_NAME: &str = "70-keybridge.rules";

/// The rules text for `drivers`.
pub fn render(drivers: &DriverSet, group: &str, binary: &str) -> String {
    let mut s = String::new();
    s.push_str(
        "# keybridge: access to USB licence keys, and hot-plug.\n\
         # Generated from drivers/ by `keybridge udev-rules`; do not edit by hand (a test fails\n\
         # when this file and drivers/ drift apart). Install as /etc/udev/rules.d/70-keybridge.rules.\n\
         #\n\
         # A matching device is readable and writable by the service group and tagged with its\n\
         # driver; the tag, kept in udev's database, is what the remove rule matches on, since\n\
         # a removed device's attributes are gone.\n\n",
    );
    s.push_str("ACTION==\"remove\", GOTO=\"keybridge_remove\"\n\n");
    for d in drivers.iter() {
        let _ = writeln!(s, "# {}: {} ({} transport)", d.id, d.name, d.transport);
        for id in &d.devices {
            let (subsystem, attr) = match d.transport {
                TransportKind::Hid => ("SUBSYSTEM==\"hidraw\"", "ATTRS"),
                TransportKind::Usb => ("SUBSYSTEM==\"usb\", ENV{DEVTYPE}==\"usb_device\"", "ATTR"),
            };
            let _ = writeln!(
                s,
                "{subsystem}, {attr}{{idVendor}}==\"{:04x}\", {attr}{{idProduct}}==\"{:04x}\", \
                 ENV{{KEYBRIDGE_DRIVER}}=\"{}\", MODE=\"0660\", GROUP=\"{group}\"",
                id.vid, id.pid, d.id
            );
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "ENV{{KEYBRIDGE_DRIVER}}==\"?*\", ACTION==\"add\", RUN+=\"{binary} hotplug add $devnode\""
    );
    s.push_str("GOTO=\"keybridge_end\"\n\n");
    s.push_str("LABEL=\"keybridge_remove\"\n");
    let _ = writeln!(
        s,
        "ENV{{KEYBRIDGE_DRIVER}}==\"?*\", RUN+=\"{binary} hotplug remove $devnode\""
    );
    s.push_str("\nLABEL=\"keybridge_end\"\n");
    s
}
