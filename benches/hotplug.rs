//! Hot-plug latency through the real hidapi transport: from the udev helper's `add` event to
//! the key's licence being usable, under umockdev (see tests/usb_umockdev.rs). Prints figures;
//! run with `cargo bench --bench hotplug` (needs `umockdev-run`, which scripts/test installs).

#[path = "../tests/common/umockdev.rs"]
mod umockdev;

use keybridge::control::{self, Command, HotplugAction};
use keybridge::crypto::{KeyPair, LicenceKey};
use keybridge::hal::sim::SimBus;
use keybridge::hal::KeyDevice;
use keybridge::host::DeviceRow;
use keybridge::keymem::LockPolicy;
use keybridge::licence::{self, Binding, LicenceTerms};
use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

const SERIAL: u64 = 4_242_002;
const KEY: u64 = 5_550_002;
const ROUNDS: usize = 30;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    umockdev::require_umockdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let centre = LicenceKey::new(KeyPair::generate().expect("key"));
    std::fs::create_dir_all(data.join("trust")).expect("trust");
    std::fs::write(data.join("trust/c.pem"), centre.public_key().pem()).expect("trust");
    let doc = licence::sign(
        &LicenceTerms::new(KEY, "672B", 1, Binding::Device(SERIAL)),
        &centre,
    )
    .expect("sign");
    let sim = tmp.path().join("sim");
    let bus = SimBus::new(&sim, LockPolicy::default());
    bus.plug(SERIAL)
        .expect("plug")
        .install_licence(&doc)
        .expect("install");
    bus.unplug(SERIAL).expect("unplug");
    // The first probe at start, then one per replug.
    let mut wire = Vec::new();
    for _ in 0..=ROUNDS {
        wire.extend(umockdev::record(&sim, SERIAL, |d| {
            d.info().expect("info");
            d.read_licence().expect("licence");
        }));
    }
    let bed = umockdev::Testbed::new(
        &tmp.path().join("umockdev"),
        umockdev::Bus::Hidraw,
        0x1209,
        0x0001,
        &wire,
    );
    let config = tmp.path().join("keybridge.toml");
    std::fs::write(
        &config,
        "computer_id = \"0123456789ABCDEF0123456789ABCDEF01234567\"\n[usb]\nlibusb_hotplug = false\nrescan_seconds = 0\n",
    )
    .expect("config");
    let mut child = Process::new(&bed.wrapper[0])
        .args(&bed.wrapper[1..])
        .arg(env!("CARGO_BIN_EXE_keybridge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref().map_while(Result::ok) {
        if line.contains("listening on") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});

    let usable = || -> bool {
        let Ok(a) = control::call(&data, &Command::Devices) else {
            return false;
        };
        let rows: Vec<DeviceRow> = serde_json::from_value(a.data).unwrap_or_default();
        rows.iter()
            .any(|r| r.attached && r.key_no == Some(KEY) && r.error.is_none())
    };
    let wait = |want: bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while usable() != want {
            assert!(Instant::now() < deadline, "the key did not come back");
            std::thread::sleep(Duration::from_micros(200));
        }
    };
    wait(true);
    let event = |action| {
        let a = control::call(
            &data,
            &Command::Hotplug {
                action,
                devnode: "/dev/hidraw0".into(),
            },
        )
        .expect("control");
        assert!(a.ok, "{}", a.message);
    };
    let mut times = Vec::new();
    for _ in 0..ROUNDS {
        event(HotplugAction::Remove);
        wait(false);
        let t = Instant::now();
        event(HotplugAction::Add);
        wait(true);
        times.push(t.elapsed());
    }
    let _ = child.kill();
    let _ = child.wait();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "hot-plug add → licence usable (hidapi under umockdev, {ROUNDS} rounds): \
         median {:.1} ms, p90 {:.1} ms, max {:.1} ms (target: 250 ms)",
        ms(times[ROUNDS / 2]),
        ms(times[ROUNDS * 9 / 10]),
        ms(times[ROUNDS - 1])
    );
}
