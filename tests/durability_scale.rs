//! Crash safety at scale: a host is killed with SIGKILL at random moments, 20 times, while it
//! installs many licences — imports of new software keys and replacements of them (`keybridge
//! licence import`, a separate process, over the control socket), activations at a real
//! centre as software keys and onto simulated blank USB keys — updates them from the centre
//! (whose codes get a new validity each round), and writes user memory on software keys and on
//! simulated USB keys, all at once. About sixty keys by the end.
//!
//! After each restart, against what the test knows was acknowledged and what was in flight
//! when the host died:
//! - every key is listed `Workable`; every acknowledged install is there, with the terms it was
//!   acknowledged with or the ones in flight; no key appears that nobody installed;
//! - every licence file in the data directory and every licence in a simulated key's image
//!   verifies with the test's own verifier (`common::licence`, the `rsa` crate) and is bound to
//!   this machine or to that key;
//! - every memory value is the acknowledged one or the one in flight (values differ in length
//!   and content, so a torn or mixed write matches neither), read through the API and, for USB
//!   keys, straight from the image file;
//! - no temp file is left behind.
//!
//! An activation onto a USB key that the kill interrupted after the centre had committed it
//! leaves the code activated for that key while the key is still blank. Such a key gets its
//! licence by activating again with the same code — online (the centre gives an activated
//! code a fresh challenge and answers only the key it was activated for) or the offline way
//! (`licence request`, `centre fulfil`, `licence import`); the test takes each in turn and
//! counts them.
//!
//! The test was checked against the store writing in place instead of atomically (memory files
//! only, licence files only, everything): each variant fails it within a few rounds.

mod common;
use common::centre::CentreServer;
use common::licence::verify_licence;
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

const ROUNDS: usize = 20;
/// Codes activated as software keys at the centre.
const SOFTWARE_CODES: usize = 24;
/// Simulated blank USB keys, each activated onto with its own code.
const BLANKS: u64 = 6;
const FIRST_BLANK: u64 = 80_000_101;
/// Software keys imported from files the demo centre's key signed.
const IMPORTED: u64 = 24;
const FIRST_IMPORTED: u64 = 7_200_001;
/// The centre's product: its keys are numbered from here.
const PRODUCT: &str = "8A00";
const FIRST_CENTRE_KEY: u64 = 5_000_000;

/// A value acknowledged and one that may have landed when the host died.
#[derive(Debug, Clone, Default)]
struct Track<T> {
    acked: Option<T>,
    in_flight: Option<T>,
}

impl<T: PartialEq + Clone + std::fmt::Debug> Track<T> {
    fn send(&mut self, v: T) {
        self.in_flight = Some(v);
    }
    fn ack(&mut self) {
        if let Some(v) = self.in_flight.take() {
            self.acked = Some(v);
        }
    }
    /// After a restart: `found` must be the acknowledged value or the one in flight; it is
    /// what is acknowledged from now on.
    fn settle(&mut self, found: Option<T>, what: &str) {
        assert!(
            found == self.acked || (found.is_some() && found == self.in_flight),
            "{what}: found {found:?}, acknowledged {:?}, in flight {:?}",
            self.acked,
            self.in_flight
        );
        self.acked = found;
        self.in_flight = None;
    }
}

/// An activation code and what it became.
#[derive(Debug, Clone)]
struct Code {
    code: String,
    /// The blank it goes onto, or `None` for a software key.
    blank: Option<u64>,
    /// Its key once an activation was acknowledged (or found installed after a restart).
    key_no: Option<u64>,
    /// An activation was sent and not answered before the host died.
    in_flight: bool,
    /// An activation onto a USB key that was in flight when the host died and did not land.
    /// The centre may have activated the code for that key: it is activated again.
    lost: bool,
}

