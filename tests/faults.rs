//! A USB key that misbehaves: stops answering mid-command, answers with a bad CRC, is pulled
//! out during a memory write. The host reports a clear error in the API's format, the key's
//! memory holds the old or the new value (never a mix), and the host keeps serving other keys.
//! Faults are injected into the simulated key, so the real protocol code meets them.

mod common;
use common::*;
use serde_json::{json, Value};

fn mem() -> String {
    format!("/api/licences/{USB_KEY}/memory")
}

async fn write(s: &Server, value: &str) -> Resp {
    s.post(&mem(), json!({"Password": "", "Value": value}))
        .await
}

async fn read(s: &Server) -> String {
    let r = s.call("GET", &mem(), Some(json!({"Password": ""}))).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["Value"].as_str().expect("Value").to_owned()
}

fn fault(s: &Server, kind: &str, after: u32) {
    let out = s.cli(&[
        "sim",
        "fault",
        "--serial",
        &KEYED_SERIAL.to_string(),
        kind,
        "--after-reports",
        &after.to_string(),
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
}

fn replug(s: &Server) {
    let out = s.cli(&["sim", "plug", "--serial", &KEYED_SERIAL.to_string()]);
    assert!(out.status.success(), "{}", stdout(&out));
}

/// A value long enough to take ~50 reports, distinct per letter, so a mix would show.
fn long(letter: char) -> String {
    std::iter::repeat_n(letter, 3000).collect()
}

async fn software_key_still_serves(s: &Server, client: &str) {
    let r = s
        .post(
            "/api/sessions",
            json!({"KeyID": KEY_ID, "ClientSessionID": client, "AppName": "t", "KeyNo": SOFTWARE_KEY}),
        )
        .await;
    assert!(
        r.status == 200 || r.status == 201,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

#[tokio::test]
async fn misbehaving_key_never_mixes_memory_and_never_stops_the_host() {
    let s = Server::demo().await;
    assert_eq!(write(&s, &long('a')).await.status, 202);
    software_key_still_serves(&s, "other").await;

    // Pulled out a few reports into the write: the key never had the whole value.
    fault(&s, "unplug", 10);
    write(&s, &long('b'))
        .await
        .assert_error(404, "EKeyNotAttached");
    let l: Value = s.get(&format!("/api/licences/{USB_KEY}")).await.json();
    assert_eq!(l["Workable"], false, "unusable at once: {l}");
    software_key_still_serves(&s, "other").await;
    replug(&s);
    assert_eq!(
        read(&s).await,
        long('a'),
        "old value after an interrupted write"
    );

    // Pulled out after storing, before answering: the new value is kept.
    fault(&s, "unplug-before-reply", 0);
    write(&s, &long('c'))
        .await
        .assert_error(404, "EKeyNotAttached");
    replug(&s);
    assert_eq!(
        read(&s).await,
        long('c'),
        "new value when the key stored it"
    );

    // Answers with a corrupted CRC: the host says so; the key did store it.
    fault(&s, "bad-crc", 0);
    let r = write(&s, &long('d')).await;
    r.assert_error(500, "EDeviceError");
    assert!(
        r.json()["Message"]
            .as_str()
            .unwrap_or("")
            .contains("malformed"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(read(&s).await, long('d'));

    // Stops answering mid-command: a timeout, the old value, and the key answers again on
    // its next command (the half-sent command is dropped by the key).
    fault(&s, "silent", 5);
    write(&s, &long('e'))
        .await
        .assert_error(503, "EKeyNotResponding");
    software_key_still_serves(&s, "other").await;
    assert_eq!(read(&s).await, long('d'));
    assert_eq!(write(&s, "after the faults").await.status, 202);
    assert_eq!(read(&s).await, "after the faults");
}

/// While one key takes its time to fail, requests for other keys are answered: each key
/// has its own worker. Checked by order of completion, not by a time limit.
#[tokio::test]
async fn a_dead_key_does_not_hold_up_other_keys() {
    let s = Server::demo().await;
    fault(&s, "silent", 1);
    let path = mem();
    let slow = async {
        let r = s
            .post(&path, json!({"Password": "", "Value": long('x')}))
            .await;
        (r, std::time::Instant::now())
    };
    let others = async {
        let blank = s
            .call(
                "GET",
                &format!("/api/licences/{BLANK_SERIAL}/memory"),
                Some(json!({"Password": ""})),
            )
            .await;
        assert_eq!(blank.status, 200);
        software_key_still_serves(&s, "meanwhile").await;
        std::time::Instant::now()
    };
    let ((slow, slow_done), others_done) = tokio::join!(slow, others);
    slow.assert_error(503, "EKeyNotResponding");
    assert!(
        others_done < slow_done,
        "the other keys waited for the dead one"
    );
}
