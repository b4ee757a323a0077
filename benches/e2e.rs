//! End-to-end figures of the host, printed (never asserted): the real release binary on
//! loopback, driven over HTTP by a small load generator in this process. Run through
//! `bench/run` (docs/performance.md), or alone: `cargo bench --bench e2e [-- PART…]` with
//! PART one of `signed`, `sessions`, `latency`, `startup`, `activation` (default: all).
//!
//! The load generator runs on one thread (a current-thread runtime) so the server has the
//! rest of the machine; every figure says how much CPU the server itself used.

#[path = "../tests/common/mod.rs"]
mod common;

use common::centre::CentreServer;
use common::{Opts, Server, COMPUTER_ID, KEY_ID, PASS, SOFTWARE_KEY, USER};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use keybridge::licence::{self, Binding};
use keybridge::store::software_keys;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PARTS: &[&str] = &["signed", "sessions", "latency", "startup", "activation"];

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    for w in &wanted {
        if !PARTS.contains(&w.as_str()) {
            eprintln!("unknown part {w:?}; parts: {}", PARTS.join(", "));
            std::process::exit(2);
        }
    }
    let run = |p: &str| wanted.is_empty() || wanted.iter().any(|w| w == p);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    machine();
    rt.block_on(async {
        if run("signed") {
            signed().await;
        }
        if run("sessions") {
            sessions().await;
        }
        if run("latency") {
            latency().await;
        }
        if run("startup") {
            startup().await;
        }
        if run("activation") {
            activation().await;
        }
    });
}

// ---------------------------------------------------------------- the machine and OpenSSL

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or("?".into(), |kb| format!("{} GiB", kb / 1024 / 1024));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "machine: {cpu}, {} cores, {mem} RAM, Linux {}; {}",
        cores(),
        kernel.trim(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
}

/// RSA-2048 signatures per second of `openssl speed -multi <cores>`, if openssl is there.
fn openssl_rsa2048() -> Option<f64> {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-multi", &cores().to_string(), "-seconds", "10"])
        .arg("rsa2048")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    // "rsa 2048 bits 0.000111s 0.000003s   8998.0 310000.0": sign/s is the fifth field.
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("rsa 2048 bits"))
        .and_then(|l| l.split_whitespace().nth(5))
        .and_then(|f| f.parse().ok())
}

// ---------------------------------------------------------------- the load generator

/// One keep-alive HTTP/1.1 connection to the host, with the API's credentials.
struct Conn {
    tx: SendRequest<Full<Bytes>>,
    host: String,
    auth: String,
}

struct Answer {
    status: u16,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Conn {
    async fn open(addr: &str) -> Conn {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"));
        Conn {
            tx,
            host: addr.to_owned(),
            auth: format!("Basic {auth}"),
        }
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        query_id: Option<&str>,
    ) -> Result<Answer, String> {
        let mut rb = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("authorization", &self.auth);
        if let Some(q) = query_id {
            rb = rb.header("licence-queryid", q);
        }
        if body.is_some() {
            rb = rb.header("content-type", "application/json");
        }
        let req = rb
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        self.tx.ready().await.map_err(|e| e.to_string())?;
        let resp = self.tx.send_request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }
}

fn query_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{:016x}{:08x}",
        rand::random::<u64>(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The server's user + system CPU time so far, from /proc (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" that ends the command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}

/// Resident memory in MiB, from /proc.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// What a closed loop did: answers by status, the time it ran and the server's CPU use.
struct Loop {
    ok: u64,
    refused: u64,
    failed: u64,
    unsigned: u64,
    elapsed: Duration,
    server_cpu: f64,
}

impl Loop {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name:<52} {:>8.0} /s  (server CPU {:.2} cores; {} ok, {} refused, {} failed, {} unsigned)",
            self.rate(),
            self.server_cpu / self.elapsed.as_secs_f64(),
            self.ok,
            self.refused,
            self.failed,
            self.unsigned
        )
    }
}

