//! Limits on leases over HTTP: renewals never make connections, the session and connection
//! caps answer 503 with their own exceptions, and the lists come in pages.

mod common;
use common::*;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use std::sync::Arc;

fn session(client: &str, computer: &str) -> Value {
    json!({"KeyID": KEY_ID, "ClientSessionID": client, "AppName": "App",
           "ComputerName": computer, "KeyNo": SOFTWARE_KEY})
}

fn total(r: &Resp) -> usize {
    r.header("x-total-count")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("X-Total-Count missing: {:?}", r.headers))
}

/// (entries in the answer, X-Total-Count)
async fn count(s: &Server, list: &str) -> (usize, usize) {
    let r = s.get(&format!("/api/{}", list.to_lowercase())).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let n = r.json()[list].as_array().map_or(0, Vec::len);
    (n, total(&r))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_with_changing_fields_make_no_connections() {
    const SESSIONS: usize = 4;
    const RENEWALS: usize = 20_000;
    let s = Arc::new(Server::demo().await);
    for i in 0..SESSIONS {
        let r = s
            .post("/api/sessions", session(&format!("c{i}"), "pc"))
            .await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(count(&s, "Connections").await, (1, 1), "one computer");

    // Every renewal claims another computer, application and series.
    let statuses: Vec<u16> = stream::iter(0..RENEWALS)
        .map(|i| {
            let s = s.clone();
            async move {
                let body = json!({
                    "KeyID": if i % 2 == 0 { KEY_ID } else { "FFFF" },
                    "ClientSessionID": format!("c{}", i % SESSIONS),
                    "AppName": format!("App-{i}"),
                    "ComputerName": format!("pc-{i}"),
                });
                s.post("/api/sessions", body).await.status
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let renewed = statuses.iter().filter(|st| **st == 200).count();
    assert_eq!(
        renewed, RENEWALS,
        "every request renews an existing session"
    );

    let (listed, all) = count(&s, "Connections").await;
    assert_eq!(listed, all);
    assert!(all <= SESSIONS, "{all} connections for {SESSIONS} sessions");
    assert_eq!(count(&s, "Sessions").await, (SESSIONS, SESSIONS));
    let list = s.get("/api/sessions").await.json();
    for x in list["Sessions"].as_array().expect("list") {
        assert_eq!(
            (&x["ComputerName"], &x["AppName"], &x["KeyID"]),
            (&json!("pc"), &json!("App"), &json!(KEY_ID)),
            "a renewal keeps the session's own fields: {x}"
        );
    }
}

#[tokio::test]
async fn the_session_cap_answers_503_and_frees_with_sessions() {
    let s = Server::start(Opts {
        demo: true,
        config: "[leases]\nmax_sessions = 3\nmax_connections = 2\n".into(),
    })
    .await;
    for c in ["a", "b"] {
        let r = s.post("/api/sessions", session(c, c)).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    // Two computers fill the connections; both hold sessions, so a third computer waits.
    let r = s.post("/api/sessions", session("c", "c")).await;
    r.assert_error(503, "ETooManyConnections");
    assert!(
        r.json()["Message"]
            .as_str()
            .is_some_and(|m| m.contains("max_connections")),
        "{}",
        r.json()
    );
    // A third session from a known computer fits; a fourth is over the cap.
    assert_eq!(
        s.post("/api/sessions", session("a2", "a")).await.status,
        201
    );
    let r = s.post("/api/sessions", session("d", "a")).await;
    r.assert_error(503, "ETooManySessions");
    assert!(
        r.json()["Message"]
            .as_str()
            .is_some_and(|m| m.contains("maximum of 3 sessions")),
        "{}",
        r.json()
    );
    // Renewing is never refused by the cap.
    assert_eq!(s.post("/api/sessions", session("a", "a")).await.status, 200);
    // Releasing one makes room, and its idle connection gives way to a new computer.
    let list = s.get("/api/sessions").await.json();
    let b = list["Sessions"]
        .as_array()
        .expect("list")
        .iter()
        .find(|x| x["ClientSessionID"] == "b")
        .and_then(|x| x["ID"].as_str())
        .expect("b")
        .to_owned();
    assert_eq!(
        s.call("DELETE", &format!("/api/sessions/{b}"), None)
            .await
            .status,
        202
    );
    assert_eq!(s.post("/api/sessions", session("c", "c")).await.status, 201);
    assert_eq!(count(&s, "Connections").await, (2, 2));
    assert_eq!(count(&s, "Sessions").await, (3, 3));
}

#[tokio::test]
async fn lists_come_in_pages() {
    let s = Server::demo().await;
    for i in 0..5 {
        let r = s
            .post(
                "/api/sessions",
                session(&format!("p{i}"), &format!("pc{i}")),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let mut seen = Vec::new();
    for offset in [0, 2, 4] {
        let r = s
            .get(&format!("/api/sessions?Offset={offset}&Limit=2"))
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(total(&r), 5);
        let page = r.json()["Sessions"].as_array().expect("array").clone();
        assert_eq!(page.len(), if offset == 4 { 1 } else { 2 });
        seen.extend(page.iter().map(|x| x["ClientSessionID"].clone()));
    }
    let expected: Vec<Value> = (0..5).map(|i| json!(format!("p{i}"))).collect();
    assert_eq!(seen, expected, "oldest first, each once");
    let r = s.get("/api/connections?Offset=3&Limit=10").await;
    assert_eq!(
        (r.json()["Connections"].as_array().map(Vec::len), total(&r)),
        (Some(2), 5)
    );
    let r = s.get("/api/sessions?Offset=99").await;
    assert_eq!(
        (r.json()["Sessions"].as_array().map(Vec::len), total(&r)),
        (Some(0), 5)
    );
    for bad in ["Limit=0", "Limit=10001", "Offset=-1", "Limit=x"] {
        s.get(&format!("/api/sessions?{bad}"))
            .await
            .assert_error(400, "EBadRequest");
        s.get(&format!("/api/connections?{bad}"))
            .await
            .assert_error(400, "EBadRequest");
    }
}
