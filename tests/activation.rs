//! Host and centre on loopback: activation by code, update, restore, and every refusal —
//! each leaving the host's licences as they were.

mod common;
use common::centre::CentreServer;
use common::*;
use serde_json::{json, Value};

async fn setup() -> (CentreServer, Server) {
    let c = CentreServer::start().await;
    let key = c.response_key_file();
    setup_with(c, &key).await
}

/// A centre with product 8A00 and a demo host using it, checking its answers with
/// `response_key` (a PEM file).
async fn setup_with(c: CentreServer, response_key: &std::path::Path) -> (CentreServer, Server) {
    let product = json!({"key_id": "8A00", "product_name": "Бухгалтерия", "first_key_no": 5000000});
    assert_eq!(c.post("/centre/v1/products", product, true).await.0, 201);
    let s = Server::start(Opts {
        demo: true,
        config: host_config(&c, response_key, None),
    })
    .await;
    // The centre trusts the simulated keys' factory as a manufacturer.
    let factory = s.data.join("sim/factory-public/sim-factory.pem");
    std::fs::create_dir_all(c.data.join("manufacturers")).expect("dir");
    std::fs::copy(&factory, c.data.join("manufacturers/sim-factory.pem")).expect("copy");
    (c, s)
}

fn host_config(
    c: &CentreServer,
    response_key: &std::path::Path,
    computer_id: Option<&str>,
) -> String {
    let id = computer_id.map_or(String::new(), |i| format!("computer_id = \"{i}\"\n"));
    format!(
        "{id}[centre]\nurl = \"{}\"\nresponse_key = \"{}\"\n[licences]\ntrusted_centre_keys = [\"{}\"]\n",
        c.base,
        response_key.display(),
        c.trust_file().display()
    )
}

fn activation(code: &str, blank: Option<u64>) -> Value {
    json!({"ActivationCodeString": code, "ITN": 1234567890, "IEC": null, "BlankKeyNo": blank})
}

async fn licences(s: &Server) -> Value {
    s.get("/api/licences").await.json()
}

#[tokio::test]
async fn activate_software_and_usb_keys() {
    let (c, s) = setup().await;
    let code = c.code(json!({"key_id": "8A00", "licence_count": 3})).await;
    let r = s.post("/api/licences", activation(&code, None)).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let l = r.json();
    assert_eq!(
        (
            l["Type"].clone(),
            l["KeyNo"].clone(),
            l["LicenceCount"].clone()
        ),
        (json!("Virtual"), json!(5000000), json!(3))
    );
    assert_eq!(
        (
            l["Workable"].clone(),
            l["ActivationCode"].clone(),
            l["ITN"].clone()
        ),
        (json!(true), json!(code), json!(1234567890u64))
    );
    assert!(s.data.join("8A00.5000000.licence").exists());
    // It serves sessions at once.
    let sess = json!({"KeyID": "8A00", "ClientSessionID": "x", "AppName": "t"});
    assert_eq!(s.post("/api/sessions", sess).await.status, 201);

    // The same code again from this machine: the same licence.
    let again = s.post("/api/licences", activation(&code, None)).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.json()["KeyNo"], 5000000);

    // From another binding (the blank USB key): refused with the centre's reason; the blank stays blank.
    let before = licences(&s).await;
    let r = s
        .post("/api/licences", activation(&code, Some(BLANK_SERIAL)))
        .await;
    r.assert_error(403, "EActivationRefused");
    assert!(r.json()["Message"]
        .as_str()
        .expect("m")
        .contains("already activated"));
    assert_eq!(licences(&s).await, before);

    // A new code onto the blank: installed on the device through the HAL.
    let usb_code = c.code(json!({"key_id": "8A00", "licence_count": 1})).await;
    let r = s
        .post("/api/licences", activation(&usb_code, Some(BLANK_SERIAL)))
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let l = r.json();
    assert_eq!(
        (
            l["Type"].clone(),
            l["BlankKeyNo"].clone(),
            l["IsBlank"].clone(),
            l["KeyNo"].clone()
        ),
        (
            json!("USB"),
            json!(BLANK_SERIAL),
            json!(false),
            json!(5000001)
        )
    );

    // Devices that are missing or not blank.
    let other = c.code(json!({"key_id": "8A00", "licence_count": 1})).await;
    s.post("/api/licences", activation(&other, Some(12345)))
        .await
        .assert_error(404, "EKeyNotAttached");
    s.post("/api/licences", activation(&other, Some(KEYED_SERIAL)))
        .await
        .assert_error(400, "EKeyNotBlank");
    // Local validation of ITN and IEC.
    let bad_itn = json!({"ActivationCodeString": other, "ITN": "12ab"});
    s.post("/api/licences", bad_itn)
        .await
        .assert_error(400, "EBadRequest");
    let bad_iec = json!({"ActivationCodeString": other, "ITN": 1234567890, "IEC": "1234567890"});
    s.post("/api/licences", bad_iec)
        .await
        .assert_error(400, "EBadRequest");
}

