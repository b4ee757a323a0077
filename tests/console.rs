//! The web console (issue 12): its security over plain HTTP (login and CSRF refusals, the
//! cookie's flags, the Content-Security-Policy, `[console] enabled = false`), and a real
//! headless Chromium driven over WebDriver (chromedriver, installed by scripts/test) through
//! login, the demo keys, activation onto the blank simulated key, user memory, releasing a
//! session and the language switch, with screenshots under target/console-screenshots/.

mod common;
use common::*;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The login form's CSRF token and its cookie.
async fn login_token(c: &reqwest::Client, base: &str) -> (String, String) {
    let r = c
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("login page");
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("kb_login="))
        .expect("login cookie")
        .to_owned();
    let value = cookie.split(';').next().expect("pair").to_owned();
    let body = r.text().await.expect("body");
    let token = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf field")
        .to_owned();
    (token, value)
}

/// Logs in over HTTP; returns the session cookie pair and the page's CSRF token.
async fn http_login(c: &reqwest::Client, base: &str) -> (String, String) {
    let (token, login_cookie) = login_token(c, base).await;
    let r = c
        .post(format!("{base}/login"))
        .header("cookie", &login_cookie)
        .form(&[("csrf", token.as_str()), ("user", USER), ("password", PASS)])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 303);
    let set = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("kb_session="))
        .expect("session cookie")
        .to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{set}");
    }
    let session = set.split(';').next().expect("pair").to_owned();
    let page = c
        .get(format!("{base}/keys"))
        .header("cookie", &session)
        .send()
        .await
        .expect("keys");
    assert_eq!(page.status(), 200);
    let body = page.text().await.expect("body");
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf")
        .to_owned();
    (session, csrf)
}

