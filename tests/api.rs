//! The API surface: every read endpoint, the error format, authentication, the API switch,
//! and response signatures checked by two independent implementations.

mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn api_root_lists_every_path() {
    let s = Server::demo().await;
    let r = s.get("/api").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json;charset=utf-8")
    );
    let j = r.json();
    assert_eq!(j["Version"], env!("CARGO_PKG_VERSION"));
    let urns: Vec<&str> = j["Urns"]
        .as_array()
        .expect("Urns")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for p in [
        "/api/serverinfo",
        "/api/licences",
        "/api/connections",
        "/api/sessions",
        "/api/licences/update",
        "/api/publickey",
    ] {
        assert!(urns.contains(&p), "{p} missing from {urns:?}");
    }
}

#[tokio::test]
async fn serverinfo_reports_this_machine() {
    let s = Server::demo().await;
    let j = s.get("/api/serverinfo").await.json();
    assert_eq!(j["PID"], s.pid());
    assert_eq!(j["ComputerID"], COMPUTER_ID);
    assert_eq!(j["OSType"], "Linux");
    assert_eq!(j["Version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        j["ComputerName"],
        gethostname::gethostname().to_string_lossy().as_ref()
    );
    assert!(j["ModuleName"]
        .as_str()
        .expect("ModuleName")
        .ends_with("keybridge"));
    let ips = j["LocalIP"].as_str().expect("LocalIP");
    assert!(
        ips.split(',')
            .all(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok()),
        "{ips}"
    );
    assert!(ips.contains("127.0.0.1"));
    let started = j["Started"].as_str().expect("Started");
    assert!(keybridge::time::parse_client(started).is_some());
    assert_eq!(started.len(), 24, "YYYY-MM-DDTHH:MM:SS.mmmZ: {started}");
    assert!(started.ends_with('Z'));
}

#[tokio::test]
async fn licences_list_and_one() {
    let s = Server::demo().await;
    let j = s.get("/api/licences").await.json();
    let list = j["Licences"].as_array().expect("Licences");
    assert_eq!(list.len(), 3, "{j}");
    let sw = list
        .iter()
        .find(|l| l["KeyNo"] == SOFTWARE_KEY)
        .expect("software key");
    assert_eq!(sw["Type"], "Virtual");
    assert_eq!(sw["LicenceCount"], 5);
    assert_eq!(sw["Workable"], true);
    assert_eq!(sw["Expired"], false);
    assert!(sw["FileName"]
        .as_str()
        .expect("FileName")
        .ends_with("672B.7131766.licence"));
    assert_eq!(sw["Flags"].as_str().expect("Flags").len(), 32);
    let usb = list
        .iter()
        .find(|l| l["KeyNo"] == USB_KEY)
        .expect("usb key");
    assert_eq!(usb["Type"], "USB");
    assert_eq!(usb["BlankKeyNo"], KEYED_SERIAL);
    let blank = list.iter().find(|l| l["IsBlank"] == true).expect("blank");
    assert_eq!(blank["BlankKeyNo"], BLANK_SERIAL);
    assert_eq!(blank["KeyID"], serde_json::Value::Null);

    // Every field of the spec is present on every element, null where it has no value.
    const FIELDS: [&str; 46] = [
        "Type",
        "FileName",
        "Enabled",
        "IsBlank",
        "Workable",
        "OpenError",
        "Version",
        "KeyNo",
        "KeyID",
        "RegNo",
        "KeyType",
        "ServiceType",
        "LicenceCount",
        "ProductVersion",
        "ProductVersionName",
        "BlankKeyNo",
        "ActivationCode",
        "ActivationDate",
        "StartDate",
        "Period",
        "ExpireDate",
        "DaysLeft",
        "Expired",
        "Flags",
        "ITN",
        "IEC",
        "ProductName",
        "Article",
        "ArticleName",
        "Message",
        "MessageType",
        "Recovered",
        "SupportDate",
        "SupportEndDate",
        "SupportPeriod",
        "SupportType",
        "IndustrySupportDate",
        "IndustrySupportEndDate",
        "IndustrySupportPeriod",
        "IndustrySupportType",
        "IndustrySupportLevel",
        "IndustrySupportPreferentials",
        "UpdateDate",
        "KeyNo",
        "Type",
        "Enabled",
    ];
    for l in list {
        for f in FIELDS {
            assert!(l.get(f).is_some(), "{f} missing in {l}");
        }
    }

    let one = s.get(&format!("/api/licences/{SOFTWARE_KEY}")).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json(), *sw);
    s.get("/api/licences/99")
        .await
        .assert_error(404, "EKeyNotFound");
    s.get("/api/licences/12ab")
        .await
        .assert_error(400, "EBadRequest");
    s.get("/api/licences/-5")
        .await
        .assert_error(400, "EBadRequest");
}

