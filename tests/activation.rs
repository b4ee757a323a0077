//! Host and centre on loopback: activation by code, update, restore, and every refusal —
//! each leaving the host's licences as they were.

mod common;
use common::centre::CentreServer;
use common::*;
use serde_json::{json, Value};

async fn setup() -> (CentreServer, Server) {
    let c = CentreServer::start().await;
    let product = json!({"key_id": "8A00", "product_name": "Бухгалтерия", "first_key_no": 5000000});
    assert_eq!(c.post("/centre/v1/products", product, true).await.0, 201);
    let config = format!(
        "[centre]\nurl = \"{}\"\n[licences]\ntrusted_centre_keys = [\"{}\"]\n",
        c.base,
        c.trust_file().display()
    );
    let s = Server::start(Opts { demo: true, config }).await;
    // The centre trusts the simulated keys' factory as a manufacturer.
    let factory = s.data.join("sim/factory-public/sim-factory.pem");
    std::fs::create_dir_all(c.data.join("manufacturers")).expect("dir");
    std::fs::copy(&factory, c.data.join("manufacturers/sim-factory.pem")).expect("copy");
    (c, s)
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
        let out = c.cli(&[
            "centre",
            "code-extend",
            "--code",
            code,
            "--period-days",
            "30",
        ]);
        assert!(out.status.success(), "{}", stdout(&out));
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
    let config = format!(
        "computer_id = \"{}\"\n[centre]\nurl = \"{}\"\n[licences]\ntrusted_centre_keys = [\"{}\"]\n",
        "B".repeat(40),
        c.base,
        c.trust_file().display()
    );
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
