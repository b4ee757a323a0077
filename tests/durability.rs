//! Crash safety: the host is killed with SIGKILL at random moments while it writes key
//! memory (a software key's memory file and a simulated USB key's image) and replaces a
//! licence file. After each restart every value must be the last one acknowledged or the one
//! in flight — never a mix, never an unreadable file.
//!
//! Why this catches a torn write: every write is a whole-file replacement of a JSON document
//! (or a signed licence). A half-written file fails to parse (the key shows `Workable: false`
//! or its memory read fails) and a mixed one fails its signature; the assertion on the value
//! catches a write that was acknowledged but lost.

mod common;
use common::*;
use rand::Rng;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default, Clone)]
struct Track {
    acked: String,
    in_flight: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_during_writes_leaves_old_or_new() {
    let mut s = Server::demo().await;
    let _tmp = s.keep_dir();
    let dir = s.dir.clone();
    let licence_file = dir.join("import.licence");
    let state: Arc<Mutex<HashMap<u64, Track>>> = Arc::new(Mutex::new(HashMap::new()));
    let acks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counts: Arc<Mutex<Track>> = Arc::new(Mutex::new(Track {
        acked: "none".into(),
        in_flight: None,
    }));

    for round in 0..5 {
        let server = Arc::new(s);
        let mut writers = Vec::new();
        for key in [SOFTWARE_KEY, USB_KEY] {
            let (server, state, acks) = (server.clone(), state.clone(), acks.clone());
            writers.push(tokio::spawn(async move {
                for i in 0.. {
                    // Long values, so a write spans many protocol reports and file blocks.
                    let v = format!("{round}-{i}-{}", "x".repeat(3000));
                    state
                        .lock()
                        .expect("lock")
                        .entry(key)
                        .or_default()
                        .in_flight = Some(v.clone());
                    let r = server
                        .post(&format!("/api/licences/{key}/memory"), json!({"Value": v}))
                        .await;
                    assert_eq!(r.status, 202);
                    acks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let mut st = state.lock().expect("lock");
                    let t = st.entry(key).or_default();
                    t.acked = v;
                    t.in_flight = None;
                }
            }));
        }
        // Replace a licence file over and over through the CLI (a separate process).
        let (srv, counts2, lf) = (server.clone(), counts.clone(), licence_file.clone());
        let centre2 = srv.centre();
        writers.push(tokio::spawn(async move {
            for n in 1u32.. {
                let doc = keybridge::licence::sign(
                    &terms(
                        900,
                        n,
                        keybridge::licence::Binding::Computer(COMPUTER_ID.into()),
                    ),
                    &centre2,
                )
                .expect("sign");
                std::fs::write(&lf, &doc).expect("write");
                counts2.lock().expect("lock").in_flight = Some(n.to_string());
                let (srv2, lf2) = (srv.clone(), lf.clone());
                let out = tokio::task::spawn_blocking(move || {
                    srv2.cli(&["licence", "import", lf2.to_str().expect("p")])
                })
                .await
                .expect("cli");
                if !out.status.success() {
                    // The host died under the CLI: the import may or may not have landed.
                    std::future::pending::<()>().await;
                }
                let mut c = counts2.lock().expect("lock");
                c.acked = n.to_string();
                c.in_flight = None;
            }
        }));
        let wait = rand::thread_rng().gen_range(150..600);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        // SIGKILL: no shutdown code, no flush, mid-write.
        let pid = server.pid();
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
        for w in &writers {
            w.abort();
        }
        for w in writers {
            let _ = w.await;
        }
        // A CLI run may still hold a reference on a blocking thread; the process is dead, or
        // about to be: SIGKILL is delivered asynchronously, and on a loaded machine the old
        // process can still hold its control socket for a moment.
        let sock = server.data.join("control.sock");
        drop(server);
        for _ in 0..100 {
            if std::os::unix::net::UnixStream::connect(&sock).is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        s = Server::launch(
            &dir,
            &Opts {
                demo: true,
                config: String::new(),
            },
        );
        s.wait_ready().await;
        let list = s.get("/api/licences").await.json();
        for l in list["Licences"].as_array().expect("list") {
            assert_eq!(l["Workable"], true, "round {round}: {l}\n{}", s.log());
        }
        for key in [SOFTWARE_KEY, USB_KEY] {
            let got = s.get(&format!("/api/licences/{key}/memory")).await.json()["Value"]
                .as_str()
                .expect("Value")
                .to_owned();
            let t = state
                .lock()
                .expect("lock")
                .get(&key)
                .cloned()
                .unwrap_or_default();
            assert!(
                got == t.acked || Some(&got) == t.in_flight.as_ref(),
                "round {round}, key {key}: memory is neither the acknowledged nor the in-flight value"
            );
            let mut st = state.lock().expect("lock");
            let e = st.entry(key).or_default();
            e.acked = got;
            e.in_flight = None;
        }
        let c = counts.lock().expect("lock").clone();
        if c.acked != "none" || c.in_flight.is_some() {
            let r = s.get("/api/licences/900").await;
            if r.status == 200 {
                let n = r.json()["LicenceCount"].to_string();
                assert!(
                    n == c.acked || Some(&n) == c.in_flight.as_ref(),
                    "licence count {n} vs {}/{:?}",
                    c.acked,
                    c.in_flight
                );
                let mut cc = counts.lock().expect("lock");
                cc.acked = n;
                cc.in_flight = None;
            } else {
                assert_eq!(c.acked, "none", "an acknowledged licence import was lost");
            }
        }
        // No temp file survives a restart.
        for d in [s.data.clone(), s.data.join("sim")] {
            for e in std::fs::read_dir(&d).expect("dir").flatten() {
                assert!(
                    !e.file_name().to_string_lossy().ends_with(".tmp"),
                    "{:?}",
                    e.path()
                );
            }
        }
    }
    // The test means something only if writes were really going on when the host died.
    assert!(
        acks.load(std::sync::atomic::Ordering::Relaxed) > 10,
        "too few writes to test anything"
    );
}
