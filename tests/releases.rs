//! Licensed releases end to end on loopback (`docs/releases.md`): publishing, the release
//! list and each of its filters, 400s, refused keys, withdrawn releases, downloads checked
//! against the listed MD5 (computed by `md5sum`, not the centre's code) and size, a resumed
//! download, refused links, and counting — on SQLite, and on PostgreSQL when `scripts/test`
//! provides one.

mod common;

use common::centre::CentreServer;
use serde_json::{json, Value};
use std::time::Duration;

const TYPE: &str = "PT40_UT_CRM3";
const CONF: &str = "КомплекснаяАвтоматизация_CRM";

fn meta(version: &str, series: &str, tested: &[&str]) -> Value {
    json!({
        "type": TYPE, "version": version, "name": "ПодсистемаТелефонии40_УТиВСК",
        "description": "Расширение\n\nУТиВСК, КА+CRM", "developer": "Vendor",
        "changelog": "- Исправлена проблема (PT-743).", "promo_link": "https://example.invalid/p",
        "lic_product_id": series, "conf": CONF, "tested_conf_versions": tested,
        "min_conf_version": "2.5.8.0",
    })
}

fn query(key: &str, installed: &str, untested: &str, count: &str) -> Value {
    json!({"INSTALLED_VERSION": installed, "TYPE": TYPE, "CONF": CONF, "CONF_VERSION": "2.5.8.191",
           "KEY": key, "SHOW_UNTESTED": untested, "COUNT_DOWNLOADS": count})
}

/// Pseudo-random bytes (xorshift), so a wrong offset shows.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A digest by the system's coreutils (`md5sum`, `sha256sum`): independent of the centre.
fn coreutils(tool: &str, data: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(tool)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect(tool);
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("write");
    let out = child.wait_with_output().expect("output");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_owned()
}

fn versions(list: &Value) -> Vec<String> {
    list["modules"]
        .as_array()
        .expect("modules")
        .iter()
        .map(|m| m["uniqid"].as_str().expect("uniqid").to_owned())
        .collect()
}

/// GET a link; returns status, headers and body.
async fn fetch(
    c: &CentreServer,
    url: &str,
    range: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut rb = c.client.get(url);
    if let Some(r) = range {
        rb = rb.header("Range", r);
    }
    let r = rb.send().await.expect("send");
    let s = r.status().as_u16();
    let h = r.headers().clone();
    (s, h, r.bytes().await.expect("body").to_vec())
}

/// The path part of a link (for `CentreServer::raw`, which checks signatures).
fn path_of(url: &str) -> String {
    let rest = url.split("://").nth(1).expect("absolute link");
    format!("/{}", rest.split_once('/').expect("path").1)
}

async fn admin_list(c: &CentreServer) -> Vec<Value> {
    let (s, j) = c.get("/centre/v1/releases", Some("admin")).await;
    assert_eq!(s, 200, "{j}");
    j["releases"].as_array().expect("releases").clone()
}

async fn downloads_of(c: &CentreServer, id: u64) -> u64 {
    admin_list(c)
        .await
        .iter()
        .find(|r| r["release_id"] == id)
        .and_then(|r| r["downloads"].as_u64())
        .expect("release")
}