#[derive(Default)]
struct State {
    /// Imported software keys: LicenceCount.
    imports: BTreeMap<u64, Track<u32>>,
    codes: Vec<Code>,
    /// The centre's keys: Period (days).
    periods: BTreeMap<u64, Track<u64>>,
    /// User memory by KeyNo.
    memory: BTreeMap<u64, Track<String>>,
    /// Acknowledged writes, by kind, over the whole run.
    acks: BTreeMap<&'static str, usize>,
}

struct Round {
    server: Server,
    state: Mutex<State>,
    /// Set just before the kill: from then on a failed request is the kill, not a bug.
    killing: AtomicBool,
    /// Set with `killing`: writers stop after what they are doing.
    stop: AtomicBool,
    centre: LicenceSigner,
    files: PathBuf,
    file_no: AtomicUsize,
}

/// Signs import files with the demo centre's key (which the host trusts).
struct LicenceSigner(keybridge::crypto::LicenceKey);

impl Round {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn acked(&self, what: &'static str) {
        *self.state().acks.entry(what).or_default() += 1;
    }

    /// Whether a failure now is the kill: then the writer stops; before the kill it is a bug.
    fn died(&self, what: &str) -> bool {
        if !self.killing.load(Ordering::SeqCst) {
            let log = self.server.log_plain();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "{what} failed while the host was up; its log ends:\n{}",
                tail.join("\n")
            );
        }
        true
    }

    /// A request to the live host; `None` once the host has been killed under it.
    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Option<Resp> {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rb = self
            .server
            .client
            .request(m, format!("{}{path}", self.server.base))
            .basic_auth(USER, Some(PASS))
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            rb = rb.body(b.to_string());
        }
        let r = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                self.died(&format!("{method} {path} ({e})"));
                return None;
            }
        };
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = match r.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) => {
                self.died(&format!("{method} {path} ({e})"));
                return None;
            }
        };
        let r = Resp {
            status,
            headers,
            body,
        };
        self.server.assert_signed(&r, None);
        Some(r)
    }
}

/// Imports new software keys and replaces imported ones, through the CLI.
async fn importer(rd: Arc<Round>, mut rng: StdRng) {
    while !rd.stop.load(Ordering::SeqCst) {
        let (key_no, count) = {
            let mut st = rd.state();
            let known = st.imports.len() as u64;
            let key_no = if known < IMPORTED && rng.gen_bool(0.6) {
                FIRST_IMPORTED + known
            } else {
                FIRST_IMPORTED + rng.gen_range(0..known.max(1))
            };
            let t = st.imports.entry(key_no).or_default();
            let count = t.acked.unwrap_or(0) + 1;
            t.send(count);
            (key_no, count)
        };
        let doc = keybridge::licence::sign(
            &terms(
                key_no,
                count,
                keybridge::licence::Binding::Computer(COMPUTER_ID.into()),
            ),
            &rd.centre.0,
        )
        .expect("sign");
        let n = rd.file_no.fetch_add(1, Ordering::SeqCst);
        let file = rd.files.join(format!("import-{n}.licence"));
        std::fs::write(&file, &doc).expect("write");
        let (data, config, f) = (
            rd.server.data.clone(),
            rd.server.config.clone(),
            file.clone(),
        );
        // A separate process, as an administrator runs it (the blocking wait off the workers).
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(BIN)
                .args(["licence", "import"])
                .arg(&f)
                .arg("--data")
                .arg(&data)
                .arg("--config")
                .arg(&config)
                .output()
                .expect("run keybridge")
        })
        .await
        .expect("import");
        let _ = std::fs::remove_file(&file);
        if !out.status.success() {
            rd.died(&format!("licence import: {}", stdout(&out)));
            return;
        }
        let mut st = rd.state();
        st.imports.get_mut(&key_no).expect("tracked").ack();
        st.memory.entry(key_no).or_default();
        drop(st);
        rd.acked("licence imports");
    }
}