#[tokio::test]
async fn reserved_itn_and_centre_down() {
    let (mut c, s) = setup().await;
    let reserved = c
        .code(json!({"key_id": "8A00", "licence_count": 1, "itn": "7700000000"}))
        .await;
    let before = licences(&s).await;
    let r = s.post("/api/licences", activation(&reserved, None)).await;
    r.assert_error(403, "EActivationRefused");
    assert!(r.json()["Message"]
        .as_str()
        .expect("m")
        .contains("reserved for another ITN"));
    let ok = json!({"ActivationCodeString": reserved, "ITN": "7700000000"});
    assert_eq!(s.post("/api/licences", ok).await.status, 201);

    // The centre goes away: 503, saying so, and nothing is installed.
    let fresh = c.code(json!({"key_id": "8A00", "licence_count": 1})).await;
    c.kill();
    let before_down = licences(&s).await;
    let r = s.post("/api/licences", activation(&fresh, None)).await;
    r.assert_error(503, "ECentreUnavailable");
    assert!(r.json()["Message"]
        .as_str()
        .expect("m")
        .contains("cannot be reached"));
    s.post("/api/licences/update", json!({}))
        .await
        .assert_error(503, "ECentreUnavailable");
    assert_eq!(licences(&s).await, before_down);
    assert_ne!(before, before_down);
}

