//! A licensing centre process for tests.
#![allow(dead_code)]

use super::{rsa_verify, BIN};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct CentreServer {
    pub child: Child,
    pub base: String,
    pub data: std::path::PathBuf,
    /// The licence key (PEM), which hosts trust.
    pub public_key: String,
    /// The key that signs the centre's HTTP answers (PEM).
    pub response_key: String,
    pub client: reqwest::Client,
    pub database: Option<String>,
    /// Where the centre's stderr (its log) goes.
    pub log_path: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for CentreServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl CentreServer {
    pub async fn start() -> CentreServer {
        Self::start_on(None).await
    }

    /// A centre on the given database URL (default: SQLite in its data directory).
    pub async fn start_on(database: Option<&str>) -> CentreServer {
        Self::start_with(database, &[], None).await
    }

    /// A centre with extra `centre serve` arguments (TLS, limits); its client trusts
    /// `ca_pem`, for a centre serving HTTPS.
    pub async fn start_with(
        database: Option<&str>,
        args: &[&str],
        ca_pem: Option<&str>,
    ) -> CentreServer {
        let tmp = tempfile::tempdir().expect("tmp");
        let data = tmp.path().join("centre");
        Self::start_in(tmp, data, database, args, ca_pem).await
    }

    /// A centre on a data directory the test prepared (inside `tmp`, which it keeps).
    pub async fn start_in(
        tmp: tempfile::TempDir,
        data: std::path::PathBuf,
        database: Option<&str>,
        args: &[&str],
        ca_pem: Option<&str>,
    ) -> CentreServer {
        let mut cmd = Command::new(BIN);
        cmd.args(["centre", "serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(&data)
            .args(args)
            .env_remove("KEYBRIDGE_CENTRE_DATABASE");
        if let Some(url) = database {
            cmd.env("KEYBRIDGE_CENTRE_DATABASE", url);
        }
        // Its log, for tests that check what it says (and never says); outside the data
        // directory, which the centre narrows to 0700.
        let log_path = tmp.path().join("centre.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log");
        cmd.env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(log);
        // Killed with this test process, even if that dies without dropping the centre.
        let mut child = super::process::spawn_tied(cmd, libc::SIGKILL).expect("spawn");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("line");
        let Some(base) = super::listening_base(&line) else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("the centre did not start: {line:?}; log:\n{log}");
        };
        // From here on a panic drops the value, which ends the process.
        let mut c = CentreServer {
            child,
            base,
            data,
            public_key: String::new(),
            response_key: String::new(),
            client: super::client_trusting(ca_pem),
            database: database.map(str::to_owned),
            log_path,
            _tmp: tmp,
        };
        let keys: Value = c
            .client
            .get(format!("{}/centre/v1/publickey", c.base))
            .send()
            .await
            .expect("pk")
            .json()
            .await
            .expect("keys");
        let pem = |k: &str| keys[k].as_str().expect("pem").to_owned();
        (c.public_key, c.response_key) = (pem("licence_key"), pem("response_key"));
        assert_ne!(c.public_key, c.response_key, "one key, one purpose");
        c
    }

    /// POSTs and checks the answer's signature against the centre key.
    pub async fn post(&self, path: &str, body: Value, admin: bool) -> (u16, Value) {
        let rb = self.client.post(format!("{}{path}", self.base)).json(&body);
        self.send(rb, admin.then_some("admin")).await
    }

    /// GETs with the admin user and `password`, if given; checks the signature.
    pub async fn get(&self, path: &str, password: Option<&str>) -> (u16, Value) {
        let rb = self.client.get(format!("{}{path}", self.base));
        self.send(rb, password).await
    }

    async fn send(&self, mut rb: reqwest::RequestBuilder, password: Option<&str>) -> (u16, Value) {
        if let Some(p) = password {
            rb = rb.basic_auth("admin", Some(p));
        }
        self.send_signed(rb).await
    }

    /// Sends with a fresh QueryID; checks it is echoed and the answer is signed by the
    /// response key (and not by the licence key); returns the status and the JSON.
    async fn send_signed(&self, rb: reqwest::RequestBuilder) -> (u16, Value) {
        let query_id = format!("{}", rand_id());
        let r = rb
            .header("Licence-QueryID", &query_id)
            .send()
            .await
            .expect("send");
        assert_eq!(
            r.headers().get("licence-queryid").map(|v| v.as_bytes()),
            Some(query_id.as_bytes())
        );
        let status = r.status().as_u16();
        let sig = r
            .headers()
            .get("licence-signature")
            .expect("signed")
            .to_str()
            .expect("ascii")
            .to_owned();
        let bytes = r.bytes().await.expect("body");
        assert!(
            rsa_verify(
                &self.response_key,
                &centre_message(query_id.as_bytes(), status, &bytes),
                &sig
            ),
            "bad centre signature"
        );
        assert!(
            !rsa_verify(
                &self.public_key,
                &centre_message(query_id.as_bytes(), status, &bytes),
                &sig
            ),
            "answer signed with the licence key"
        );
        (status, serde_json::from_slice(&bytes).expect("json"))
    }

    /// Runs the CLI on this centre's data (and database).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args).arg("--data").arg(&self.data);
        match &self.database {
            Some(url) => cmd.env("KEYBRIDGE_CENTRE_DATABASE", url),
            None => cmd.env_remove("KEYBRIDGE_CENTRE_DATABASE"),
        };
        cmd.output().expect("run")
    }
}

/// What a centre answer's signature covers, built here independently of the library:
/// `"keybridge-centre-response/1" NUL`, then QueryID, status (u16 BE) and body, each after its
/// u32 BE length.
pub fn centre_message(query_id: &[u8], status: u16, body: &[u8]) -> Vec<u8> {
    let mut m = b"keybridge-centre-response/1\0".to_vec();
    for f in [query_id, &status.to_be_bytes(), body] {
        m.extend_from_slice(&u32::try_from(f.len()).expect("len").to_be_bytes());
        m.extend_from_slice(f);
    }
    m
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ N.fetch_add(1, Ordering::Relaxed)
}

impl CentreServer {
    /// Adds a product and returns a new code for it (vendor credentials).
    pub async fn code(&self, body: Value) -> String {
        let (s, j) = self.post("/centre/v1/codes", body, true).await;
        assert_eq!(s, 201, "{j}");
        j["code"].as_str().expect("code").to_owned()
    }

    /// Writes the centre's public key to a file a host can trust.
    pub fn trust_file(&self) -> std::path::PathBuf {
        let p = self.data.join("centre-public.pem");
        std::fs::write(&p, &self.public_key).expect("write");
        p
    }

    /// Writes the centre's response key (public) to a file, for `[centre] response_key`.
    pub fn response_key_file(&self) -> std::path::PathBuf {
        let p = self.data.join("centre-response-public.pem");
        std::fs::write(&p, &self.response_key).expect("write");
        p
    }

    /// Sends any request (raw body, any method, any QueryID) and returns status, headers and
    /// body. Whenever a signature came back, it must verify over what was echoed.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        query_id: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rb = self.client.request(m, format!("{}{path}", self.base));
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/json")
                .body(b.to_vec());
        }
        if let Some(q) = query_id {
            rb = rb.header("Licence-QueryID", q);
        }
        let r = rb.send().await.expect("send");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.expect("body").to_vec();
        if let Some(sig) = headers.get("licence-signature") {
            let echoed = headers
                .get("licence-queryid")
                .map(|v| v.as_bytes().to_vec())
                .unwrap_or_default();
            assert!(
                rsa_verify(
                    &self.response_key,
                    &centre_message(&echoed, status, &bytes),
                    sig.to_str().expect("ascii")
                ),
                "bad centre signature"
            );
        }
        (status, headers, bytes)
    }

    /// What the centre has logged so far (stderr; no colour codes, it is not a terminal).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `host:port` the centre listens on.
    pub fn addr(&self) -> String {
        self.base.split("://").nth(1).expect("base URL").to_owned()
    }

    /// Sends SIGTERM and waits at most `within` for the exit (see `Server::terminate`).
    pub fn terminate(
        &mut self,
        within: std::time::Duration,
    ) -> Option<(std::time::Duration, std::process::ExitStatus)> {
        super::net::terminate(&mut self.child, within)
    }
}

