//! Test harness: runs the real `keybridge` binary on loopback and talks HTTP to it. Every
//! response is checked against the host's public key with the `rsa` crate — an
//! implementation independent of the `ring` signer inside the server.
#![allow(dead_code)]

pub mod centre;
pub mod licence;
pub mod net;
pub mod pki;
pub mod process;
pub mod umockdev;

use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde_json::Value;
use sha2::Sha256;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_keybridge");
pub const USER: &str = "admin";
pub const PASS: &str = "admin";
/// A fixed ComputerID so software-key bindings are known to the tests.
pub const COMPUTER_ID: &str = "0123456789ABCDEF0123456789ABCDEF01234567";

pub const KEY_ID: &str = "672B";
pub const SOFTWARE_KEY: u64 = 7_131_766;
pub const USB_KEY: u64 = 7_131_767;
pub const KEYED_SERIAL: u64 = 90_000_001;
pub const BLANK_SERIAL: u64 = 90_000_002;

pub struct Server {
    child: Child,
    /// Whether `child` has been waited for (after which its process group id may be reused).
    reaped: bool,
    /// Whether `child` is a wrapper (`umockdev-run`) with the host as its child.
    wrapped: bool,
    pub base: String,
    pub dir: PathBuf,
    pub data: PathBuf,
    pub config: PathBuf,
    pub public_key: String,
    pub client: reqwest::Client,
    _tmp: Option<tempfile::TempDir>,
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header").to_owned())
    }
    /// Asserts an error response in the spec's format with this code.
    pub fn assert_error(&self, code: u16, exception: &str) {
        assert_eq!(self.status, code, "{}", String::from_utf8_lossy(&self.body));
        let j = self.json();
        assert_eq!(j["Code"], code);
        assert!(j["Text"].is_string());
        assert_eq!(j["Exception"], exception, "{j}");
        assert!(
            j["Message"].as_str().is_some_and(|m| m.contains(exception)),
            "{j}"
        );
    }
}

/// The public key in `pem`, parsed once per PEM: tests that send thousands of requests would
/// otherwise spend much of their time decoding the same PEM.
fn parsed_key(pem: &str) -> rsa::RsaPublicKey {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock, PoisonError};
    static KEYS: OnceLock<Mutex<HashMap<String, rsa::RsaPublicKey>>> = OnceLock::new();
    let mut keys = KEYS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    keys.entry(pem.to_owned())
        .or_insert_with(|| rsa::RsaPublicKey::from_public_key_pem(pem).expect("public key PEM"))
        .clone()
}

/// Checks an RSASSA-PKCS1-v1_5 SHA-256 signature with the `rsa` crate.
pub fn rsa_verify(pem: &str, message: &[u8], sig_b64: &str) -> bool {
    use base64::Engine;
    let vk = VerifyingKey::<Sha256>::new(parsed_key(pem));
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(sig_b64) else {
        return false;
    };
    let Ok(sig) = Signature::try_from(sig.as_slice()) else {
        return false;
    };
    vk.verify(message, &sig).is_ok()
}

/// Checks the same signature with the `openssl` command line tool.
pub fn openssl_verify(pem: &str, message: &[u8], sig_b64: &str) -> bool {
    use base64::Engine;
    let d = tempfile::tempdir().expect("tempdir");
    let (k, m, s) = (
        d.path().join("k.pem"),
        d.path().join("m"),
        d.path().join("s"),
    );
    std::fs::write(&k, pem).expect("write");
    std::fs::write(&m, message).expect("write");
    std::fs::write(
        &s,
        base64::engine::general_purpose::STANDARD
            .decode(sig_b64)
            .expect("b64"),
    )
    .expect("write");
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&k)
        .arg("-signature")
        .arg(&s)
        .arg(&m)
        .output()
        .expect("openssl must be installed (.ci/run installs it)");
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK")
}

/// A reqwest client builder. reqwest is built without a TLS provider of its own (the crate
/// uses rustls on aws-lc-rs only), so the process-wide provider is installed first; every test
/// client must come from here.
///
/// Idle pooled connections are dropped after [`CLIENT_IDLE`], well before the servers close
/// them (`[http] idle_timeout_seconds`: 5 s by default, 1 s at the least in these tests).
/// reqwest's own default (90 s) lets a test reuse a connection in the very moment the server
/// closes it for idleness: the request then meets a reset (`ConnectionReset` on send; it
/// failed a CI run of leases_limits, whose burst leaves surplus connections idle in the pool).
pub fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder().pool_idle_timeout(CLIENT_IDLE)
}

/// How long a test client keeps an idle connection for reuse: below every server idle
/// timeout the tests configure, except the one test that races it on purpose.
pub const CLIENT_IDLE: Duration = Duration::from_millis(500);