#[tokio::test]
async fn update_brings_new_terms_and_restore_follows_a_new_computer_id() {
    let (c, mut s) = setup().await;
    let sw = c.code(json!({"key_id": "8A00", "licence_count": 2})).await;
    let usb = c.code(json!({"key_id": "8A00", "licence_count": 1})).await;
    assert_eq!(
        s.post("/api/licences", activation(&sw, None)).await.status,
        201
    );
    assert_eq!(
        s.post("/api/licences", activation(&usb, Some(BLANK_SERIAL)))
            .await
            .status,
        201
    );
    assert_eq!(
        s.get("/api/licences/5000000").await.json()["ExpireDate"],
        Value::Null
    );

    // The vendor changes both codes' validity; an update brings it to the host and to the USB key.
    for code in [&sw, &usb] {
        extend(&c, code, 30);
    }
    let r = s.post("/api/licences/update", json!({})).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let list = r.json();
    for key in [5000000u64, 5000001] {
        let l = list["Licences"]
            .as_array()
            .expect("list")
            .iter()
            .find(|l| l["KeyNo"] == key)
            .cloned()
            .expect("updated key");
        assert_eq!(
            (
                l["Period"].clone(),
                l["DaysLeft"].clone(),
                l["Workable"].clone()
            ),
            (json!(30), json!(30), json!(true)),
            "{l}"
        );
        assert!(l["ExpireDate"].is_string());
        assert!(l["UpdateDate"].is_string());
    }
    // Keys the centre does not know (the demo's) are left as they were.
    assert_eq!(
        s.get(&format!("/api/licences/{SOFTWARE_KEY}")).await.json()["Workable"],
        true
    );

    // The machine's ComputerID changes: the software key no longer opens…
    s.kill();
    let config = host_config(&c, &c.response_key_file(), Some(&"B".repeat(40)));
    let mut s = Server::launch(&s.dir.clone(), &Opts { demo: true, config });
    s.wait_ready().await;
    let l = s.get("/api/licences/5000000").await.json();
    assert_eq!(l["Workable"], false);
    assert!(l["OpenError"].as_str().expect("e").contains("bound to"));
    // …until an update restores it onto the new one.
    assert_eq!(s.post("/api/licences/update", json!({})).await.status, 200);
    let l = s.get("/api/licences/5000000").await.json();
    assert_eq!(
        (l["Workable"].clone(), l["Recovered"].clone()),
        (json!(true), json!(true)),
        "{l}"
    );
    let out = c.cli(&["centre", "code-list"]);
    assert!(
        stdout(&out).contains("restored 1 time(s)"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn demo_offers_codes_that_activate_at_its_own_centre() {
    let s = Server::demo().await;
    // The demo centre's folder (keys, every unused code) is the user's alone.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: std::path::PathBuf| {
            std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
        };
        assert_eq!(mode(s.data.join("demo")), 0o700);
        assert_eq!(mode(s.data.join("demo/centre.db")), 0o600);
    }
    let out = std::process::Command::new(BIN)
        .args(["centre", "code-list", "--data"])
        .arg(s.data.join("demo"))
        .output()
        .expect("run");
    let text = stdout(&out);
    let fresh: Vec<&str> = text
        .lines()
        .filter(|l| l.ends_with("\tnew"))
        .filter_map(|l| l.split('\t').next())
        .collect();
    assert!(fresh.len() >= 3, "{text}");
    // The demo keys themselves were activated at the demo centre.
    assert_eq!(
        text.lines().filter(|l| l.contains("\tactivated")).count(),
        2,
        "{text}"
    );

    let r = s
        .post("/api/licences", activation(fresh[0], Some(BLANK_SERIAL)))
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["BlankKeyNo"], BLANK_SERIAL);
    // Update goes to the demo centre and keeps every key workable.
    let r = s.post("/api/licences/update", json!({})).await;
    assert_eq!(r.status, 200);
    for l in r.json()["Licences"].as_array().expect("list") {
        assert_eq!(l["Workable"], true, "{l}");
    }
    // An unplugged key is left out of an update, which still succeeds for the rest.
    let out = s.cli(&["sim", "unplug", "--serial", &KEYED_SERIAL.to_string()]);
    assert!(out.status.success(), "{}", stdout(&out));
    let r = s.post("/api/licences/update", json!({})).await;
    assert_eq!(r.status, 200);
    let usb = s.get(&format!("/api/licences/{USB_KEY}")).await.json();
    assert_eq!(usb["Workable"], false);
    assert!(usb["OpenError"]
        .as_str()
        .expect("e")
        .contains("not attached"));
}

