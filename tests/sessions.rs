//! External sessions: allocation, the 200/201 rule, filters, leases and their expiry, early
//! release, connections, and the licence count under heavy concurrency.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn session(client: &str) -> Value {
    json!({"KeyID": KEY_ID, "ClientSessionID": client, "AppName": "MobileClient",
           "UserName": "MobileUser", "ComputerName": "Androud Table Sevice", "SessionStarted": "2020-01-01T12:52:20"})
}

fn with(mut v: Value, k: &str, x: Value) -> Value {
    v[k] = x;
    v
}

#[tokio::test]
async fn create_then_existing_returns_the_licence() {
    let s = Server::demo().await;
    let r = s.post("/api/sessions", session("0123456789ABCDEF")).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let lic = r.json();
    assert_eq!(lic["KeyID"], KEY_ID);
    assert!(
        lic["LicenceCount"].as_u64().is_some(),
        "the body is a Licence object: {lic}"
    );
    let first = s.get("/api/sessions").await.json()["Sessions"][0].clone();
    assert_eq!(first["SessionStarted"], "2020-01-01T12:52:20.000Z");
    assert_eq!(first["Expired"], "False");
    assert_eq!(first["SessionNumber"], "1");
    assert_eq!(first["UsedLicence"], lic["KeyNo"]);
    assert_eq!(first["UserName"], "MobileUser");

    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = s.post("/api/sessions", session("0123456789ABCDEF")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["KeyNo"], lic["KeyNo"]);
    let sessions = s.get("/api/sessions").await.json();
    let list = sessions["Sessions"].as_array().expect("Sessions");
    assert_eq!(list.len(), 1, "same ClientSessionID, same session");
    assert!(
        list[0]["ExpireTime"].as_str() > first["ExpireTime"].as_str(),
        "the lease was renewed"
    );

    // One session, one connection, cross-referenced.
    let id = list[0]["ID"].as_str().expect("ID");
    let one = s.get(&format!("/api/sessions/{id}")).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json(), list[0]);
    let conn_id = list[0]["SessionConnection"].as_str().expect("conn");
    let conns = s.get("/api/connections").await.json();
    assert_eq!(conns["Connections"].as_array().map(Vec::len), Some(1));
    let c = s.get(&format!("/api/connections/{conn_id}")).await.json();
    assert_eq!(c["ID"], conn_id);
    assert_eq!(c["PeerIP"], "127.0.0.1");
    assert_eq!(c["ComputerName"], "Androud Table Sevice");
    assert_eq!(c["Expired"], "False");
    assert_eq!(c["KeyID"], KEY_ID);
    s.get("/api/sessions/NOPE")
        .await
        .assert_error(404, "ESessionNotFound");
    s.get("/api/connections/NOPE")
        .await
        .assert_error(404, "EConnectionNotFound");
}

