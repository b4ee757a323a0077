//! Running the host as a service (issue 11): `GET /systeminfo`, header names on the wire as
//! the original server writes them, timestamps under load, and `/metrics` read by a real
//! OpenMetrics parser (Python's `prometheus_client`, installed by scripts/test).

mod common;
use common::net::{basic_auth, read_response};
use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` on a fresh connection and returns the raw head of the answer and the
/// answer as parsed.
async fn raw_exchange(s: &Server, request: String) -> (String, common::net::RawResponse) {
    let mut c = TcpStream::connect(s.addr()).await.expect("connect");
    c.write_all(request.as_bytes()).await.expect("write");
    // Read everything (Connection: close) so the exact bytes of the head are seen.
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut all))
        .await
        .expect("answer in time")
        .expect("read");
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&all[..end]).into_owned();
    // Parse the same bytes again with the shared reader, through a loopback pair.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut w = TcpStream::connect(addr).await.expect("connect");
    let (mut r, _) = listener.accept().await.expect("accept");
    w.write_all(&all).await.expect("write");
    drop(w);
    let parsed = read_response(&mut r, Duration::from_secs(5)).await;
    (head, parsed)
}

fn header_names(head: &str) -> Vec<String> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':').map(|(k, _)| k.to_owned()))
        .collect()
}

#[tokio::test]
async fn header_names_leave_in_their_canonical_capitalisation() {
    let s = Server::demo().await;
    let req = format!(
        "GET /api/serverinfo HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nLicence-QueryID: q-1\r\nConnection: close\r\n\r\n",
        s.addr(),
        basic_auth()
    );
    let (head, r) = raw_exchange(&s, req).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let names = header_names(&head);
    for want in [
        "Content-Type",
        "Content-Length",
        "Licence-Signature",
        "Licence-QuerySignature",
        "Licence-QueryID",
        "Licence-ServerVersion",
        "Date",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing or miscapitalised in:\n{head}"
        );
    }
    // Every name starts with a capital letter; none is hyper's lower case.
    for n in &names {
        assert!(
            n.starts_with(|c: char| c.is_ascii_uppercase()),
            "{n} in:\n{head}"
        );
    }
    // And the answer is the one signed.
    let sig = r.header("Licence-Signature").expect("signature");
    let mut msg = b"q-1".to_vec();
    msg.extend_from_slice(&r.body);
    assert!(rsa_verify(&s.public_key, &msg, sig));

    // A refusal too: WWW-Authenticate as written in RFC 9110, not "Www-Authenticate".
    let req = format!(
        "GET /api/licences HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        s.addr()
    );
    let (head, r) = raw_exchange(&s, req).await;
    assert_eq!(r.status, 401, "{head}");
    let names = header_names(&head);
    assert!(names.iter().any(|n| n == "WWW-Authenticate"), "{head}");
    assert!(names.iter().any(|n| n == "Content-Type"), "{head}");
}

#[tokio::test]
async fn systeminfo_answers_without_credentials() {
    let s = Server::demo().await;
    let r = s
        .request("GET", "/systeminfo", None, None, Some("health-1"))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    let text = String::from_utf8(r.body.clone()).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "keybridge licence host", "{text}");
    assert_eq!(lines[1], format!("version: {}", env!("CARGO_PKG_VERSION")));
    let uptime: u64 = lines[2]
        .strip_prefix("uptime: ")
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(uptime < 3600);
    assert_eq!(lines[3], "state: running", "{text}");
    // Only GET, only without parameters: it is no back door into the API.
    let r = s.request("POST", "/systeminfo", None, None, None).await;
    assert_eq!(r.status, 405);
    let r = s.request("GET", "/systeminfo?x=1", None, None, None).await;
    assert_eq!(r.status, 400);
    // The API behind it still wants credentials.
    let r = s.request("GET", "/api/licences", None, None, None).await;
    assert_eq!(r.status, 401);
}

fn session(client: &str) -> Value {
    json!({"KeyID": KEY_ID, "ClientSessionID": client, "AppName": "MobileClient",
           "UserName": "MobileUser", "ComputerName": "Androud Table Sevice",
           "SessionStarted": "2020-01-01T12:52:20"})
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, nothing else.
fn is_millis_z(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Every string field that looks like a date must be in the exact format.
fn check_dates(v: &Value, seen: &mut usize) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if let Value::String(s) = x {
                    if s.len() >= 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-' {
                        assert!(is_millis_z(s), "{k} = {s:?}");
                        *seen += 1;
                    }
                } else {
                    check_dates(x, seen);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| check_dates(x, seen)),
        _ => {}
    }
}

#[tokio::test]
async fn timestamps_keep_three_digits_and_z_under_load() {
    assert!(is_millis_z("2020-01-01T12:52:20.000Z"));
    assert!(!is_millis_z("2020-01-01T12:52:20Z"));
    assert!(!is_millis_z("2020-01-01T12:52:20.0001Z"));
    assert!(!is_millis_z("2020-01-01T12:52:20.000+00:00"));
    let s = std::sync::Arc::new(Server::demo().await);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let s1 = s.clone();
        tasks.push(tokio::spawn(async move {
            let r = s1
                .post("/api/sessions", session(&format!("{i:016X}")))
                .await;
            // Past the demo licence's seats: 403 ENoFreeLicence, still with its dates.
            assert!(r.status == 201 || r.status == 403, "{}", r.status);
            let mut seen = 0;
            check_dates(&r.json(), &mut seen);
            seen
        }));
        let s2 = s.clone();
        tasks.push(tokio::spawn(async move {
            let path = if i % 2 == 0 {
                "/api/sessions"
            } else {
                "/api/connections"
            };
            let r = s2.get(path).await;
            assert_eq!(r.status, 200);
            let mut seen = 0;
            check_dates(&r.json(), &mut seen);
            seen
        }));
    }
    let mut seen = 0;
    for t in tasks {
        seen += t.await.expect("task");
    }
    // Once all are open, the full lists again.
    for path in ["/api/sessions", "/api/connections"] {
        let v = s.get(path).await.json();
        let before = seen;
        check_dates(&v, &mut seen);
        assert!(seen > before, "{path} has no dates: {v}");
    }
    assert!(seen > 64, "only {seen} dates checked");
}

/// Parses an OpenMetrics exposition with `prometheus_client`'s strict parser and returns,
/// per sample, `name{labels} value` lines in a stable form.
fn parse_openmetrics(text: &str) -> Vec<(String, Value, f64)> {
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test installs prometheus_client)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("write");
    }
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<(String, Value, f64)> = serde_json::from_slice(&out.stdout).expect("parser JSON");
    v
}

fn sample(samples: &[(String, Value, f64)], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l[*k] == *v))
        .map(|(_, _, v)| *v)
}

#[tokio::test]
async fn metrics_parse_and_count_what_happened() {
    let s = Server::demo().await;
    // Something to count: a session, a wrong password, some requests.
    assert_eq!(
        s.post("/api/sessions", session("00000000000000AA"))
            .await
            .status,
        201
    );
    let r = s
        .request("GET", "/api/licences", None, Some((USER, "wrong")), None)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(s.get("/api/licences").await.status, 200);

    let r = s.request("GET", "/metrics", None, None, None).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/openmetrics-text")));
    let text = String::from_utf8(r.body.clone()).expect("utf-8");
    let m = parse_openmetrics(&text);

    assert_eq!(
        sample(
            &m,
            "keybridge_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&m, "keybridge_sessions", &[]), Some(1.0), "{text}");
    assert!(sample(&m, "keybridge_connections", &[]).is_some_and(|v| v >= 1.0));
    assert!(
        sample(&m, "keybridge_login_failures_total", &[]).is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(
        sample(
            &m,
            "keybridge_http_requests_total",
            &[
                ("route", "/api/licences"),
                ("method", "GET"),
                ("status", "200")
            ]
        )
        .is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(
        sample(
            &m,
            "keybridge_http_requests_total",
            &[
                ("route", "/api/sessions"),
                ("method", "POST"),
                ("status", "201")
            ]
        ) == Some(1.0),
        "{text}"
    );
    // Every answer so far was signed and timed.
    assert!(
        sample(&m, "keybridge_response_signing_seconds_count", &[]).is_some_and(|v| v >= 3.0),
        "{text}"
    );
    assert!(sample(
        &m,
        "keybridge_response_signing_seconds_bucket",
        &[("le", "+Inf")]
    )
    .is_some());
    // The demo: its software key, a keyed simulated USB key and a blank one.
    let active = sample(&m, "keybridge_licences", &[("state", "active")]).unwrap_or(0.0);
    assert!(active >= 2.0, "{text}");
    assert_eq!(
        sample(&m, "keybridge_licences", &[("state", "blank")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&m, "keybridge_licences", &[("state", "expired")]),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, "keybridge_usb_devices_attached", &[]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(sample(&m, "keybridge_usb_devices_failing", &[]), Some(0.0));
    let key = SOFTWARE_KEY.to_string();
    let total = sample(&m, "keybridge_licence_seats", &[("key_no", &key)]).expect("seats");
    let used = sample(&m, "keybridge_licence_seats_used", &[("key_no", &key)]).expect("used");
    let free = sample(&m, "keybridge_licence_seats_free", &[("key_no", &key)]).expect("free");
    assert_eq!(used, 1.0, "{text}");
    assert_eq!(total - used, free);

    // Made-up paths do not grow the label set: they all count as one route.
    for i in 0..20 {
        let r = s.get(&format!("/api/nothing-{i}")).await;
        assert_eq!(r.status, 404);
    }
    let text = String::from_utf8(s.request("GET", "/metrics", None, None, None).await.body)
        .expect("utf-8");
    assert!(!text.contains("nothing-"), "{text}");
    let m = parse_openmetrics(&text);
    assert!(
        sample(
            &m,
            "keybridge_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        )
        .is_some_and(|v| v >= 20.0),
        "{text}"
    );
}

/// A non-loopback address of this machine, if it has one.
fn outside_address() -> Option<std::net::IpAddr> {
    if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .map(|i| i.ip())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
}

/// A demo host listening on every address (the harness passes `--listen 127.0.0.1:0`; a
/// wrapper turns it into `0.0.0.0:0`), with its base URL on loopback, and its port.
async fn start_everywhere(dir: &std::path::Path, config: String) -> (Server, String) {
    let wrapper: Vec<String> = [
        "sh",
        "-c",
        r#"for a do shift; [ "$a" = 127.0.0.1:0 ] && a=0.0.0.0:0; set -- "$@" "$a"; done; exec "$0" "$@""#,
    ]
    .map(String::from)
    .to_vec();
    let mut s = Server::launch_wrapped(dir, &Opts { demo: true, config }, &wrapper);
    let port = s.addr().rsplit(':').next().expect("port").to_owned();
    assert!(s.base.contains("0.0.0.0"), "{}", s.base);
    s.base = format!("http://127.0.0.1:{port}");
    s.wait_ready().await;
    (s, port)
}

#[tokio::test]
async fn metrics_are_loopback_only_unless_given_credentials() {
    let Some(ip) = outside_address() else {
        panic!("this test needs a non-loopback IPv4 address on the machine");
    };
    let hash = |p: &str| {
        let out = std::process::Command::new(BIN)
            .args(["auth", "hash"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .expect("stdin")
                    .write_all(format!("{p}\n").as_bytes())?;
                c.wait_with_output()
            })
            .expect("auth hash");
        let line = String::from_utf8(out.stdout).expect("utf-8");
        line.trim()
            .strip_prefix("password_hash = ")
            .unwrap_or_else(|| panic!("{line}"))
            .trim_matches('"')
            .to_owned()
    };
    let api_hash = hash(PASS);
    // Default [metrics]: the host listens on every address, /metrics answers loopback only.
    let first = tempfile::tempdir().expect("tempdir");
    let (mut s, port) = start_everywhere(
        first.path(),
        format!("[api]\npassword_hash = \"{api_hash}\"\n"),
    )
    .await;
    let loopback = s.request("GET", "/metrics", None, None, None).await;
    assert_eq!(loopback.status, 200);
    let outside = format!("http://{ip}:{port}");
    let base = std::mem::replace(&mut s.base, outside);
    let r = s.request("GET", "/metrics", None, None, None).await;
    r.assert_error(403, "EMetricsForbidden");
    // With the API's own credentials still refused: /metrics is not the API.
    let r = s
        .request("GET", "/metrics", None, Some((USER, PASS)), None)
        .await;
    r.assert_error(403, "EMetricsForbidden");
    // /systeminfo answers from anywhere.
    assert_eq!(
        s.request("GET", "/systeminfo", None, None, None)
            .await
            .status,
        200
    );
    s.base = base;
    drop(s);

    // [metrics] password_hash: its own credentials from every address, loopback included.
    let metrics_hash = hash("scrape-me");
    let second = tempfile::tempdir().expect("tempdir");
    let (mut s, port) = start_everywhere(second.path(), format!(
        "[api]\npassword_hash = \"{api_hash}\"\n[metrics]\nuser = \"prom\"\npassword_hash = \"{metrics_hash}\"\n"
    ))
    .await;
    for base in [s.base.clone(), format!("http://{ip}:{port}")] {
        s.base = base;
        let r = s.request("GET", "/metrics", None, None, None).await;
        r.assert_error(401, "EHTTPUnauthorized");
        let r = s
            .request("GET", "/metrics", None, Some((USER, PASS)), None)
            .await;
        r.assert_error(401, "EHTTPUnauthorized");
        let r = s
            .request("GET", "/metrics", None, Some(("prom", "scrape-me")), None)
            .await;
        assert_eq!(r.status, 200);
        // …and those credentials open nothing in the API.
        let r = s
            .request(
                "GET",
                "/api/licences",
                None,
                Some(("prom", "scrape-me")),
                None,
            )
            .await;
        assert_eq!(r.status, 401);
    }
}

#[tokio::test]
async fn metrics_can_be_switched_off() {
    let s = Server::start(Opts {
        demo: true,
        config: "[metrics]\nenabled = false\n".into(),
    })
    .await;
    let r = s.request("GET", "/metrics", None, None, None).await;
    r.assert_error(404, "EHTTPNotFound");
}

#[tokio::test]
async fn sighup_reloads_without_dropping_sessions_and_sigterm_stops_cleanly() {
    let mut s = Server::demo().await;
    assert_eq!(
        s.post("/api/sessions", session("00000000000000BB"))
            .await
            .status,
        201
    );
    assert_eq!(
        s.request("GET", "/metrics", None, None, None).await.status,
        200
    );
    let hup = |pid: u32| {
        // SAFETY: kill(2) sends a signal to the child we started.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
        assert_eq!(rc, 0);
    };
    // A broken config: logged, the running one kept, still serving.
    std::fs::write(&s.config, base_config("[metrics]\nenabled = nonsense\n")).expect("write");
    hup(s.pid());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        s.request("GET", "/metrics", None, None, None).await.status,
        200
    );
    assert!(
        s.log().contains("the config was not reloaded"),
        "{}",
        s.log()
    );
    // A good one: applied, and the session is still there.
    std::fs::write(&s.config, base_config("[metrics]\nenabled = false\n")).expect("write");
    hup(s.pid());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = s.request("GET", "/metrics", None, None, None).await;
        if r.status == 404 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "SIGHUP not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v = s.get("/api/sessions").await.json();
    assert_eq!(v["Sessions"].as_array().map(Vec::len), Some(1), "{v}");
    // SIGTERM: a clean exit, status 0, within the shutdown timeout.
    let (took, status) = s.terminate(Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(8));
}