#[tokio::test]
async fn offline_request_fulfil_import() {
    let (c, s) = setup().await;
    let code = c.code(json!({"key_id": "8A00", "licence_count": 4})).await;
    let req = s.dir.join("request.json");
    let lic = s.dir.join("granted.licence");
    let r = req.to_str().expect("p");
    let l = lic.to_str().expect("p");
    // `keybridge licence request --code CODE [EXTRA…] --out REQUEST` on the host.
    let request = |code: &str, extra: &[&str]| {
        let mut args = vec!["licence", "request", "--code", code];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--out", r]);
        s.cli(&args)
    };

    // A typo is caught while writing the request.
    let out = request("1234-5678-9012-3456-7890", &[]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("typo"), "{}", stdout(&out));

    let out = request(&code, &["--itn", "1234567890"]);
    assert!(out.status.success(), "{}", stdout(&out));
    // It carries the code and the ITN (the restore proof): readable by its owner only.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&req).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    let out = c.cli(&["centre", "fulfil", r, "--out", l]);
    assert!(out.status.success(), "{}", stdout(&out));
    let out = s.cli(&["licence", "import", l]);
    assert!(out.status.success(), "{}", stdout(&out));
    let e = s.get("/api/licences/5000000").await.json();
    assert_eq!(
        (
            e["Workable"].clone(),
            e["LicenceCount"].clone(),
            e["Type"].clone()
        ),
        (json!(true), json!(4), json!("Virtual"))
    );

    // The same rules as online: this code is taken, so a request for the blank is refused.
    let out = request(&code, &["--blank-key-no", &BLANK_SERIAL.to_string()]);
    assert!(out.status.success(), "{}", stdout(&out));
    let out = c.cli(&["centre", "fulfil", r, "--out", l]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("already activated"),
        "{}",
        stdout(&out)
    );

    // A fresh code for the blank: the host checks the key when writing the request.
    let usb = c.code(json!({"key_id": "8A00", "licence_count": 1})).await;
    let out = request(&usb, &["--blank-key-no", "4242"]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("not attached"), "{}", stdout(&out));
    let out = request(&usb, &["--blank-key-no", &BLANK_SERIAL.to_string()]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(c.cli(&["centre", "fulfil", r, "--out", l]).status.success());
    let out = s.cli(&["licence", "import", l]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(
        s.get("/api/licences/5000001").await.json()["BlankKeyNo"],
        BLANK_SERIAL
    );
}

/// A licence envelope around `payload`, with any signer, format and signature.
fn envelope(format: &str, signer: &str, payload: &[u8], signature: &[u8]) -> Vec<u8> {
    use keybridge::crypto::b64;
    serde_json::to_vec_pretty(&json!({
        "format": format, "signer": signer, "payload": b64(payload), "signature": b64(signature),
    }))
    .expect("json")
}

/// The host accepts the centre's answers only when signed by its response key: with the
/// licence key configured in its place, activation is refused and nothing is installed; with
/// the right key it works. And the response key is no licence key: a licence signed with it
/// is refused by `licence import`, and a response signature does not verify as a licence.
#[tokio::test]
async fn centre_answers_must_carry_the_response_key_signature() {
    let c = CentreServer::start().await;
    // The wrong key: the centre's licence key in place of its response key.
    let wrong = c.trust_file();
    let (c, s) = setup_with(c, &wrong).await;
    let code = c.code(json!({"key_id": "8A00", "licence_count": 1})).await;
    let before = licences(&s).await;
    let r = s.post("/api/licences", activation(&code, None)).await;
    r.assert_error(503, "ECentreUnverified");
    assert!(
        r.json()["Message"]
            .as_str()
            .expect("m")
            .contains("not signed by its response key"),
        "{}",
        r.json()
    );
    assert_eq!(licences(&s).await, before, "nothing installed");
    // Onto the blank too: the challenge answer is refused before the key is asked.
    s.post("/api/licences", activation(&code, Some(BLANK_SERIAL)))
        .await
        .assert_error(503, "ECentreUnverified");
    s.post("/api/licences/update", json!({}))
        .await
        .assert_error(503, "ECentreUnverified");
    assert_eq!(licences(&s).await, before, "nothing installed");

    assert!(!s.log().contains("trusted on the licence signature alone"));

    // No key configured: a warning at start-up, and answers are trusted on the licence
    // signature alone.
    let mut s = s;
    s.kill();
    let config = format!(
        "[centre]\nurl = \"{}\"\n[licences]\ntrusted_centre_keys = [\"{}\"]\n",
        c.base,
        c.trust_file().display()
    );
    let mut s = Server::launch(&s.dir.clone(), &Opts { demo: true, config });
    s.wait_ready().await;
    assert!(
        s.log().contains("trusted on the licence signature alone"),
        "{}",
        s.log()
    );
    let other = c.code(json!({"key_id": "8A00", "licence_count": 1})).await;
    let r = s.post("/api/licences", activation(&other, None)).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));

    // The right key: the first code activates.
    s.kill();
    let config = host_config(&c, &c.response_key_file(), None);
    let mut s = Server::launch(&s.dir.clone(), &Opts { demo: true, config });
    s.wait_ready().await;
    let r = s.post("/api/licences", activation(&code, None)).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));

    // A licence signed by the response key (as if it were a licence key) is refused…
    let response_pair =
        keybridge::store::keyfile::load(&c.data.join("centre-response-key.pem")).expect("key");
    let response_pem = response_pair.to_pkcs8_pem().expect("pem");
    let forger = keybridge::crypto::LicenceKey::new(response_pair);
    let terms = terms(
        5_999_999,
        100,
        keybridge::licence::Binding::Computer(COMPUTER_ID.into()),
    );
    let forged = keybridge::licence::sign(&terms, &forger).expect("sign");
    let f = s.dir.join("forged.licence");
    std::fs::write(&f, &forged).expect("write");
    let out = s.cli(&["licence", "import", f.to_str().expect("p")]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("untrusted"), "{}", stdout(&out));
    assert_eq!(
        s.get("/api/licences/5999999").await.status,
        404,
        "not installed"
    );

    // …and a response signature over a licence payload does not verify as a licence, whether
    // it claims the licence key as signer or the response key is (wrongly) trusted too.
    let responder = keybridge::crypto::CentreResponseKey::new(
        keybridge::crypto::KeyPair::from_pkcs8_pem(&response_pem).expect("key"),
    );
    let payload = serde_json::to_vec(&terms).expect("json");
    let sig = responder.sign_response(b"", 200, &payload).expect("sign");
    let licence_key = keybridge::crypto::PublicKey::from_pem(&c.public_key).expect("pem");
    let response_key = responder.public_key().clone();
    let mut trust = keybridge::licence::TrustStore::default();
    trust.add(licence_key.clone());
    trust.add(response_key.clone());
    for signer in [licence_key.fingerprint(), response_key.fingerprint()] {
        let doc = envelope("keybridge-licence/2", signer, &payload, &sig);
        assert_eq!(
            keybridge::licence::open(&doc, &trust),
            Err(keybridge::licence::LicenceError::BadSignature)
        );
    }
}

