//! Simulated USB keys coming and going while the host runs, and licence files: import,
//! install onto a blank, and every way a licence can be refused.

mod common;
use common::*;
use keybridge::licence::{self, Binding};
use serde_json::{json, Value};

fn session(client: &str, key_no: u64) -> Value {
    json!({"KeyID": KEY_ID, "ClientSessionID": client, "AppName": "t", "KeyNo": key_no})
}

async fn licence(s: &Server, key: u64) -> Value {
    let r = s.get(&format!("/api/licences/{key}")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

#[tokio::test]
async fn unplug_and_replug_while_serving() {
    let s = Server::demo().await;
    assert_eq!(
        s.post("/api/sessions", session("on-usb", USB_KEY))
            .await
            .status,
        201
    );
    assert_eq!(
        s.post("/api/sessions", session("on-sw", SOFTWARE_KEY))
            .await
            .status,
        201
    );

    let out = s.cli(&["sim", "unplug", "--serial", &KEYED_SERIAL.to_string()]);
    assert!(out.status.success(), "{}", stdout(&out));
    let l = licence(&s, USB_KEY).await;
    assert_eq!(l["Workable"], false);
    assert!(l["OpenError"]
        .as_str()
        .expect("OpenError")
        .contains("not attached"));
    // Its session cannot be extended; the software key's session carries on.
    s.post("/api/sessions", session("on-usb", USB_KEY))
        .await
        .assert_error(404, "ENoMatchingKey");
    assert_eq!(
        s.post("/api/sessions", session("on-sw", SOFTWARE_KEY))
            .await
            .status,
        200
    );
    let out = s.cli(&["sim", "list"]);
    assert!(
        stdout(&out).contains(&format!("{KEYED_SERIAL}\tunplugged")),
        "{}",
        stdout(&out)
    );

    let out = s.cli(&["sim", "plug", "--serial", &KEYED_SERIAL.to_string()]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains(&format!("holding licence {USB_KEY}")));
    let l = licence(&s, USB_KEY).await;
    assert_eq!(l["Workable"], true);
    assert_eq!(l["OpenError"], Value::Null);
    assert_eq!(
        s.post("/api/sessions", session("on-usb", USB_KEY))
            .await
            .status,
        201
    );

    // Plugging a key twice is refused; unplugging an absent one too.
    let out = s.cli(&["sim", "plug", "--serial", &KEYED_SERIAL.to_string()]);
    assert!(!out.status.success());
    let out = s.cli(&["sim", "unplug", "--serial", "5"]);
    assert!(!out.status.success());

    // A new simulated key arrives blank.
    let out = s.cli(&["sim", "plug", "--serial", "90000077"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let l = licence(&s, 90_000_077).await;
    assert_eq!(l["IsBlank"], true);
    assert_eq!(l["Type"], "USB");
}

#[tokio::test]
async fn import_a_software_key_online_and_offline() {
    let mut s = Server::demo().await;
    let centre = s.centre();
    let doc = licence::sign(
        &terms(555, 3, Binding::Computer(COMPUTER_ID.into())),
        &centre,
    )
    .expect("sign");
    let f = s.dir.join("555.licence");
    std::fs::write(&f, &doc).expect("write");
    let out = s.cli(&["licence", "import", f.to_str().expect("p")]);
    assert!(out.status.success(), "{}", stdout(&out));
    let l = licence(&s, 555).await;
    assert_eq!(
        (
            l["Workable"].clone(),
            l["LicenceCount"].clone(),
            l["ITN"].clone()
        ),
        (json!(true), json!(3), json!(123456789))
    );
    assert_eq!(l["IEC"], "770101001");

    // With the host stopped the CLI checks and writes the file itself.
    s.kill();
    let doc = licence::sign(
        &terms(556, 1, Binding::Computer(COMPUTER_ID.into())),
        &centre,
    )
    .expect("sign");
    std::fs::write(&f, &doc).expect("write");
    let out = s.cli(&["licence", "import", f.to_str().expect("p")]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(s.data.join("672B.556.licence").exists());
    let mut s2 = Server::launch(
        &s.dir.clone(),
        &Opts {
            demo: true,
            config: String::new(),
        },
    );
    s2.wait_ready().await;
    assert_eq!(licence(&s2, 556).await["Workable"], true);
    // The demo keys were kept, not made again.
    assert_eq!(licence(&s2, SOFTWARE_KEY).await["LicenceCount"], 5);
}

#[tokio::test]
async fn refused_licences_change_nothing() {
    let mut s = Server::demo().await;
    let centre = s.centre();
    let before = s.get("/api/licences").await.json();
    let f = s.dir.join("x.licence");

    // Tampered: a changed LicenceCount breaks the signature.
    let doc = licence::sign(
        &terms(600, 1, Binding::Computer(COMPUTER_ID.into())),
        &centre,
    )
    .expect("sign");
    let mut env: Value = serde_json::from_slice(&doc).expect("json");
    let payload = keybridge::crypto::unb64(env["payload"].as_str().expect("payload")).expect("b64");
    let forged = String::from_utf8(payload)
        .expect("utf8")
        .replace("\"licence_count\":1", "\"licence_count\":1000");
    env["payload"] = json!(keybridge::crypto::b64(forged.as_bytes()));
    let tampered = serde_json::to_vec(&env).expect("json");
    std::fs::write(&f, &tampered).expect("write");
    let out = s.cli(&["licence", "import", f.to_str().expect("p")]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("signature does not verify"),
        "{}",
        stdout(&out)
    );

    // Bound to another computer.
    let other =
        licence::sign(&terms(601, 1, Binding::Computer("F".repeat(40))), &centre).expect("sign");
    std::fs::write(&f, &other).expect("write");
    let out = s.cli(&["licence", "import", f.to_str().expect("p")]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("bound to"), "{}", stdout(&out));

    // Signed by a centre this host does not trust.
    let stranger =
        keybridge::crypto::LicenceKey::new(keybridge::crypto::KeyPair::generate().expect("key"));
    let untrusted = licence::sign(
        &terms(602, 1, Binding::Computer(COMPUTER_ID.into())),
        &stranger,
    )
    .expect("sign");
    std::fs::write(&f, &untrusted).expect("write");
    let out = s.cli(&["licence", "import", f.to_str().expect("p")]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("untrusted"), "{}", stdout(&out));
    assert_eq!(s.get("/api/licences").await.json(), before);

    // The same files put straight into the data directory are listed, unusable, with the reason.
    s.kill();
    std::fs::write(s.data.join("672B.600.licence"), &tampered).expect("write");
    std::fs::write(s.data.join("672B.601.licence"), &other).expect("write");
    let mut s = Server::launch(
        &s.dir.clone(),
        &Opts {
            demo: true,
            config: String::new(),
        },
    );
    s.wait_ready().await;
    let t = licence(&s, 600).await;
    assert_eq!(t["Workable"], false);
    assert!(t["OpenError"].as_str().expect("err").contains("signature"));
    assert_eq!(
        t["LicenceCount"], 0,
        "an unverified file's content is not shown"
    );
    let o = licence(&s, 601).await;
    assert_eq!(o["Workable"], false);
    assert!(o["OpenError"].as_str().expect("err").contains("bound to"));
    s.post("/api/sessions", session("t", 600))
        .await
        .assert_error(404, "ENoMatchingKey");
    let r = s.post("/api/sessions", session("o", 601)).await;
    r.assert_error(404, "ENoMatchingKey");
    assert!(r.json()["Message"]
        .as_str()
        .expect("m")
        .contains("not workable"));
}

#[tokio::test]
async fn install_a_licence_onto_a_blank_usb_key() {
    let s = Server::demo().await;
    let centre = s.centre();
    let doc = licence::sign(&terms(700, 2, Binding::Device(BLANK_SERIAL)), &centre).expect("sign");
    let f = s.dir.join("700.licence");
    std::fs::write(&f, &doc).expect("write");
    let out = s.cli(&["licence", "import", f.to_str().expect("p")]);
    assert!(out.status.success(), "{}", stdout(&out));
    let l = licence(&s, 700).await;
    assert_eq!(
        (
            l["Type"].clone(),
            l["IsBlank"].clone(),
            l["BlankKeyNo"].clone()
        ),
        (json!("USB"), json!(false), json!(BLANK_SERIAL))
    );
    assert_eq!(s.post("/api/sessions", session("u", 700)).await.status, 201);
    // The key is no longer blank: a second licence is refused.
    let doc2 = licence::sign(&terms(701, 2, Binding::Device(BLANK_SERIAL)), &centre).expect("sign");
    std::fs::write(&f, &doc2).expect("write");
    let out = s.cli(&["licence", "import", f.to_str().expect("p")]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("not blank"), "{}", stdout(&out));
    // A licence for a key that is not attached is refused too.
    let doc3 = licence::sign(&terms(702, 2, Binding::Device(12345)), &centre).expect("sign");
    std::fs::write(&f, &doc3).expect("write");
    let out = s.cli(&["licence", "import", f.to_str().expect("p")]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("not attached"), "{}", stdout(&out));
    // The licence lives on the key: unplug, replug, still there.
    assert!(s
        .cli(&["sim", "unplug", "--serial", &BLANK_SERIAL.to_string()])
        .status
        .success());
    assert!(s
        .cli(&["sim", "plug", "--serial", &BLANK_SERIAL.to_string()])
        .status
        .success());
    assert_eq!(licence(&s, 700).await["Workable"], true);
}

/// Parallel imports of one licence through a running host: each write has its own temp file,
/// so none fails and the host never reads a half-written file.
#[tokio::test]
async fn parallel_imports_of_one_licence_all_succeed() {
    let s = Server::demo().await;
    let doc = licence::sign(
        &terms(557, 2, Binding::Computer(COMPUTER_ID.into())),
        &s.centre(),
    )
    .expect("sign");
    let f = s.dir.join("557.licence");
    std::fs::write(&f, &doc).expect("write");
    let file = f.to_str().expect("p");
    for round in 0..3 {
        let runs: Vec<_> = (0..4)
            .map(|_| {
                std::process::Command::new(BIN)
                    .args(["licence", "import", file, "--data"])
                    .arg(&s.data)
                    .arg("--config")
                    .arg(&s.config)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("run keybridge")
            })
            .collect();
        for run in runs {
            let out = run.wait_with_output().expect("wait");
            assert!(out.status.success(), "round {round}: {}", stdout(&out));
        }
        let l = licence(&s, 557).await;
        assert_eq!(l["Workable"], true, "round {round}: {l}");
        assert_eq!(l["LicenceCount"], 2);
    }
    assert_eq!(
        std::fs::read(s.data.join("672B.557.licence")).expect("read"),
        doc
    );
}

#[tokio::test]
async fn validity_dates_are_computed() {
    let s = Server::demo().await;
    let centre = s.centre();
    let now = keybridge::time::now();
    let mut expired = terms(800, 1, Binding::Computer(COMPUTER_ID.into()));
    expired.start_date = Some(now - chrono::Duration::days(3));
    expired.period = 1;
    let mut running = terms(801, 1, Binding::Computer(COMPUTER_ID.into()));
    running.start_date = Some(now);
    running.period = 30;
    for (t, name) in [(expired, "800"), (running, "801")] {
        let f = s.dir.join(name);
        std::fs::write(&f, licence::sign(&t, &centre).expect("sign")).expect("write");
        assert!(s
            .cli(&["licence", "import", f.to_str().expect("p")])
            .status
            .success());
    }
    let e = licence(&s, 800).await;
    assert_eq!(
        (
            e["Expired"].clone(),
            e["DaysLeft"].clone(),
            e["Period"].clone()
        ),
        (json!(true), json!(0), json!(1))
    );
    assert!(e["ExpireDate"].is_string());
    let r = s.post("/api/sessions", session("x", 800)).await;
    r.assert_error(404, "ENoMatchingKey");
    assert!(r.json()["Message"].as_str().expect("m").contains("expired"));
    let ok = licence(&s, 801).await;
    assert_eq!(
        (ok["Expired"].clone(), ok["DaysLeft"].clone()),
        (json!(false), json!(30))
    );
    assert_eq!(s.post("/api/sessions", session("y", 801)).await.status, 201);
}