#[tokio::test]
async fn required_parameters_and_bad_values() {
    let s = Server::demo().await;
    for missing in ["KeyID", "ClientSessionID", "AppName"] {
        let mut b = session("x");
        b.as_object_mut().expect("obj").remove(missing);
        s.post("/api/sessions", b)
            .await
            .assert_error(400, "EBadRequest");
    }
    s.post("/api/sessions", with(session("x"), "ITN", json!("12ab")))
        .await
        .assert_error(400, "EBadRequest");
    s.post("/api/sessions", with(session("x"), "KeyNo", json!("seven")))
        .await
        .assert_error(400, "EBadRequest");
    s.post(
        "/api/sessions",
        with(session("x"), "SessionStarted", json!("yesterday")),
    )
    .await
    .assert_error(400, "EBadRequest");
    assert_eq!(
        s.get("/api/sessions").await.json()["Sessions"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
}

#[tokio::test]
async fn selection_filters() {
    let s = Server::demo().await;
    // KeyNo picks the USB key; it has one licence.
    let r = s
        .post("/api/sessions", with(session("a"), "KeyNo", json!(USB_KEY)))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["KeyNo"], USB_KEY);
    let r = s
        .post("/api/sessions", with(session("b"), "KeyNo", json!(USB_KEY)))
        .await;
    r.assert_error(403, "ENoFreeLicence");
    // ITN as number and as string (the demo keys have ITN 1234567890).
    assert_eq!(
        s.post(
            "/api/sessions",
            with(session("c"), "ITN", json!(1234567890u64))
        )
        .await
        .status,
        201
    );
    assert_eq!(
        s.post(
            "/api/sessions",
            with(session("d"), "ITN", json!("1234567890"))
        )
        .await
        .status,
        201
    );
    s.post(
        "/api/sessions",
        with(session("e"), "ITN", json!("0987654321")),
    )
    .await
    .assert_error(404, "ENoMatchingKey");
    s.post(
        "/api/sessions",
        with(session("f"), "IEC", json!("770101001")),
    )
    .await
    .assert_error(404, "ENoMatchingKey");
    s.post("/api/sessions", with(session("g"), "KeyNo", json!(1)))
        .await
        .assert_error(404, "ENoMatchingKey");
    s.post("/api/sessions", with(session("h"), "KeyID", json!("FFFF")))
        .await
        .assert_error(404, "ENoMatchingKey");
    // The blank USB key never serves a session, even by its number.
    s.post(
        "/api/sessions",
        with(session("i"), "KeyNo", json!(BLANK_SERIAL)),
    )
    .await
    .assert_error(404, "ENoMatchingKey");
    // Informational and infobase parameters are recorded on the session.
    let b = with(
        with(session("j"), "InfoBaseName", json!("Accounting")),
        "AccessCode",
        json!("AC-1"),
    );
    assert_eq!(s.post("/api/sessions", b).await.status, 201);
    let list = s.get("/api/sessions").await.json();
    let j = list["Sessions"]
        .as_array()
        .expect("list")
        .iter()
        .find(|x| x["ClientSessionID"] == "j")
        .cloned()
        .expect("j");
    assert_eq!(j["InfoBaseConnectionStr"], "Accounting");
    assert_eq!(j["AccessCode"], "AC-1");
}

#[tokio::test]
async fn leases_expire_and_free_their_licence() {
    let s = Server::start(Opts {
        demo: true,
        config: "[leases]\nsession_seconds = 2.0\n".into(),
    })
    .await;
    let usb = |c: &str| with(session(c), "KeyNo", json!(USB_KEY));
    assert_eq!(s.post("/api/sessions", usb("holder")).await.status, 201);
    s.post("/api/sessions", usb("waiting"))
        .await
        .assert_error(403, "ENoFreeLicence");
    // Renewing keeps the licence past the first lease.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(s.post("/api/sessions", usb("holder")).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.post("/api/sessions", usb("waiting"))
        .await
        .assert_error(403, "ENoFreeLicence");
    // Without renewal the lease ends: the session leaves the lists and its licence is free.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        s.get("/api/sessions").await.json()["Sessions"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    assert_eq!(
        s.get("/api/connections").await.json()["Connections"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    assert_eq!(s.post("/api/sessions", usb("waiting")).await.status, 201);
    // The old holder comes back as a new session, and finds the licence taken.
    s.post("/api/sessions", usb("holder"))
        .await
        .assert_error(403, "ENoFreeLicence");
}

#[tokio::test]
async fn delete_releases_a_session_early() {
    let s = Server::demo().await;
    let usb = |c: &str| with(session(c), "KeyNo", json!(USB_KEY));
    assert_eq!(s.post("/api/sessions", usb("one")).await.status, 201);
    let id = s.get("/api/sessions").await.json()["Sessions"][0]["ID"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = s.call("DELETE", &format!("/api/sessions/{id}"), None).await;
    assert_eq!(r.status, 202);
    assert_eq!(
        r.json(),
        serde_json::json!({"Code": 202, "Text": "Updated", "Command": "CloseSession", "ID": id})
    );
    s.call("DELETE", &format!("/api/sessions/{id}"), None)
        .await
        .assert_error(404, "ESessionNotFound");
    assert_eq!(s.post("/api/sessions", usb("two")).await.status, 201);
}

#[tokio::test]
async fn five_hundred_clients_never_exceed_the_licence_count() {
    let s = std::sync::Arc::new(Server::demo().await);
    let mut tasks = Vec::new();
    for i in 0..500 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let b = with(
                session(&format!("client-{i}")),
                "KeyNo",
                json!(SOFTWARE_KEY),
            );
            s.post("/api/sessions", b).await
        }));
    }
    let (mut created, mut refused) = (0, 0);
    for t in tasks {
        let r = t.await.expect("task");
        match r.status {
            201 => created += 1,
            403 => {
                r.assert_error(403, "ENoFreeLicence");
                refused += 1
            }
            other => panic!("unexpected {other}: {}", String::from_utf8_lossy(&r.body)),
        }
    }
    assert_eq!((created, refused), (5, 495));
    let list = s.get("/api/sessions").await.json();
    let on_key = list["Sessions"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|x| x["UsedLicence"] == SOFTWARE_KEY)
        .count();
    assert_eq!(on_key, 5);
}
