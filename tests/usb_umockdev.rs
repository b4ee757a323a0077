//! Real USB transports without hardware: under umockdev the host's hidapi and rusb code
//! really enumerates, opens, writes and reads a scripted key, and the host serves the key's
//! licence and memory through it. The script is the simulated firmware's side of the same
//! conversation, recorded beforehand (see common/umockdev.rs).

mod common;
use common::umockdev::{self, Bus, Testbed};
use common::*;
use keybridge::crypto::{KeyPair, LicenceKey};
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
    let centre = LicenceKey::new(KeyPair::generate().expect("key"));
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

    umockdev::record(&sim_dir, SERIAL, probe_and_read_memory)
}

/// What the host says to the key on arrival (who are you, your licence), then one memory
/// read. A reopened key hears it again from the start.
fn probe_and_read_memory(d: &mut dyn KeyDevice) {
    let info = d.info().expect("info");
    assert!(!info.blank);
    d.read_licence().expect("licence").expect("a licence");
    assert_eq!(d.read_memory("").expect("memory"), MEMORY);
}

/// The same conversation once more, as after a replug.
fn again(dir: &Path) -> Vec<umockdev::Wire> {
    umockdev::record(&dir.join("scripted-sim"), SERIAL, probe_and_read_memory)
}

/// Starts a host under umockdev replaying `wire` on `bus`, with `[usb]` settings `usb`.
async fn start(dir: &Path, bus: Bus, wire: &[umockdev::Wire], demo: bool, usb: &str) -> Server {
    let bed = Testbed::new(&dir.join("umockdev"), bus, 0x1209, 0x0001, wire);
    let mut s = Server::launch_wrapped(
        dir,
        &Opts {
            demo,
            config: format!("[usb]\nlibusb_hotplug = false\n{usb}"),
        },
        &bed.wrapper,
    );
    s.wait_ready().await;
    s
}

async fn memory(s: &Server) -> Resp {
    s.call(
        "GET",
        &format!("/api/licences/{KEY}/memory"),
        Some(json!({"Password": ""})),
    )
    .await
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
    let s = start(tmp.path(), bus, &wire, false, extra_config).await;

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

/// udev's path: `keybridge hotplug remove|add` tells the running host, which lets go of the
/// key at once and takes it back after a fresh probe, while a session on another key
/// carries on. (The periodic rescan is off, so only the helper's events move the key.)
#[tokio::test]
async fn hotplug_helper_removes_and_replugs_a_real_transport_key() {
    umockdev::require_umockdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut wire = scripted_key(tmp.path(), &data);
    // After the replug the host opens the key afresh and says the same again.
    wire.extend(again(tmp.path()));
    let s = start(tmp.path(), Bus::Hidraw, &wire, true, "rescan_seconds = 0\n").await;
    assert_eq!(wait_for_key(&s).await["Workable"], true);
    let session = |client: &str, key: u64| json!({"KeyID": KEY_ID, "ClientSessionID": client, "AppName": "t", "KeyNo": key});
    assert_eq!(
        s.post("/api/sessions", session("sw", SOFTWARE_KEY))
            .await
            .status,
        201
    );
    assert_eq!(
        s.post("/api/sessions", session("hw", KEY)).await.status,
        201
    );
    assert_eq!(memory(&s).await.json()["Value"], MEMORY);

    let out = s.cli(&["hotplug", "remove", "/dev/hidraw0"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let l = s.get(&format!("/api/licences/{KEY}")).await.json();
    assert_eq!(l["Workable"], false, "{l}");
    assert!(
        l["OpenError"]
            .as_str()
            .unwrap_or("")
            .contains("not attached"),
        "{l}"
    );
    memory(&s).await.assert_error(404, "EKeyNotAttached");
    s.post("/api/sessions", session("hw", KEY))
        .await
        .assert_error(404, "ENoMatchingKey");
    assert_eq!(
        s.post("/api/sessions", session("sw", SOFTWARE_KEY))
            .await
            .status,
        200
    );

    let out = s.cli(&["hotplug", "add", "/dev/hidraw0"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = s.get(&format!("/api/licences/{KEY}")).await.json();
        if l["Workable"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not back after replug: {l}\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(memory(&s).await.json()["Value"], MEMORY);
    assert_eq!(
        s.post("/api/sessions", session("hw", KEY)).await.status,
        201
    );
    assert_eq!(
        s.post("/api/sessions", session("sw", SOFTWARE_KEY))
            .await
            .status,
        200
    );

    // The helper refuses what is not a device node, and says so.
    let out = s.cli(&["hotplug", "add", "hidraw0"]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("not a device node"),
        "{}",
        stdout(&out)
    );
}

/// A key that answers garbage is listed as not workable with the reason and retried; the
/// host goes on serving. (umockdev's script replay cannot be relied on to resume a dialogue
/// after a reopen that follows a broken exchange, so recovery after the retry is covered by
/// the replug test instead.)
#[tokio::test]
async fn a_key_that_answers_garbage_is_reported_and_retried() {
    use umockdev::Wire;
    umockdev::require_umockdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let good = scripted_key(tmp.path(), &data);
    let Some(Wire::Out(info_request)) = good.first().cloned() else {
        panic!("the conversation starts with the host's request");
    };
    // The host asks who the key is; the key answers with something that is no frame.
    let wire = vec![Wire::Out(info_request), Wire::In([0xEE; 64])];
    let s = start(
        tmp.path(),
        Bus::Hidraw,
        &wire,
        false,
        "rescan_seconds = 0\n",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let entry = loop {
        let all = s.get("/api/licences").await.json();
        let found = all["Licences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["FileName"] == "hid:/dev/hidraw0")
            .cloned();
        if let Some(l) = found {
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "the key was never listed:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(entry["Workable"], false, "{entry}");
    let why = entry["OpenError"].as_str().unwrap_or_default();
    assert!(why.contains("malformed answer"), "{entry}");
    while !s.log().contains("retrying a USB key that failed its probe") {
        assert!(Instant::now() < deadline, "never retried:\n{}", s.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Still serving.
    assert_eq!(s.get("/api/licences").await.status, 200);
    let out = s.cli(&["devices"]);
    assert!(out.status.success(), "{}", stdout(&out));
}

/// With no udev and no libusb events, the periodic rescan finds a key that is there: after
/// the host is told the key went away, the next rescan sees it still present and takes it
/// back on its own.
#[tokio::test]
async fn periodic_rescan_finds_keys_without_events() {
    umockdev::require_umockdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut wire = scripted_key(tmp.path(), &data);
    wire.extend(again(tmp.path()));
    let s = start(
        tmp.path(),
        Bus::Hidraw,
        &wire,
        false,
        "rescan_seconds = 0.3\n",
    )
    .await;
    assert_eq!(wait_for_key(&s).await["Workable"], true);
    assert_eq!(memory(&s).await.json()["Value"], MEMORY);
    let out = s.cli(&["hotplug", "remove", "/dev/hidraw0"]);
    assert!(out.status.success(), "{}", stdout(&out));
    // The removal is let go at once; the key is back only by a second probe, which nothing
    // but the rescan asks for here. (Checked in the log, since the gap between the two can
    // be shorter than any polling interval.)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = s.log();
        let l = s.get(&format!("/api/licences/{KEY}")).await.json();
        if log.matches("USB key attached").count() >= 2 && l["Workable"] == true {
            assert!(log.contains("USB key detached"), "{log}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rescan never took the key back: {l}\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(memory(&s).await.json()["Value"], MEMORY);
}