/// A test client that also trusts the CA certificate `ca_pem`, if given.
pub fn client_trusting(ca_pem: Option<&str>) -> reqwest::Client {
    let mut b = client_builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(60));
    if let Some(pem) = ca_pem {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("CA PEM"));
    }
    b.build().expect("client")
}

/// Options for a test server.
pub struct Opts {
    pub demo: bool,
    pub config: String,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            demo: true,
            config: String::new(),
        }
    }
}

/// The test config: the fixed ComputerID unless `extra` sets its own.
pub fn base_config(extra: &str) -> String {
    if extra.contains("computer_id") {
        format!("{extra}\n")
    } else {
        format!("computer_id = \"{COMPUTER_ID}\"\n{extra}\n")
    }
}

impl Server {
    /// A demo host with default settings.
    pub async fn demo() -> Server {
        Server::start(Opts::default()).await
    }

    pub async fn start(opts: Opts) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Server::launch(&dir, &opts);
        s._tmp = Some(tmp);
        s.wait_ready().await;
        s
    }

    /// Starts a host on an existing test directory (after a kill, say).
    pub fn launch(dir: &Path, opts: &Opts) -> Server {
        Server::launch_wrapped(dir, opts, &[])
    }

    /// Starts a host under a wrapper command (`umockdev-run … --`), in its own directory.
    pub async fn start_wrapped(opts: Opts, wrapper: &[String]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Server::launch_wrapped(&dir, &opts, wrapper);
        s._tmp = Some(tmp);
        s.wait_ready().await;
        s
    }

    pub fn launch_wrapped(dir: &Path, opts: &Opts, wrapper: &[String]) -> Server {
        Server::launch_with(dir, opts, wrapper, None)
    }

    /// Starts a host whose API may be HTTPS: its client trusts `ca_pem`.
    pub async fn start_with(opts: Opts, wrapper: &[String], ca_pem: Option<&str>) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Server::launch_with(&dir, &opts, wrapper, ca_pem);
        s._tmp = Some(tmp);
        s.wait_ready().await;
        s
    }

    pub fn launch_with(
        dir: &Path,
        opts: &Opts,
        wrapper: &[String],
        ca_pem: Option<&str>,
    ) -> Server {
        // Before the process starts, so a panic here leaves nothing running.
        let client = client_trusting(ca_pem);
        let data = dir.join("data");
        let config = dir.join("keybridge.toml");
        if !opts.config.is_empty() || !config.exists() {
            std::fs::write(&config, base_config(&opts.config)).expect("config");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .expect("log");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                // The host is tied to the wrapper as the wrapper is to us: umockdev-run
                // passes on one SIGTERM (SA_RESETHAND), but the kernel may send it several
                // as a killed test process's threads end one by one, and the second kills it
                // before it passed on the first, leaving the host running (seen in CI).
                let mut c = Command::new(program);
                c.args(args)
                    .args(["setpriv", "--pdeathsig", "TERM", "--", BIN]);
                c
            }
            None => Command::new(BIN),
        };
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data")
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .env_remove("KEYBRIDGE_LISTEN")
            .env_remove("KEYBRIDGE_DATA")
            .stdout(Stdio::piped())
            .stderr(log);
        if opts.demo {
            cmd.arg("--demo");
        }
        // Its own process group, so a wrapper's children (umockdev-run's keybridge) go with it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        // And signalled if this test process dies without dropping it: the host killed, a
        // wrapper told to stop (umockdev-run passes SIGTERM on to the host, not SIGKILL, and
        // the host is signalled when the wrapper goes, above).
        let signal = if wrapper.is_empty() {
            libc::SIGKILL
        } else {
            libc::SIGTERM
        };
        let mut child = process::spawn_tied(cmd, signal).expect("spawn keybridge");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut sent = false;
            for line in lines.by_ref().map_while(Result::ok) {
                if !sent {
                    if let Some(base) = listening_base(&line) {
                        let _ = tx.send(base);
                        sent = true;
                    }
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                kill_group(&mut child);
                let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                panic!("keybridge did not start; log:\n{log}");
            }
        };
        Server {
            child,
            reaped: false,
            wrapped: !wrapper.is_empty(),
            base,
            dir: dir.into(),
            data,
            config,
            public_key: String::new(),
            client,
            _tmp: None,
        }
    }

    /// Fetches the public key the unauthenticated way, for checking signatures.
    pub async fn wait_ready(&mut self) {
        let r = self
            .client
            .get(format!("{}/api/publickey", self.base))
            .send()
            .await
            .expect("publickey");
        self.public_key = r.text().await.expect("pem");
        assert!(
            self.public_key.contains("BEGIN PUBLIC KEY"),
            "{}",
            self.public_key
        );
    }

    /// Takes over the temporary directory, so it outlives this server (for restarts).
    pub fn keep_dir(&mut self) -> Option<tempfile::TempDir> {
        self._tmp.take()
    }

    /// Makes this server own `tmp` again (after [`Server::keep_dir`] and a restart), so the
    /// folder goes when the server does.
    pub fn adopt_dir(&mut self, tmp: Option<tempfile::TempDir>) {
        self._tmp = tmp;
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `host:port` the server listens on.
    pub fn addr(&self) -> String {
        self.base.split("://").nth(1).expect("base URL").to_owned()
    }

    /// Sends SIGTERM and waits at most `within` for the exit; returns how long it took and
    /// the exit status, or `None` if it was still running (then it is killed).
    pub fn terminate(&mut self, within: Duration) -> Option<(Duration, std::process::ExitStatus)> {
        if self.reaped {
            return None;
        }
        let r = net::terminate(&mut self.child, within);
        // The child is reaped now. Under a wrapper the host may linger in the group, which
        // keeps the group's id from being reused until it is gone.
        if self.wrapped {
            if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
                // SAFETY: only sends a signal, to the group the child led.
                unsafe { libc::killpg(pgid, libc::SIGKILL) };
            }
        }
        self.reaped = true;
        r
    }

    /// SIGKILL: no shutdown code runs.
    /// A wrapper such as `umockdev-run` does not pass SIGKILL on to the host it runs, which
    /// would be left behind: the host itself is killed, the wrapper is given a moment to see
    /// it go and clean up its own files, and then the whole process group is killed.
    pub fn kill(&mut self) {
        if self.reaped {
            return;
        }
        if self.wrapped {
            let children = process::children(self.child.id());
            for pid in children
                .iter()
                .filter_map(|p| libc::pid_t::try_from(*p).ok())
            {
                // SAFETY: only sends a signal, to a child the wrapper has not reaped yet.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            // A wrapper that exec'd the host (no children) is the host: nothing to wait for.
            for _ in 0..if children.is_empty() { 0 } else { 100 } {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: only sends a signal. The group is the child's own (process_group(0) at
            // spawn) and its id cannot be reused before the child is reaped, below.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
    }

    /// Sends a request with the default credentials; checks the signature of the answer.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.request(method, path, body, Some((USER, PASS)), None)
            .await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call("POST", path, Some(body)).await
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        auth: Option<(&str, &str)>,
        query_id: Option<&str>,
    ) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rb = self.client.request(m, format!("{}{}", self.base, path));
        if let Some((u, p)) = auth {
            rb = rb.basic_auth(u, Some(p));
        }
        if let Some(b) = body {
            rb = rb.body(serde_json::to_vec(&b).expect("json"));
        }
        if let Some(q) = query_id {
            rb = rb.header("Licence-QueryID", q);
        }
        let r = rb.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.expect("body").to_vec();
        let resp = Resp {
            status,
            headers,
            body,
        };
        self.assert_signed(&resp, query_id);
        resp
    }

    /// Every response must carry a valid signature over QueryID ‖ body.
    pub fn assert_signed(&self, r: &Resp, query_id: Option<&str>) {
        let sig = r
            .header("licence-signature")
            .expect("Licence-Signature header");
        assert_eq!(
            r.header("licence-querysignature").as_deref(),
            Some(sig.as_str())
        );
        assert_eq!(r.header("licence-queryid").as_deref(), query_id);
        assert!(r.header("licence-serverversion").is_some());
        let mut msg = query_id.unwrap_or_default().as_bytes().to_vec();
        msg.extend_from_slice(&r.body);
        assert!(
            rsa_verify(&self.public_key, &msg, &sig),
            "bad signature on {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }

    /// Runs the CLI against this host's data directory.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .arg("--data")
            .arg(&self.data)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("run keybridge")
    }

    /// The demo centre's activation codes not yet activated (`centre code-list`, "new").
    pub fn demo_codes(&self) -> Vec<String> {
        let out = Command::new(BIN)
            .args(["centre", "code-list", "--data"])
            .arg(self.data.join("demo"))
            .output()
            .expect("run keybridge centre code-list");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .filter(|l| l.ends_with("\tnew"))
            .filter_map(|l| l.split('\t').next())
            .map(str::to_owned)
            .collect()
    }

    /// One unused demo activation code.
    pub fn demo_code(&self) -> String {
        self.demo_codes()
            .into_iter()
            .next()
            .expect("a fresh demo code")
    }

    /// The demo centre's signing key, to issue more licences in tests.
    pub fn centre(&self) -> keybridge::crypto::LicenceKey {
        keybridge::crypto::LicenceKey::new(
            keybridge::store::keyfile::load(&self.data.join("demo/centre-key.pem"))
                .expect("demo centre key"),
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The server log without terminal colour codes, for matching `field=value`.
    pub fn log_plain(&self) -> String {
        let log = self.log();
        let mut out = String::with_capacity(log.len());
        let mut chars = log.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // CSI: ESC [ parameters final-byte
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Sends a request exactly as given — raw body bytes, any method token, extra headers —
    /// and returns the answer without checking it.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        auth: Option<(&str, &str)>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rb = self.client.request(m, format!("{}{}", self.base, path));
        if let Some((u, p)) = auth {
            rb = rb.basic_auth(u, Some(p));
        }
        if let Some(b) = body {
            rb = rb.body(b);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.expect("body").to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Whether the answer's `Licence-Signature` verifies (rsa crate) over `query_id ‖ body`.
    pub fn signature_ok(&self, r: &Resp, query_id: &[u8]) -> bool {
        let Some(sig) = r.header("licence-signature") else {
            return false;
        };
        rsa_verify(&self.public_key, &[query_id, &r.body].concat(), &sig)
    }

    /// Runs `keybridge verify` on a response saved as `curl -D` and `-o` would save it;
    /// returns the exit code and what it printed.
    pub fn cli_verify(&self, headers: &str, body: &[u8]) -> (Option<i32>, String) {
        let d = tempfile::tempdir().expect("tmp");
        let (h, b) = (d.path().join("headers.txt"), d.path().join("body"));
        std::fs::write(&h, headers).expect("write");
        std::fs::write(&b, body).expect("write");
        let out = self.cli(&[
            "verify",
            "--headers",
            h.to_str().expect("path"),
            "--body",
            b.to_str().expect("path"),
        ]);
        (out.status.code(), stdout(&out))
    }
}

/// A saved header block as `curl -D` writes it, with the given QueryID and signature.
pub fn saved_headers(status: u16, query_id: Option<&str>, signature: &str) -> String {
    let mut h = format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n");
    if let Some(q) = query_id {
        h.push_str(&format!("Licence-QueryID: {q}\r\n"));
    }
    h.push_str(&format!("Licence-Signature: {signature}\r\n\r\n"));
    h
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGKILL to a child started in its own process group, and to everything in that group.
fn kill_group(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        if child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill(2) on the group our unreaped child leads.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `scheme://host:port` from a service's "listening on http(s)://ADDR/…" line.
pub fn listening_base(line: &str) -> Option<String> {
    let rest = line.split("listening on ").nth(1)?;
    let (scheme, rest) = rest.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let addr = rest.split('/').next()?;
    Some(format!("{scheme}://{addr}"))
}

/// Licence terms as a test centre issues them: series 672B, ITN and IEC set.
pub fn terms(
    key_no: u64,
    count: u32,
    binding: keybridge::licence::Binding,
) -> keybridge::licence::LicenceTerms {
    use keybridge::licence::{Iec, Itn, LicenceTerms};
    LicenceTerms {
        reg_no: 300,
        activation_code: "1111-2222-3333-4444-5555".into(),
        itn: Itn::try_from("0123456789".to_string()).ok(),
        iec: Iec::try_from("770101001".to_string()).ok(),
        product_name: "Test".into(),
        ..LicenceTerms::new(key_no, KEY_ID, count, binding)
    }
}

pub fn stdout(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh database on the PostgreSQL server `scripts/test` started (its URL in
/// KEYBRIDGE_TEST_POSTGRES), or `None` after saying why the test is skipped.
pub async fn fresh_postgres(prefix: &str) -> Option<String> {
    let Ok(admin_url) = std::env::var("KEYBRIDGE_TEST_POSTGRES") else {
        println!("skipped: KEYBRIDGE_TEST_POSTGRES is not set (scripts/test starts a PostgreSQL server and sets it)");
        return None;
    };
    sqlx::any::install_default_drivers();
    let name = format!("{prefix}_{}", std::process::id());
    let admin = sqlx::AnyPool::connect(&admin_url)
        .await
        .expect("connect to PostgreSQL");
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(&sql)
            .execute(&admin)
            .await
            .expect("create the test database");
    }
    let (base, _) = admin_url.rsplit_once('/').expect("URL with a database");
    Some(format!("{base}/{name}"))
}

/// Every `.route("PATH", …)` literal in the sources under `dir` (recursively), with its file:
/// what an OpenAPI coverage test compares the description with.
pub fn route_literals(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("source dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            let text = std::fs::read_to_string(&p).expect("source");
            let compact: String = text.split_whitespace().collect::<Vec<_>>().join("");
            for piece in compact.split(".route(\"").skip(1) {
                if let Some((path, _)) = piece.split_once('"') {
                    out.push((p.clone(), path.to_owned()));
                }
            }
        }
    }
    out
}

/// A concrete path for a route template: every `{x}` / `{*x}` segment becomes `1`.
pub fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| if seg.starts_with('{') { "1" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}
