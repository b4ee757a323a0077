//! Session stress: 10,000 `POST /api/sessions` from 200 concurrent clients, each on its own
//! keep-alive connection, against the demo's software key with exactly 5 licences, with
//! releases, replayed releases, malformed requests and lease expiries (a 0.5 s lease) in between.
//!
//! What is checked, and how it is known without trusting the host:
//! - **Never more than 5 live sessions, at every moment.** Every request is timed on the
//!   test's monotonic clock, which is the host's too (CLOCK_MONOTONIC), so the host handled it
//!   somewhere between our send and our receipt. A session is then *certainly* alive from the
//!   receipt of its 201 until the earlier of the send of its DELETE and the send of its last
//!   acknowledged POST plus the lease. The clients keep those windows in one table and check,
//!   each time they add one, that no more than 5 are open — throughout the run, not at its end.
//!   A poller reads `GET /api/sessions` meanwhile: `X-Total-Count` and the list never exceed 5,
//!   and every session certainly alive while it asked is in the list.
//! - **The lease is kept to, both ways.** A renewal answered 200 must have been sent while the
//!   session could still be alive, a 201 or 403 only once it could have ended; a DELETE answered
//!   202 likewise, and a 404 only for a session that could have expired. A replayed DELETE is
//!   always 404 and frees nothing.
//! - **No licence leaks.** Every 403 `ENoFreeLicence` must come at a moment when 5 sessions
//!   could have been alive (windows from each session's first send to the latest moment it
//!   could still have lived); a refusal with fewer would mean a licence the host lost. At the
//!   end, after one lease, the list is empty and exactly 5 new sessions are given.
//! - **Every refusal is clean**: the documented status and exception in the API's error format,
//!   never a 5xx, a reset connection or a hang (each request has a deadline); and every answer
//!   carries a signature over QueryID ‖ body that the independent verifier (`rsa`) accepts.

mod common;
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

const CLIENTS: usize = 200;
const SESSION_REQUESTS: usize = 10_000;
/// The demo software key's licence count.
const LICENCES: usize = 5;
const LEASE: Duration = Duration::from_millis(500);
/// A request without an answer by then is a hang.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// One answer with when its request left and when the answer was in.
struct Timed {
    r: Resp,
    sent: Instant,
    recv: Instant,
}

/// What the run saw, for the checks after it and for its figures.
#[derive(Default)]
struct Log {
    /// Every session's possibly-alive window: from the send of the POST that made it to the
    /// latest moment it could still have been alive.
    possible: Vec<(Instant, Instant)>,
    /// Every `ENoFreeLicence`: from send to receipt.
    refusals: Vec<(Instant, Instant)>,
    counts: HashMap<&'static str, usize>,
    most_held: usize,
}

struct Shared {
    server: Server,
    /// `POST /api/sessions` sent or claimed so far.
    issued: AtomicUsize,
    /// Sessions certainly alive now: ClientSessionID → until when (at least).
    held: Mutex<HashMap<String, Instant>>,
    log: Mutex<Log>,
    done: AtomicBool,
}