/// `conns` connections, each sending `request(i)` back to back for `time` (after `warm`
/// of the same, not counted), or until `request` gives `None`. `request` gives (method,
/// path, body) and is handed a number counting every request of the loop.
async fn closed_loop<F>(
    s: &Server,
    conns: usize,
    warm: Duration,
    time: Duration,
    request: F,
) -> Loop
where
    F: Fn(u64) -> Option<(&'static str, String, Option<Vec<u8>>)> + Send + Sync + 'static,
{
    let request = Arc::new(request);
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + warm;
    let end = start + time;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let mut c = Conn::open(&s.addr()).await;
        let (request, counter) = (request.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut refused, mut failed, mut unsigned) = (0, 0, 0, 0);
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let Some((m, path, body)) = request(counter.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let q = query_id();
                let r = c.send(m, &path, body, Some(&q)).await;
                if now < start {
                    continue;
                }
                match r {
                    Ok(a) => {
                        if a.headers.get("licence-signature").is_none() {
                            unsigned += 1;
                        }
                        if a.status < 300 {
                            ok += 1;
                        } else {
                            refused += 1;
                        }
                    }
                    Err(_) => {
                        failed += 1;
                        c = Conn::open(&c.host.clone()).await;
                    }
                }
            }
            (ok, refused, failed, unsigned)
        }));
    }
    tokio::time::sleep_until(start.into()).await;
    let cpu0 = cpu_seconds(s.pid());
    let mut l = Loop {
        ok: 0,
        refused: 0,
        failed: 0,
        unsigned: 0,
        elapsed: time,
        server_cpu: 0.0,
    };
    for t in tasks {
        let (a, b, c, d) = t.await.expect("task");
        l.ok += a;
        l.refused += b;
        l.failed += c;
        l.unsigned += d;
    }
    l.elapsed = start.elapsed();
    l.server_cpu = cpu_seconds(s.pid()) - cpu0;
    l
}

/// Checks one answer's signature with the tests' independent verifier (the `rsa` crate), so
/// a figure is never of unsigned or wrongly signed answers.
async fn check_signed(s: &Server, method: &str, path: &str, body: Option<Vec<u8>>) {
    let mut c = Conn::open(&s.addr()).await;
    let q = query_id();
    let a = c.send(method, path, body, Some(&q)).await.expect("answer");
    let r = common::Resp {
        status: a.status,
        headers: a.headers,
        body: a.body.to_vec(),
    };
    assert!(
        s.signature_ok(&r, q.as_bytes()),
        "{method} {path}: the signature does not verify"
    );
}

// ---------------------------------------------------------------- the parts

/// Signed `GET /api/licences/{KeyNo}` answers per second next to OpenSSL's RSA-2048 signing.
async fn signed() {
    println!("\n== signed responses: GET /api/licences/{{KeyNo}}, a fresh Licence-QueryID each");
    let openssl = openssl_rsa2048();
    let s = Server::demo().await;
    let path = format!("/api/licences/{SOFTWARE_KEY}");
    check_signed(&s, "GET", &path, None).await;
    let conns = 16 * cores();
    let l = closed_loop(
        &s,
        conns,
        Duration::from_secs(2),
        Duration::from_secs(10),
        move |_| Some(("GET", path.clone(), None)),
    )
    .await;
    println!("{}", l.line(&format!("host, {conns} connections")));
    match openssl {
        Some(o) => {
            println!(
                "{:<52} {o:>8.0} /s",
                format!("openssl speed -multi {} rsa2048 (sign)", cores())
            );
            println!("{:<52} {:>8.2}", "ratio host / openssl", l.rate() / o);
            let per_cpu = l.rate() / (l.server_cpu / l.elapsed.as_secs_f64());
            println!(
                "{:<52} {:>8.2}",
                "ratio per server CPU (host / openssl per core)",
                per_cpu / (o / cores() as f64)
            );
        }
        None => println!("openssl not found: no ratio"),
    }
}