/// Activates the codes not installed yet (again, for one in flight when the host died: the
/// centre gives the same binding the same licence).
async fn activator(rd: Arc<Round>, usb: bool) {
    loop {
        if rd.stop.load(Ordering::SeqCst) {
            return;
        }
        let next = {
            let mut st = rd.state();
            let c = st
                .codes
                .iter_mut()
                .find(|c| c.key_no.is_none() && c.blank.is_some() == usb && !c.lost);
            c.map(|c| {
                c.in_flight = true;
                (c.code.clone(), c.blank)
            })
        };
        let Some((code, blank)) = next else {
            return;
        };
        let body = json!({"ActivationCodeString": code, "ITN": 1234567890u64, "BlankKeyNo": blank});
        let Some(r) = rd.send("POST", "/api/licences", Some(body)).await else {
            return;
        };
        if r.status != 201 {
            rd.died(&format!(
                "activation: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
            return;
        }
        let l = r.json();
        let key_no = l["KeyNo"].as_u64().expect("KeyNo");
        if let Some(serial) = blank {
            assert_eq!(
                (l["BlankKeyNo"].clone(), l["Type"].clone()),
                (json!(serial), json!("USB")),
                "{l}"
            );
        }
        let mut st = rd.state();
        let c = st.codes.iter_mut().find(|c| c.code == code).expect("code");
        c.key_no = Some(key_no);
        c.in_flight = false;
        let period = l["Period"].as_u64().expect("Period");
        st.periods.entry(key_no).or_default().acked = Some(period);
        st.memory.entry(key_no).or_default();
        drop(st);
        rd.acked(if usb {
            "activations onto USB keys"
        } else {
            "software activations"
        });
    }
}

/// Asks the centre for the current version of every licence, over and over.
async fn updater(rd: Arc<Round>) {
    while !rd.stop.load(Ordering::SeqCst) {
        let Some(r) = rd
            .send("POST", "/api/licences/update", Some(json!({})))
            .await
        else {
            return;
        };
        if r.status != 200 {
            rd.died(&format!(
                "update: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
            return;
        }
        assert_eq!(
            r.header("x-update-failed").as_deref(),
            Some("0"),
            "the centre refused some"
        );
        let list = r.json();
        let mut st = rd.state();
        for l in list["Licences"].as_array().expect("Licences") {
            assert_eq!(l["Workable"], true, "{l}");
            let key_no = l["KeyNo"].as_u64().expect("KeyNo");
            if let Some(t) = st.periods.get_mut(&key_no) {
                // The answer shows what this update installed: acknowledged now.
                let p = l["Period"].as_u64().expect("Period");
                if t.in_flight == Some(p) {
                    t.ack();
                }
            }
        }
        drop(st);
        rd.acked("updates");
    }
}

/// Writes memory values on its keys in turn; one writer per key, so "in flight" is exact.
async fn memory_writer(rd: Arc<Round>, keys: Vec<u64>, round: usize, mut rng: StdRng) {
    if keys.is_empty() {
        return;
    }
    for i in 0.. {
        if rd.stop.load(Ordering::SeqCst) {
            return;
        }
        let key = keys[i % keys.len()];
        // Lengths and content differ from write to write: a torn or mixed value is neither.
        let fill = char::from(b'a' + (i % 26) as u8);
        let v = format!(
            "{key}/{round}/{i}/{}",
            fill.to_string().repeat(rng.gen_range(500..3900))
        );
        rd.state()
            .memory
            .get_mut(&key)
            .expect("tracked")
            .send(v.clone());
        let path = format!("/api/licences/{key}/memory");
        let Some(r) = rd.send("POST", &path, Some(json!({"Value": v}))).await else {
            return;
        };
        if r.status != 202 {
            rd.died(&format!(
                "memory write on {key}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
            return;
        }
        rd.state().memory.get_mut(&key).expect("tracked").ack();
        rd.acked("memory writes");
    }
}

fn host_config(c: &CentreServer) -> String {
    format!(
        "[centre]\nurl = \"{}\"\nresponse_key = \"{}\"\n[licences]\ntrusted_centre_keys = [\"{}\"]\n",
        c.base,
        c.response_key_file().display(),
        c.trust_file().display()
    )
}

/// Every `.tmp` file under the data directory (its sub-directories included).
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.to_string_lossy().ends_with(".tmp") {
                out.push(p);
            }
        }
    }
    out
}

/// Checks what the restarted host shows against what was acknowledged and in flight.
async fn check_after_restart(s: &Server, st: &mut State, centres: &[&str], round: usize) {
    let list = s.get("/api/licences").await.json();
    let list = list["Licences"].as_array().expect("Licences").clone();
    let mut by_key: BTreeMap<u64, Value> = BTreeMap::new();
    for l in &list {
        assert_eq!(l["Workable"], true, "round {round}: {l}\n{}", s.log());
        by_key.insert(l["KeyNo"].as_u64().expect("KeyNo"), l.clone());
    }
    let count = |k: u64| {
        by_key
            .get(&k)
            .map(|l| l["LicenceCount"].as_u64().expect("n"))
    };

    // Imported keys: there if acknowledged, with the count acknowledged or in flight.
    for (&key_no, t) in st.imports.iter_mut() {
        let found = count(key_no).map(|n| u32::try_from(n).expect("u32"));
        t.settle(found, &format!("round {round}: imported key {key_no}"));
        if found.is_some() {
            st.memory.entry(key_no).or_default();
        }
    }

    // Activated keys: there if acknowledged; one in flight maybe.
    for c in st.codes.iter_mut() {
        let found = list
            .iter()
            .find(|l| l["ActivationCode"] == c.code.as_str())
            .map(|l| l["KeyNo"].as_u64().expect("KeyNo"));
        match (c.key_no, found) {
            (Some(k), Some(f)) => assert_eq!(k, f, "round {round}: code {}", c.code),
            (Some(k), None) => panic!(
                "round {round}: the acknowledged activation of {} (key {k}) was lost",
                c.code
            ),
            (None, Some(f)) => {
                assert!(c.in_flight, "round {round}: key {f} from a code never sent");
                c.key_no = Some(f);
                let period = by_key[&f]["Period"].as_u64().expect("Period");
                st.periods.entry(f).or_default().acked = Some(period);
                st.memory.entry(f).or_default();
            }
            (None, None) => c.lost = c.in_flight && c.blank.is_some(),
        }
        if let (Some(serial), Some(k)) = (c.blank, c.key_no) {
            assert_eq!(by_key[&k]["BlankKeyNo"], serial, "round {round}");
            assert_eq!(by_key[&k]["Type"], "USB", "round {round}");
        }
        c.in_flight = false;
    }
    // Nothing else: the demo's two keys, its blank, the blanks, and the keys above.
    let mut known: BTreeSet<u64> = [SOFTWARE_KEY, USB_KEY, BLANK_SERIAL].into();
    known.extend(
        st.imports
            .iter()
            .filter(|(_, t)| t.acked.is_some())
            .map(|(k, _)| *k),
    );
    known.extend(st.codes.iter().filter_map(|c| c.key_no));
    known.extend(
        st.codes
            .iter()
            .filter(|c| c.key_no.is_none())
            .filter_map(|c| c.blank),
    );
    let listed: BTreeSet<u64> = by_key.keys().copied().collect();
    assert_eq!(listed, known, "round {round}: keys listed vs known");

    // Periods the centre gave: acknowledged (by an update's answer) or in flight.
    for (&key_no, t) in st.periods.iter_mut() {
        let found = by_key
            .get(&key_no)
            .map(|l| l["Period"].as_u64().expect("Period"));
        let pending = t.in_flight;
        t.settle(found, &format!("round {round}: period of key {key_no}"));
        if pending.is_some() && found == pending {
            *st.acks.entry("new periods found installed").or_default() += 1;
        } else {
            // An update not yet done still brings it.
            t.in_flight = pending;
        }
    }

    // Memory, through the API.
    for (&key_no, t) in st.memory.iter_mut() {
        let r = s.get(&format!("/api/licences/{key_no}/memory")).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json()["Value"].as_str().expect("Value").to_owned();
        let found = (!v.is_empty() || t.acked.is_some()).then_some(v);
        t.settle(found, &format!("round {round}: memory of key {key_no}"));
    }

    // The files themselves, with the test's own verifier.
    let mut files = 0;
    for e in std::fs::read_dir(&s.data).expect("data").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".licence") {
            continue;
        }
        let bytes = std::fs::read(e.path()).expect("read");
        let t = verify_licence(&bytes, centres)
            .unwrap_or_else(|err| panic!("round {round}: {name}: {err}"));
        assert_eq!(
            name,
            format!(
                "{}.{}.licence",
                t["key_id"].as_str().expect("key_id"),
                t["key_no"]
            ),
            "round {round}"
        );
        assert_eq!(
            t["binding"]["computer"], COMPUTER_ID,
            "round {round}: {name}"
        );
        files += 1;
    }
    let software = list.iter().filter(|l| l["Type"] == "Virtual").count();
    assert_eq!(
        files, software,
        "round {round}: licence files vs software keys"
    );
    for e in std::fs::read_dir(s.data.join("sim"))
        .expect("sim")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(serial) = name.strip_suffix(".img") else {
            continue;
        };
        let serial: u64 = serial.parse().expect("serial");
        let image: Value = serde_json::from_slice(&std::fs::read(e.path()).expect("read"))
            .unwrap_or_else(|err| panic!("round {round}: image {name} is not whole: {err}"));
        assert_eq!(image["serial"], serial);
        let Some(b64) = image["licence"].as_str() else {
            continue;
        };
        use base64::Engine;
        let doc = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        let t = verify_licence(&doc, centres)
            .unwrap_or_else(|err| panic!("round {round}: licence in image {name}: {err}"));
        assert_eq!(t["binding"]["device"], serial, "round {round}: {name}");
        let key_no = t["key_no"].as_u64().expect("key_no");
        // The image's memory is the value the API gave.
        if let Some(m) = st.memory.get(&key_no) {
            assert_eq!(
                image["memory"]["value"].as_str(),
                Some(m.acked.as_deref().unwrap_or("")),
                "round {round}: image {name}"
            );
        }
    }
    let left = temp_files(&s.data);
    assert!(left.is_empty(), "round {round}: temp files left: {left:?}");
}