impl Shared {
    /// Claims one of the 10,000 session requests; false once they are all taken.
    fn claim(&self) -> bool {
        self.issued.fetch_add(1, Ordering::SeqCst) < SESSION_REQUESTS
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, what: &'static str) {
        *self.log().counts.entry(what).or_default() += 1;
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Session `cs` is certainly alive from now until `until`: checks that no more than
    /// [`LICENCES`] are.
    fn hold(&self, cs: &str, until: Instant) {
        let mut held = self.held();
        let now = Instant::now();
        held.retain(|_, u| *u > now);
        let e = held.entry(cs.to_owned()).or_insert(until);
        *e = (*e).max(until);
        let n = held.len();
        assert!(
            n <= LICENCES,
            "{n} sessions certainly alive at once on a key with {LICENCES} licences: {:?}",
            held.keys().collect::<Vec<_>>()
        );
        drop(held);
        let mut log = self.log();
        log.most_held = log.most_held.max(n);
    }

    /// Session `cs` may end from now on (its DELETE is about to leave).
    fn let_go(&self, cs: &str) {
        self.held().remove(cs);
    }

    fn ended(&self, from: Instant, until: Instant) {
        self.log().possible.push((from, until));
    }

    /// Sends a request on `client` with a fresh QueryID; fails the test on a transport error,
    /// a hang, a bad signature, a 5xx or an error not in the API's format.
    async fn call(
        &self,
        client: &reqwest::Client,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Timed {
        let query_id = format!("{:016x}", rand::random::<u64>());
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rb = client
            .request(m, format!("{}{path}", self.server.base))
            .basic_auth(USER, Some(PASS))
            .header("Licence-QueryID", &query_id);
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let sent = Instant::now();
        let answer = tokio::time::timeout(REQUEST_DEADLINE, async {
            let r = rb.send().await?;
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let body = r.bytes().await?.to_vec();
            Ok::<_, reqwest::Error>(Resp {
                status,
                headers,
                body,
            })
        })
        .await;
        let recv = Instant::now();
        let r = match answer {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => panic!("{method} {path}: no answer ({e:?})"),
            Err(_) => panic!("{method} {path}: no answer within {REQUEST_DEADLINE:?} (a hang)"),
        };
        self.server.assert_signed(&r, Some(&query_id));
        assert!(
            r.status < 500,
            "{method} {path}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        if r.status >= 400 {
            let j = r.json();
            assert_eq!(j["Code"], r.status, "{j}");
            assert!(j["Text"].is_string(), "{j}");
            let ex = j["Exception"].as_str().expect("Exception");
            assert!(j["Message"].as_str().is_some_and(|m| m.contains(ex)), "{j}");
        }
        Timed { r, sent, recv }
    }

    async fn open(&self, client: &reqwest::Client, cs: &str, computer: &str) -> Timed {
        let body = json!({"KeyID": KEY_ID, "ClientSessionID": cs, "AppName": "Stress",
                          "ComputerName": computer, "KeyNo": SOFTWARE_KEY});
        let t = self
            .call(
                client,
                "POST",
                "/api/sessions",
                Some(body.to_string().into()),
            )
            .await;
        match t.r.status {
            200 | 201 => assert_eq!(t.r.json()["KeyNo"], SOFTWARE_KEY),
            403 => {
                t.r.assert_error(403, "ENoFreeLicence");
                self.log().refusals.push((t.sent, t.recv));
            }
            other => panic!(
                "POST /api/sessions: {other} {}",
                String::from_utf8_lossy(&t.r.body)
            ),
        }
        t
    }

    /// The live sessions, checked: never more than [`LICENCES`], all on the key, the count
    /// header equal to the list.
    async fn sessions(&self, client: &reqwest::Client) -> (Vec<Value>, Timed) {
        let t = self.call(client, "GET", "/api/sessions", None).await;
        assert_eq!(t.r.status, 200);
        let total: usize =
            t.r.header("x-total-count")
                .expect("X-Total-Count")
                .parse()
                .expect("number");
        let list = t.r.json()["Sessions"].as_array().expect("Sessions").clone();
        assert!(
            total <= LICENCES,
            "X-Total-Count {total} on a key with {LICENCES} licences"
        );
        assert_eq!(list.len(), total);
        for s in &list {
            assert_eq!(s["UsedLicence"], SOFTWARE_KEY, "{s}");
            assert_eq!(s["Expired"], "False", "{s}");
        }
        (list, t)
    }
}

/// The session a client holds, with the times of the requests that made and last renewed it.
struct Holding {
    cs: String,
    /// Send of the POST that created it.
    first_sent: Instant,
    /// Send and receipt of its last acknowledged POST: its lease ends in between, plus LEASE.
    last_sent: Instant,
    last_recv: Instant,
}

impl Holding {
    fn new(cs: String, t: &Timed) -> Holding {
        Holding {
            cs,
            first_sent: t.sent,
            last_sent: t.sent,
            last_recv: t.recv,
        }
    }
    /// The earliest moment its lease may have ended.
    fn may_end(&self) -> Instant {
        self.last_sent + LEASE
    }
    /// The moment its lease has ended for sure.
    fn must_end(&self) -> Instant {
        self.last_recv + LEASE
    }
}

/// One client: opens a session on its own ClientSessionIDs, then renews, releases, abandons
/// or comes back after its lease; now and then a malformed request.
async fn client(sh: Arc<Shared>, task: usize) {
    let client = client_builder()
        .pool_max_idle_per_host(1)
        .build()
        .expect("client");
    let mut rng = StdRng::from_entropy();
    let computer = format!("pc-{task}");
    let mut next = 0u32;
    let mut holding: Option<Holding> = None;
    loop {
        let Some(h) = holding.take() else {
            if rng.gen_range(0..40) == 0 {
                if !sh.claim() {
                    break;
                }
                malformed(&sh, &client, &mut rng).await;
                continue;
            }
            if !sh.claim() {
                break;
            }
            next += 1;
            let cs = format!("c{task}-{next}");
            let t = sh.open(&client, &cs, &computer).await;
            match t.r.status {
                201 => {
                    sh.count("created");
                    sh.hold(&cs, t.sent + LEASE);
                    holding = Some(Holding::new(cs, &t));
                }
                200 => panic!("a new ClientSessionID answered 200"),
                _ => {
                    sh.count("refused");
                    tokio::time::sleep(Duration::from_millis(rng.gen_range(100..300))).await;
                }
            }
            continue;
        };
        match rng.gen_range(0..20) {
            // Renew before the lease ends (usually: the host is under load).
            0..=8 => {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(10..150))).await;
                holding = renew(&sh, &client, h, &computer).await;
            }
            // Release it, and sometimes replay the release.
            9..=12 => release(&sh, &client, h, rng.gen_bool(0.3)).await,
            // Renew and release at once, on two connections: either order.
            13 => holding = renew_and_release(&sh, &client, h, &computer).await,
            // Abandon it: its lease ends on its own.
            14..=15 => {
                sh.count("abandoned");
                sh.ended(h.first_sent, h.must_end());
            }
            // Come back once the lease has certainly ended: a new session (201) or none
            // free (403), never the old one (200).
            16..=17 => {
                sh.count("came back late");
                sleep_until(h.must_end() + Duration::from_millis(rng.gen_range(1..100))).await;
                holding = renew(&sh, &client, h, &computer).await;
            }
            // Release it once its lease has certainly ended: 404, and nothing else freed.
            _ => {
                let Some(id) = session_id(&sh, &client, &h).await else {
                    continue;
                };
                sh.count("released late");
                sleep_until(h.must_end() + Duration::from_millis(rng.gen_range(1..100))).await;
                sh.let_go(&h.cs);
                let t = delete(&sh, &client, &id).await;
                t.r.assert_error(404, "ESessionNotFound");
                sh.ended(h.first_sent, h.must_end());
            }
        }
    }
    if let Some(h) = holding {
        sh.ended(h.first_sent, h.must_end());
    }
}

