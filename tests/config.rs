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

/// A public key PEM file for `[centre] response_key`.
fn response_key_file(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("centre-response.pem");
    let key = keybridge::crypto::KeyPair::generate().expect("key");
    std::fs::write(&p, key.public_key().pem()).expect("write");
    p
}

/// The host refuses at start to reach a centre off loopback over plain HTTP (unless
/// `insecure_http`), or without the centre's response key; the message names the key to set.
#[test]
fn an_unprotected_centre_off_loopback_stops_the_host() {
    let d = tempfile::tempdir().expect("tempdir");
    let rk = response_key_file(d.path());
    let rk = rk.display();
    for (config, says) in [
        (
            format!("[centre]\nurl = \"http://centre.example:9100\"\nresponse_key = \"{rk}\"\n"),
            "[centre] insecure_http = true",
        ),
        (
            format!("[centre]\nurl = \"http://10.0.0.5:9100\"\nresponse_key = \"{rk}\"\n"),
            "[centre] insecure_http = true",
        ),
        (
            "[centre]\nurl = \"https://centre.example:9100\"\n".to_owned(),
            "[centre] response_key is required",
        ),
        (
            "[centre]\nurl = \"http://centre.example:9100\"\ninsecure_http = true\n".to_owned(),
            "keybridge centre key-public --response",
        ),
        (
            "[centre]\nurl = \"ftp://centre.example\"\n".to_owned(),
            "must be http:// or https://",
        ),
    ] {
        let (ok, stderr) = serve_with(d.path(), &config);
        assert!(!ok, "{config}");
        assert!(stderr.contains(says), "{config}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test]
async fn a_protected_or_loopback_centre_is_accepted() {
    let d = tempfile::tempdir().expect("tempdir");
    let rk = response_key_file(d.path());
    let rk = rk.display();
    for (config, log) in [
        // TLS and the response key.
        (
            format!("[centre]\nurl = \"https://centre.example:9100\"\nresponse_key = \"{rk}\"\n"),
            None,
        ),
        // Plain HTTP off loopback, said so, with the response key.
        (
            format!(
                "[centre]\nurl = \"http://192.0.2.1:9100\"\ninsecure_http = true\nresponse_key = \"{rk}\"\n"
            ),
            Some("insecure_http"),
        ),
        // Loopback (tests, the demo): neither needed; the missing key is warned about.
        (
            "[centre]\nurl = \"http://127.0.0.1:9\"\n".to_owned(),
            Some("trusted on the licence signature alone"),
        ),
        (
            "[centre]\nurl = \"http://localhost:9\"\n".to_owned(),
            Some("trusted on the licence signature alone"),
        ),
    ] {
        let s = Server::start(Opts {
            demo: false,
            config: format!("{config}[usb]\nenabled = false\n"),
        })
        .await;
        if let Some(l) = log {
            assert!(s.log().contains(l), "{config}: {}", s.log());
        }
    }
}

/// The data directory is made 0750 (the group reaches the control socket; nobody else reads
/// licence files and their codes and ITNs); an existing wider one is narrowed at start, and
/// the log says so.
#[tokio::test]
async fn the_data_directory_is_0750() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    let s = Server::start(Opts {
        demo: true,
        config: String::new(),
    })
    .await;
    // Made by the host: 0750 (or narrower, by the umask).
    assert_eq!(mode(&s.data) & !0o750, 0, "{:o}", mode(&s.data));
    assert!(!s.log().contains("permissions narrowed"));
    let mut s = s;
    let tmp = s.keep_dir();
    s.kill();
    // Made 0755 by an older version (or by hand): narrowed at the next start.
    std::fs::set_permissions(&s.data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut s = Server::launch(&s.dir.clone(), &Opts::default());
    s.wait_ready().await;
    assert_eq!(mode(&s.data), 0o750);
    assert!(
        s.log().contains("permissions narrowed from 755 to 750"),
        "{}",
        s.log()
    );
    s.kill();
    drop(tmp);
}