/// Waits (bounded) for a release's download count to reach `want`.
async fn wait_count(c: &CentreServer, id: u64, want: u64) {
    for _ in 0..50 {
        if downloads_of(c, id).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(downloads_of(c, id).await, want, "download count of {id}");
}

async fn scenario(c: CentreServer) {
    for (series, flags) in [("672B", 1), ("9999", 0)] {
        let (s, j) = c
            .post(
                "/centre/v1/products",
                json!({"key_id": series, "product_name": "P", "flags": flags}),
                true,
            )
            .await;
        assert_eq!(s, 201, "{j}");
    }
    let key = c
        .code(json!({"key_id": "672B", "licence_count": 1, "support_end_date": "2099-01-01"}))
        .await;
    let lapsed = c
        .code(json!({"key_id": "672B", "licence_count": 1, "support_end_date": "2000-01-01"}))
        .await;
    let other = c.code(json!({"key_id": "9999", "licence_count": 1})).await;
    let unused = c.code(json!({"key_id": "672B", "licence_count": 1})).await;
    let revoked = c.code(json!({"key_id": "672B", "licence_count": 1})).await;
    for (code, pc) in [(&key, 'A'), (&lapsed, 'B'), (&other, 'C'), (&revoked, 'D')] {
        c.activate_computer(code, pc).await;
    }

    // Publishing.
    let main = bytes(300_000, 1);
    let readme = "Прочти меня".as_bytes().to_vec();
    let (s, r1) = c
        .upload_release(
            &meta("4.0.4.10", "672B", &["2.5.8.191"]),
            &[("PT40 UT KA.zip", &main), ("readme.txt", &readme)],
            Some("admin"),
        )
        .await;
    assert_eq!(s, 201, "{r1}");
    let r1_id = r1["release_id"].as_u64().expect("id");
    assert_eq!(r1["files"][0]["md5"], coreutils("md5sum", &main));
    assert_eq!(r1["files"][0]["sha256"], coreutils("sha256sum", &main));
    assert_eq!(r1["files"][0]["size"], main.len());
    for (v, series, tested, feature) in [
        ("4.0.4.9", "672B", vec!["2.5.8.191"], None),
        ("4.0.5.1", "672B", vec!["2.5.9.1"], None),
        ("4.0.6.0", "672B", vec!["2.5.8.191"], Some(5)),
        ("4.0.7.0", "672B", vec!["2.5.8.191"], Some(0)),
        ("5.0", "9999", vec!["2.5.8.191"], None),
    ] {
        let mut m = meta(v, series, &tested);
        if let Some(f) = feature {
            m["lic_feature_id"] = json!(f);
        }
        let (s, j) = c
            .upload_release(&m, &[("f.bin", &bytes(1000, 7))], Some("admin"))
            .await;
        assert_eq!(s, 201, "{v}: {j}");
    }
    // A duplicate version, also written differently, is refused; and nothing without login.
    for v in ["4.0.4.10", "4.0.4.10.0"] {
        let (s, j) = c
            .upload_release(&meta(v, "672B", &[]), &[("x", b"x")], Some("admin"))
            .await;
        assert_eq!(
            (s, j["reason"].as_str()),
            (409, Some("release_exists")),
            "{j}"
        );
    }
    let (s, _) = c
        .upload_release(&meta("9.9", "672B", &[]), &[("x", b"x")], None)
        .await;
    assert_eq!(s, 401);
    let (s, j) = c
        .upload_release(&meta("9.9", "NOPE", &[]), &[("x", b"x")], Some("admin"))
        .await;
    assert_eq!(
        (s, j["reason"].as_str()),
        (404, Some("unknown_product")),
        "{j}"
    );

    // The list: newer than installed, tested, covered (feature 0 is set, 5 is not), oldest first.
    let (s, list) = c.releases_for(query(&key, "4.0.4.9", "N", "N")).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(versions(&list), ["4.0.4.10", "4.0.7.0"]);
    assert_eq!(list["result"], "");
    let m = &list["modules"][0];
    for field in [
        "release_id",
        "uniqid",
        "version",
        "developer",
        "min_1c_version",
        "lic_product_id",
        "lic_feature_id",
        "name",
        "description",
        "promo_link",
        "changelog",
        "size",
        "download_link",
        "files",
    ] {
        assert!(m.get(field).is_some(), "module field {field}: {m}");
    }
    assert_eq!(
        m["description"], "Расширение\n\nУТиВСК, КА+CRM",
        "real newlines"
    );
    assert_eq!(m["size"], main.len() + readme.len());
    assert_eq!(m["download_link"], m["files"][0]["url"]);
    assert_eq!(m["files"][1]["md5"], coreutils("md5sum", &readme));
    let url = m["files"][0]["url"].as_str().expect("url").to_owned();
    assert!(
        !url.contains(&key) && !url.contains(&key.replace('-', "")),
        "a link never carries the KEY: {url}"
    );
    // SHOW_UNTESTED adds the untested one; an older or equal installed version hides.
    let (_, all) = c.releases_for(query(&key, "4.0.4.9", "Y", "N")).await;
    assert_eq!(versions(&all), ["4.0.4.10", "4.0.5.1", "4.0.7.0"]);
    let (_, none) = c.releases_for(query(&key, "4.0.7.0", "Y", "N")).await;
    assert_eq!(versions(&none), Vec::<String>::new());
    let (_, fresh) = c.releases_for(query(&key, "", "N", "N")).await;
    assert_eq!(versions(&fresh), ["4.0.4.9", "4.0.4.10", "4.0.7.0"]);
    // Support over: nothing newer, and the result says why.
    let (s, l) = c.releases_for(query(&lapsed, "4.0.4.9", "Y", "N")).await;
    assert_eq!(s, 200);
    assert_eq!(versions(&l), Vec::<String>::new());
    assert!(
        l["result"]
            .as_str()
            .expect("result")
            .contains("support period ended on 2000-01-01"),
        "{l}"
    );
    // Another product's key sees only its own product's releases.
    let (_, o) = c.releases_for(query(&other, "", "N", "N")).await;
    assert_eq!(versions(&o), ["5.0"]);

    // Keys that are no licence: never issued, not activated, revoked — one answer.
    let out = c.cli(&["centre", "release-key-revoke", "--code", &revoked]);
    assert!(out.status.success(), "{}", common::stdout(&out));
    let mut answers = Vec::new();
    for k in [
        "4345-9320-2035-7421-5369",
        unused.as_str(),
        revoked.as_str(),
    ] {
        let (s, j) = c.releases_for(query(k, "", "N", "N")).await;
        answers.push((s, j));
    }
    assert_eq!(answers[0].0, 403, "{}", answers[0].1);
    assert_eq!(answers[0].1["reason"], "unknown_key");
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");

    // 400s name the field.
    for (body, field) in [
        (
            json!({"TYPE": TYPE, "CONF": CONF, "CONF_VERSION": "2.5.8.191"}),
            "KEY",
        ),
        (
            json!({"TYPE": 5, "CONF": CONF, "CONF_VERSION": "1", "KEY": key}),
            "TYPE",
        ),
        (
            json!({"TYPE": TYPE, "CONF": CONF, "CONF_VERSION": "2.5.x", "KEY": key}),
            "CONF_VERSION",
        ),
        (
            json!({"TYPE": TYPE, "CONF": CONF, "CONF_VERSION": "1", "KEY": key, "INSTALLED_VERSION": "four"}),
            "INSTALLED_VERSION",
        ),
        (
            json!({"TYPE": TYPE, "CONF": CONF, "CONF_VERSION": "1", "KEY": key, "SHOW_UNTESTED": "yes"}),
            "SHOW_UNTESTED",
        ),
        (
            json!({"TYPE": TYPE, "CONF": CONF, "CONF_VERSION": "1", "KEY": key, "COUNT_DOWNLOADS": true}),
            "COUNT_DOWNLOADS",
        ),
        (
            json!({"TYPE": TYPE, "CONF": CONF, "CONF_VERSION": "1", "KEY": key, "EXTRA": "1"}),
            "EXTRA",
        ),
        (
            json!({"TYPE": TYPE, "CONF": CONF, "CONF_VERSION": "1", "KEY": "MIKO-XXXXX"}),
            "KEY",
        ),
        (
            json!({"TYPE": "a b", "CONF": CONF, "CONF_VERSION": "1", "KEY": key}),
            "TYPE",
        ),
        (
            json!({"TYPE": TYPE, "CONF_VERSION": "1", "KEY": key}),
            "CONF",
        ),
        (json!([1, 2]), "INSTALLED_VERSION"),
    ] {
        let (s, j) = c.releases_for(body.clone()).await;
        assert_eq!(s, 400, "{body}: {j}");
        assert!(
            j["error"].as_str().expect("error").contains(field),
            "{body}: {j}"
        );
    }
    let (s, _, b) = c
        .raw(
            "POST",
            "/centre/v1/releases/available",
            Some(b"{not json"),
            Some("q1"),
        )
        .await;
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&b));

    // Download: whole, with length, ETag and the listed MD5; then resumed from a byte.
    let (s, h, body) = fetch(&c, &url, None).await;
    assert_eq!(s, 200);
    assert_eq!(body, main);
    assert_eq!(
        coreutils("md5sum", &body),
        m["files"][0]["md5"].as_str().expect("md5")
    );
    assert_eq!(h["content-length"], main.len().to_string().as_str());
    assert_eq!(
        h["etag"],
        format!("\"{}\"", coreutils("sha256sum", &main)).as_str()
    );
    assert_eq!(h["accept-ranges"], "bytes");
    assert!(
        h.get("licence-signature").is_none(),
        "file bytes are not signed"
    );
    let (s, h, tail) = fetch(&c, &url, Some("bytes=100000-")).await;
    assert_eq!(s, 206);
    assert_eq!(
        h["content-range"],
        format!("bytes 100000-{}/{}", main.len() - 1, main.len()).as_str()
    );
    let mut resumed = main[..100_000].to_vec();
    resumed.extend_from_slice(&tail);
    assert_eq!(resumed, main);
    let (s, _, mid) = fetch(&c, &url, Some("bytes=10-19")).await;
    assert_eq!((s, mid.as_slice()), (206, &main[10..20]));
    // Past the end: 416, signed, with the size.
    let (s, h, _) = c.raw("GET", &path_of(&url), None, Some("q416")).await;
    assert_eq!(s, 200);
    drop(h);
    let r = c
        .client
        .get(&url)
        .header("Range", "bytes=999999999-")
        .header("Licence-QueryID", "q2")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 416);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{}", main.len()).as_str()
    );
    assert!(
        r.headers().get("licence-signature").is_some(),
        "errors stay signed"
    );

    // Altered links, another file's name, a made-up token: one signed refusal.
    let p = path_of(&url);
    let (token, name) = p
        .trim_start_matches("/centre/v1/releases/download/")
        .split_once('/')
        .expect("token/name");
    let mut t = token.as_bytes().to_vec();
    t[5] = if t[5] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(t).expect("ascii");
    for bad in [
        format!("/centre/v1/releases/download/{altered}/{name}"),
        format!("/centre/v1/releases/download/{token}/readme.txt"),
        format!("/centre/v1/releases/download/AAAA/{name}"),
    ] {
        let (s, _, b) = c.raw("GET", &bad, None, Some("q3")).await;
        let j: Value = serde_json::from_slice(&b).expect("json");
        assert_eq!((s, j["reason"].as_str()), (403, Some("bad_link")), "{bad}");
    }

    // Counting: only with COUNT_DOWNLOADS=Y, only a download that reached the end, once a day.
    wait_count(&c, r1_id, 0).await;
    let (_, counted) = c.releases_for(query(&key, "4.0.4.9", "N", "Y")).await;
    let curl = counted["modules"][0]["files"][0]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    assert_ne!(curl, url, "a counting link differs");
    let (s, _, _) = fetch(&c, &curl, Some("bytes=0-99")).await;
    assert_eq!(s, 206);
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_count(&c, r1_id, 0).await;
    let (s, _, _) = fetch(&c, &curl, Some("bytes=100-")).await;
    assert_eq!(s, 206);
    wait_count(&c, r1_id, 1).await;
    let (s, _, _) = fetch(&c, &curl, None).await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_count(&c, r1_id, 1).await;

    // Withdrawn: not listed, links refused, shown to the vendor as withdrawn.
    let (s, j) = c
        .post(
            &format!("/centre/v1/releases/{r1_id}/withdraw"),
            json!({}),
            true,
        )
        .await;
    assert_eq!(s, 200, "{j}");
    let (_, after) = c.releases_for(query(&key, "4.0.4.9", "N", "N")).await;
    assert_eq!(versions(&after), ["4.0.7.0"]);
    let (s, _, _) = fetch(&c, &url, None).await;
    assert_eq!(s, 403);
    let listed = admin_list(&c).await;
    let r = listed
        .iter()
        .find(|r| r["release_id"] == r1_id)
        .expect("r1");
    assert!(r["withdrawn"].is_string(), "{r}");
    assert_eq!(r["downloads"], 1);
    let (s, j) = c
        .post("/centre/v1/releases/99999/withdraw", json!({}), true)
        .await;
    assert_eq!((s, j["reason"].as_str()), (404, Some("unknown_release")));
    let (s, _) = c
        .post(
            &format!("/centre/v1/releases/{r1_id}/withdraw"),
            json!({}),
            false,
        )
        .await;
    assert_eq!(s, 401);
    // The CLI sees the same.
    let out = c.cli(&["centre", "release-list"]);
    let text = common::stdout(&out);
    assert!(
        out.status.success() && text.contains("withdrawn") && text.contains("1 download(s)"),
        "{text}"
    );
}