async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
}

/// A repeated POST for `h`: 200 only while it could be alive, 201 or 403 only once it could
/// have ended. Returns what the client holds afterwards.
async fn renew(
    sh: &Shared,
    client: &reqwest::Client,
    mut h: Holding,
    computer: &str,
) -> Option<Holding> {
    if !sh.claim() {
        sh.ended(h.first_sent, h.must_end());
        return None;
    }
    let t = sh.open(client, &h.cs, computer).await;
    if t.r.status == 200 {
        assert!(
            t.sent < h.must_end(),
            "renewal answered 200 though sent {:?} after the lease had certainly ended",
            t.sent - h.must_end()
        );
        sh.count("renewed");
        sh.hold(&h.cs, t.sent + LEASE);
        h.last_sent = t.sent;
        h.last_recv = t.recv;
        return Some(h);
    }
    // A new session (201) or none (403): the old lease had ended before the host handled it.
    assert!(
        t.recv >= h.may_end(),
        "renewal answered {} though its session's lease could not have ended ({:?} early)",
        t.r.status,
        h.may_end() - t.recv
    );
    sh.count("expired");
    sh.ended(h.first_sent, h.must_end().min(t.recv));
    if t.r.status == 201 {
        sh.count("created");
        sh.hold(&h.cs, t.sent + LEASE);
        return Some(Holding::new(h.cs, &t));
    }
    sh.count("refused");
    None
}

