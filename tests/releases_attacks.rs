//! Attacks on the release API: uploads that break off or are too large leave nothing behind,
//! failed KEYs are throttled (also in parallel), links expire, racing uploads of one version
//! publish once, file names cannot leave the store.

mod common;

use common::centre::{release_form, CentreServer};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn meta(version: &str) -> Value {
    json!({"type": "T1", "version": version, "name": "N", "lic_product_id": "672B",
           "conf": "C", "tested_conf_versions": ["1.0"]})
}

fn query(key: &str) -> Value {
    json!({"TYPE": "T1", "CONF": "C", "CONF_VERSION": "1.0", "KEY": key})
}

async fn setup(c: &CentreServer) -> String {
    let (s, j) = c
        .post(
            "/centre/v1/products",
            json!({"key_id": "672B", "product_name": "P"}),
            true,
        )
        .await;
    assert_eq!(s, 201, "{j}");
    let key = c.code(json!({"key_id": "672B", "licence_count": 1})).await;
    c.activate_computer(&key, 'A').await;
    key
}

/// Files in the store (temporary and addressed).
fn store_files(c: &CentreServer) -> (usize, usize) {
    let count = |d: std::path::PathBuf| -> usize {
        let mut n = 0;
        let mut dirs = vec![d];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    dirs.push(e.path());
                } else {
                    n += 1;
                }
            }
        }
        n
    };
    let store = c.data.join("releases");
    (count(store.join("tmp")), count(store.join("sha256")))
}

async fn release_count(c: &CentreServer) -> usize {
    let (s, j) = c.get("/centre/v1/releases", Some("admin")).await;
    assert_eq!(s, 200);
    j["releases"].as_array().expect("list").len()
}