#[tokio::test]
async fn releases_on_sqlite() {
    scenario(CentreServer::start().await).await;
}

#[tokio::test]
async fn releases_on_postgres() {
    let Some(url) = common::fresh_postgres("kb_releases").await else {
        return;
    };
    scenario(CentreServer::start_on(Some(&url)).await).await;
}

/// `centre release-add` publishes from local files, through the same store.
#[tokio::test]
async fn release_add_from_the_command_line() {
    let c = CentreServer::start().await;
    let (s, _) = c
        .post(
            "/centre/v1/products",
            json!({"key_id": "672B", "product_name": "P"}),
            true,
        )
        .await;
    assert_eq!(s, 201);
    let file = c.data.join("PT40 Дистрибутив.zip");
    let data = bytes(700_000, 9);
    std::fs::write(&file, &data).expect("write");
    let file_arg = file.to_str().expect("utf-8");
    let args = [
        "centre",
        "release-add",
        "--type",
        TYPE,
        "--version",
        "4.1",
        "--name",
        "N",
        "--lic-product-id",
        "672B",
        "--conf",
        CONF,
        "--tested",
        "2.5.8.191,2.5.9.1",
        "--min-conf-version",
        "2.5",
        "--file",
        file_arg,
    ];
    let out = c.cli(&args);
    assert!(out.status.success(), "{}", common::stdout(&out));
    let again = c.cli(&args);
    assert!(!again.status.success() && common::stdout(&again).contains("already exists"));
    let list = admin_list(&c).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["files"][0]["name"], "PT40 Дистрибутив.zip");
    assert_eq!(list[0]["files"][0]["md5"], coreutils("md5sum", &data));
    assert_eq!(
        list[0]["tested_conf_versions"],
        json!(["2.5.8.191", "2.5.9.1"])
    );
    let out = c.cli(&["centre", "release-withdraw", "--release-id", "1"]);
    assert!(out.status.success(), "{}", common::stdout(&out));
    assert!(admin_list(&c).await[0]["withdrawn"].is_string());
}