/// Signs `message` the way format 1 did (no label), with the `rsa` crate.
fn sign_v1(private_pem: &str, message: &[u8]) -> Vec<u8> {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(private_pem).expect("private key");
    rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key)
        .sign(message)
        .to_vec()
}

/// A format 1 copy of a format 2 licence file: the same payload, signed bare.
fn to_v1(doc: &[u8], private_pem: &str) -> Vec<u8> {
    let env: Value = serde_json::from_slice(doc).expect("envelope");
    assert_eq!(env["format"], "keybridge-licence/2");
    let payload = keybridge::crypto::unb64(env["payload"].as_str().expect("payload")).expect("b64");
    envelope(
        "keybridge-licence/1",
        env["signer"].as_str().expect("signer"),
        &payload,
        &sign_v1(private_pem, &payload),
    )
}

fn licence_files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".licence"))
        .collect();
    v.sort();
    v
}

/// Superseded (format 1) licences — a software key file and the licence on a USB key — are
/// listed not workable with the reason, and update re-issues them from the centre, which
/// checks what they claim; a format 1 file with a made-up code gets nothing.
#[tokio::test]
async fn update_reissues_superseded_licences() {
    let mut s = Server::demo().await;
    let private = std::fs::read_to_string(s.data.join("demo/centre-key.pem")).expect("key");
    s.kill();
    // The demo's software key, turned into format 1 in place.
    let sw = s.data.join(format!("{KEY_ID}.{SOFTWARE_KEY}.licence"));
    let v1 = to_v1(&std::fs::read(&sw).expect("read"), &private);
    std::fs::write(&sw, &v1).expect("write");
    // The licence on the demo's keyed USB key, too.
    {
        use keybridge::hal::KeyDevice;
        let bus = keybridge::hal::sim::SimBus::new(
            &s.data.join("sim"),
            keybridge::keymem::LockPolicy::default(),
        );
        let mut dev = bus.plug(KEYED_SERIAL).expect("plug");
        let doc = dev.read_licence().expect("read").expect("a licence");
        dev.replace_licence(&to_v1(&doc, &private))
            .expect("replace");
        bus.unplug(KEYED_SERIAL).expect("unplug");
    }
    // A forged format 1 file: a real series, a KeyNo and a code the centre never issued.
    let mut t: Value = serde_json::from_slice(
        &keybridge::crypto::unb64(
            serde_json::from_slice::<Value>(&v1).expect("json")["payload"]
                .as_str()
                .expect("p"),
        )
        .expect("b64"),
    )
    .expect("terms");
    t["key_no"] = json!(7_131_999);
    t["activation_code"] = json!(keybridge::centre::ActivationCode::generate().to_string());
    let payload = serde_json::to_vec(&t).expect("json");
    let signer = serde_json::from_slice::<Value>(&v1).expect("json")["signer"].clone();
    let forged = envelope(
        "keybridge-licence/1",
        signer.as_str().expect("signer"),
        &payload,
        &sign_v1(&private, &payload),
    );
    let forged_path = s.data.join(format!("{KEY_ID}.7131999.licence"));
    std::fs::write(&forged_path, &forged).expect("write");
    // A real forgery: it names the centre as signer, but another key signed it.
    t["key_no"] = json!(7_131_998);
    let payload = serde_json::to_vec(&t).expect("json");
    let other = keybridge::crypto::KeyPair::generate()
        .expect("key")
        .to_pkcs8_pem()
        .expect("pem");
    let fake = envelope(
        "keybridge-licence/1",
        signer.as_str().expect("signer"),
        &payload,
        &sign_v1(&other, &payload),
    );
    let fake_path = s.data.join(format!("{KEY_ID}.7131998.licence"));
    std::fs::write(&fake_path, &fake).expect("write");

    let mut s = Server::launch(&s.dir.clone(), &Opts::default());
    s.wait_ready().await;
    for key in [SOFTWARE_KEY, USB_KEY, 7_131_999] {
        let path = if key == USB_KEY {
            // Not trusted, a superseded USB key is listed by its serial.
            format!("/api/licences/{KEYED_SERIAL}")
        } else {
            format!("/api/licences/{key}")
        };
        let l = s.get(&path).await.json();
        assert_eq!(l["Workable"], false, "{l}");
        assert!(
            l["OpenError"]
                .as_str()
                .expect("e")
                .contains("format 1 is no longer accepted"),
            "{l}"
        );
    }
    let l = s.get("/api/licences/7131998").await.json();
    assert_eq!(l["Workable"], false, "{l}");
    assert!(
        l["OpenError"]
            .as_str()
            .expect("e")
            .contains("format-1 signature does not verify"),
        "{l}"
    );
    let before = licence_files(&s.data);

    let r = s.post("/api/licences/update", json!({})).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    for key in [SOFTWARE_KEY, USB_KEY] {
        let l = s.get(&format!("/api/licences/{key}")).await.json();
        assert_eq!(l["Workable"], true, "{l}");
    }
    assert_eq!(
        s.get(&format!("/api/licences/{SOFTWARE_KEY}")).await.json()["Version"],
        "2"
    );
    let now: Value = serde_json::from_slice(&std::fs::read(&sw).expect("read")).expect("json");
    assert_eq!(now["format"], "keybridge-licence/2");
    // The forgery: still not workable, unchanged, and nothing installed for it.
    let l = s.get("/api/licences/7131999").await.json();
    assert_eq!(l["Workable"], false, "{l}");
    assert_eq!(std::fs::read(&forged_path).expect("read"), forged);
    assert_eq!(licence_files(&s.data), before);
    assert!(s.log().contains("7131999 not updated"), "{}", s.log());
    // The real forgery never reached the centre: nothing refused it there.
    assert_eq!(std::fs::read(&fake_path).expect("read"), fake);
    assert!(
        s.log().contains("672B.7131998 (")
            && s.log().contains("not sent to the centre for re-issue"),
        "{}",
        s.log()
    );
    assert!(!s.log().contains("7131998 not updated"), "{}", s.log());
}

