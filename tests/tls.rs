//! TLS end to end, with certificates made at test time (rcgen): the centre over HTTPS, a
//! host that reaches it through a private CA (and one that refuses it without the CA), the
//! host's own API over HTTPS, the centre's refusal of plain HTTP off loopback, and the
//! centre's database over TLS.

mod common;
use common::centre::CentreServer;
use common::net::closed_within;
use common::pki::Pki;
use common::*;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

fn tls_args(pki: &Pki) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        pki.cert.display().to_string(),
        "--tls-key".into(),
        pki.key.display().to_string(),
    ]
}

async fn https_centre(pki: &Pki) -> CentreServer {
    let args = tls_args(pki);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = CentreServer::start_with(None, &args, Some(&pki.ca_pem)).await;
    assert!(c.base.starts_with("https://"), "{}", c.base);
    let product = json!({"key_id": "8A00", "product_name": "Бухгалтерия", "first_key_no": 5000000});
    assert_eq!(c.post("/centre/v1/products", product, true).await.0, 201);
    c
}

/// A demo host whose centre is `c`, trusting `ca_file` for it if given.
async fn host_for(c: &CentreServer, ca_file: Option<&std::path::Path>) -> Server {
    // The certificate names 127.0.0.1 (and localhost): the URL is the centre's own.
    let mut config = format!("[centre]\nurl = \"{}\"\n", c.base);
    if let Some(ca) = ca_file {
        config.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
    }
    config.push_str(&format!(
        "[licences]\ntrusted_centre_keys = [\"{}\"]\n[usb]\nenabled = false\n",
        c.trust_file().display()
    ));
    let s = Server::start(Opts { demo: true, config }).await;
    // The centre trusts the simulated keys' factory as a manufacturer.
    let factory = s.data.join("sim/factory-public/sim-factory.pem");
    std::fs::create_dir_all(c.data.join("manufacturers")).expect("dir");
    std::fs::copy(&factory, c.data.join("manufacturers/sim-factory.pem")).expect("copy");
    s
}

fn activation(code: &str) -> Value {
    json!({"ActivationCodeString": code, "ITN": 1234567890, "IEC": null, "BlankKeyNo": null})
}

#[tokio::test]
async fn a_host_activates_through_an_https_centre_it_trusts_and_refuses_one_it_does_not() {
    let pki = Pki::new();
    let c = https_centre(&pki).await;

    let s = host_for(&c, Some(&pki.ca)).await;
    let code = c.code(json!({"key_id": "8A00", "licence_count": 2})).await;
    let r = s.post("/api/licences", activation(&code)).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["KeyNo"], 5000000);
    assert!(s.data.join("8A00.5000000.licence").exists());

    // Without the CA file the host cannot verify the centre: a clear refusal, nothing installed.
    let untrusting = host_for(&c, None).await;
    let other = c.code(json!({"key_id": "8A00", "licence_count": 1})).await;
    let before = untrusting.get("/api/licences").await.json();
    let r = untrusting.post("/api/licences", activation(&other)).await;
    r.assert_error(503, "ECentreUnavailable");
    let message = r.json()["Message"].as_str().expect("m").to_owned();
    println!("{message}");
    assert!(
        message.contains("certificate") && message.contains("UnknownIssuer"),
        "{message}"
    );
    assert_eq!(untrusting.get("/api/licences").await.json(), before);
    // The code was not used up by the refused attempt.
    let r = s.post("/api/licences", activation(&other)).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