#[tokio::test]
async fn login_csrf_and_headers_are_enforced() {
    let s = Server::demo().await;
    let base = &s.base;
    let c = no_redirects();

    // Without a session every page sends to the login page; the API is untouched.
    let r = c.get(format!("{base}/keys")).send().await.expect("keys");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login");
    assert_eq!(s.get("/api/licences").await.status, 200);

    // The policy: no inline script, no framing.
    let r = c.get(format!("{base}/login")).send().await.expect("login");
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let body = r.text().await.expect("body");
    assert!(
        !body.contains("<script>") && !body.contains(" style="),
        "inline script or style"
    );

    // A wrong password is refused, and counted by the API's own throttle.
    let (token, cookie) = login_token(&c, base).await;
    let r = c
        .post(format!("{base}/login"))
        .header("cookie", &cookie)
        .form(&[
            ("csrf", token.as_str()),
            ("user", "admin"),
            ("password", "wrong"),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 401);
    assert!(r
        .headers()
        .get_all("set-cookie")
        .iter()
        .all(|v| !v.to_str().unwrap_or("").starts_with("kb_session=")));

    // A login form posted without its cookie (cross-site) is refused before any check.
    let r = c
        .post(format!("{base}/login"))
        .form(&[("csrf", token.as_str()), ("user", USER), ("password", PASS)])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 403);

    let (session, csrf) = http_login(&c, base).await;
    // A change without the session's CSRF token, or with another, is refused and changes
    // nothing.
    let mem = format!("{base}/keys/{SOFTWARE_KEY}");
    for bad in ["", "x", &csrf[..csrf.len() - 1]] {
        let r = c
            .post(&mem)
            .header("cookie", &session)
            .form(&[
                ("csrf", bad),
                ("action", "write"),
                ("password", ""),
                ("value", "evil"),
            ])
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 403, "csrf {bad:?}");
    }
    let r = s
        .call(
            "GET",
            &format!("/api/licences/{SOFTWARE_KEY}/memory"),
            Some(json!({"Password": ""})),
        )
        .await;
    assert_eq!(r.json()["Value"], "");
    // With it, the write lands and is in the audit log.
    let r = c
        .post(&mem)
        .header("cookie", &session)
        .form(&[
            ("csrf", csrf.as_str()),
            ("action", "write"),
            ("password", ""),
            ("value", "ok"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let audit = std::fs::read_to_string(s.data.join("console-audit.log")).expect("audit log");
    assert!(audit.contains("memory write, key 7131766"), "{audit}");
    assert!(
        audit.contains("\"user\":\"admin\"") && audit.contains("127.0.0.1"),
        "{audit}"
    );
    // A reset needs its confirmation.
    let r = c
        .post(&mem)
        .header("cookie", &session)
        .form(&[("csrf", csrf.as_str()), ("action", "reset")])
        .send()
        .await
        .expect("post");
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("class=\"message error\""));
    let r = s
        .call(
            "GET",
            &format!("/api/licences/{SOFTWARE_KEY}/memory"),
            Some(json!({"Password": ""})),
        )
        .await;
    assert_eq!(r.json()["Value"], "ok");

    // A forged session cookie is nobody; logout ends the session for good.
    let r = c
        .get(format!("{base}/keys"))
        .header(
            "cookie",
            "kb_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .send()
        .await
        .expect("keys");
    assert_eq!(r.status(), 303);
    let r = c
        .post(format!("{base}/logout"))
        .header("cookie", &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 303);
    let r = c
        .get(format!("{base}/keys"))
        .header("cookie", &session)
        .send()
        .await
        .expect("keys");
    assert_eq!(r.status(), 303, "the session outlived its logout");

    // The language switch goes back only to a path of this site.
    for (back, to) in [
        ("/keys", "/keys"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
    ] {
        let r = c
            .get(format!("{base}/lang/ru"))
            .query(&[("back", back)])
            .send()
            .await
            .expect("lang");
        assert_eq!(r.headers()["location"], to, "{back}");
    }
}

#[tokio::test]
async fn bad_settings_and_odd_requests_change_nothing() {
    let s = Server::demo().await;
    let base = &s.base;
    let c = no_redirects();
    let (session, csrf) = http_login(&c, base).await;
    let before = std::fs::read_to_string(&s.config).expect("config");
    let post = |fields: Vec<(&'static str, String)>| {
        let c = c.clone();
        let session = session.clone();
        let csrf = csrf.clone();
        let url = format!("{base}/settings");
        async move {
            let mut form: Vec<(&str, String)> = vec![
                ("csrf", csrf),
                ("api_enabled", "on".into()),
                ("user", USER.into()),
                ("session_seconds", "300".into()),
                ("current_password", PASS.into()),
            ];
            for (k, v) in fields {
                form.retain(|(n, _)| *n != k);
                form.push((k, v));
            }
            let r = c
                .post(url)
                .header("cookie", session)
                .form(&form)
                .send()
                .await
                .expect("post");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    for (field, value) in [
        ("session_seconds", "NaN"),
        ("session_seconds", "-5"),
        ("session_seconds", "1e400"),
        ("session_seconds", "x"),
        ("user", "admin\n[api]\npassword_hash = \"x\""),
        ("user", "a:b"),
        ("user", ""),
        ("centre_url", "http://centre.example/"),
        ("centre_url", "not a url"),
        ("trusted_keys", "relative/key.pem"),
        ("trusted_keys", "/nonexistent/key.pem"),
    ] {
        let value = value.to_owned();
        let (status, body) = post(vec![(field, value.clone())]).await;
        assert_eq!(status, 200, "{field}={value:?}");
        assert!(
            body.contains("class=\"message error\""),
            "{field}={value:?}: accepted"
        );
        assert_eq!(
            std::fs::read_to_string(&s.config).expect("config"),
            before,
            "{field}={value:?} changed the file"
        );
    }
    // Without the CSRF token: 403, nothing written.
    let r = c
        .post(format!("{base}/settings"))
        .header("cookie", &session)
        .form(&[
            ("user", "mallory"),
            ("session_seconds", "300"),
            ("current_password", PASS),
        ])
        .send()
        .await
        .expect("post");
    assert!(r.status().is_client_error());
    assert_eq!(std::fs::read_to_string(&s.config).expect("config"), before);

    // Key numbers that are no key, a session that is not there.
    for k in ["0", "-1", "99999999999999999999999", "abc", "7131766%00"] {
        let r = c
            .get(format!("{base}/keys/{k}"))
            .header("cookie", &session)
            .send()
            .await
            .expect("key");
        assert_eq!(r.status(), 404, "{k}");
    }
    let r = c
        .post(format!("{base}/sessions/release"))
        .header("cookie", &session)
        .form(&[("csrf", csrf.as_str()), ("id", "no-such-session")])
        .send()
        .await
        .expect("release");
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("class=\"message error\""));

    // Many parallel page loads with one session: all served.
    let loads = (0..32).map(|_| {
        c.get(format!("{base}/keys"))
            .header("cookie", &session)
            .send()
    });
    for r in futures::future::join_all(loads).await {
        assert_eq!(r.expect("keys").status(), 200);
    }
}

#[tokio::test]
async fn offline_request_and_licence_file_upload() {
    let s = Server::demo().await;
    let base = &s.base;
    let c = no_redirects();
    let (session, csrf) = http_login(&c, base).await;
    // The request file for this machine and for the blank key (with the key's proof).
    for (target, binding) in [("computer", "\"computer\""), ("90000002", "\"device\"")] {
        let r = c
            .post(format!("{base}/activation/request"))
            .header("cookie", &session)
            .form(&[
                ("csrf", csrf.as_str()),
                ("code", "1302-4600-5780-5974-0653"),
                ("target", target),
                ("itn", "1234567890"),
            ])
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-disposition"]
            .to_str()
            .expect("cd")
            .starts_with("attachment"));
        let text = r.text().await.expect("body");
        assert!(
            text.contains(binding) && text.contains("1234567890"),
            "{text}"
        );
        if binding == "Device" {
            assert!(
                text.contains("device_proof") || text.contains("DeviceProof"),
                "{text}"
            );
        }
    }
    // A typo in the code never makes a file.
    let r = c
        .post(format!("{base}/activation/request"))
        .header("cookie", &session)
        .form(&[
            ("csrf", csrf.as_str()),
            ("code", "1302-4600"),
            ("target", "computer"),
        ])
        .send()
        .await
        .expect("request");
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("class=\"message error\""));

    // Upload: garbage and a tampered licence are refused and change nothing; the real file
    // installs; without the CSRF token nothing is read.
    let file = std::fs::read(s.data.join("672B.7131766.licence")).expect("licence file");
    let mut tampered = file.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x01;
    let upload = |csrf: &str, bytes: Vec<u8>| {
        let form = reqwest::multipart::Form::new()
            .text("csrf", csrf.to_owned())
            .part(
                "licence",
                reqwest::multipart::Part::bytes(bytes).file_name("x.licence"),
            );
        c.post(format!("{base}/activation/import"))
            .header("cookie", &session)
            .multipart(form)
            .send()
    };
    for bad in [b"not a licence".to_vec(), tampered] {
        let r = upload(&csrf, bad).await.expect("upload");
        assert!(r
            .text()
            .await
            .expect("body")
            .contains("class=\"message error\""));
        assert_eq!(
            std::fs::read(s.data.join("672B.7131766.licence")).expect("file"),
            file
        );
    }
    let r = upload("wrong", file.clone()).await.expect("upload");
    assert_eq!(r.status(), 403);
    let r = upload(&csrf, file).await.expect("upload");
    let body = r.text().await.expect("body");
    assert!(
        body.contains("class=\"message ok\"") && body.contains("7131766"),
        "{body}"
    );
}

#[tokio::test]
async fn the_login_throttle_is_the_apis() {
    let s = Server::start(Opts {
        config: "[api]\nmax_failed_logins = 3\n".into(),
        ..Opts::default()
    })
    .await;
    let c = no_redirects();
    for _ in 0..3 {
        let (token, cookie) = login_token(&c, &s.base).await;
        let r = c
            .post(format!("{}/login", s.base))
            .header("cookie", &cookie)
            .form(&[
                ("csrf", token.as_str()),
                ("user", USER),
                ("password", "guess"),
            ])
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), 401);
    }
    // Locked out in the console with the right password, and in the API too.
    let (token, cookie) = login_token(&c, &s.base).await;
    let r = c
        .post(format!("{}/login", s.base))
        .header("cookie", &cookie)
        .form(&[("csrf", token.as_str()), ("user", USER), ("password", PASS)])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 429);
    assert_eq!(s.get("/api/licences").await.status, 401);
}

