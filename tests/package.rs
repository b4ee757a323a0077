//! The Debian package (`cargo deb`, metadata in Cargo.toml): its contents and scripts checked
//! with `dpkg-deb`, then installed into a scratch root with `dpkg --root` and run from there.
//! The package is made from the debug binary the tests already built (`--no-build --profile
//! dev`): a release build would cost CI several minutes for nothing the test checks.

use std::path::Path;
use std::process::Command;

fn run(c: &mut Command) -> String {
    let o = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        o.status.success(),
        "{c:?}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn build_package(dir: &Path) -> std::path::PathBuf {
    let deb = dir.join("keybridge.deb");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(&cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "cargo-deb is missing: scripts/test installs it (cargo install --locked cargo-deb)"
    );
    run(Command::new(&cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "deb",
            "--no-build",
            "--profile",
            "dev",
            "--no-strip",
            "--fast",
            "-o",
        ])
        .arg(&deb));
    deb
}

#[test]
fn the_package_holds_the_service_and_installs_into_a_scratch_root() {
    let tmp = tempfile::tempdir().expect("tmp");
    let deb = build_package(tmp.path());

    let files = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for want in [
        "./usr/bin/keybridge",
        "./lib/systemd/system/keybridge.service",
        "./lib/systemd/system/keybridge-centre.service",
        "./lib/udev/rules.d/70-keybridge.rules",
        "./etc/keybridge/keybridge.toml",
        "./usr/share/doc/keybridge/operations.md",
    ] {
        assert!(
            files.lines().any(|l| l.ends_with(want)),
            "{want} missing:\n{files}"
        );
    }
    let control = run(Command::new("dpkg-deb").args(["-f"]).arg(&deb));
    assert!(control.contains("Package: keybridge"), "{control}");
    assert!(control.contains("passwd"), "{control}");

    let ctl = tmp.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&ctl));
    let conffiles = std::fs::read_to_string(ctl.join("conffiles")).expect("conffiles");
    assert_eq!(conffiles.trim(), "/etc/keybridge/keybridge.toml");
    let postinst = std::fs::read_to_string(ctl.join("postinst")).expect("postinst");
    for want in [
        "groupadd",
        "useradd",
        "udevadm control --reload-rules",
        "daemon-reload",
        "DPKG_ROOT",
    ] {
        assert!(postinst.contains(want), "postinst lacks {want}");
    }
    for s in ["postinst", "prerm", "postrm"] {
        run(Command::new("sh").arg("-n").arg(ctl.join(s)));
    }

    // The host's unit: its own user, its directories, and the hardening.
    let x = tmp.path().join("x");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x));
    let unit =
        std::fs::read_to_string(x.join("lib/systemd/system/keybridge.service")).expect("unit");
    for want in [
        "User=keybridge",
        "Group=keybridge",
        "StateDirectory=keybridge",
        "ConfigurationDirectory=keybridge",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "DevicePolicy=closed",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(
            unit.lines().any(|l| l == want),
            "{want} missing from the unit"
        );
    }
    let allowed: Vec<&str> = unit
        .lines()
        .filter(|l| l.starts_with("DeviceAllow="))
        .collect();
    assert_eq!(
        allowed,
        [
            "DeviceAllow=char-hidraw rw",
            "DeviceAllow=char-usb_device rw"
        ]
    );

    // Install into a scratch root; the scripts run without chroot and touch only that root.
    let root = tmp.path().join("root");
    for d in ["etc", "var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("w");
    std::fs::write(root.join("etc/group"), "root:x:0:\n").expect("w");
    std::fs::write(root.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").expect("w");
    std::fs::write(root.join("etc/gshadow"), "root:*::\n").expect("w");
    std::fs::write(root.join("var/lib/dpkg/status"), "").expect("w");
    let dpkg = |extra: &[&str]| {
        let mut c = Command::new("dpkg");
        c.arg(format!("--root={}", root.display()))
            .arg("--force-script-chrootless")
            .arg("--force-depends")
            .arg("--force-not-root")
            .arg(format!("--log={}", tmp.path().join("dpkg.log").display()))
            .args(extra)
            .arg("-i")
            .arg(&deb)
            .env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut c)
    };
    dpkg(&[]);
    let bin = root.join("usr/bin/keybridge");
    let version = run(Command::new(&bin).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("keybridge {}", env!("CARGO_PKG_VERSION"))
    );
    let conf = root.join("etc/keybridge/keybridge.toml");
    let ok = run(Command::new(&bin).args(["config", "check"]).arg(&conf));
    assert!(ok.trim().ends_with(": ok"), "{ok}");
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("passwd");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("keybridge:") && l.ends_with(":/usr/sbin/nologin")),
        "{passwd}"
    );
    let group = std::fs::read_to_string(root.join("etc/group")).expect("group");
    assert!(
        group.lines().any(|l| l.starts_with("keybridge:")),
        "{group}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&conf).expect("conf").permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);

    // An edited config survives reinstalling (an upgrade of the same conffile).
    let edited = format!(
        "{}\n[leases]\nsession_seconds = 42\n",
        std::fs::read_to_string(&conf).expect("conf")
    );
    std::fs::write(&conf, &edited).expect("edit");
    dpkg(&["--force-confdef", "--force-confold"]);
    assert_eq!(std::fs::read_to_string(&conf).expect("conf"), edited);
    let ok = run(Command::new(&bin).args(["config", "check"]).arg(&conf));
    assert!(ok.trim().ends_with(": ok"), "{ok}");
}