/// Forged format 1 files naming the centre as signer are not sent to it: each would be a
/// failed proof, and a centre that throttles after one failure would then refuse this host's
/// genuine updates too.
#[tokio::test]
async fn forged_format_1_files_do_not_get_the_host_throttled() {
    let c = CentreServer::start_with(None, &["--proof-max-failures", "1"], None).await;
    let key = c.response_key_file();
    let (c, s) = setup_with(c, &key).await;
    let code = c.code(json!({"key_id": "8A00", "licence_count": 1})).await;
    assert_eq!(
        s.post("/api/licences", activation(&code, None))
            .await
            .status,
        201
    );
    let genuine = std::fs::read(s.data.join("8A00.5000000.licence")).expect("licence");
    let env: Value = serde_json::from_slice(&genuine).expect("json");
    let signer = env["signer"].as_str().expect("signer").to_owned();
    let mut t: Value = serde_json::from_slice(
        &keybridge::crypto::unb64(env["payload"].as_str().expect("payload")).expect("b64"),
    )
    .expect("terms");
    let forger = keybridge::crypto::KeyPair::generate()
        .expect("key")
        .to_pkcs8_pem()
        .expect("pem");
    let mut s = s;
    s.kill();
    for key_no in 5_000_100..5_000_103u64 {
        t["key_no"] = json!(key_no);
        t["activation_code"] = json!(keybridge::centre::ActivationCode::generate().to_string());
        let payload = serde_json::to_vec(&t).expect("json");
        let doc = envelope(
            "keybridge-licence/1",
            &signer,
            &payload,
            &sign_v1(&forger, &payload),
        );
        std::fs::write(s.data.join(format!("8A00.{key_no}.licence")), doc).expect("write");
    }
    let mut s = Server::launch(
        &s.dir.clone(),
        &Opts {
            demo: true,
            config: host_config(&c, &key, None),
        },
    );
    s.wait_ready().await;
    for _ in 0..2 {
        assert_eq!(s.post("/api/licences/update", json!({})).await.status, 200);
    }
    // The genuine licence still gets its updates: the centre throttled nothing.
    extend(&c, &code, 9);
    assert_eq!(s.post("/api/licences/update", json!({})).await.status, 200);
    assert_eq!(s.get("/api/licences/5000000").await.json()["Period"], 9);
    let log = s.log();
    assert!(!log.contains("not updated"), "{log}");
    assert_eq!(
        log.matches("not sent to the centre for re-issue").count(),
        9,
        "three files, three updates: {log}"
    );
}