#[tokio::test]
async fn cookies_are_secure_under_tls() {
    let pki = common::pki::Pki::new();
    let config = format!(
        "[api]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n[usb]\nenabled = false\n",
        pki.cert.display(),
        pki.key.display()
    );
    let s = Server::start_with(Opts { demo: true, config }, &[], Some(&pki.ca_pem)).await;
    assert!(s.base.starts_with("https://"), "{}", s.base);
    let c = common::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("CA"))
        .build()
        .expect("client");
    let (token, cookie) = login_token(&c, &s.base).await;
    let r = c
        .post(format!("{}/login", s.base))
        .header("cookie", &cookie)
        .form(&[("csrf", token.as_str()), ("user", USER), ("password", PASS)])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 303);
    let set: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    assert!(set.iter().any(|v| v.starts_with("kb_session=")), "{set:?}");
    for v in &set {
        assert!(v.contains("; Secure"), "{v}");
    }
}

#[tokio::test]
async fn a_disabled_console_is_not_there() {
    let s = Server::start(Opts {
        config: "[console]\nenabled = false\n".into(),
        ..Opts::default()
    })
    .await;
    let c = no_redirects();
    for p in ["/login", "/keys", "/assets/console.css"] {
        let r = c.get(format!("{}{p}", s.base)).send().await.expect("get");
        // The API's own answer for a path it does not serve (behind its login).
        assert_eq!(r.status(), 401, "{p}");
        assert!(r.headers().get("content-security-policy").is_none(), "{p}");
    }
    assert_eq!(s.get("/api/licences").await.status, 200);
}

