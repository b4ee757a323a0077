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
    pub public_key: String,
    pub client: reqwest::Client,
    pub database: Option<String>,
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
        let tmp = tempfile::tempdir().expect("tmp");
        let data = tmp.path().join("centre");
        let mut cmd = Command::new(BIN);
        cmd.args(["centre", "serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(&data)
            .env_remove("KEYBRIDGE_CENTRE_DATABASE");
        if let Some(url) = database {
            cmd.env("KEYBRIDGE_CENTRE_DATABASE", url);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("line");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .expect("address")
            .to_owned();
        let client = reqwest::Client::new();
        let base = format!("http://{addr}");
        let public_key = client
            .get(format!("{base}/centre/v1/publickey"))
            .send()
            .await
            .expect("pk")
            .text()
            .await
            .expect("pem");
        CentreServer {
            child,
            base,
            data,
            public_key,
            client,
            database: database.map(str::to_owned),
            _tmp: tmp,
        }
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
        let r = rb.send().await.expect("send");
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
            rsa_verify(&self.public_key, &bytes, &sig),
            "bad centre signature"
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

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