#[tokio::test]
async fn unknown_path_wrong_method_and_bad_json_use_the_error_format() {
    let s = Server::demo().await;
    s.get("/api/someurl")
        .await
        .assert_error(404, "EHTTPNotFound");
    s.get("/elsewhere").await.assert_error(404, "EHTTPNotFound");
    s.call("DELETE", "/api/licences", None)
        .await
        .assert_error(405, "EHTTPMethodNotAllowed");
    s.call("POST", "/api/serverinfo", None)
        .await
        .assert_error(405, "EHTTPMethodNotAllowed");
    s.call("PATCH", "/api/sessions", None)
        .await
        .assert_error(405, "EHTTPMethodNotAllowed");
    // Malformed JSON and a non-object body.
    let r = s
        .client
        .post(format!("{}/api/sessions", s.base))
        .basic_auth(USER, Some(PASS))
        .body("{\"KeyID\": ")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    s.post("/api/sessions", json!([1, 2]))
        .await
        .assert_error(400, "EBadRequest");
    // The same parameter in query and body with different values.
    s.call(
        "POST",
        &format!("/api/licences/{SOFTWARE_KEY}/memory?Value=a"),
        Some(json!({"Value": "b"})),
    )
    .await
    .assert_error(400, "EBadRequest");
}

#[tokio::test]
async fn install_and_update_without_a_centre() {
    // No demo (whose in-process centre would answer) and no [centre] url.
    let s = Server::start(Opts {
        demo: false,
        config: String::new(),
    })
    .await;
    let before = s.get("/api/licences").await.json();
    let code = keybridge::centre::ActivationCode::generate().to_string();
    let body =
        json!({"ActivationCodeString": code, "ITN": 1234567890, "IEC": null, "BlankKeyNo": null});
    let r = s.post("/api/licences", body.clone()).await;
    r.assert_error(503, "ECentreUnavailable");
    assert!(r.json()["Message"]
        .as_str()
        .expect("m")
        .contains("no licensing centre is configured"));
    s.call("PUT", "/api/licences", Some(body))
        .await
        .assert_error(503, "ECentreUnavailable");
    s.post("/api/licences/update", json!({}))
        .await
        .assert_error(503, "ECentreUnavailable");
    // The spec's example code has a wrong check digit: refused before any network call.
    let typo = json!({"ActivationCodeString": "4345-9320-2035-7421-5361", "ITN": 1234567890});
    let r = s.post("/api/licences", typo).await;
    r.assert_error(400, "EBadRequest");
    assert!(r.json()["Message"].as_str().expect("m").contains("typo"));
    s.post("/api/licences", json!({"ITN": 1234567890}))
        .await
        .assert_error(400, "EBadRequest");
    // Nothing changed.
    assert_eq!(s.get("/api/licences").await.json(), before);
}

#[tokio::test]
async fn credentials_are_required_and_failures_throttled() {
    let s = Server::start(Opts {
        demo: true,
        config: "[api]\nmax_failed_logins = 3\nlogin_window_seconds = 60\n".into(),
    })
    .await;
    let r = s
        .request("GET", "/api/licences", None, None, Some("q1"))
        .await;
    r.assert_error(401, "EHTTPUnauthorized");
    assert!(r.header("www-authenticate").is_some());
    s.request("GET", "/api/licences", None, Some(("admin", "nope")), None)
        .await
        .assert_error(401, "EHTTPUnauthorized");
    s.request("GET", "/api/licences", None, Some(("root", "admin")), None)
        .await
        .assert_error(401, "EHTTPUnauthorized");
    // The request without credentials guessed nothing and was not counted: the right
    // password still works, and clears the count.
    assert_eq!(s.get("/api/licences").await.status, 200);
    for pw in ["a", "b", "c"] {
        s.request("GET", "/api/licences", None, Some((USER, pw)), None)
            .await
            .assert_error(401, "EHTTPUnauthorized");
    }
    // Three failures from this address: now even the right password is refused for a while.
    let r = s
        .request("GET", "/api/licences", None, Some((USER, PASS)), None)
        .await;
    r.assert_error(401, "EHTTPUnauthorized");
    assert!(r.json()["Message"]
        .as_str()
        .expect("msg")
        .contains("too many failed logins"));
    assert!(r.header("retry-after").is_some());
    // The public key needs no credentials.
    let pk = s.request("GET", "/api/publickey", None, None, None).await;
    assert_eq!(pk.status, 200);
}

