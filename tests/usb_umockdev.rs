//! Real USB transports without hardware: under umockdev the host's hidapi and rusb code
//! really enumerates, opens, writes and reads a scripted key, and the host serves the key's
//! licence and memory through it. The script is the simulated firmware's side of the same
//! conversation, recorded beforehand (see common/umockdev.rs).

mod common;
use common::umockdev::{self, Bus, Testbed};
use common::*;
use keybridge::crypto::{generate_private_key_pem, Signer};
use keybridge::hal::sim::SimBus;
use keybridge::hal::KeyDevice;
use keybridge::keymem::LockPolicy;
use keybridge::licence::{self, Binding};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

const SERIAL: u64 = 4_242_001;
const KEY: u64 = 5_550_001;
const MEMORY: &str = "kept on the key";

/// Makes a keyed simulated key in `sim_dir` holding a licence from a fresh test centre,
/// whose public key goes into the host's trust folder. Returns the recorded conversation
/// of a host probing the key and reading its memory.
fn scripted_key(dir: &Path, data: &Path) -> Vec<umockdev::Wire> {
    let centre = Signer::from_pkcs8_pem(&generate_private_key_pem().expect("key")).expect("centre");
    std::fs::create_dir_all(data.join("trust")).expect("trust dir");
    std::fs::write(
        data.join("trust/test-centre.pem"),
        centre.public_key().pem(),
    )
    .expect("trust");
    let doc = licence::sign(&terms(KEY, 3, Binding::Device(SERIAL)), &centre).expect("sign");

    let sim_dir = dir.join("scripted-sim");
    let bus = SimBus::new(&sim_dir, LockPolicy::default());
    let mut setup = bus.plug(SERIAL).expect("plug");
    setup.install_licence(&doc).expect("install");
    setup.write_memory("", MEMORY).expect("memory");
    bus.unplug(SERIAL).expect("unplug");

    umockdev::record(&sim_dir, SERIAL, |d| {
        // What the host says on arrival, then one memory read.
        let info = d.info().expect("info");
        assert!(!info.blank);
        d.read_licence().expect("licence").expect("a licence");
        assert_eq!(d.read_memory("").expect("memory"), MEMORY);
    })
}

async fn wait_for_key(s: &Server) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = s.get(&format!("/api/licences/{KEY}")).await;
        if r.status == 200 {
            return r.json();
        }
        assert!(
            Instant::now() < deadline,
            "the scripted key never appeared; log:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn serve_through(bus: Bus, extra_config: &str, file_name: &str) {
    umockdev::require_umockdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let wire = scripted_key(tmp.path(), &data);
    let bed = Testbed::new(&tmp.path().join("umockdev"), bus, 0x1209, 0x0001, &wire);
    let mut s = Server::launch_wrapped(
        tmp.path(),
        &Opts {
            demo: false,
            config: format!("[usb]\nlibusb_hotplug = false\n{extra_config}"),
        },
        &bed.wrapper,
    );
    s.wait_ready().await;

    let l = wait_for_key(&s).await;
    assert_eq!(l["Workable"], true, "{l}\nlog:\n{}", s.log());
    assert_eq!(l["FileName"], file_name);
    assert_eq!(l["BlankKeyNo"], SERIAL);
    assert_eq!(l["LicenceCount"], 3);

    // The memory read crosses the real transport to the scripted device.
    let r = s
        .call(
            "GET",
            &format!("/api/licences/{KEY}/memory"),
            Some(json!({"Password": ""})),
        )
        .await;
    assert_eq!(
        r.status,
        200,
        "{}\nlog:\n{}",
        String::from_utf8_lossy(&r.body),
        s.log()
    );
    assert_eq!(r.json()["Value"], MEMORY);

    // And its licences are handed out.
    let r = s
        .post(
            "/api/sessions",
            json!({"KeyID": KEY_ID, "ClientSessionID": "u1", "AppName": "t", "KeyNo": KEY}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));

    // `keybridge devices` shows the host's view.
    let out = s.cli(&["devices"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(file_name) && text.contains(&SERIAL.to_string()),
        "{text}"
    );
    assert!(text.contains(&format!("ready, licence {KEY}")), "{text}");
}

#[tokio::test]
async fn hidapi_transport_serves_a_scripted_key() {
    serve_through(Bus::Hidraw, "", "hid:/dev/hidraw0").await;
}

#[tokio::test]
async fn rusb_transport_serves_a_scripted_key() {
    // The same key, reached through libusb: an administrator's driver file selects it.
    let tmp = tempfile::tempdir().expect("tempdir");
    let drivers = tmp.path().join("drivers");
    std::fs::create_dir_all(&drivers).expect("dir");
    std::fs::write(
        drivers.join("keybridge-open-blank.toml"),
        "name = \"keybridge open blank key over libusb\"\ndevices = [\"1209:0001\"]\n\
         transport = \"usb\"\nprotocol = 1\nreport_size = 64\n",
    )
    .expect("driver");
    serve_through(
        Bus::Usb,
        &format!("drivers_dir = \"{}\"\n", drivers.display()),
        "usb:/dev/bus/usb/001/005",
    )
    .await;
}
