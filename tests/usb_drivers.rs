//! `drivers/` and `udev/` stay in step: every driver file is built in, and the rules give
//! access to exactly the devices the drivers list — checked once against the renderer and
//! once by reading the rules file on its own, so a renderer bug cannot hide a drift.

use keybridge::hal::drivers::{DriverSet, TransportKind, BUILT_IN};
use keybridge::hal::udev_rules;
use std::collections::BTreeSet;
use std::path::Path;

fn repo(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

#[test]
fn every_driver_file_is_built_in() {
    let on_disk = DriverSet::from_dir(&repo("drivers")).expect("drivers/ parses");
    let files: BTreeSet<String> = on_disk.iter().map(|d| d.id.clone()).collect();
    let built: BTreeSet<String> = BUILT_IN.iter().map(|(id, _)| id.to_string()).collect();
    assert_eq!(
        files, built,
        "add every drivers/*.toml to hal::drivers::BUILT_IN (and nothing else)"
    );
}

#[test]
fn udev_rules_match_the_drivers() {
    let drivers = DriverSet::from_dir(&repo("drivers")).expect("drivers/ parses");
    let path = repo(&format!("udev/{}", udev_rules::FILE_NAME));
    let rules = std::fs::read_to_string(&path).expect("udev rules file");
    assert_eq!(
        rules,
        udev_rules::render(&drivers, udev_rules::SERVICE_GROUP, udev_rules::BINARY),
        "udev/{} is out of date: regenerate it with \
         `keybridge udev-rules --config /dev/null > udev/{}`",
        udev_rules::FILE_NAME,
        udev_rules::FILE_NAME
    );

    // Read on its own: (subsystem, vid, pid) granted to the group, versus the drivers.
    let mut granted = BTreeSet::new();
    for line in rules.lines().filter(|l| !l.starts_with('#')) {
        if !line.contains("GROUP=") {
            continue;
        }
        let field = |name: &str| {
            line.split(&format!("{name}==\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_else(|| panic!("rule without {name}: {line}"))
                .to_string()
        };
        let attr = if line.contains("ATTRS{") {
            "ATTRS"
        } else {
            "ATTR"
        };
        granted.insert((
            field("SUBSYSTEM"),
            field(&format!("{attr}{{idVendor}}")),
            field(&format!("{attr}{{idProduct}}")),
        ));
        assert!(line.contains("MODE=\"0660\""), "{line}");
        assert!(line.contains("ENV{KEYBRIDGE_DRIVER}="), "{line}");
    }
    let mut listed = BTreeSet::new();
    for d in drivers.iter() {
        for id in &d.devices {
            let subsystem = match d.transport {
                TransportKind::Hid => "hidraw",
                TransportKind::Usb => "usb",
            };
            listed.insert((
                subsystem.to_string(),
                format!("{:04x}", id.vid),
                format!("{:04x}", id.pid),
            ));
        }
    }
    assert_eq!(
        granted, listed,
        "udev rules and drivers/ list different devices"
    );
    assert!(rules.contains("hotplug add $devnode") && rules.contains("hotplug remove $devnode"));
}

#[test]
fn an_administrators_driver_file_extends_the_set() {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        d.path().join("acme-key.toml"),
        "name = \"ACME key\"\ndevices = [\"16c0:05df\", \"16C0:05E0\"]\ntransport = \"usb\"\n\
         protocol = 1\nreport_size = 64\n[quirks]\ndetach_kernel_driver = true\n",
    )
    .expect("write");
    let set = DriverSet::load(Some(d.path())).expect("load");
    let acme = set.get("acme-key").expect("acme");
    assert!(acme.quirks.detach_kernel_driver);
    assert_eq!(acme.devices.len(), 2);
    assert!(set.get("keybridge-open-blank").is_some(), "built-ins stay");
    let rules = udev_rules::render(&set, "keybridge", "/usr/bin/keybridge");
    assert!(
        rules.contains("ATTR{idVendor}==\"16c0\", ATTR{idProduct}==\"05e0\""),
        "{rules}"
    );

    // A broken file stops the host with the reason rather than silently dropping a key.
    std::fs::write(d.path().join("broken.toml"), "name = \"x\"\n").expect("write");
    let e = DriverSet::load(Some(d.path())).unwrap_err().to_string();
    assert!(
        e.contains("broken.toml") && e.contains("missing field"),
        "{e}"
    );
}