#[tokio::test]
async fn configured_password_replaces_the_default() {
    let out = std::process::Command::new(BIN)
        .args(["auth", "hash"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(b"correct horse\n")?;
            c.wait_with_output()
        })
        .expect("auth hash");
    let line = String::from_utf8(out.stdout).expect("utf8");
    assert!(
        line.starts_with("password_hash = \"pbkdf2-sha256$"),
        "{line}"
    );
    let s = Server::start(Opts {
        demo: true,
        config: format!("[api]\nuser = \"ops\"\n{line}"),
    })
    .await;
    s.request("GET", "/api", None, Some(("admin", "admin")), None)
        .await
        .assert_error(401, "EHTTPUnauthorized");
    let r = s
        .request("GET", "/api", None, Some(("ops", "correct horse")), None)
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn non_loopback_bind_with_default_password_is_refused() {
    let d = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(d.path())
        .arg("--config")
        .arg(d.path().join("absent-but-explicit.toml"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    // An explicit config that does not exist is itself an error; with an empty one, the bind is refused.
    std::fs::write(d.path().join("k.toml"), "").expect("write");
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(d.path())
        .arg("--config")
        .arg(d.path().join("k.toml"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("default API password"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn disabled_api_answers_503_signed() {
    let s = Server::start(Opts {
        demo: true,
        config: "[api]\nenabled = false\n".into(),
    })
    .await;
    s.get("/api/licences")
        .await
        .assert_error(503, "EAPIDisabled");
    s.get("/api").await.assert_error(503, "EAPIDisabled");
}

#[tokio::test]
async fn signatures_verify_with_rsa_and_openssl() {
    let s = Server::demo().await;
    // With a QueryID: it is echoed and signed in front of the body.
    let with_q = s
        .request(
            "GET",
            "/api/licences",
            None,
            Some((USER, PASS)),
            Some("20200127230600"),
        )
        .await;
    // Without: the body alone.
    let without = s
        .request("GET", "/api/serverinfo", None, Some((USER, PASS)), None)
        .await;
    // An error, a 401 and a 202 (which carries a JSON body: a signature over the QueryID
    // alone would sign bytes the client chose).
    let err = s
        .request(
            "GET",
            "/api/licences/1",
            None,
            Some((USER, PASS)),
            Some("q-err"),
        )
        .await;
    let unauth = s
        .request("GET", "/api/licences", None, None, Some("q-401"))
        .await;
    let empty = s
        .request(
            "DELETE",
            &format!("/api/licences/{SOFTWARE_KEY}/memory"),
            None,
            Some((USER, PASS)),
            Some("q-202"),
        )
        .await;
    assert_eq!(empty.status, 202);
    assert!(empty.json().is_object());
    for (r, q) in [
        (&with_q, "20200127230600"),
        (&without, ""),
        (&err, "q-err"),
        (&unauth, "q-401"),
        (&empty, "q-202"),
    ] {
        let sig = r.header("licence-signature").expect("sig");
        let mut msg = q.as_bytes().to_vec();
        msg.extend_from_slice(&r.body);
        assert!(
            openssl_verify(&s.public_key, &msg, &sig),
            "openssl rejects {}",
            r.status
        );
        // A changed byte or a different QueryID does not verify.
        let mut bad = msg.clone();
        bad.push(b' ');
        assert!(!openssl_verify(&s.public_key, &bad, &sig));
        assert!(!rsa_verify(
            &s.public_key,
            &[b"x", msg.as_slice()].concat(),
            &sig
        ));
    }
    assert!(with_q
        .header("licence-serverversion")
        .expect("ver")
        .starts_with(env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn cli_prints_the_key_and_verifies_saved_responses() {
    let s = Server::demo().await;
    let out = s.cli(&["key", "public"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), s.public_key);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.data.join("server-key.pem"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the private key is readable by others");
    }

    let r = s
        .request(
            "GET",
            "/api/licences",
            None,
            Some((USER, PASS)),
            Some("777"),
        )
        .await;
    let d = tempfile::tempdir().expect("tmp");
    let body = d.path().join("body.json");
    let headers = d.path().join("headers.txt");
    std::fs::write(&body, &r.body).expect("write");
    let mut h = format!("HTTP/1.1 {} OK\r\n", r.status);
    for (k, v) in &r.headers {
        h.push_str(&format!("{}: {}\r\n", k, v.to_str().expect("ascii")));
    }
    std::fs::write(&headers, h).expect("write");
    let ok = s.cli(&[
        "verify",
        "--body",
        body.to_str().expect("p"),
        "--headers",
        headers.to_str().expect("p"),
    ]);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("signature OK"));
    // Tampered body: refused with exit code 1.
    std::fs::write(&body, [r.body.as_slice(), b" "].concat()).expect("write");
    let bad = s.cli(&[
        "verify",
        "--body",
        body.to_str().expect("p"),
        "--headers",
        headers.to_str().expect("p"),
    ]);
    assert_eq!(bad.status.code(), Some(1), "{}", stdout(&bad));
}

#[tokio::test]
async fn put_is_accepted_wherever_post_is() {
    let s = Server::demo().await;
    let r = s
        .call(
            "PUT",
            "/api/sessions",
            Some(json!({"KeyID": KEY_ID, "ClientSessionID": "put-1", "AppName": "t"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = s
        .call(
            "PUT",
            &format!("/api/licences/{SOFTWARE_KEY}/memory"),
            Some(json!({"Value": "via put"})),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        s.get(&format!("/api/licences/{SOFTWARE_KEY}/memory"))
            .await
            .json()["Value"],
        "via put"
    );
}

/// A storage failure is a 500 that says what failed but not where: the data directory's path
/// stays in the host's log. Replacing a file with a directory makes the failure happen even
/// for root, whom permissions would not stop.
#[tokio::test]
async fn storage_errors_do_not_reveal_paths() {
    let s = Server::demo().await;
    let data = std::fs::canonicalize(&s.data).expect("data dir");
    let leaks = |r: &Resp| {
        let body = String::from_utf8_lossy(&r.body).into_owned();
        let dir = s.dir.to_string_lossy().into_owned();
        (body.contains(&*data.to_string_lossy()) || body.contains(&dir)).then_some(body)
    };

    // Reading: the key's memory file is a directory.
    let memory = data.join(format!("{KEY_ID}.{SOFTWARE_KEY}.memory"));
    std::fs::create_dir(&memory).expect("dir");
    let r = s
        .call(
            "GET",
            &format!("/api/licences/{SOFTWARE_KEY}/memory"),
            Some(json!({"Password": ""})),
        )
        .await;
    r.assert_error(500, "EStorageError");
    assert_eq!(leaks(&r), None);
    assert!(
        r.json()["Message"]
            .as_str()
            .is_some_and(|m| m.contains("reading the key's memory file")),
        "{}",
        r.json()
    );

    // Writing: the demo centre numbers the next key 7131768, and its licence file's place is
    // taken by a directory, so installing the activated licence fails at the rename.
    let target = data.join(format!("{KEY_ID}.7131768.licence"));
    std::fs::create_dir(&target).expect("dir");
    std::fs::write(target.join("occupant"), b"x").expect("file");
    let code = s.demo_code();
    let r = s
        .post(
            "/api/licences",
            json!({"ActivationCodeString": code, "ITN": 1234567890}),
        )
        .await;
    r.assert_error(500, "EStorageError");
    assert_eq!(leaks(&r), None);
    assert!(
        r.json()["Message"]
            .as_str()
            .is_some_and(|m| m.contains("writing the licence file")),
        "{}",
        r.json()
    );
    // The operator still gets the whole story, path included.
    let log = s.log();
    assert!(
        log.contains(&*target.to_string_lossy()),
        "the log names the file:\n{log}"
    );
}