/// The ID of `h`'s session, from the list; `None` (and `h` ended) if it is not listed, which
/// must mean its lease ended.
async fn session_id(sh: &Shared, client: &reqwest::Client, h: &Holding) -> Option<String> {
    let (list, t) = sh.sessions(client).await;
    let found = list.iter().find(|s| s["ClientSessionID"] == h.cs.as_str());
    match found {
        Some(s) => Some(s["ID"].as_str().expect("ID").to_owned()),
        None => {
            assert!(
                t.recv >= h.may_end(),
                "session {} missing from the list {:?} before its lease could end",
                h.cs,
                h.may_end() - t.recv
            );
            sh.count("expired");
            sh.ended(h.first_sent, h.must_end().min(t.recv));
            None
        }
    }
}

async fn delete(sh: &Shared, client: &reqwest::Client, id: &str) -> Timed {
    sh.call(client, "DELETE", &format!("/api/sessions/{id}"), None)
        .await
}

/// Releases `h` early: 202 while it could be alive, 404 only if it could have expired; a
/// replayed release is 404.
async fn release(sh: &Shared, client: &reqwest::Client, h: Holding, replay: bool) {
    let Some(id) = session_id(sh, client, &h).await else {
        return;
    };
    sh.let_go(&h.cs);
    let t = delete(sh, client, &id).await;
    match t.r.status {
        202 => {
            assert!(t.sent < h.must_end(), "202 for a session certainly expired");
            assert_eq!(
                t.r.json(),
                json!({"Code": 202, "Text": "Updated", "Command": "CloseSession", "ID": id})
            );
            sh.count("released");
            sh.ended(h.first_sent, t.recv);
        }
        _ => {
            t.r.assert_error(404, "ESessionNotFound");
            assert!(
                t.recv >= h.may_end(),
                "404 for a session whose lease could not have ended"
            );
            sh.count("expired");
            sh.ended(h.first_sent, h.must_end().min(t.recv));
        }
    }
    if replay {
        sh.count("replayed release");
        delete(sh, client, &id)
            .await
            .r
            .assert_error(404, "ESessionNotFound");
    }
}

/// A renewal and a release of `h` sent together, so the host may take them in either order.
/// The release names the old session's ID, so it can never end a session the renewal made.
async fn renew_and_release(
    sh: &Shared,
    client: &reqwest::Client,
    h: Holding,
    computer: &str,
) -> Option<Holding> {
    let id = session_id(sh, client, &h).await?;
    if !sh.claim() {
        sh.ended(h.first_sent, h.must_end());
        return None;
    }
    sh.count("renewed and released at once");
    sh.let_go(&h.cs);
    let (r, d) = tokio::join!(sh.open(client, &h.cs, computer), delete(sh, client, &id));
    let released = d.r.status == 202;
    if released {
        // Alive when the release was handled: before its lease ended, or after this renewal.
        let renewed_until = (r.r.status == 200).then(|| r.recv + LEASE);
        assert!(
            d.sent < h.must_end().max(renewed_until.unwrap_or(h.must_end())),
            "202 for a session certainly expired"
        );
    } else {
        d.r.assert_error(404, "ESessionNotFound");
        assert!(d.recv >= h.may_end(), "404 for a live session");
    }
    match r.r.status {
        // Handled first (after a release it would have been a new session).
        200 => assert!(r.sent < h.must_end(), "200 after the lease had ended"),
        _ => assert!(
            r.recv >= h.may_end() || released && d.sent < r.recv,
            "renewal answered {} though its session was neither released nor expired",
            r.r.status
        ),
    }
    let old_end = if released {
        d.recv
    } else if r.r.status == 200 {
        (r.recv + LEASE).min(d.recv)
    } else {
        h.must_end().min(d.recv)
    };
    sh.ended(h.first_sent, old_end);
    (r.r.status == 201).then(|| {
        sh.count("created");
        sh.hold(&h.cs, r.sent + LEASE);
        Holding::new(h.cs.clone(), &r)
    })
}

