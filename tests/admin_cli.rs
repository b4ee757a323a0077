//! The admin CLI over a running host's API (`keybridge licences`, `licence show|activate|
//! update`, `memory …`, `sessions …`, `connections`): real commands against a real host on
//! loopback, every answer's signature checked — and an answer that does not verify refused
//! loudly, with nothing of it shown.

mod common;
use common::*;
use serde_json::{json, Value};

/// Runs `keybridge ARGS --url … --data …` against `s`; returns exit code, stdout, stderr.
fn kb(s: &Server, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .arg("--url")
        .arg(format!("http://{}", s.addr()))
        .arg("--data")
        .arg(&s.data)
        .env_remove("KEYBRIDGE_PASSWORD")
        .env_remove("KEYBRIDGE_PUBLIC_KEY")
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(r: (i32, String, String)) -> String {
    assert_eq!(r.0, 0, "stdout: {}\nstderr: {}", r.1, r.2);
    r.1
}

#[tokio::test]
async fn the_admin_cli_drives_a_running_host() {
    let s = Server::demo().await;
    // The table: every key, its state and the sessions it holds.
    assert_eq!(
        s.post(
            "/api/sessions",
            json!({"KeyID": KEY_ID, "ClientSessionID": "c1",
        "AppName": "1cv8", "UserName": "Иванов", "KeyNo": SOFTWARE_KEY})
        )
        .await
        .status,
        201
    );
    let table = ok(kb(&s, &["licences"]));
    let line = table
        .lines()
        .find(|l| l.starts_with(&SOFTWARE_KEY.to_string()))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("1/5") && line.ends_with("workable"), "{line}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&BLANK_SERIAL.to_string()) && l.ends_with("blank")),
        "{table}"
    );
    // --json is the host's JSON as it came.
    let j: Value = serde_json::from_str(&ok(kb(&s, &["licences", "--json"]))).expect("json");
    assert_eq!(j, s.get("/api/licences").await.json());
    let show = ok(kb(&s, &["licence", "show", &SOFTWARE_KEY.to_string()]));
    assert!(
        show.contains("ActivationCode") && show.contains("state: workable"),
        "{show}"
    );

    // Sessions and connections, and a release.
    let list = ok(kb(&s, &["sessions", "list"]));
    assert!(list.contains("Иванов") && list.contains("1cv8"), "{list}");
    let id = s.get("/api/sessions").await.json()["Sessions"][0]["ID"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(ok(kb(&s, &["connections"])).contains("1cv8"));
    assert!(ok(kb(&s, &["sessions", "release", &id])).contains("released"));
    assert_eq!(s.get("/api/sessions").await.json()["Sessions"], json!([]));

    // Memory: write, read, passwords, reset (only with --yes).
    let key = SOFTWARE_KEY.to_string();
    ok(kb(&s, &["memory", "write", &key, "значение"]));
    assert_eq!(ok(kb(&s, &["memory", "read", &key])).trim(), "значение");
    ok(kb(
        &s,
        &[
            "memory",
            "passwd",
            &key,
            "--new-read-password",
            "r1",
            "--new-write-password",
            "w1",
        ],
    ));
    let r = kb(&s, &["memory", "read", &key]);
    assert_eq!(r.0, 2);
    assert!(r.2.contains("EWrongPassword"), "{}", r.2);
    assert_eq!(
        ok(kb(&s, &["memory", "read", &key, "--memory-password", "r1"])).trim(),
        "значение"
    );
    let r = kb(&s, &["memory", "reset", &key]);
    assert!(r.0 != 0 && r.2.contains("--yes"), "{r:?}");
    ok(kb(&s, &["memory", "reset", &key, "--yes"]));
    assert_eq!(ok(kb(&s, &["memory", "read", &key])).trim(), "");

    // Activation onto the blank through the demo centre, then an update; piped, no progress.
    let code = s.demo_code();
    let r = kb(
        &s,
        &[
            "licence",
            "activate",
            "--code",
            &code,
            "--itn",
            "1234567890",
            "--blank-key-no",
            &BLANK_SERIAL.to_string(),
        ],
    );
    assert_eq!(r.0, 0, "{r:?}");
    assert!(r.1.contains("activated: USB"), "{}", r.1);
    assert!(r.2.is_empty(), "no progress on a pipe: {:?}", r.2);
    let r = kb(
        &s,
        &[
            "licence",
            "activate",
            "--code",
            &code,
            "--itn",
            "1234567890",
        ],
    );
    assert_eq!(r.0, 2);
    assert!(r.2.contains("403") || r.2.contains("409"), "{}", r.2);
    assert!(ok(kb(&s, &["licence", "update"])).contains("updated"));

    // A wrong password is the host's 401, said in words.
    let r = kb(&s, &["licences", "--password", "wrong"]);
    assert_eq!(r.0, 2);
    assert!(r.2.contains("401"), "{}", r.2);
}

/// An answer that is not signed by the host's key is refused, and nothing of it is shown.
#[tokio::test]
async fn an_answer_that_does_not_verify_is_refused() {
    let s = Server::demo().await;
    // The demo centre's response key: a real key, not the host's.
    let other = s.data.join("demo").join("centre-response.pem");
    assert!(other.exists());
    let r = kb(
        &s,
        &["licences", "--public-key", other.to_str().expect("p")],
    );
    assert_eq!(r.0, 2, "{r:?}");
    assert!(r.1.is_empty(), "nothing shown: {}", r.1);
    assert!(
        r.2.contains("REFUSED") && r.2.contains("does not verify"),
        "{}",
        r.2
    );
    // The host's own public key, given explicitly, verifies.
    let out = std::process::Command::new(BIN)
        .args(["key", "public", "--data"])
        .arg(&s.data)
        .output()
        .expect("run");
    let pem = s.dir.join("host.pem");
    std::fs::write(&pem, &out.stdout).expect("write");
    ok(kb(
        &s,
        &["licences", "--public-key", pem.to_str().expect("p")],
    ));
    // Something else answering on the URL (the demo centre: signed, but not by the host).
    let log = s.log_plain();
    let url = log
        .split("demo licensing centre at ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or_else(|| panic!("no centre URL in the log: {log}"));
    let out = std::process::Command::new(BIN)
        .args([
            "licences",
            "--url",
            url,
            "--public-key",
            pem.to_str().expect("p"),
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("REFUSED"),
        "{out:?}"
    );
}