/// Update asks the centre only about the licences it issued: the demo's licences (another
/// centre's) are not sent as guesses, so a host updating often is never throttled — here with
/// a centre that throttles after a single failed proof.
#[tokio::test]
async fn update_asks_only_about_the_centres_own_licences() {
    let c = CentreServer::start_with(None, &["--proof-max-failures", "1"], None).await;
    let key = c.response_key_file();
    let (c, s) = setup_with(c, &key).await;
    let code = c.code(json!({"key_id": "8A00", "licence_count": 1})).await;
    assert_eq!(
        s.post("/api/licences", activation(&code, None))
            .await
            .status,
        201
    );
    for _ in 0..3 {
        assert_eq!(s.post("/api/licences/update", json!({})).await.status, 200);
    }
    extend(&c, &code, 9);
    let r = s.post("/api/licences/update", json!({})).await;
    assert_eq!(r.status, 200);
    assert_eq!(s.get("/api/licences/5000000").await.json()["Period"], 9);
    assert!(!s.log().contains("not updated"), "{}", s.log());
}

/// Something answering in the centre's place (a compromised proxy, a wrong URL) that sends
/// an endless answer: the host reads at most 1 MiB of it and gives up, whether the answer
/// declares its length or streams without one.
#[tokio::test]
async fn an_oversized_centre_answer_is_refused_without_reading_it_all() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let sent = Arc::new(AtomicU64::new(0));
    let declared = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (sent2, declared2) = (sent.clone(), declared.clone());
    let fake = tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = listener.accept().await else {
                return;
            };
            let (sent, declared) = (sent2.clone(), declared2.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                // 64 MiB: with a declared length, or chunked.
                let total: u64 = 64 * 1024 * 1024;
                let with_length = declared.load(Ordering::SeqCst);
                let answer = if with_length {
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {total}\r\n\r\n")
                } else {
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned()
                };
                if c.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let piece = vec![b' '; 64 * 1024];
                let chunk = [format!("{:x}\r\n", piece.len()).as_bytes(), &piece, b"\r\n"].concat();
                let mut n = 0;
                while n < total {
                    let bytes: &[u8] = if with_length { &piece } else { &chunk };
                    if c.write_all(bytes).await.is_err() {
                        return;
                    }
                    n += piece.len() as u64;
                    sent.fetch_add(piece.len() as u64, Ordering::SeqCst);
                }
            });
        }
    });
    let s = Server::start(Opts {
        demo: false,
        config: format!("[centre]\nurl = \"http://{addr}\"\n[usb]\nenabled = false\n"),
    })
    .await;
    for with_length in [false, true] {
        declared.store(with_length, Ordering::SeqCst);
        sent.store(0, Ordering::SeqCst);
        let r = s.post("/api/licences/update", json!({})).await;
        r.assert_error(503, "ECentreUnavailable");
        let msg = r.json()["Message"].as_str().expect("Message").to_owned();
        assert!(msg.contains("larger than 1048576 bytes"), "{msg}");
        // The host stopped reading: what went out is the cap plus what socket buffers held,
        // far from the 64 MiB on offer.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let n = sent.load(Ordering::SeqCst);
        assert!(n < 16 * 1024 * 1024, "{n} bytes were taken");
    }
    fake.abort();
}