#[tokio::test]
async fn the_hosts_api_over_https_answers_signed() {
    let pki = Pki::new();
    let config = format!(
        "[api]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n[usb]\nenabled = false\n[http]\ntls_handshake_timeout_seconds = 1\n",
        pki.cert.display(),
        pki.key.display()
    );
    let s = Server::start_with(Opts { demo: true, config }, &[], Some(&pki.ca_pem)).await;
    assert!(s.base.starts_with("https://"), "{}", s.base);
    // Checked against the host's key with the rsa crate, as every harness answer is.
    let r = s
        .request(
            "GET",
            "/api/licences",
            None,
            Some((USER, PASS)),
            Some("20240101120000"),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.json()["Licences"].is_array());

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = client_builder().build().expect("client");
    let e = plain
        .get(format!("http://{}/api/publickey", s.addr()))
        .send()
        .await;
    assert!(e.is_err(), "{e:?}");
    // A client that does not trust the CA refuses the certificate.
    let stranger = client_builder().build().expect("client");
    let e = stranger
        .get(format!("{}/api/publickey", s.base))
        .send()
        .await
        .expect_err("untrusted certificate");
    assert!(format!("{e:?}").contains("UnknownIssuer"), "{e:?}");
    // A client that connects and never starts the handshake is cut off after 1 s.
    let t = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(s.addr()).await.expect("tcp");
    let closed = closed_within(&mut silent, Duration::from_secs(10))
        .await
        .expect("closed by the handshake timeout");
    println!("silent TLS client closed after {closed:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
}

fn centre_serve(args: &[&str]) -> std::process::Output {
    let tmp = tempfile::tempdir().expect("tmp");
    Command::new(BIN)
        .args(["centre", "serve", "--data"])
        .arg(tmp.path())
        .args(args)
        .env_remove("KEYBRIDGE_CENTRE_DATABASE")
        .output()
        .expect("run")
}

#[tokio::test]
async fn the_centre_refuses_plain_http_off_loopback_and_bad_tls_files() {
    let hash = keybridge::crypto::password::PasswordHash::new("a long vendor secret").to_string();
    let o = centre_serve(&["--listen", "0.0.0.0:0", "--admin-password-hash", &hash]);
    let out = stdout(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("refusing to serve plain HTTP") && out.contains("--insecure-http"),
        "{out}"
    );
    assert!(!out.contains("listening"), "{out}");

    // Explicitly allowed: it starts (and is stopped at once).
    let tmp = tempfile::tempdir().expect("tmp");
    let mut child = Command::new(BIN)
        .args([
            "centre",
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--insecure-http",
        ])
        .args(["--admin-password-hash", &hash, "--data"])
        .arg(tmp.path())
        .env_remove("KEYBRIDGE_CENTRE_DATABASE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("line");
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("listening on http://0.0.0.0:"), "{line}");

    // TLS files: each error names the file and the problem.
    let pki = Pki::new();
    let (cert, key, other) = (
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
        pki.other_key.display().to_string(),
    );
    for (tls_cert, tls_key, says) in [
        (&cert, &other, ["other-key.pem", "server.pem"]),
        (&key, &key, ["server-key.pem", "no certificate"]),
        (&cert, &cert, ["server.pem", "no private key"]),
    ] {
        let o = centre_serve(&[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            tls_cert,
            "--tls-key",
            tls_key,
        ]);
        let out = stdout(&o);
        assert!(!o.status.success());
        assert!(says.iter().all(|s| out.contains(s)), "{says:?}: {out}");
    }
    let o = centre_serve(&["--listen", "127.0.0.1:0", "--tls-cert", &cert]);
    assert!(!o.status.success());
    assert!(stdout(&o).contains("--tls-key"), "{}", stdout(&o));

    // The host: both [api] TLS keys or neither; a bad CA file is named.
    let d = tempfile::tempdir().expect("tmp");
    let host = |config: String| {
        let path = d.path().join("keybridge.toml");
        std::fs::write(&path, base_config(&config)).expect("config");
        let o = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(d.path().join("data"))
            .arg("--config")
            .arg(&path)
            .output()
            .expect("run");
        assert!(!o.status.success(), "{}", stdout(&o));
        stdout(&o)
    };
    let out = host(format!("[api]\ntls_cert = \"{cert}\"\n"));
    assert!(out.contains("tls_cert and tls_key"), "{out}");
    let out = host(format!(
        "[centre]\nurl = \"https://localhost:1\"\nca_file = \"{key}\"\n[usb]\nenabled = false\n"
    ));
    assert!(
        out.contains("ca_file") && out.contains("server-key.pem"),
        "{out}"
    );
    let out = host("[http]\nheader_timeout_seconds = nan\n".into());
    assert!(out.contains("header_timeout_seconds"), "{out}");
}

/// The centre's database over TLS: `scripts/test` starts PostgreSQL with ssl=on and a role
/// that may only connect over TLS, and gives its URL in KEYBRIDGE_TEST_POSTGRES_TLS.
#[tokio::test]
async fn the_centre_opens_postgres_over_tls() {
    let Ok(url) = std::env::var("KEYBRIDGE_TEST_POSTGRES_TLS") else {
        println!("skipped: KEYBRIDGE_TEST_POSTGRES_TLS is not set (scripts/test starts a PostgreSQL server with TLS and sets it)");
        return;
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    sqlx::any::install_default_drivers();
    let (base, query) = url.split_once('?').unwrap_or((&url, ""));
    let (server, _) = base.rsplit_once('/').expect("URL with a database");
    let name = format!("keybridge_tls_{}", std::process::id());
    let admin = sqlx::AnyPool::connect(&url)
        .await
        .expect("connect over TLS");
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(&sql).execute(&admin).await.expect("database");
    }
    let db_url = format!("{server}/{name}?{query}");

    // The role is refused without TLS, so what follows cannot pass over plain TCP.
    let plain = db_url.replace("sslmode=require", "sslmode=disable");
    assert!(sqlx::AnyPool::connect(&plain).await.is_err());
    let pool = sqlx::AnyPool::connect(&db_url).await.expect("TLS");
    let (ssl,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .expect("pg_stat_ssl");
    assert!(ssl, "the connection is not encrypted");
    pool.close().await;

    // The certificate verified against its CA as well (verify-full), when the CA is given.
    if let Ok(ca) = std::env::var("KEYBRIDGE_TEST_POSTGRES_TLS_CA") {
        let full = format!(
            "{}&sslrootcert={ca}",
            db_url.replace("sslmode=require", "sslmode=verify-full")
        );
        let pool = sqlx::AnyPool::connect(&full).await.expect("verify-full");
        pool.close().await;
    }

    let c = CentreServer::start_on(Some(&db_url)).await;
    let product = json!({"key_id": "672B", "product_name": "TLS", "first_key_no": 100});
    let (status, j) = c.post("/centre/v1/products", product, true).await;
    assert_eq!(status, 201, "{j}");
    let code = c.code(json!({"key_id": "672B", "licence_count": 1})).await;
    let list = c.cli(&["centre", "code-list"]);
    assert!(stdout(&list).contains(&code), "{}", stdout(&list));
    drop(c);
    admin.close().await;
}