/// Ends the demo host it holds, whatever happens.
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `serve --demo` publishes a demo release and prints a `curl` command that lists it; the
/// command's URL and body, sent as printed, list the release, whose file downloads whole.
#[tokio::test]
async fn the_demo_prints_a_working_curl_command() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().expect("tmp");
    let config = tmp.path().join("keybridge.toml");
    std::fs::write(&config, common::base_config("")).expect("config");
    let mut child = std::process::Command::new(common::BIN)
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data"])
        .arg(tmp.path().join("data"))
        .arg("--config")
        .arg(&config)
        .env_remove("KEYBRIDGE_LISTEN")
        .env_remove("KEYBRIDGE_DATA")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let _demo = Demo(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.trim_start().starts_with("curl ") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a curl line");
    // curl -s -X POST URL -H '…' -d 'BODY'
    let url = line.split_whitespace().nth(4).expect("url").to_owned();
    let body = line
        .split("-d '")
        .nth(1)
        .and_then(|b| b.strip_suffix('\''))
        .expect("body");
    let r = common::client_builder()
        .build()
        .expect("client")
        .post(&url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    let list: Value = r.json().await.expect("json");
    assert_eq!(versions(&list), ["1.0.0.2"], "{list}");
    let f = &list["modules"][0]["files"][0];
    let got = reqwest::get(f["url"].as_str().expect("url"))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(got.len() as u64, f["size"].as_u64().expect("size"));
    assert_eq!(coreutils("md5sum", &got), f["md5"].as_str().expect("md5"));
}