/// Activates again, online and with the same code, each USB key whose activation a kill cut
/// off: the key is still blank and proves itself to a fresh challenge, and the centre answers
/// with the licence its code was activated for (or activates it now if it never saw it).
/// Every other round the offline way is taken instead — `licence request` on the host (the
/// key attests to a challenge bound to the request), `centre fulfil`, `licence import` — so
/// both ways of recovering are exercised.
async fn recover_lost(s: &Server, c: &CentreServer, st: &mut State, round: usize) {
    let dir = tempfile::tempdir().expect("tmp");
    let (req, lic) = (
        dir.path().join("request.json"),
        dir.path().join("granted.licence"),
    );
    let (r, l) = (req.to_str().expect("path"), lic.to_str().expect("path"));
    for i in 0..st.codes.len() {
        let code = st.codes[i].clone();
        let (true, Some(serial)) = (code.lost, code.blank) else {
            continue;
        };
        let how = if round % 2 == 0 {
            let body = json!({"ActivationCodeString": code.code, "ITN": 1234567890u64, "BlankKeyNo": serial});
            let r = s.post("/api/licences", body).await;
            assert_eq!(
                r.status,
                201,
                "round {round}: {}",
                String::from_utf8_lossy(&r.body)
            );
            "online recoveries of lost USB activations"
        } else {
            let serial = serial.to_string();
            let args = [
                "licence",
                "request",
                "--code",
                &code.code,
                "--itn",
                "1234567890",
            ];
            let out = s.cli(&[&args[..], &["--blank-key-no", &serial, "--out", r]].concat());
            assert!(out.status.success(), "round {round}: {}", stdout(&out));
            let out = c.cli(&["centre", "fulfil", r, "--out", l]);
            assert!(out.status.success(), "round {round}: {}", stdout(&out));
            let out = s.cli(&["licence", "import", l]);
            assert!(out.status.success(), "round {round}: {}", stdout(&out));
            "offline recoveries of lost USB activations"
        };
        let list = s.get("/api/licences").await.json();
        let l = list["Licences"]
            .as_array()
            .expect("Licences")
            .iter()
            .find(|l| l["ActivationCode"] == code.code.as_str())
            .cloned()
            .expect("the recovered licence");
        assert_eq!(l["BlankKeyNo"], serial);
        let key_no = l["KeyNo"].as_u64().expect("KeyNo");
        st.codes[i].key_no = Some(key_no);
        st.codes[i].lost = false;
        st.periods.entry(key_no).or_default().acked = Some(l["Period"].as_u64().expect("Period"));
        st.memory.entry(key_no).or_default();
        *st.acks.entry(how).or_default() += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kills_during_many_installs_updates_and_memory_writes() {
    let started = Instant::now();
    let c = CentreServer::start().await;
    let product =
        json!({"key_id": PRODUCT, "product_name": "Бухгалтерия", "first_key_no": FIRST_CENTRE_KEY});
    assert_eq!(c.post("/centre/v1/products", product, true).await.0, 201);
    let opts = Opts {
        demo: true,
        config: host_config(&c),
    };
    let mut s = Server::start(opts).await;
    let tmp = s.keep_dir().expect("the test directory");
    let dir = s.dir.clone();
    // The centre trusts the simulated keys' factory, so blanks can be activated onto.
    let factory = s.data.join("sim/factory-public/sim-factory.pem");
    std::fs::create_dir_all(c.data.join("manufacturers")).expect("dir");
    std::fs::copy(&factory, c.data.join("manufacturers/sim-factory.pem")).expect("copy");
    for i in 0..BLANKS {
        let out = s.cli(&["sim", "plug", "--serial", &(FIRST_BLANK + i).to_string()]);
        assert!(out.status.success(), "{}", stdout(&out));
    }
    let mut codes = Vec::new();
    for i in 0..SOFTWARE_CODES + BLANKS as usize {
        let code = c
            .code(json!({"key_id": PRODUCT, "licence_count": 1 + i % 3}))
            .await;
        let blank = (i >= SOFTWARE_CODES).then(|| FIRST_BLANK + (i - SOFTWARE_CODES) as u64);
        codes.push(Code {
            code,
            blank,
            key_no: None,
            in_flight: false,
            lost: false,
        });
    }
    let demo_centre = std::fs::read_to_string(s.data.join("trust/demo-centre.pem"))
        .expect("the demo centre's public key");
    let centres = [demo_centre.as_str(), c.public_key.as_str()];
    let signer = LicenceSigner(s.centre());
    let mut state = State {
        codes,
        ..State::default()
    };
    state.memory.insert(SOFTWARE_KEY, Track::default());
    state.memory.insert(USB_KEY, Track::default());
    let files = tmp.path().join("imports");
    std::fs::create_dir_all(&files).expect("dir");

    let mut rng = StdRng::from_entropy();
    let mut signer = Some(signer);
    for round in 0..ROUNDS {
        // The vendor gives four activated codes a new validity: the round's updates bring it.
        let extend: Vec<(String, u64)> = state
            .codes
            .iter()
            .filter_map(|c| c.key_no.map(|k| (c.code.clone(), k)))
            .skip((round * 4) % SOFTWARE_CODES)
            .take(4)
            .collect();
        for (code, key_no) in extend {
            let days = 10 + round as u64;
            let out = c.cli(&[
                "centre",
                "code-extend",
                "--code",
                &code,
                "--period-days",
                &days.to_string(),
            ]);
            assert!(out.status.success(), "{}", stdout(&out));
            state.periods.entry(key_no).or_default().in_flight = Some(days);
        }
        let mem_keys: Vec<u64> = state.memory.keys().copied().collect();
        let rd = Arc::new(Round {
            server: s,
            state: Mutex::new(std::mem::take(&mut state)),
            killing: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            centre: signer.take().expect("signer"),
            files: files.clone(),
            file_no: AtomicUsize::new(0),
        });
        let mut writers = vec![
            tokio::spawn(importer(
                rd.clone(),
                StdRng::from_rng(&mut rng).expect("rng"),
            )),
            tokio::spawn(activator(rd.clone(), false)),
            tokio::spawn(activator(rd.clone(), true)),
            tokio::spawn(updater(rd.clone())),
        ];
        for w in 0..2 {
            let keys = mem_keys.iter().copied().skip(w).step_by(2).collect();
            let r = StdRng::from_rng(&mut rng).expect("rng");
            writers.push(tokio::spawn(memory_writer(rd.clone(), keys, round, r)));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(100..700))).await;
        rd.stop.store(true, Ordering::SeqCst);
        rd.killing.store(true, Ordering::SeqCst);
        // SIGKILL: no shutdown code, no flush, mid-write.
        let pid = libc::pid_t::try_from(rd.server.pid()).expect("pid");
        // SAFETY: only sends a signal, to our own child, not yet reaped (the Server owns it).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        for w in writers {
            tokio::time::timeout(Duration::from_secs(60), w)
                .await
                .expect("a writer hung after the kill")
                .expect("writer");
        }
        let Ok(rd) = Arc::try_unwrap(rd) else {
            panic!("a writer still holds the round");
        };
        let Round {
            server: mut old,
            state: st,
            centre,
            ..
        } = rd;
        old.kill();
        drop(old);
        state = st.into_inner().unwrap_or_else(PoisonError::into_inner);
        signer = Some(centre);

        s = Server::launch(
            &dir,
            &Opts {
                demo: true,
                config: String::new(),
            },
        );
        s.wait_ready().await;
        check_after_restart(&s, &mut state, &centres, round).await;
        recover_lost(&s, &c, &mut state, round).await;
    }
    let installed = state.codes.iter().filter(|c| c.key_no.is_some()).count();
    let imported = state.imports.values().filter(|t| t.acked.is_some()).count();
    println!(
        "{ROUNDS} kills in {:?}; acknowledged {:?}; {installed} codes and {imported} imports installed, {} memory keys",
        started.elapsed(),
        state.acks,
        state.memory.len()
    );
    // The test means something only if all kinds of writes were going on.
    assert_eq!(installed, state.codes.len(), "every code ends up installed");
    assert_eq!(imported as u64, IMPORTED, "every imported key is there");
    for (what, least) in [
        ("licence imports", 20),
        ("software activations", 10),
        ("activations onto USB keys", 2),
        ("updates", 5),
        ("memory writes", 100),
    ] {
        let n = state.acks.get(what).copied().unwrap_or(0);
        assert!(n >= least, "only {n} {what}: {:?}", state.acks);
    }
    // Updates that landed, acknowledged or found installed after a kill: how many of each
    // depends on the machine's speed (a fast one finishes more before the kill), not the sum.
    let n = ["updates", "new periods found installed"]
        .iter()
        .map(|w| state.acks.get(w).copied().unwrap_or(0))
        .sum::<usize>();
    assert!(n >= 10, "only {n} updates landed: {:?}", state.acks);
    drop(s);
    drop(tmp);
}