#[tokio::test]
async fn a_broken_upload_leaves_no_release_and_no_file() {
    let c = CentreServer::start().await;
    setup(&c).await;
    let (s, _) = c
        .upload_release(&meta("1.0"), &[("a.bin", &[1u8; 5000])], Some("admin"))
        .await;
    assert_eq!(s, 201);
    let before = store_files(&c);
    assert_eq!(before, (0, 1));
    let big = vec![7u8; 3_000_000];
    let (ct, body) = release_form(&meta("2.0"), &[("b.bin", &big)]);
    // Sent in part (the head promises the whole), then the connection closes mid-file.
    for cut in [body.len() / 2, body.len() - 10] {
        let mut sock = tokio::net::TcpStream::connect(c.addr())
            .await
            .expect("connect");
        let head = format!(
            "POST /centre/v1/releases HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic YWRtaW46YWRtaW4=\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
            c.addr(),
            body.len()
        );
        sock.write_all(head.as_bytes()).await.expect("head");
        sock.write_all(&body[..cut]).await.expect("part");
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(sock);
    }
    // A body that ends without the closing boundary.
    let truncated = &body[..body.len() - 20];
    let r = c
        .client
        .post(format!("{}/centre/v1/releases", c.base))
        .basic_auth("admin", Some("admin"))
        .header("content-type", ct.clone())
        .body(truncated.to_vec())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    let mut clean = false;
    for _ in 0..50 {
        if store_files(&c) == before {
            clean = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        clean,
        "left behind: {:?} (before {before:?})",
        store_files(&c)
    );
    assert_eq!(release_count(&c).await, 1);
    // The version was never taken: it publishes now.
    let (s, j) = c
        .upload_release(&meta("2.0"), &[("b.bin", &big)], Some("admin"))
        .await;
    assert_eq!(s, 201, "{j}");
    assert_eq!(store_files(&c), (0, 2));
}

#[tokio::test]
async fn uploads_are_bounded_and_names_stay_in_the_store() {
    let c = CentreServer::start_with(None, &["--release-max-upload-bytes", "100000"], None).await;
    setup(&c).await;
    let (s, j) = c
        .upload_release(
            &meta("1.0"),
            &[("a.bin", &vec![1u8; 200_000])],
            Some("admin"),
        )
        .await;
    assert_eq!((s, j["reason"].as_str()), (413, Some("too_large")), "{j}");
    // The other routes keep the centre's ordinary 1 MiB limit; the upload's is its own.
    for name in ["../escape", "a/b", "..", "a\\\\b"] {
        let (s, j) = c
            .upload_release(&meta("1.0"), &[(name, b"x")], Some("admin"))
            .await;
        assert_eq!(s, 400, "{name}: {j}");
    }
    // The release part first, once; known parts only; files required.
    let (ct, body) = release_form(&meta("1.0"), &[]);
    let r = c
        .client
        .post(format!("{}/centre/v1/releases", c.base))
        .basic_auth("admin", Some("admin"))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    let r = c
        .client
        .post(format!("{}/centre/v1/releases", c.base))
        .basic_auth("admin", Some("admin"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    let mut bad = meta("1.0");
    bad["lic_feature_id"] = json!(40);
    let (s, j) = c.upload_release(&bad, &[("a", b"x")], Some("admin")).await;
    assert!(
        s == 400 && j["error"].as_str().expect("e").contains("lic_feature_id"),
        "{j}"
    );
    let (s, _) = c
        .upload_release(&meta("1.0"), &[("a", b"x")], Some("wrong"))
        .await;
    assert_eq!(s, 401);
    assert_eq!(store_files(&c), (0, 0));
    assert_eq!(release_count(&c).await, 0);
}

#[tokio::test]
async fn racing_uploads_of_one_version_publish_once() {
    let c = CentreServer::start().await;
    setup(&c).await;
    let results = futures::future::join_all((0..6).map(|i| {
        let c = &c;
        async move {
            c.upload_release(
                &meta("3.0"),
                &[(&format!("f{i}.bin"), &vec![i as u8; 20_000])],
                Some("admin"),
            )
            .await
            .0
        }
    }))
    .await;
    assert_eq!(
        results.iter().filter(|s| **s == 201).count(),
        1,
        "{results:?}"
    );
    assert!(
        results.iter().all(|s| *s == 201 || *s == 409),
        "{results:?}"
    );
    assert_eq!(release_count(&c).await, 1);
}

#[tokio::test]
async fn failed_keys_are_throttled_and_links_expire() {
    let c = CentreServer::start_with(
        None,
        &[
            "--proof-max-failures",
            "3",
            "--release-link-ttl-seconds",
            "1",
            "--public-url",
            "https://centre.example/",
        ],
        None,
    )
    .await;
    let key = setup(&c).await;
    let (s, _) = c
        .upload_release(&meta("1.0"), &[("a.bin", b"abc")], Some("admin"))
        .await;
    assert_eq!(s, 201);
    let (s, list) = c.releases_for(query(&key)).await;
    assert_eq!(s, 200, "{list}");
    let url = list["modules"][0]["download_link"]
        .as_str()
        .expect("link")
        .to_owned();
    assert!(
        url.starts_with("https://centre.example/centre/v1/releases/download/"),
        "{url}"
    );
    let path = url.trim_start_matches("https://centre.example");
    // Valid now; refused once expired.
    let (s, _, b) = c.raw("GET", path, None, None).await;
    assert_eq!((s, b.as_slice()), (200, b"abc".as_slice()));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, _, b) = c.raw("GET", path, None, Some("q")).await;
    assert_eq!(s, 403, "{}", String::from_utf8_lossy(&b));
    // Many wrong KEYs at once: at most the limit reach the database; the rest are 429.
    let wrong = "4345-9320-2035-7421-5369";
    let answers = futures::future::join_all((0..12).map(|_| c.releases_for(query(wrong)))).await;
    let refused = answers.iter().filter(|(s, _)| *s == 403).count();
    let throttled = answers.iter().filter(|(s, _)| *s == 429).count();
    assert!(refused <= 3 && refused + throttled == 12, "{answers:?}");
    // This address is now locked out, even with the right KEY.
    let (s, j) = c.releases_for(query(&key)).await;
    assert_eq!((s, j["reason"].as_str()), (429, Some("throttled")), "{j}");
    assert!(!c.log().contains(&key), "the log never carries a KEY");
}

/// Slowloris on the upload: a client that sends the head and then nothing is cut off by the
/// upload's own timeout, answered in the centre's JSON.
#[tokio::test]
async fn a_stalled_upload_times_out() {
    let c = CentreServer::start_with(None, &["--release-upload-timeout-seconds", "1"], None).await;
    setup(&c).await;
    let (ct, body) = release_form(&meta("1.0"), &[("a.bin", &[0u8; 1000])]);
    let mut sock = tokio::net::TcpStream::connect(c.addr())
        .await
        .expect("connect");
    let head = format!(
        "POST /centre/v1/releases HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic YWRtaW46YWRtaW4=\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        c.addr(),
        body.len()
    );
    sock.write_all(head.as_bytes()).await.expect("head");
    sock.write_all(&body[..200]).await.expect("part");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the centre did not give up on the stalled upload"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(store_files(&c).1, 0);
}