// ------------------------------------------------------------------ the browser

/// chromedriver in its own process group with the browsers it starts, and the browser's
/// profile. Dropped — also when a test panics — it kills the whole group before the profile
/// goes, so no browser outlives the test or writes into a removed directory.
struct Driver {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: only sends a signal, to the group the child leads (process_group(0) at
            // spawn); its id cannot be reused before the child is reaped, below.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

async fn browser() -> (Driver, fantoccini::Client) {
    let driver = ["chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .expect("chromedriver is not installed (scripts/test installs chromium-driver)");
    let port = free_port();
    let profile = tempfile::tempdir().expect("profile");
    let profile_dir = profile.path().display().to_string();
    let mut cmd = Command::new(driver);
    cmd.arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let driver = Driver {
        child: cmd.spawn().expect("start chromedriver"),
        _profile: profile,
    };
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--window-size=1280,900",
            format!("--user-data-dir={profile_dir}"),
        ]}),
    );
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    let url = format!("http://127.0.0.1:{port}");
    let mut last = None;
    for _ in 0..50 {
        let conn = hyper_util::client::legacy::connect::HttpConnector::new();
        match fantoccini::ClientBuilder::new(conn)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => return (driver, c),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no WebDriver session: {last:?}");
}

async fn shot(b: &fantoccini::Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    std::fs::create_dir_all(&dir).expect("dir");
    let png = b.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write");
}

/// chromedriver's log of the browser's console (`/session/{id}/se/log`): CSP violations,
/// script errors and failed loads all land there.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or("")))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// What the pages logged at warning or worse since the last call.
async fn page_errors(b: &fantoccini::Client) -> Vec<String> {
    let v = b.issue_cmd(BrowserLog).await.expect("browser log");
    v.as_array()
        .expect("log entries")
        .iter()
        .filter(|e| e["level"] != "INFO" && e["level"] != "DEBUG")
        .map(|e| e["message"].to_string())
        .collect()
}