/// A host with one software key of a million licences (series 672B, KeyNo 9000001) and room
/// for 200,000 sessions a lease of an hour.
async fn big_key_host() -> Server {
    let mut s = Server::start(Opts {
        demo: true,
        config:
            "[leases]\nsession_seconds = 3600\nmax_sessions = 200000\nmax_connections = 200000\n"
                .into(),
    })
    .await;
    let doc = licence::sign(
        &common::terms(BIG_KEY, 1_000_000, Binding::Computer(COMPUTER_ID.into())),
        &s.centre(),
    )
    .expect("sign");
    software_keys::write_licence(&software_keys::licence_path(&s.data, KEY_ID, BIG_KEY), &doc)
        .expect("write");
    let tmp = s.keep_dir();
    s.terminate(Duration::from_secs(10));
    let dir = s.dir.clone();
    drop(s);
    let mut s = Server::launch(
        &dir,
        &Opts {
            demo: true,
            config: String::new(),
        },
    );
    s.wait_ready().await;
    s.adopt_dir(tmp);
    s
}

const BIG_KEY: u64 = 9_000_001;

fn open_body(client: &str, computer: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "KeyID": KEY_ID, "KeyNo": BIG_KEY, "ClientSessionID": client,
        "AppName": "bench", "ComputerName": format!("pc{computer}"), "UserName": "u",
    }))
    .expect("json")
}

/// Renewal and creation rates and resident memory from 0 to 100,000 live sessions.
async fn sessions() {
    println!("\n== sessions: POST /api/sessions with 0 … 100,000 live sessions (50 connections)");
    let s = big_key_host().await;
    check_signed(&s, "POST", "/api/sessions", Some(open_body("probe", 0))).await;
    let base_rss = rss_mib(s.pid());
    println!("{:<52} {base_rss:>8.1} MiB", "resident memory, 1 session");
    // Sessions s0, s1, … each on its own ClientSessionID, ten per computer (a connection
    // each); `made` of them exist.
    let mut made = 0u64;
    for target in [1_000u64, 25_000, 50_000, 100_000] {
        let (from, need) = (made, target - made);
        let l = closed_loop(&s, 50, Duration::ZERO, Duration::from_secs(600), move |i| {
            let n = from + i;
            (i < need).then(|| {
                (
                    "POST",
                    "/api/sessions".into(),
                    Some(open_body(&format!("s{n}"), n / 10)),
                )
            })
        })
        .await;
        made = target;
        let level = total_sessions(&s).await;
        println!(
            "{}",
            l.line(&format!("create, up to {level} live sessions"))
        );
        // Renewals of 1,000 of them.
        let l = closed_loop(
            &s,
            50,
            Duration::from_secs(1),
            Duration::from_secs(5),
            |i| {
                let n = i % 1000;
                Some((
                    "POST",
                    "/api/sessions".into(),
                    Some(open_body(&format!("s{n}"), n / 10)),
                ))
            },
        )
        .await;
        println!("{}", l.line(&format!("renew, {level} live sessions")));
        let rss = rss_mib(s.pid());
        println!(
            "{:<52} {rss:>8.1} MiB  ({:.2} KiB per session above one)",
            format!("resident memory, {level} live sessions"),
            (rss - base_rss) * 1024.0 / level as f64
        );
    }
}

