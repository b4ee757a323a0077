//! DNS rebinding: a web page in a browser on the host's machine re-points its own domain at
//! 127.0.0.1 and reads the API (licences carry the ActivationCode and the ITN, the restore
//! proof) with the default credentials. Its requests carry the page's domain in `Host`, so
//! while the default password is in use both services answer only IP addresses, `localhost`
//! and names the operator lists. Raw HTTP, so the `Host` header is exactly what a browser
//! would send.

mod common;
use common::centre::{centre_message, CentreServer};
use common::net::{basic_auth, read_response, RawResponse};
use common::*;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Sends `head` (a whole request without body) and reads the answer.
async fn send(addr: &str, head: &str) -> RawResponse {
    let mut c = TcpStream::connect(addr).await.expect("connect");
    c.write_all(head.as_bytes()).await.expect("write");
    read_response(&mut c, Duration::from_secs(10)).await
}

/// `GET path` naming `host`, with `auth` and QueryID `q1`.
fn get(path: &str, host: &str, auth: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\nLicence-QueryID: q1\r\nConnection: close\r\n\r\n"
    )
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// The answer is the host's, signed over `q1` ‖ body.
fn assert_host_signed(s: &Server, r: &RawResponse) {
    let sig = r.header("licence-signature").expect("signed");
    assert!(
        rsa_verify(&s.public_key, &[b"q1".as_slice(), &r.body].concat(), sig),
        "bad signature on {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
}

fn assert_misdirected(s: &Server, r: &RawResponse) {
    assert_eq!(r.status, 421, "{}", String::from_utf8_lossy(&r.body));
    assert_host_signed(s, r);
    let j = r.json();
    assert_eq!(j["Exception"], "EHTTPMisdirectedRequest", "{j}");
    assert!(
        !String::from_utf8_lossy(&r.body).contains("ActivationCode"),
        "licences leaked"
    );
}

#[tokio::test]
async fn default_credentials_answer_only_ip_addresses_and_localhost() {
    let s = Server::demo().await;
    let port = s.addr().rsplit(':').next().expect("port").to_owned();
    let auth = basic_auth();
    // The rebinding page: its own name, with and without the port.
    for host in [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        format!("127.0.0.1.evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
    ] {
        let r = send(&s.addr(), &get("/api/licences", &host, &auth)).await;
        assert_misdirected(&s, &r);
        let msg = r.json()["Message"].as_str().expect("Message").to_owned();
        assert!(
            msg.contains("DNS rebinding") && msg.contains("allowed_hosts"),
            "{msg}"
        );
    }
    // Before authentication: no guess is counted for it.
    let r = send(
        &s.addr(),
        &get("/api/licences", "evil.example", &basic(USER, "wrong")),
    )
    .await;
    assert_misdirected(&s, &r);
    assert!(!s.log_plain().contains("login failed"), "{}", s.log_plain());
    // An absolute-form request naming another host is refused as well.
    let r = send(
        &s.addr(),
        &get("http://evil.example/api/licences", "127.0.0.1", &auth),
    )
    .await;
    assert_misdirected(&s, &r);
    // Two Host headers: which one a proxy or the browser meant is unclear.
    let two = format!(
        "GET /api/licences HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nAuthorization: {auth}\r\nLicence-QueryID: q1\r\n\r\n"
    );
    let r = send(&s.addr(), &two).await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert_host_signed(&s, &r);

    // What the tools and 1C clients send: an IP address or localhost, any port.
    for host in [
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_owned(),
        format!("localhost:{port}"),
        "localhost".to_owned(),
        "LocalHost".to_owned(),
        format!("[::1]:{port}"),
        "192.0.2.7".to_owned(),
    ] {
        let r = send(&s.addr(), &get("/api/licences", &host, &auth)).await;
        assert_eq!(
            r.status,
            200,
            "{host}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_host_signed(&s, &r);
        assert!(String::from_utf8_lossy(&r.body).contains("ActivationCode"));
    }
    // HTTP/1.0 without a Host header (no browser sends that).
    let r = send(
        &s.addr(),
        &format!(
            "GET /api/serverinfo HTTP/1.0\r\nAuthorization: {auth}\r\nLicence-QueryID: q1\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        s.log_plain().contains("DNS rebinding guard"),
        "{}",
        s.log_plain()
    );
}

#[tokio::test]
async fn a_configured_password_answers_any_name_unless_names_are_listed() {
    let hash = keybridge::crypto::password::PasswordHash::new("s3cret").to_string();
    let auth = basic(USER, "s3cret");
    let s = Server::start(Opts {
        demo: true,
        config: format!("[api]\npassword_hash = \"{hash}\"\n"),
    })
    .await;
    for host in ["evil.example", "licences.example.com:9099", "127.0.0.1"] {
        let r = send(&s.addr(), &get("/api/licences", host, &auth)).await;
        assert_eq!(
            r.status,
            200,
            "{host}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_host_signed(&s, &r);
    }
    drop(s);

    // With a list: its names, IP addresses and localhost; nothing else.
    let s = Server::start(Opts {
        demo: true,
        config: format!(
            "[api]\npassword_hash = \"{hash}\"\n[http]\nallowed_hosts = [\"Licences.Example.com\"]\n"
        ),
    })
    .await;
    for (host, status) in [
        ("licences.example.com:9099", 200),
        ("LICENCES.example.com", 200),
        ("127.0.0.1", 200),
        ("localhost:1", 200),
        ("evil.example", 421),
        ("x.licences.example.com", 421),
    ] {
        let r = send(&s.addr(), &get("/api/licences", host, &auth)).await;
        assert_eq!(
            r.status,
            status,
            "{host}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_host_signed(&s, &r);
    }
    drop(s);

    // The default password with a listed name: that name too, still no other.
    let s = Server::start(Opts {
        demo: true,
        config: "[http]\nallowed_hosts = [\"keybridge.lan\"]\n".into(),
    })
    .await;
    let auth = basic_auth();
    let r = send(&s.addr(), &get("/api/licences", "keybridge.lan", &auth)).await;
    assert_eq!(r.status, 200);
    let r = send(&s.addr(), &get("/api/licences", "evil.example", &auth)).await;
    assert_misdirected(&s, &r);
}

#[test]
fn a_listed_name_that_is_not_a_host_name_stops_the_host() {
    let d = tempfile::tempdir().expect("tmp");
    for bad in ["http://a.example", "a.example:80", "*.example", ""] {
        let path = d.path().join("keybridge.toml");
        std::fs::write(
            &path,
            base_config(&format!("[http]\nallowed_hosts = [\"{bad}\"]\n")),
        )
        .expect("config");
        let o = std::process::Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(d.path().join("data"))
            .arg("--config")
            .arg(&path)
            .env_remove("KEYBRIDGE_LISTEN")
            .env_remove("KEYBRIDGE_DATA")
            .output()
            .expect("run");
        assert!(!o.status.success(), "{bad}: {}", stdout(&o));
        assert!(
            stdout(&o).contains("[http] allowed_hosts"),
            "{bad}: {}",
            stdout(&o)
        );
    }
}

/// `GET /centre/v1/publickey` naming `host`; the answer must be signed by the centre's
/// response key.
async fn centre_get(c: &CentreServer, host: &str) -> RawResponse {
    let r = send(
        &c.addr(),
        &format!(
            "GET /centre/v1/publickey HTTP/1.1\r\nHost: {host}\r\nLicence-QueryID: q1\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    let sig = r.header("licence-signature").expect("signed");
    assert!(
        rsa_verify(
            &c.response_key,
            &centre_message(b"q1", r.status, &r.body),
            sig
        ),
        "bad centre signature"
    );
    r
}

#[tokio::test]
async fn the_centre_guards_its_default_password_the_same_way() {
    let c = CentreServer::start().await;
    let port = c.addr().rsplit(':').next().expect("port").to_owned();
    let r = centre_get(&c, &format!("evil.example:{port}")).await;
    assert_eq!(r.status, 421);
    let j = r.json();
    assert!(
        j["error"]
            .as_str()
            .is_some_and(|e| e.contains("--allowed-host")),
        "{j}"
    );
    for host in [format!("127.0.0.1:{port}"), "localhost".into()] {
        assert_eq!(centre_get(&c, &host).await.status, 200, "{host}");
    }
    drop(c);

    let c = CentreServer::start_with(None, &["--allowed-host", "centre.example"], None).await;
    assert_eq!(centre_get(&c, "centre.example:9100").await.status, 200);
    assert_eq!(centre_get(&c, "evil.example").await.status, 421);
    drop(c);

    let hash = keybridge::crypto::password::PasswordHash::new("vendor").to_string();
    let c = CentreServer::start_with(None, &["--admin-password-hash", &hash], None).await;
    assert_eq!(centre_get(&c, "centre.example").await.status, 200);
    assert_eq!(centre_get(&c, "evil.example").await.status, 200);
}

/// The 421's log line names the name that was refused — the request line's authority when
/// that is what failed, not an allowed `Host` beside it — and a flood of refusals is one
/// line per few seconds with a count of the rest, not a line each.
#[tokio::test]
async fn the_refusal_log_names_what_was_refused_and_is_rate_limited() {
    let s = Server::demo().await;
    let auth = basic(USER, PASS);
    let lines = |s: &Server| -> Vec<String> {
        s.log_plain()
            .lines()
            .filter(|l| l.contains("DNS rebinding guard"))
            .map(str::to_owned)
            .collect()
    };
    let r = send(
        &s.addr(),
        &get("http://evil.example/api/licences", "127.0.0.1", &auth),
    )
    .await;
    assert_misdirected(&s, &r);
    let first = lines(&s);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(
        first[0].contains("evil.example") && first[0].contains("request line"),
        "{first:?}"
    );
    assert!(!first[0].contains("host=\"127.0.0.1"), "{first:?}");

    for _ in 0..10 {
        let r = send(&s.addr(), &get("/api/licences", "evil2.example", &auth)).await;
        assert_misdirected(&s, &r);
    }
    assert_eq!(lines(&s).len(), 1, "{:?}", lines(&s));
    tokio::time::sleep(Duration::from_millis(5200)).await;
    let r = send(&s.addr(), &get("/api/licences", "evil3.example", &auth)).await;
    assert_misdirected(&s, &r);
    let after = lines(&s);
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(
        after[1].contains("evil3.example")
            && after[1].contains("Host header")
            && after[1].contains("suppressed=10"),
        "{after:?}"
    );
}

/// Spaces around a header value are not part of it (RFC 9110 field values): a QueryID sent as
/// `  abc ` is `abc`, echoed and signed as `abc` (docs/signing.md).
#[tokio::test]
async fn spaces_around_the_query_id_are_not_part_of_it() {
    let s = Server::demo().await;
    let head = format!(
        "GET /api/serverinfo HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {}\r\nLicence-QueryID:  \tq1 \t\r\nConnection: close\r\n\r\n",
        basic(USER, PASS)
    );
    let r = send(&s.addr(), &head).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("licence-queryid"), Some("q1"));
    assert_host_signed(&s, &r);
}