/// A malformed session request: refused as 400 `EBadRequest`, changing nothing.
async fn malformed(sh: &Shared, client: &reqwest::Client, rng: &mut StdRng) {
    let bodies: [&[u8]; 5] = [
        br#"{"KeyID": "672B", "ClientSessionID": "m"}"#,
        br#"{"KeyID": "672B", "ClientSessionID": "m", "AppName": "x", "KeyNo": "seven"}"#,
        br#"{"KeyID": "672B", "ClientSessionID": "m", "AppName": "x", "AppName": "y"}"#,
        br#"{"KeyID": "672B", "ClientSessionID": "m", "AppName": "x", "#,
        br#"{"KeyID": "672B", "ClientSessionID": "m", "AppName": "x", "Colour": "red"}"#,
    ];
    let body = bodies[rng.gen_range(0..bodies.len())].to_vec();
    let t = sh.call(client, "POST", "/api/sessions", Some(body)).await;
    t.r.assert_error(400, "EBadRequest");
    sh.count("malformed");
}

/// Reads the list over and over while the clients run: the bounds, and every session certainly
/// alive while the list was read is in it.
async fn poller(sh: Arc<Shared>) -> usize {
    let client = client_builder().build().expect("client");
    let mut polls = 0;
    while !sh.done.load(Ordering::SeqCst) {
        let before = sh.held().clone();
        let (list, t) = sh.sessions(&client).await;
        let after = sh.held().clone();
        for (cs, until) in &before {
            // Alive from before the request left until after its answer came, never let go.
            if *until > t.recv && after.contains_key(cs) {
                assert!(
                    list.iter().any(|s| s["ClientSessionID"] == cs.as_str()),
                    "session {cs} certainly alive but not listed: {list:?}"
                );
            }
        }
        polls += 1;
        if polls % 10 == 0 {
            let c = sh.call(&client, "GET", "/api/connections", None).await;
            assert_eq!(c.r.status, 200);
            let l = sh
                .call(
                    &client,
                    "GET",
                    &format!("/api/licences/{SOFTWARE_KEY}"),
                    None,
                )
                .await;
            assert_eq!(l.r.json()["LicenceCount"], LICENCES);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    polls
}

/// Whether at some moment of `[from, to]` at least `n` sessions could have been alive, from
/// `steps`: the count of possibly-alive windows after each change, in time order.
fn could_be_full(steps: &[(Instant, usize)], from: Instant, to: Instant, n: usize) -> bool {
    let i = steps.partition_point(|(t, _)| *t <= from);
    let at_start = if i == 0 { 0 } else { steps[i - 1].1 };
    at_start >= n
        || steps[i..]
            .iter()
            .take_while(|(t, _)| *t <= to)
            .any(|(_, c)| *c >= n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_session_requests_never_exceed_five_licences() {
    let started = Instant::now();
    let server = Server::start(Opts {
        demo: true,
        config: format!("[leases]\nsession_seconds = {}\n", LEASE.as_secs_f64()),
    })
    .await;
    let sh = Arc::new(Shared {
        server,
        issued: AtomicUsize::new(0),
        held: Mutex::default(),
        log: Mutex::default(),
        done: AtomicBool::new(false),
    });
    let poll = tokio::spawn(poller(sh.clone()));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| tokio::spawn(client(sh.clone(), i)))
        .collect();
    for t in tasks {
        if let Err(e) = t.await {
            sh.done.store(true, Ordering::SeqCst);
            std::panic::resume_unwind(e.into_panic());
        }
    }
    sh.done.store(true, Ordering::SeqCst);
    let polls = poll.await.expect("poller");
    let run = started.elapsed();

    // Every refusal came when five sessions could have held the five licences.
    let log = std::mem::take(&mut *sh.log());
    let mut changes: Vec<(Instant, i64)> = log
        .possible
        .iter()
        .flat_map(|&(from, to)| [(from, 1), (to, -1)])
        .collect();
    // At one instant, openings count before closings: the windows are closed intervals.
    changes.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut open = 0i64;
    let steps: Vec<(Instant, usize)> = changes
        .iter()
        .map(|&(t, d)| {
            open += d;
            (t, usize::try_from(open).expect("never below zero"))
        })
        .collect();
    for &(from, to) in &log.refusals {
        assert!(
            could_be_full(&steps, from, to, LICENCES),
            "ENoFreeLicence at a moment when fewer than {LICENCES} sessions could be alive: a licence was lost ({:?} into the run)",
            from - started
        );
    }

    // After one lease everything has ended; the five licences are all free again.
    tokio::time::sleep(LEASE + Duration::from_millis(100)).await;
    let client = client_builder().build().expect("client");
    let (list, _) = sh.sessions(&client).await;
    assert!(list.is_empty(), "{list:?}");
    for i in 0..LICENCES {
        let t = sh.open(&client, &format!("after-{i}"), "after").await;
        assert_eq!(t.r.status, 201);
    }
    let t = sh.open(&client, "after-one-too-many", "after").await;
    assert_eq!(t.r.status, 403);

    let c = |k: &str| log.counts.get(k).copied().unwrap_or(0);
    println!(
        "{} session requests in {run:?} from {CLIENTS} clients; counts {:?}; {} list polls; at most {} sessions certainly alive at once",
        SESSION_REQUESTS, log.counts, polls, log.most_held
    );
    // The run means something only if every path was taken many times.
    assert!(sh.issued.load(Ordering::SeqCst) >= SESSION_REQUESTS);
    for (what, least) in [
        ("created", 50),
        ("renewed", 40),
        ("released", 20),
        ("replayed release", 5),
        ("expired", 10),
        ("came back late", 5),
        ("released late", 5),
        ("refused", 1000),
        ("malformed", 50),
        ("renewed and released at once", 5),
    ] {
        assert!(
            c(what) >= least,
            "only {} {what}: {:?}",
            c(what),
            log.counts
        );
    }
    assert_eq!(
        log.most_held, LICENCES,
        "the licences were never all in use"
    );
    assert!(polls >= 20, "only {polls} polls");
}

/// A session the host lists is live: its lease, on the monotonic clock, has not ended (an
/// ended one is purged before any list is made). So `Expired` is `"False"` for every listed
/// session and connection — also in the last millisecond of a lease, which the stress run
/// above once caught listed as `"True"`: the flag compared the wall-clock `ExpireTime`
/// (truncated to milliseconds) with the wall clock instead of following the lease. Sessions
/// with a short lease are listed as fast as the host answers until they are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_in_their_last_moment_are_not_listed_as_expired() {
    let lease = Duration::from_millis(200);
    let s = Arc::new(
        Server::start(Opts {
            demo: true,
            config: format!("[leases]\nsession_seconds = {}\n", lease.as_secs_f64()),
        })
        .await,
    );
    let mut listed = 0;
    for round in 0..5 {
        for i in 0..LICENCES {
            let body = json!({"KeyID": KEY_ID, "ClientSessionID": format!("{round}-{i}"),
                              "AppName": "Last", "ComputerName": format!("pc-{i}"), "KeyNo": SOFTWARE_KEY});
            assert_eq!(s.post("/api/sessions", body).await.status, 201);
            // Leases that end a little apart, so each end is watched.
            tokio::time::sleep(Duration::from_millis(7)).await;
        }
        let pollers: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move {
                    let mut listed = 0;
                    loop {
                        let (sessions, connections) =
                            tokio::join!(s.get("/api/sessions"), s.get("/api/connections"));
                        let (sessions, connections) = (sessions.json(), connections.json());
                        for x in sessions["Sessions"].as_array().expect("Sessions") {
                            assert_eq!(
                                x["Expired"], "False",
                                "a live session listed as expired: {x}"
                            );
                            listed += 1;
                        }
                        for x in connections["Connections"].as_array().expect("Connections") {
                            assert_eq!(
                                x["Expired"], "False",
                                "a live connection listed as expired: {x}"
                            );
                        }
                        if sessions["Sessions"].as_array().is_some_and(Vec::is_empty)
                            && connections["Connections"]
                                .as_array()
                                .is_some_and(Vec::is_empty)
                        {
                            return listed;
                        }
                    }
                })
            })
            .collect();
        for p in pollers {
            listed += p.await.expect("poller");
        }
    }
    assert!(listed > 100, "only {listed} sessions listed");
}