async fn text_of(b: &fantoccini::Client, css: &str) -> String {
    // The live lists replace their elements every few seconds: an element found just before
    // a refresh is stale by the time its text is asked for, so it is found again.
    let mut last = None;
    for _ in 0..5 {
        let found = b
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(fantoccini::Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        match found.text().await {
            Ok(t) => return t,
            Err(e) => last = Some(e),
        }
    }
    panic!("{css}: {last:?}");
}

#[tokio::test]
async fn in_a_real_browser() {
    use fantoccini::Locator::{Css, Id};
    let s = Server::demo().await;
    let (_driver, b) = browser().await;
    let base = s.base.clone();
    let run = async {
        b.goto(&format!("{base}/lang/en?back=/login"))
            .await
            .expect("goto");
        shot(&b, "login").await;
        // A wrong password first.
        b.find(Id("user"))
            .await
            .expect("user")
            .send_keys(USER)
            .await
            .expect("type");
        b.find(Id("password"))
            .await
            .expect("pw")
            .send_keys("wrong")
            .await
            .expect("type");
        b.find(Id("login"))
            .await
            .expect("button")
            .click()
            .await
            .expect("click");
        assert!(text_of(&b, "#message").await.contains("not valid"));
        // The refusal is the one thing the browser logs so far: its 401.
        let errors = page_errors(&b).await;
        assert!(
            errors.len() == 1 && errors[0].contains("/login") && errors[0].contains("401"),
            "{errors:?}"
        );
        b.find(Id("user"))
            .await
            .expect("user")
            .send_keys(USER)
            .await
            .expect("type");
        b.find(Id("password"))
            .await
            .expect("pw")
            .send_keys(PASS)
            .await
            .expect("type");
        b.find(Id("login"))
            .await
            .expect("button")
            .click()
            .await
            .expect("click");
        let keys = text_of(&b, "#keys").await;
        assert!(b
            .current_url()
            .await
            .expect("url")
            .path()
            .ends_with("/keys"));
        for k in [SOFTWARE_KEY, USB_KEY] {
            assert!(keys.contains(&k.to_string()), "{keys}");
        }
        shot(&b, "keys").await;

        // Activate a fresh demo code onto the blank simulated key, picked from the list.
        let out = Command::new(BIN)
            .args(["centre", "code-list", "--data"])
            .arg(s.data.join("demo"))
            .output()
            .expect("code-list");
        let list = String::from_utf8_lossy(&out.stdout).to_string();
        let code = list
            .lines()
            .filter(|l| l.ends_with("\tnew"))
            .filter_map(|l| l.split('\t').next())
            .next()
            .expect("a fresh code")
            .to_owned();
        b.goto(&format!("{base}/activation")).await.expect("goto");
        b.find(Id("code"))
            .await
            .expect("code")
            .send_keys(&code)
            .await
            .expect("type");
        // The demo codes belong to the demo account's ITN.
        b.find(Id("itn"))
            .await
            .expect("itn")
            .send_keys("1234567890")
            .await
            .expect("type");
        b.find(Css(&format!("#target option[value='{BLANK_SERIAL}']")))
            .await
            .expect("the blank is offered")
            .click()
            .await
            .expect("pick");
        shot(&b, "activation").await;
        b.find(Css("#activate button"))
            .await
            .expect("btn")
            .click()
            .await
            .expect("click");
        let m = text_of(&b, "#message").await;
        assert!(m.contains("Activated"), "{m}");
        let j = s.get("/api/licences").await.json();
        let on_blank = j["Licences"]
            .as_array()
            .expect("list")
            .iter()
            .any(|l| l["BlankKeyNo"] == BLANK_SERIAL && l["IsBlank"] == false);
        assert!(on_blank, "{j}");

        // User memory: write, then read back.
        b.goto(&format!("{base}/keys/{SOFTWARE_KEY}"))
            .await
            .expect("goto");
        b.find(Id("w-value"))
            .await
            .expect("value")
            .send_keys("из браузера")
            .await
            .expect("type");
        b.find(Css("#memory-write button"))
            .await
            .expect("btn")
            .click()
            .await
            .expect("click");
        assert!(text_of(&b, "#message").await.contains("written"));
        b.find(Css("#memory-read button"))
            .await
            .expect("btn")
            .click()
            .await
            .expect("click");
        assert_eq!(text_of(&b, "#memory-value").await, "из браузера");
        shot(&b, "key").await;

        // A session opened through the API, released from the console.
        let r = s
            .post(
                "/api/sessions",
                json!({"KeyID": KEY_ID, "ClientSessionID": "console-test", "AppName": "Browser",
                       "UserName": "tester", "ComputerName": "pc"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        b.goto(&format!("{base}/sessions")).await.expect("goto");
        shot(&b, "sessions").await;
        b.find(Css("button.release"))
            .await
            .expect("release")
            .click()
            .await
            .expect("click");
        assert!(text_of(&b, "#message").await.contains("released"));
        assert_eq!(s.get("/api/sessions").await.json()["Sessions"], json!([]));

        b.goto(&format!("{base}/devices")).await.expect("goto");
        assert!(text_of(&b, "#devices")
            .await
            .contains(&BLANK_SERIAL.to_string()));
        shot(&b, "devices").await;
        // Unplug and replug a simulated key: the page shows both without a reload (a mark
        // left in the page survives).
        b.execute("window.kbMark = 42; return null;", vec![])
            .await
            .expect("mark");
        let serial = KEYED_SERIAL.to_string();
        let out = s.cli(&["sim", "unplug", "--serial", &serial]);
        assert!(out.status.success(), "{out:?}");
        text_of(
            &b,
            &format!("tr[data-serial='{serial}'][data-attached='false']"),
        )
        .await;
        shot(&b, "devices-unplugged").await;
        let out = s.cli(&["sim", "plug", "--serial", &serial]);
        assert!(out.status.success(), "{out:?}");
        text_of(
            &b,
            &format!("tr[data-serial='{serial}'][data-attached='true']"),
        )
        .await;
        let mark = b
            .execute("return window.kbMark;", vec![])
            .await
            .expect("mark");
        assert_eq!(mark, json!(42), "the page was reloaded");
        b.goto(&format!("{base}/system")).await.expect("goto");
        assert!(text_of(&b, "#public-key")
            .await
            .contains("BEGIN PUBLIC KEY"));
        assert!(text_of(&b, "#audit").await.contains("activate onto"));
        shot(&b, "system").await;

        // A setting: refused without the current password, then saved to the config file
        // (its other lines kept).
        b.goto(&format!("{base}/settings")).await.expect("goto");
        let lease = b.find(Id("s-lease")).await.expect("lease");
        lease.clear().await.expect("clear");
        lease.send_keys("600").await.expect("type");
        // Cleared first: the browser's password manager may have filled it in.
        let current = b.find(Id("s-current")).await.expect("cur");
        current.clear().await.expect("clear");
        current.send_keys("nope").await.expect("type");
        b.find(Css("#settings button"))
            .await
            .expect("btn")
            .click()
            .await
            .expect("click");
        assert!(text_of(&b, "#message").await.contains("not right"));
        let before = std::fs::read_to_string(&s.config).expect("config");
        assert!(!before.contains("session_seconds"), "{before}");
        let lease = b.find(Id("s-lease")).await.expect("lease");
        lease.clear().await.expect("clear");
        lease.send_keys("600").await.expect("type");
        // Cleared first: the browser's password manager may have filled it in.
        let current = b.find(Id("s-current")).await.expect("cur");
        current.clear().await.expect("clear");
        current.send_keys(PASS).await.expect("type");
        b.find(Css("#settings button"))
            .await
            .expect("btn")
            .click()
            .await
            .expect("click");
        let m = text_of(&b, "#message").await;
        assert!(
            m.contains("[leases] session_seconds") && m.contains("restart"),
            "{m}"
        );
        let after = std::fs::read_to_string(&s.config).expect("config");
        assert!(after.contains("session_seconds = 600"), "{after}");
        assert!(after.contains(COMPUTER_ID), "{after}");
        shot(&b, "settings").await;
        // The wrong current password was a counted guess; the right one cleared it.
        let errors = page_errors(&b).await;
        assert!(errors.is_empty(), "{errors:?}");

        // Switch to Russian and back.
        b.find(Id("lang-ru"))
            .await
            .expect("ru")
            .click()
            .await
            .expect("click");
        assert_eq!(text_of(&b, "nav a[href='/keys']").await, "Ключи");
        shot(&b, "system-ru").await;
        // Down to a phone: no part of the Keys page wider than the screen.
        b.set_window_size(390, 844).await.expect("phone size");
        b.goto(&format!("{base}/keys")).await.expect("goto");
        let fits = b
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth;",
                vec![],
            )
            .await
            .expect("width");
        assert_eq!(fits, json!(true), "the page scrolls sideways on a phone");
        shot(&b, "keys-phone-ru").await;
        b.set_window_size(1280, 900).await.expect("size");
        b.find(Id("lang-en"))
            .await
            .expect("en")
            .click()
            .await
            .expect("click");
        assert_eq!(text_of(&b, "nav a[href='/keys']").await, "Keys");

        let errors = page_errors(&b).await;
        assert!(errors.is_empty(), "{errors:?}");
    };
    run.await;
    b.close().await.expect("close");
}