impl CentreServer {
    /// Calls the account API (`/a/adm/hs/ext_api{path}`) with `method`, as `user` (login and
    /// password) if given, with `body` if given; checks the centre's signature; returns the
    /// status and the JSON answer.
    pub async fn account_api(
        &self,
        method: &str,
        path: &str,
        user: Option<(&str, &str)>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rb = self
            .client
            .request(m, format!("{}/a/adm/hs/ext_api{path}", self.base));
        if let Some((u, p)) = user {
            rb = rb.basic_auth(u, Some(p));
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        self.send_signed(rb).await
    }
}

/// A `multipart/form-data` body with a `release` part (JSON) and `file` parts, built here by
/// hand (RFC 7578), so the test does not share the centre's parser. Returns the content type
/// and the body.
pub fn release_form(release: &Value, files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = format!("kbtest{:x}", rand_id());
    let mut b = Vec::new();
    b.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"release\"\r\nContent-Type: application/json\r\n\r\n{release}\r\n"
        )
        .as_bytes(),
    );
    for (name, bytes) in files {
        b.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        b.extend_from_slice(bytes);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), b)
}

impl CentreServer {
    /// Uploads a release as the vendor (admin/`password`); checks the answer's signature.
    pub async fn upload_release(
        &self,
        release: &Value,
        files: &[(&str, &[u8])],
        password: Option<&str>,
    ) -> (u16, Value) {
        let (ct, body) = release_form(release, files);
        let rb = self
            .client
            .post(format!("{}/centre/v1/releases", self.base))
            .header("content-type", ct)
            .body(body);
        self.send(rb, password).await
    }

    /// Asks for the release list (signed answer checked).
    pub async fn releases_for(&self, query: Value) -> (u16, Value) {
        self.post("/centre/v1/releases/available", query, false)
            .await
    }

    /// Activates `code` on a made-up ComputerID, so it becomes a licence.
    pub async fn activate_computer(&self, code: &str, computer: char) {
        let (s, j) = self
            .post(
                "/centre/v1/activate",
                serde_json::json!({"code": code, "binding": {"computer": computer.to_string().repeat(40)}}),
                false,
            )
            .await;
        assert_eq!(s, 200, "{j}");
    }
}