async fn total_sessions(s: &Server) -> u64 {
    let mut c = Conn::open(&s.addr()).await;
    let a = c
        .send("GET", "/api/sessions?Limit=1", None, None)
        .await
        .expect("list");
    a.headers
        .get("x-total-count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Open loop: 500 clients each renewing once a second, every tenth tick a new session;
/// latency from the moment a request was due (so a late answer delays no measurement).
async fn latency() {
    const CLIENTS: u64 = 500;
    const TICKS: u64 = 30;
    println!("\n== session latency: {CLIENTS} clients, one request a second each, for {TICKS} s (open loop)");
    let s = big_key_host().await;
    let start = Instant::now() + Duration::from_secs(1);
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let mut c = Conn::open(&s.addr()).await;
        tasks.push(tokio::spawn(async move {
            let mut create = Vec::new();
            let mut renew = Vec::new();
            let mut errors = 0u64;
            let phase = Duration::from_micros(1_000_000 * client / CLIENTS);
            for tick in 0..TICKS {
                let due = start + phase + Duration::from_secs(tick);
                tokio::time::sleep_until(due.into()).await;
                let id = format!("c{client}-{}", tick / 10);
                let body = open_body(&id, client);
                let sent = Instant::now();
                let r = c
                    .send("POST", "/api/sessions", Some(body), Some(&query_id()))
                    .await;
                // From the send, and from when it was due: the second adds the generator's own
                // timer (tokio's wheel ticks each millisecond) and any wait behind an answer.
                let took = (sent.elapsed(), due.elapsed());
                match r {
                    Ok(a) if a.status == 201 => create.push(took),
                    Ok(a) if a.status == 200 => renew.push(took),
                    _ => errors += 1,
                }
            }
            (create, renew, errors)
        }));
    }
    let cpu0 = cpu_seconds(s.pid());
    let (mut create, mut renew, mut errors) = (Vec::new(), Vec::new(), 0);
    for t in tasks {
        let (c, r, e) = t.await.expect("client");
        create.extend(c);
        renew.extend(r);
        errors += e;
    }
    let cpu = cpu_seconds(s.pid()) - cpu0;
    for (name, v) in [("create", &create), ("renew", &renew)] {
        for (from, due) in [("sent", false), ("due", true)] {
            let mut d: Vec<Duration> = v.iter().map(|t| if due { t.1 } else { t.0 }).collect();
            d.sort();
            let p = |q: f64| d.get(((d.len() as f64 * q) as usize).min(d.len().saturating_sub(1)));
            let ms = |d: Option<&Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
            println!(
                "{name:<7} from {from:<5} n={:<6} p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
                d.len(),
                ms(p(0.50)),
                ms(p(0.90)),
                ms(p(0.99)),
                ms(d.last())
            );
        }
    }
    println!(
        "errors {errors}; server CPU {:.2} cores over the run",
        cpu / (TICKS as f64 + 1.0)
    );
    // Saturation: the same requests back to back on 50 connections.
    let l = closed_loop(
        &s,
        50,
        Duration::from_secs(1),
        Duration::from_secs(5),
        |i| {
            let client = i % CLIENTS;
            Some((
                "POST",
                "/api/sessions".into(),
                Some(open_body(&format!("c{client}-0"), client)),
            ))
        },
    )
    .await;
    println!("{}", l.line("saturation: renewals, 50 connections"));
    let l = closed_loop(
        &s,
        50,
        Duration::from_secs(1),
        Duration::from_secs(5),
        |i| {
            Some((
                "POST",
                "/api/sessions".into(),
                Some(open_body(&format!("sat{i}"), i / 10)),
            ))
        },
    )
    .await;
    println!("{}", l.line("saturation: new sessions, 50 connections"));
}

/// Writes `n` software keys of series 672B (KeyNo 8000000 on) into a host's data folder, signed
/// by its demo centre: set-up, so plain writes (no fsync) and every core signing.
async fn write_keys(data: &std::path::Path, centre: keybridge::crypto::LicenceKey, n: u64) {
    let centre = Arc::new(centre);
    let t = Instant::now();
    let threads = cores() as u64;
    let mut jobs = Vec::new();
    for part in 0..threads {
        let (data, centre) = (data.to_owned(), centre.clone());
        jobs.push(tokio::task::spawn_blocking(move || {
            for i in (part..n).step_by(threads as usize) {
                let key_no = 8_000_000 + i;
                let terms = common::terms(key_no, 5, Binding::Computer(COMPUTER_ID.into()));
                let doc = licence::sign(&terms, &centre).expect("sign");
                std::fs::write(software_keys::licence_path(&data, KEY_ID, key_no), doc)
                    .expect("write");
            }
        }));
    }
    for j in jobs {
        j.await.expect("write keys");
    }
    println!(
        "(wrote {n} licence files in {:.1} s)",
        t.elapsed().as_secs_f64()
    );
}

/// From `keybridge serve` to the first answer, with 10,000 software keys in the folder.
async fn startup() {
    const KEYS: u64 = 10_000;
    println!("\n== start-up with {KEYS} software keys");
    let mut s = Server::demo().await;
    let centre = s.centre();
    let data = s.data.clone();
    let tmp = s.keep_dir();
    s.terminate(Duration::from_secs(10));
    let dir = s.dir.clone();
    drop(s);
    write_keys(&data, centre, KEYS).await;
    for round in 1..=3 {
        let t = Instant::now();
        let mut s = Server::launch(&dir, &Opts::default());
        let listening = t.elapsed();
        s.wait_ready().await;
        let mut c = Conn::open(&s.addr()).await;
        let a = c
            .send("GET", "/api/licences", None, None)
            .await
            .expect("list");
        let first = t.elapsed();
        let n = serde_json::from_slice::<serde_json::Value>(&a.body)
            .ok()
            .and_then(|v| v["Licences"].as_array().map(Vec::len))
            .unwrap_or(0);
        println!(
            "start {round}: listening after {:.2} s, first list ({n} licences) after {:.2} s, resident {:.1} MiB",
            listening.as_secs_f64(),
            first.as_secs_f64(),
            rss_mib(s.pid())
        );
        s.terminate(Duration::from_secs(10));
    }
    drop(tmp);
}

/// Activations by code through the API (host → centre → host) with 0 and with 10,000 other
/// software keys installed: an install reads only its own licence.
async fn activation() {
    const N: u64 = 200;
    println!(
        "\n== activation: POST /api/licences by code, {N} each, with 0 and 10,000 keys installed"
    );
    let c = CentreServer::start().await;
    let product = json!({"key_id": "8A00", "product_name": "Bench", "first_key_no": 5000000});
    assert_eq!(c.post("/centre/v1/products", product, true).await.0, 201);
    let config = format!(
        "[centre]\nurl = \"{}\"\nresponse_key = \"{}\"\n[licences]\ntrusted_centre_keys = [\"{}\"]\n",
        c.base,
        c.response_key_file().display(),
        c.trust_file().display()
    );
    let mut s = Server::start(Opts {
        demo: true,
        config: config.clone(),
    })
    .await;
    let mut codes = Vec::new();
    for _ in 0..2 * N {
        codes.push(c.code(json!({"key_id": "8A00", "licence_count": 1})).await);
    }
    let run = |s: &Server, codes: Vec<String>| {
        let addr = s.addr();
        async move {
            let mut conn = Conn::open(&addr).await;
            let t = Instant::now();
            let mut ok = 0;
            for code in codes {
                let body =
                    serde_json::to_vec(&json!({"ActivationCodeString": code, "ITN": 1234567890}))
                        .expect("json");
                let a = conn
                    .send("POST", "/api/licences", Some(body), Some(&query_id()))
                    .await
                    .expect("activation");
                if a.status == 201 {
                    ok += 1;
                }
            }
            (ok, t.elapsed())
        }
    };
    let (ok, took) = run(&s, codes[..N as usize].to_vec()).await;
    println!(
        "{:<52} {:>8.1} /s  ({ok} of {N} activated)",
        "activations, a few keys installed",
        ok as f64 / took.as_secs_f64()
    );
    // 10,000 more keys, written straight into the folder, then the host restarted on them.
    write_keys(&s.data, s.centre(), 10_000).await;
    let tmp = s.keep_dir();
    s.terminate(Duration::from_secs(10));
    let dir = s.dir.clone();
    drop(s);
    let mut s = Server::launch(&dir, &Opts::default());
    s.wait_ready().await;
    s.adopt_dir(tmp);
    let (ok, took) = run(&s, codes[N as usize..].to_vec()).await;
    println!(
        "{:<52} {:>8.1} /s  ({ok} of {N} activated)",
        "activations, 10,000 keys installed",
        ok as f64 / took.as_secs_f64()
    );
}
