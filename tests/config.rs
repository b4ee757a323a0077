//! The binary refuses nonsense numbers in its config and driver files before it starts:
//! a non-zero exit and a message on standard error naming the file and the key.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `keybridge serve` with `config`; it must exit by itself. Returns (success, stderr).
fn serve_with(dir: &Path, config: &str) -> (bool, String) {
    let path = dir.join("keybridge.toml");
    std::fs::write(&path, base_config(config)).expect("config");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&path)
        .env_remove("KEYBRIDGE_LISTEN")
        .env_remove("KEYBRIDGE_DATA")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keybridge");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("keybridge started with config:\n{config}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn nan_and_huge_numbers_are_config_errors_naming_the_key() {
    let d = tempfile::tempdir().expect("tempdir");
    for (config, key, got) in [
        (
            "[leases]\nsession_seconds = nan\n",
            "[leases] session_seconds",
            "NaN",
        ),
        (
            "[usb]\nrescan_seconds = 1e300\n",
            "[usb] rescan_seconds",
            "1e300",
        ),
        (
            "[memory]\nlock_seconds = -5\n",
            "[memory] lock_seconds",
            "-5.0",
        ),
    ] {
        let (ok, stderr) = serve_with(d.path(), config);
        assert!(!ok, "{config}");
        assert!(
            stderr.contains(&format!("keybridge.toml: {key}: must be "))
                && stderr.contains(&format!("got {got}")),
            "{config}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn nan_and_huge_numbers_in_a_driver_file_name_the_file_and_key() {
    let d = tempfile::tempdir().expect("tempdir");
    let drivers = d.path().join("drivers");
    std::fs::create_dir(&drivers).expect("dir");
    let config = format!(
        "[usb]\nenabled = true\ndrivers_dir = \"{}\"\n",
        drivers.display()
    );
    let head = "name = \"ACME\"\ndevices = [\"16c0:05df\"]\ntransport = \"hid\"\nprotocol = 1\n";
    for (body, key, got) in [
        (
            "report_size = 64\n[quirks]\nsettle_ms = nan\n",
            "[quirks] settle_ms",
            "NaN",
        ),
        (
            "report_size = 64\n[quirks]\ntimeout_ms = 1e300\n",
            "[quirks] timeout_ms",
            "1e300",
        ),
        ("report_size = 1e300\n", "report_size", "1e300"),
    ] {
        std::fs::write(drivers.join("acme-key.toml"), format!("{head}{body}")).expect("driver");
        let (ok, stderr) = serve_with(d.path(), &config);
        assert!(!ok, "{body}");
        assert!(
            stderr.contains(&format!(
                "driver acme-key.toml: {key}: must be a whole number"
            )) && stderr.contains(&format!("got {got}")),
            "{body}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
