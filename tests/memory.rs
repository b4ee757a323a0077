//! User memory on a software key and on a simulated USB key: the same rules on both, the
//! USB one going through the dongle protocol to the simulated firmware.

mod common;
use common::*;
use serde_json::json;

async fn read(s: &Server, key: u64, pw: &str) -> Resp {
    s.call(
        "GET",
        &format!("/api/licences/{key}/memory"),
        Some(json!({"Password": pw})),
    )
    .await
}

async fn value(s: &Server, key: u64, pw: &str) -> String {
    let r = read(s, key, pw).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    assert_eq!(j["KeyNo"], key);
    j["Value"].as_str().expect("Value").to_owned()
}

async fn exercise(s: &Server, key: u64) {
    let mem = format!("/api/licences/{key}/memory");
    assert_eq!(value(s, key, "").await, "");

    // Write through the JSON body, then through the query string.
    let r = s
        .post(
            &mem,
            json!({"Password": "", "Value": "Это модифицированное значение"}),
        )
        .await;
    assert_eq!(r.status, 202);
    // Our own JSON, never an empty body (whose signature would cover the QueryID alone).
    assert_eq!(
        r.json(),
        json!({"Code": 202, "Text": "Updated", "Command": "WriteMemory", "KeyNo": key})
    );
    assert_eq!(value(s, key, "").await, "Это модифицированное значение");
    assert_eq!(
        s.call("POST", &format!("{mem}?Value=from%20query"), None)
            .await
            .status,
        202
    );
    assert_eq!(
        s.get(&format!("{mem}?Password=")).await.json()["Value"],
        "from query"
    );

    // Set passwords; omitted ones mean the empty string.
    let r = s
        .post(
            &mem,
            json!({"NewReadPassword": "r1", "NewWritePassword": "w1"}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["Command"], "SetMemoryPasswords");
    read(s, key, "").await.assert_error(403, "EWrongPassword");
    assert_eq!(value(s, key, "r1").await, "from query");
    s.post(&mem, json!({"Password": "r1", "Value": "x"}))
        .await
        .assert_error(403, "EWrongPassword");
    assert_eq!(value(s, key, "r1").await, "from query");
    assert_eq!(
        s.post(&mem, json!({"Password": "w1", "Value": "written"}))
            .await
            .status,
        202
    );
    assert_eq!(value(s, key, "r1").await, "written");

    // A password change with a wrong current password changes nothing.
    s.post(&mem, json!({"ReadPassword": "r1", "WritePassword": "bad", "NewReadPassword": "", "NewWritePassword": ""}))
        .await
        .assert_error(403, "EWrongPassword");
    assert_eq!(value(s, key, "r1").await, "written");

    // Size limit: 4096 bytes fit, 4097 are refused and change nothing.
    let max = "я".repeat(2048);
    assert_eq!(
        s.post(&mem, json!({"Password": "w1", "Value": max}))
            .await
            .status,
        202
    );
    assert_eq!(value(s, key, "r1").await, max);
    let over = format!("{max}x");
    s.post(&mem, json!({"Password": "w1", "Value": over}))
        .await
        .assert_error(400, "EValueTooLarge");
    assert_eq!(value(s, key, "r1").await, max);

    // Writing and changing passwords in one request is ambiguous: refused.
    s.post(
        &mem,
        json!({"Password": "w1", "Value": "v", "NewReadPassword": "z"}),
    )
    .await
    .assert_error(400, "EBadRequest");
    assert_eq!(value(s, key, "r1").await, max);

    // Reset empties the value and both passwords.
    let r = s.call("DELETE", &mem, None).await;
    assert_eq!(r.status, 202);
    assert_eq!(
        r.json(),
        json!({"Code": 202, "Text": "Updated", "Command": "ResetMemory", "KeyNo": key})
    );
    assert_eq!(value(s, key, "").await, "");
    assert_eq!(
        s.post(&mem, json!({"Value": "after reset"})).await.status,
        202
    );
    assert_eq!(value(s, key, "").await, "after reset");
}

#[tokio::test]
async fn software_key_memory() {
    let s = Server::demo().await;
    exercise(&s, SOFTWARE_KEY).await;
    assert!(s.data.join("672B.7131766.memory").exists());
}

#[tokio::test]
async fn usb_key_memory_goes_to_the_device() {
    let s = Server::demo().await;
    exercise(&s, USB_KEY).await;
    // It is the device's memory: kept in the simulated key's image, not in a host file.
    let image =
        std::fs::read_to_string(s.data.join(format!("sim/{KEYED_SERIAL}.img"))).expect("image");
    assert!(image.contains("after reset"));
    assert!(!s.data.join("672B.7131767.memory").exists());
}

#[tokio::test]
async fn blank_usb_key_has_memory_too() {
    let s = Server::demo().await;
    assert_eq!(
        s.post(
            &format!("/api/licences/{BLANK_SERIAL}/memory"),
            json!({"Value": "on a blank"})
        )
        .await
        .status,
        202
    );
    assert_eq!(value(&s, BLANK_SERIAL, "").await, "on a blank");
}

#[tokio::test]
async fn repeated_failures_lock_the_memory_for_a_while() {
    let s = Server::start(Opts {
        demo: true,
        config: "[memory]\nmax_failures = 3\nlock_seconds = 3\n".into(),
    })
    .await;
    for key in [SOFTWARE_KEY, USB_KEY] {
        let mem = format!("/api/licences/{key}/memory");
        assert_eq!(
            s.post(
                &mem,
                json!({"NewReadPassword": "secret", "NewWritePassword": "secret"})
            )
            .await
            .status,
            202
        );
        read(&s, key, "a").await.assert_error(403, "EWrongPassword");
        read(&s, key, "b").await.assert_error(403, "EWrongPassword");
        read(&s, key, "c").await.assert_error(403, "EMemoryLocked");
        // Locked: the right password is refused too, and so are writes.
        read(&s, key, "secret")
            .await
            .assert_error(403, "EMemoryLocked");
        s.post(&mem, json!({"Password": "secret", "Value": "x"}))
            .await
            .assert_error(403, "EMemoryLocked");
    }
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    for key in [SOFTWARE_KEY, USB_KEY] {
        assert_eq!(value(&s, key, "secret").await, "");
    }
}

#[tokio::test]
async fn memory_of_missing_or_unplugged_keys() {
    let s = Server::demo().await;
    read(&s, 4242, "").await.assert_error(404, "EKeyNotFound");
    s.call("DELETE", "/api/licences/4242/memory", None)
        .await
        .assert_error(404, "EKeyNotFound");
    read(&s, 0, "").await.assert_error(400, "EBadRequest");
    let out = s.cli(&["sim", "unplug", "--serial", &KEYED_SERIAL.to_string()]);
    assert!(out.status.success(), "{}", stdout(&out));
    read(&s, USB_KEY, "")
        .await
        .assert_error(404, "EKeyNotAttached");
    s.post(
        &format!("/api/licences/{USB_KEY}/memory"),
        json!({"Value": "x"}),
    )
    .await
    .assert_error(404, "EKeyNotAttached");
}