/// Parallel activations onto one blank USB key: one goes ahead, the others are refused
/// (409) before they reach the centre, so exactly one code is bound there and the others
/// stay unused rather than lost.
#[tokio::test]
async fn parallel_activations_onto_one_blank_bind_one_code() {
    let (c, s) = setup().await;
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(c.code(json!({"key_id": "8A00", "licence_count": 1})).await);
    }
    let answers = futures::future::join_all(
        codes
            .iter()
            .map(|code| s.post("/api/licences", activation(code, Some(BLANK_SERIAL)))),
    )
    .await;
    let mut created = 0;
    let mut in_progress = 0;
    for r in &answers {
        match r.status {
            201 => created += 1,
            409 => {
                r.assert_error(409, "EActivationInProgress");
                assert!(
                    r.json()["Message"]
                        .as_str()
                        .expect("m")
                        .contains(&BLANK_SERIAL.to_string()),
                    "{}",
                    r.json()
                );
                in_progress += 1;
            }
            // Arrived after the first had finished: the key is no longer blank.
            _ => r.assert_error(400, "EKeyNotBlank"),
        }
    }
    let list = stdout(&c.cli(&["centre", "code-list"]));
    let activated = list.lines().filter(|l| l.contains("activated")).count();
    assert_eq!(activated, 1, "codes bound at the centre: {list}");
    assert_eq!(created, 1);
    assert!(in_progress >= 1, "no two activations overlapped");
    // The refused codes are unused: each still activates (as a software key, here).
    for (code, r) in codes.iter().zip(&answers) {
        if r.status != 201 {
            let r = s.post("/api/licences", activation(code, None)).await;
            assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        }
    }
}

/// The vendor changes the validity a code grants (`centre code-extend`).
fn extend(c: &CentreServer, code: &str, days: u32) {
    let days = days.to_string();
    let out = c.cli(&[
        "centre",
        "code-extend",
        "--code",
        code,
        "--period-days",
        &days,
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
}
