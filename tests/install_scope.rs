//! Installing a licence reads only that licence: the others stay as the host last read them
//! (an install costs the same with ten keys as with ten thousand), and `systemctl reload`
//! (SIGHUP) is what re-reads them all.

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn an_install_reads_only_its_own_licence() {
    let s = Server::demo().await;
    // Another licence file changes on disk behind the host's back (damaged here).
    let other = s.data.join(format!("{KEY_ID}.{SOFTWARE_KEY}.licence"));
    assert!(other.exists());
    std::fs::write(&other, b"{ damaged").expect("write");
    // A new licence is installed through the API (activation at the demo centre).
    let code = s.demo_code();
    let r = s
        .post(
            "/api/licences",
            json!({"ActivationCodeString": code, "ITN": 1234567890}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let new_key = r.json()["KeyNo"].as_u64().expect("KeyNo");
    let list = s.get("/api/licences").await.json();
    let workable = |key: u64| {
        list["Licences"]
            .as_array()
            .expect("list")
            .iter()
            .find(|l| l["KeyNo"] == key)
            .map(|l| l["Workable"].clone())
    };
    assert_eq!(workable(new_key), Some(json!(true)), "the new one is there");
    assert_eq!(
        workable(SOFTWARE_KEY),
        Some(json!(true)),
        "the other file was not read again by the install"
    );
    // A reload re-reads every file, and says what is wrong with the damaged one.
    let pid = s.pid().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut damaged = false;
    for _ in 0..100 {
        let l = s.get(&format!("/api/licences/{SOFTWARE_KEY}")).await.json();
        if l["Workable"] == false {
            damaged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(damaged, "SIGHUP re-reads the licence files");
    assert_eq!(
        s.get(&format!("/api/licences/{new_key}")).await.json()["Workable"],
        true
    );
}
