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
    common::client_builder()
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

/// A console page with a session cookie: status and body.
async fn page(c: &reqwest::Client, base: &str, session: &str, path: &str) -> (u16, String) {
    let r = c
        .get(format!("{base}{path}"))
        .header("cookie", session)
        .send()
        .await
        .expect("get");
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// A form posted with a session cookie: status and body.
async fn post(
    c: &reqwest::Client,
    base: &str,
    session: &str,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, String) {
    let r = c
        .post(format!("{base}{path}"))
        .header("cookie", session)
        .form(form)
        .send()
        .await
        .expect("post");
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// The `kb_session=…` pair a response sets, if it sets one.
fn session_set(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("kb_session=") && !v.contains("Max-Age=0"))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

/// Attacks on the session: a planted session id, another session's CSRF token, a flood of
/// logins, and the address the audit log gives for a change.
#[tokio::test]
async fn sessions_are_rotated_bound_and_bounded() {
    let s = Server::demo().await;
    let base = &s.base;
    let c = no_redirects();
    let (a, a_csrf) = http_login(&c, base).await;

    // Session fixation: a browser that already holds a session id (planted or its own) gets a
    // new one at login, and the old one ends.
    let (token, login_cookie) = login_token(&c, base).await;
    let r = c
        .post(format!("{base}/login"))
        .header("cookie", format!("{login_cookie}; {a}"))
        .form(&[("csrf", token.as_str()), ("user", USER), ("password", PASS)])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 303);
    let b = session_set(&r).expect("a new session");
    assert_ne!(a, b, "the session id was not rotated at login");
    assert_eq!(
        page(&c, base, &a, "/keys").await.0,
        303,
        "the old id lives on"
    );
    assert_eq!(page(&c, base, &b, "/keys").await.0, 200);

    // Another session's CSRF token is no token: 403, the memory untouched.
    let (b2, _) = http_login(&c, base).await;
    let (status, body) = post(
        &c,
        base,
        &b2,
        &format!("/keys/{SOFTWARE_KEY}"),
        &[
            ("csrf", a_csrf.as_str()),
            ("action", "write"),
            ("password", ""),
            ("value", "stolen"),
        ],
    )
    .await;
    assert_eq!(status, 403);
    assert!(body.contains("security token"), "{body}");
    let r = s
        .call(
            "GET",
            &format!("/api/licences/{SOFTWARE_KEY}/memory"),
            Some(json!({"Password": ""})),
        )
        .await;
    assert_eq!(r.json()["Value"], "");
    // A cross-site form carries no cookie (SameSite=Strict): it meets the login page.
    let r = c
        .post(format!("{base}/keys/{SOFTWARE_KEY}"))
        .header("origin", "https://evil.example")
        .form(&[("action", "reset"), ("confirm", "yes")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login");

    // The audit log gives the address of the request that made the change, not the login's.
    let from2 = common::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");
    let b2_csrf = {
        let (_, body) = page(&from2, base, &b2, "/keys").await;
        body.split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("csrf")
            .to_owned()
    };
    let (status, _) = post(
        &from2,
        base,
        &b2,
        &format!("/keys/{SOFTWARE_KEY}"),
        &[
            ("csrf", b2_csrf.as_str()),
            ("action", "write"),
            ("password", ""),
            ("value", "from .2"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let audit = std::fs::read_to_string(s.data.join("console-audit.log")).expect("audit");
    let line = audit
        .lines()
        .rev()
        .find(|l| l.contains("memory write"))
        .expect("logged");
    assert!(line.contains("\"from\":\"127.0.0.2\""), "{line}");

    // A flood of logins (the right password, in parallel): the table keeps 64 sessions, the
    // least recently used go first.
    let logins = (0..80).map(|_| {
        let c = c.clone();
        async move {
            let (token, cookie) = login_token(&c, base).await;
            let r = c
                .post(format!("{base}/login"))
                .header("cookie", &cookie)
                .form(&[("csrf", token.as_str()), ("user", USER), ("password", PASS)])
                .send()
                .await
                .expect("login");
            session_set(&r)
        }
    });
    let made: Vec<String> = futures::future::join_all(logins)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(made.len(), 80);
    let mut live = 0;
    for m in made.iter().chain([&b, &b2]) {
        if page(&c, base, m, "/keys").await.0 == 200 {
            live += 1;
        }
    }
    assert!(live <= 64, "{live} sessions live");
    assert_eq!(
        page(&c, base, &b, "/keys").await.0,
        303,
        "b outlived the flood"
    );
}

/// Settings that apply while serving: the API switch at once, and a password change at once —
/// which also ends every console session from before it (a stolen cookie dies with the old
/// password) while the browser that made it goes on.
#[tokio::test]
async fn a_password_change_applies_at_once_and_ends_older_sessions() {
    let s = Server::demo().await;
    let base = &s.base;
    let c = no_redirects();
    let (old, _) = http_login(&c, base).await;
    let (mine, csrf) = http_login(&c, base).await;
    let form = |enabled: bool, new: &'static str, current: &'static str| {
        let mut f = vec![
            ("csrf", csrf.clone()),
            ("user", USER.to_owned()),
            ("session_seconds", "300".to_owned()),
            ("new_password", new.to_owned()),
            ("repeat_password", new.to_owned()),
            ("current_password", current.to_owned()),
        ];
        if enabled {
            f.push(("api_enabled", "on".to_owned()));
        }
        f
    };
    // The API switch, off and on, without a restart.
    let (status, body) = post(
        &c,
        base,
        &mine,
        "/settings",
        &form(false, "", PASS)
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(status, 200);
    let m = message(&body);
    assert!(
        m.starts_with("ok") && m.contains("Applied now: [api] enabled"),
        "{m}"
    );
    s.get("/api/licences")
        .await
        .assert_error(503, "EAPIDisabled");
    assert_eq!(
        page(&c, base, &mine, "/keys").await.0,
        200,
        "the console is not the API"
    );
    let (status, _) = post(
        &c,
        base,
        &mine,
        "/settings",
        &form(true, "", PASS)
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(s.get("/api/licences").await.status, 200);

    // Too short a password is refused and nothing is written.
    let before = std::fs::read_to_string(&s.config).expect("config");
    let (_, body) = post(
        &c,
        base,
        &mine,
        "/settings",
        &form(true, "short", PASS)
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
    )
    .await;
    assert!(body.contains("class=\"message error\""));
    assert_eq!(std::fs::read_to_string(&s.config).expect("config"), before);

    // A new password: applied at once.
    let r = c
        .post(format!("{base}/settings"))
        .header("cookie", &mine)
        .form(&form(true, "a-new-password", PASS))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let fresh = session_set(&r).expect("this browser's new session");
    let body = r.text().await.expect("body");
    assert!(body.contains("[api] password_hash"), "{body}");
    let config = std::fs::read_to_string(&s.config).expect("config");
    assert!(config.contains("password_hash"), "{config}");
    assert!(
        !config.contains("a-new-password"),
        "the password itself was written"
    );
    // Every session from before is over, the one that made the change too; its new one works.
    assert_eq!(page(&c, base, &old, "/keys").await.0, 303);
    assert_eq!(page(&c, base, &mine, "/keys").await.0, 303);
    assert_eq!(page(&c, base, &fresh, "/keys").await.0, 200);
    // The API: the old password no longer, the new one at once.
    let r = s
        .request("GET", "/api/licences", None, Some((USER, PASS)), None)
        .await;
    assert_eq!(r.status, 401);
    let r = s
        .request(
            "GET",
            "/api/licences",
            None,
            Some((USER, "a-new-password")),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    // And the console's login the same.
    let (token, cookie) = login_token(&c, base).await;
    let r = c
        .post(format!("{base}/login"))
        .header("cookie", &cookie)
        .form(&[("csrf", token.as_str()), ("user", USER), ("password", PASS)])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 401);
    let audit = std::fs::read_to_string(s.data.join("console-audit.log")).expect("audit");
    assert!(audit.contains("[api] password_hash"), "{audit}");
    assert!(
        !audit.contains("a-new-password"),
        "a password in the audit log"
    );
}

/// What an outsider tries: markup through every field the pages show, oversized bodies, odd
/// paths, a foreign Host header, framing and caching; the language from the browser.
#[tokio::test]
async fn output_is_escaped_and_requests_are_bounded() {
    let s = Server::demo().await;
    let base = &s.base;
    let c = no_redirects();
    let (session, csrf) = http_login(&c, base).await;
    const EVIL: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

    // Markup in user memory, a session's application and user name, a released session's id
    // (which lands in the audit log) and a refused login's user name: shown as text only.
    let r = s
        .post(
            &format!("/api/licences/{SOFTWARE_KEY}/memory"),
            json!({"Password": "", "Value": EVIL}),
        )
        .await;
    assert!(r.status < 300, "{}", String::from_utf8_lossy(&r.body));
    let r = s
        .post(
            "/api/sessions",
            json!({"KeyID": KEY_ID, "ClientSessionID": "xss", "AppName": EVIL,
                   "UserName": EVIL, "ComputerName": EVIL}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let (_, _) = post(
        &c,
        base,
        &session,
        "/sessions/release",
        &[("csrf", csrf.as_str()), ("id", EVIL)],
    )
    .await;
    let (token, cookie) = login_token(&c, base).await;
    let r = c
        .post(format!("{base}/login"))
        .header("cookie", &cookie)
        .form(&[("csrf", token.as_str()), ("user", EVIL), ("password", "x")])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 401);
    let (_, memory) = post(
        &c,
        base,
        &session,
        &format!("/keys/{SOFTWARE_KEY}"),
        &[
            ("csrf", csrf.as_str()),
            ("action", "read"),
            ("password", ""),
        ],
    )
    .await;
    let shown = memory
        .split("id=\"memory-value\">")
        .nth(1)
        .and_then(|v| v.split("</output>").next())
        .unwrap_or_else(|| panic!("no value shown: {memory}"));
    assert!(
        shown.starts_with("&#60;script&#62;alert(1)&#60;") && !shown.contains('<'),
        "{shown}"
    );
    for (path, body) in [
        (format!("/keys/{SOFTWARE_KEY}"), memory),
        (
            "/sessions".into(),
            page(&c, base, &session, "/sessions").await.1,
        ),
        (
            format!("/keys/{SOFTWARE_KEY}"),
            page(&c, base, &session, &format!("/keys/{SOFTWARE_KEY}"))
                .await
                .1,
        ),
        (
            "/system".into(),
            page(&c, base, &session, "/system").await.1,
        ),
    ] {
        assert!(
            !body.contains("<script>alert"),
            "{path}: markup not escaped"
        );
        assert!(!body.contains("<img src=x"), "{path}: markup not escaped");
    }
    let system = page(&c, base, &session, "/system").await.1;
    assert!(system.contains("release session"), "release not audited");
    assert!(
        system.contains("&#60;script&#62;alert(1)"),
        "the audit shows nothing escaped"
    );

    // Bodies over 64 KiB are refused before they are read, and change nothing. (Just over
    // the limit: the server answers without reading on, and a far larger body would meet a
    // closed socket before its answer.)
    let big = "x".repeat(100 * 1024);
    let (status, body) = post(
        &c,
        base,
        &session,
        &format!("/keys/{SOFTWARE_KEY}"),
        &[
            ("csrf", csrf.as_str()),
            ("action", "write"),
            ("password", ""),
            ("value", big.as_str()),
        ],
    )
    .await;
    assert_eq!(status, 413);
    assert!(body.contains("too large"), "{body}");
    let r = c
        .post(format!("{base}/login"))
        .form(&[("csrf", "x"), ("user", big.as_str()), ("password", "x")])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 413);
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .part(
            "licence",
            reqwest::multipart::Part::bytes(vec![b'{'; 100 * 1024]).file_name("big.licence"),
        );
    let r = c
        .post(format!("{base}/activation/import"))
        .header("cookie", &session)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 413);
    let r = s
        .call(
            "GET",
            &format!("/api/licences/{SOFTWARE_KEY}/memory"),
            Some(json!({"Password": ""})),
        )
        .await;
    assert_eq!(r.json()["Value"], EVIL);

    // Paths that are no key and no document (traversal included): 404 pages, nothing read.
    for p in [
        "/keys/..%2F..%2Fetc%2Fpasswd",
        "/keys/7131766%2F..%2F..",
        "/docs/..%2F..%2FCargo.toml",
        "/docs/%2e%2e%2fsecurity",
        "/docs/nothing",
        "/lang/xx",
    ] {
        let (status, body) = page(&c, base, &session, p).await;
        assert_eq!(status, 404, "{p}");
        assert!(
            body.contains("nothing here") && !body.contains("[package]"),
            "{p}"
        );
    }
    // A form the pages never send.
    let (status, _) = post(
        &c,
        base,
        &session,
        &format!("/keys/{SOFTWARE_KEY}"),
        &[("csrf", csrf.as_str()), ("action", "format-disk")],
    )
    .await;
    assert_eq!(status, 400);

    // A foreign name in Host (DNS rebinding) gets no console page, with or without a session.
    for p in ["/login", "/keys"] {
        let r = s
            .raw(
                "GET",
                p,
                None,
                None,
                &[("host", "evil.example"), ("cookie", session.as_str())],
            )
            .await;
        assert_eq!(r.status, 421, "{p}");
        assert!(!String::from_utf8_lossy(&r.body).contains("<html"), "{p}");
    }

    // Every page, error pages too: no framing, no caching, no sniffing, no referrer, the policy.
    for p in [
        "/keys",
        "/keys?show=usb",
        &format!("/keys/{SOFTWARE_KEY}"),
        "/activation",
        "/sessions",
        "/devices",
        "/settings",
        "/system",
        "/docs/console",
        "/keys/0",
        "/login",
    ] {
        let r = c
            .get(format!("{base}{p}"))
            .header("cookie", &session)
            .send()
            .await
            .expect("get");
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().expect("csp");
        assert!(
            csp.contains("frame-ancestors 'none'")
                && csp.contains("script-src 'self'")
                && !csp.contains("unsafe"),
            "{p}: {csp}"
        );
        assert_eq!(h["x-frame-options"], "DENY", "{p}");
        assert_eq!(h["cache-control"], "no-store", "{p}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{p}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{p}");
        let body = r.text().await.expect("body");
        assert!(
            !body.contains(" style=") && !body.contains("<script>"),
            "{p}"
        );
    }

    // The language from the browser, until the switch says otherwise.
    let r = c
        .get(format!("{base}/login"))
        .header("accept-language", "ru-RU,ru;q=0.9,en;q=0.5")
        .send()
        .await
        .expect("login");
    let body = r.text().await.expect("body");
    assert!(
        body.contains("lang=\"ru\"") && body.contains("Войти"),
        "{body}"
    );
    let r = c
        .get(format!("{base}/keys"))
        .header("accept-language", "ru")
        .header("cookie", format!("{session}; kb_lang=en"))
        .send()
        .await
        .expect("keys");
    assert!(r.text().await.expect("body").contains(">Keys<"));
}

/// The event stream says `change` when a session opens or a key is unplugged elsewhere; it
/// needs a live session, and the streams are bounded.
#[tokio::test]
async fn the_event_stream_says_when_something_changes() {
    let s = Server::demo().await;
    let base = &s.base;
    let c = no_redirects();
    let r = c
        .get(format!("{base}/events"))
        .send()
        .await
        .expect("events");
    assert_eq!(r.status(), 204, "a stream without a session");
    let (session, csrf) = http_login(&c, base).await;
    let open = || {
        c.get(format!("{base}/events"))
            .header("cookie", &session)
            .send()
    };
    let mut stream = open().await.expect("events");
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    async fn next_change(r: &mut reqwest::Response) -> bool {
        let mut seen = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !seen.contains("event: change") {
            match tokio::time::timeout_at(deadline, r.chunk()).await {
                Ok(Ok(Some(b))) => seen.push_str(&String::from_utf8_lossy(&b)),
                _ => return false,
            }
        }
        true
    }
    let r = s
        .post(
            "/api/sessions",
            json!({"KeyID": KEY_ID, "ClientSessionID": "live", "AppName": "Live"}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(
        next_change(&mut stream).await,
        "no change for a new session"
    );
    let out = s.cli(&["sim", "unplug", "--serial", &KEYED_SERIAL.to_string()]);
    assert!(out.status.success(), "{out:?}");
    assert!(next_change(&mut stream).await, "no change for an unplug");

    // At most 16 streams: the 17th is told to poll instead.
    let mut more = Vec::new();
    for _ in 0..15 {
        let r = open().await.expect("events");
        assert_eq!(r.status(), 200);
        more.push(r);
    }
    let r = open().await.expect("events");
    assert_eq!(r.status(), 503);
    drop(more);

    // Logout ends the session; a new stream is refused (204: the browser stops asking).
    let (status, _) = post(&c, base, &session, "/logout", &[("csrf", csrf.as_str())]).await;
    assert_eq!(status, 303);
    let r = c
        .get(format!("{base}/events"))
        .header("cookie", &session)
        .send()
        .await
        .expect("events");
    assert_eq!(r.status(), 204);
}

/// A fresh demo activation code of this server's demo centre.
fn fresh_code(s: &Server) -> String {
    let out = Command::new(BIN)
        .args(["centre", "code-list", "--data"])
        .arg(s.data.join("demo"))
        .output()
        .expect("code-list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.ends_with("\tnew"))
        .filter_map(|l| l.split('\t').next())
        .next()
        .expect("a fresh code")
        .to_owned()
}

/// The message a page shows, from its class (`ok …` or `error …`) to its end: its text and
/// detail.
fn message(body: &str) -> String {
    body.split("<div class=\"message ")
        .nth(1)
        .and_then(|m| m.split("</div>").next())
        .unwrap_or("")
        .to_owned()
}

/// Activation onto this machine, the centre's refusal in words (both languages), update and
/// restore, and the memory's passwords and reset — each from the console, each in the audit.
#[tokio::test]
async fn activation_and_memory_from_the_console() {
    let s = Server::demo().await;
    let base = &s.base;
    let c = no_redirects();
    let (session, csrf) = http_login(&c, base).await;
    let before = s.get("/api/licences").await.json()["Licences"]
        .as_array()
        .expect("list")
        .len();
    let code = fresh_code(&s);
    let activate = |target: &'static str, itn: &'static str, lang: &'static str| {
        let c = c.clone();
        let cookie = format!("{session}; kb_lang={lang}");
        let form = vec![
            ("csrf", csrf.clone()),
            ("code", code.clone()),
            ("target", target.to_owned()),
            ("itn", itn.to_owned()),
        ];
        async move {
            let r = c
                .post(format!("{base}/activation"))
                .header("cookie", cookie)
                .form(&form)
                .send()
                .await
                .expect("activate");
            assert_eq!(r.status(), 200);
            message(&r.text().await.expect("body"))
        }
    };
    let m = activate("computer", "1234567890", "en").await;
    assert!(m.starts_with("ok") && m.contains("Activated: key"), "{m}");
    let after = s.get("/api/licences").await.json()["Licences"]
        .as_array()
        .expect("list")
        .len();
    assert_eq!(after, before + 1);
    // The same code for another ITN: the centre refuses, and the page says why in words, in
    // the reader's language, with the centre's own message as the detail.
    let en = activate("computer", "7707083893", "en").await;
    assert!(
        en.starts_with("error") && en.contains("The licensing centre refused:"),
        "{en}"
    );
    assert!(en.contains("id=\"message-detail\""), "{en}");
    let ru = activate("computer", "7707083893", "ru").await;
    assert!(ru.contains("Центр лицензирования отказал:"), "{ru}");
    for m in [&en, &ru] {
        let text = m.split("id=\"message-detail\"").next().unwrap_or("");
        for code in [
            "itn_mismatch",
            "already_activated",
            "unknown_code",
            "unknown_licence",
        ] {
            assert!(!text.contains(code), "a reason code, not words: {m}");
        }
    }
    // Update and restore every licence.
    let (status, body) = post(
        &c,
        base,
        &session,
        "/activation/update",
        &[("csrf", csrf.as_str())],
    )
    .await;
    assert_eq!(status, 200);
    let m = message(&body);
    assert!(
        m.starts_with("ok") && m.contains("The centre answered for") && m.contains("refused: 0"),
        "{m}"
    );

    // The memory's passwords changed, then used; a reset (confirmed) clears both.
    let key = format!("/keys/{SOFTWARE_KEY}");
    let mem = |fields: Vec<(&'static str, &'static str)>| {
        let c = c.clone();
        let session = session.clone();
        let url = format!("{base}{key}");
        let mut form: Vec<(&str, String)> = vec![("csrf", csrf.clone())];
        form.extend(fields.into_iter().map(|(k, v)| (k, v.to_owned())));
        async move {
            let r = c
                .post(url)
                .header("cookie", session)
                .form(&form)
                .send()
                .await
                .expect("post");
            assert_eq!(r.status(), 200);
            r.text().await.expect("body")
        }
    };
    let m = message(
        &mem(vec![
            ("action", "passwords"),
            ("read", ""),
            ("write", ""),
            ("new_read", "r-secret"),
            ("new_write", "w-secret"),
        ])
        .await,
    );
    assert!(m.contains("The passwords were changed."), "{m}");
    let m = message(&mem(vec![("action", "write"), ("password", ""), ("value", "x")]).await);
    assert!(m.contains("Wrong password"), "{m}");
    let m = message(
        &mem(vec![
            ("action", "write"),
            ("password", "w-secret"),
            ("value", "kept"),
        ])
        .await,
    );
    assert!(m.contains("The memory was written."), "{m}");
    let body = mem(vec![("action", "read"), ("password", "r-secret")]).await;
    assert!(
        body.contains("id=\"memory-value\">kept<"),
        "{}",
        message(&body)
    );
    let m = message(&mem(vec![("action", "reset"), ("confirm", "yes")]).await);
    assert!(m.contains("The memory was reset."), "{m}");
    let body = mem(vec![("action", "read"), ("password", "")]).await;
    assert!(body.contains("id=\"memory-value\"><"), "{}", message(&body));
    let audit = std::fs::read_to_string(s.data.join("console-audit.log")).expect("audit");
    for action in [
        "activate onto computer",
        "update and restore all licences",
        "memory passwords, key 7131766",
        "memory reset, key 7131766",
    ] {
        assert!(audit.contains(action), "{action} not in {audit}");
    }
    assert!(!audit.contains("secret"), "a password in the audit log");
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

/// Clicks a form's button and waits until the browser shows the answer: a mark set on the
/// page before the click is gone. Reading `#message` at once could read the one the page
/// already showed (from the form's previous submission).
async fn submit(b: &fantoccini::Client, button: fantoccini::Locator<'_>) {
    b.execute("window.kbBeforeSubmit = 1; return null;", vec![])
        .await
        .expect("mark");
    b.find(button)
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    for _ in 0..200 {
        let still = b
            .execute("return window.kbBeforeSubmit === 1;", vec![])
            .await
            .unwrap_or(serde_json::Value::Bool(true));
        if still == serde_json::Value::Bool(false) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the form's answer did not load");
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

const TAB: &str = "\u{e004}";
const ENTER: &str = "\u{e007}";

/// Keys typed into whatever has the focus (WebDriver's key codes for Tab, Enter).
async fn type_keys(b: &fantoccini::Client, keys: &str) {
    b.active_element()
        .await
        .expect("focused element")
        .send_keys(keys)
        .await
        .expect("type");
}

/// Waits until nothing matches `css` (a live list dropped a row).
async fn gone(b: &fantoccini::Client, css: &str) {
    for _ in 0..100 {
        if b.find_all(fantoccini::Locator::Css(css))
            .await
            .expect("find")
            .is_empty()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{css} is still there");
}

/// The page's accessibility problems as the browser renders it: form controls without a
/// label, links and buttons without a name, and visible text whose contrast with what is
/// behind it is under 4.5:1 (WCAG AA).
async fn a11y(b: &fantoccini::Client) -> Vec<String> {
    const SCRIPT: &str = r#"
      function rgb(c) {
        var m = c.match(/rgba?\(([^)]+)\)/);
        if (!m) return null;
        var p = m[1].split(",").map(parseFloat);
        return p.length > 3 && p[3] === 0 ? null : p;
      }
      function lum(p) {
        var a = p.slice(0, 3).map(function (v) {
          v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
        });
        return 0.2126 * a[0] + 0.7152 * a[1] + 0.0722 * a[2];
      }
      function behind(el) {
        for (var e = el; e; e = e.parentElement) {
          var c = rgb(getComputedStyle(e).backgroundColor);
          if (c) return c;
        }
        return [255, 255, 255];
      }
      var out = [];
      document.querySelectorAll("body *").forEach(function (el) {
        var own = Array.prototype.some.call(el.childNodes, function (n) {
          return n.nodeType === 3 && n.textContent.trim();
        });
        if (!own || el.disabled || el.closest(".sr")) return;
        var s = getComputedStyle(el), r = el.getBoundingClientRect();
        if (s.visibility === "hidden" || r.width === 0 || r.height === 0) return;
        var f = rgb(s.color);
        if (!f) return;
        var a = lum(f), b = lum(behind(el));
        var ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
        if (ratio < 4.5) out.push("contrast " + ratio.toFixed(2) + ": " + el.tagName + " " +
          el.textContent.trim().slice(0, 40));
      });
      document.querySelectorAll("input:not([type=hidden]), select, textarea").forEach(function (el) {
        if (!(el.labels && el.labels.length) && !el.getAttribute("aria-label"))
          out.push("no label: " + (el.id || el.name));
      });
      document.querySelectorAll("a[href], button").forEach(function (el) {
        if (!el.textContent.trim() && !el.getAttribute("aria-label"))
          out.push("no name: " + el.outerHTML.slice(0, 80));
      });
      return out;
    "#;
    let v = b.execute(SCRIPT, vec![]).await.expect("a11y script");
    v.as_array()
        .expect("list")
        .iter()
        .map(|x| x.as_str().unwrap_or("").to_owned())
        .collect()
}

/// Accessibility problems and errors in the browser's console: none on any page.
async fn check_page(b: &fantoccini::Client, name: &str) {
    let problems = a11y(b).await;
    assert!(problems.is_empty(), "{name}: {problems:?}");
    let errors = page_errors(b).await;
    assert!(errors.is_empty(), "{name}: {errors:?}");
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
        submit(&b, Id("login")).await;
        assert!(text_of(&b, "#message").await.contains("not valid"));
        // The refusal is the one thing the browser logs so far: its 401.
        let errors = page_errors(&b).await;
        assert!(
            errors.len() == 1 && errors[0].contains("/login") && errors[0].contains("401"),
            "{errors:?}"
        );
        // The login page meets the accessibility checks too.
        let problems = a11y(&b).await;
        assert!(problems.is_empty(), "login: {problems:?}");
        // Then the right password, by keyboard alone: Tab from the user name to the password,
        // Enter to send.
        b.find(Id("user"))
            .await
            .expect("user")
            .click()
            .await
            .expect("focus");
        type_keys(&b, USER).await;
        type_keys(&b, TAB).await;
        let focused = b
            .execute("return document.activeElement.id;", vec![])
            .await
            .expect("focus");
        assert_eq!(
            focused,
            json!("password"),
            "Tab does not reach the password"
        );
        type_keys(&b, PASS).await;
        type_keys(&b, ENTER).await;
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
        // The checks themselves can fail: faint text and an unlabeled field are caught.
        b.execute(
            "var p = document.createElement('p'); p.id = 'faint'; p.textContent = 'faint'; \
             p.style.color = '#bbbbbb'; document.body.appendChild(p); \
             var i = document.createElement('input'); i.id = 'bare'; \
             document.body.appendChild(i); return null;",
            vec![],
        )
        .await
        .expect("inject");
        let caught = a11y(&b).await;
        assert!(
            caught.len() == 2
                && caught.iter().any(|p| p.starts_with("contrast"))
                && caught.iter().any(|p| p == "no label: bare"),
            "{caught:?}"
        );
        b.execute(
            "document.getElementById('faint').remove(); \
             document.getElementById('bare').remove(); return null;",
            vec![],
        )
        .await
        .expect("remove");
        check_page(&b, "keys").await;
        // The first Tab reaches the skip link, visibly focused; Enter moves to the content.
        b.execute("document.activeElement.blur(); return null;", vec![])
            .await
            .expect("blur");
        type_keys(&b, TAB).await;
        let skip = b
            .execute(
                "var e = document.activeElement; var s = getComputedStyle(e); \
                 return [e.className, s.outlineStyle, e.getBoundingClientRect().left >= 0];",
                vec![],
            )
            .await
            .expect("skip");
        assert_eq!(skip, json!(["skip", "solid", true]), "the skip link");
        type_keys(&b, ENTER).await;
        let at = b
            .execute("return document.activeElement.id;", vec![])
            .await
            .expect("focus");
        assert_eq!(at, json!("main"));

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
        check_page(&b, "activation").await;
        submit(&b, Css("#activate button")).await;
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
        submit(&b, Css("#memory-write button")).await;
        assert!(text_of(&b, "#message").await.contains("written"));
        b.find(Css("#memory-read button"))
            .await
            .expect("btn")
            .click()
            .await
            .expect("click");
        assert_eq!(text_of(&b, "#memory-value").await, "из браузера");
        shot(&b, "key").await;
        check_page(&b, "key").await;
        // A form whose token was tampered with (as a forged one would be) is refused in the
        // browser too, and the memory keeps its value.
        b.execute(
            "document.querySelector('#memory-write input[name=csrf]').value = 'forged'; \
             document.getElementById('w-value').value = 'forged'; return null;",
            vec![],
        )
        .await
        .expect("tamper");
        submit(&b, Css("#memory-write button")).await;
        assert!(text_of(&b, "#message").await.contains("security token"));
        shot(&b, "refused").await;
        let errors = page_errors(&b).await;
        assert!(errors.len() == 1 && errors[0].contains("403"), "{errors:?}");
        let r = s
            .call(
                "GET",
                &format!("/api/licences/{SOFTWARE_KEY}/memory"),
                Some(json!({"Password": ""})),
            )
            .await;
        assert_eq!(r.json()["Value"], "из браузера");

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
        // Another session opened through the API while the page is open shows without a
        // reload (a mark left in the page survives), and so does its release elsewhere.
        b.execute("window.kbMark = 7; return null;", vec![])
            .await
            .expect("mark");
        let r = s
            .post(
                "/api/sessions",
                json!({"KeyID": KEY_ID, "ClientSessionID": "second", "AppName": "Elsewhere",
                       "UserName": "other", "ComputerName": "pc2"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let list = s.get("/api/sessions").await.json();
        let second = list["Sessions"]
            .as_array()
            .expect("sessions")
            .iter()
            .find(|x| x["AppName"] == "Elsewhere")
            .and_then(|x| x["ID"].as_str())
            .expect("the second session")
            .to_owned();
        text_of(&b, &format!("tr[data-session='{second}']")).await;
        shot(&b, "sessions").await;
        check_page(&b, "sessions").await;
        let r = s
            .call("DELETE", &format!("/api/sessions/{second}"), None)
            .await;
        assert!(r.status < 300, "{}", String::from_utf8_lossy(&r.body));
        gone(&b, &format!("tr[data-session='{second}']")).await;
        let mark = b
            .execute("return window.kbMark;", vec![])
            .await
            .expect("mark");
        assert_eq!(mark, json!(7), "the page was reloaded");
        submit(&b, Css("button.release")).await;
        assert!(text_of(&b, "#message").await.contains("released"));
        assert_eq!(s.get("/api/sessions").await.json()["Sessions"], json!([]));

        b.goto(&format!("{base}/devices")).await.expect("goto");
        assert!(text_of(&b, "#devices")
            .await
            .contains(&BLANK_SERIAL.to_string()));
        shot(&b, "devices").await;
        check_page(&b, "devices").await;
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
        check_page(&b, "system").await;
        // The documentation the binary carries, reached from the System page.
        b.find(Css("#links a[href='/docs/console']"))
            .await
            .expect("docs link")
            .click()
            .await
            .expect("click");
        assert!(text_of(&b, "#doc").await.contains("The web console"));
        check_page(&b, "docs").await;

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
        submit(&b, Css("#settings button")).await;
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
        submit(&b, Css("#settings button")).await;
        let m = text_of(&b, "#message").await;
        assert!(
            m.contains("[leases] session_seconds") && m.contains("restart"),
            "{m}"
        );
        let after = std::fs::read_to_string(&s.config).expect("config");
        assert!(after.contains("session_seconds = 600"), "{after}");
        assert!(after.contains(COMPUTER_ID), "{after}");
        shot(&b, "settings").await;
        check_page(&b, "settings").await;
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
        check_page(&b, "settings-ru").await;
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

        // The browser's session ended elsewhere (its cookie logged out over plain HTTP): the
        // open Devices page goes to the login page by itself, and the cookie opens nothing.
        b.goto(&format!("{base}/devices")).await.expect("goto");
        text_of(&b, "#devices").await;
        let cookie = b
            .get_named_cookie("kb_session")
            .await
            .expect("the session cookie");
        assert_eq!(cookie.http_only(), Some(true));
        let pair = format!("kb_session={}", cookie.value());
        let c = no_redirects();
        let (_, body) = page(&c, &base, &pair, "/keys").await;
        let csrf = body
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("csrf")
            .to_owned();
        let (status, _) = post(&c, &base, &pair, "/logout", &[("csrf", csrf.as_str())]).await;
        assert_eq!(status, 303);
        let mut at_login = false;
        for _ in 0..100 {
            if b.current_url().await.expect("url").path() == "/login" {
                at_login = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(at_login, "the page did not notice its session had ended");
        assert_eq!(page(&c, &base, &pair, "/keys").await.0, 303);
        let errors = page_errors(&b).await;
        assert!(errors.is_empty(), "{errors:?}");
    };
    run.await;
    b.close().await.expect("close");
}
