//! The login gate on a real host: parallel guessing is counted guess by guess, only
//! `max_failed_logins` guesses reach the password hash, requests without credentials lock
//! nobody out, a client's own burst with the right password is not locked out, busy hash
//! workers answer 503 without counting, and the lockout ends with its window.

mod common;
use common::*;
use futures::future::join_all;

/// The `failures=N` values of log lines containing `what`.
fn logged_counts(s: &Server, what: &str) -> Vec<u32> {
    s.log_plain()
        .lines()
        .filter(|l| l.contains(what))
        .map(|l| {
            l.split("failures=")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no failures= in {l:?}"))
        })
        .collect()
}

const FAILED: &str = "login failed: wrong credentials";
const LOCKED: &str = "login refused: locked out";

async fn host(config: &str) -> Server {
    Server::start(Opts {
        demo: true,
        config: config.into(),
    })
    .await
}

async fn burst(s: &Server, n: usize, password: impl Fn(usize) -> String) -> Vec<Resp> {
    join_all((0..n).map(|i| {
        let pw = password(i);
        async move {
            s.request("GET", "/api/licences", None, Some((USER, &pw)), None)
                .await
        }
    }))
    .await
}

#[tokio::test]
async fn two_hundred_parallel_guesses_count_two_hundred() {
    let s = host("[api]\nmax_failed_logins = 10\nlogin_window_seconds = 600\n").await;
    let answers = burst(&s, 200, |i| format!("guess-{i}")).await;
    for r in &answers {
        r.assert_error(401, "EHTTPUnauthorized");
    }
    // Every guess was counted before its hash: the first ten were checked (and failed), the
    // other 190 were refused unchecked; the count reached 200.
    let failed = logged_counts(&s, FAILED);
    let locked = logged_counts(&s, LOCKED);
    assert_eq!(failed.len(), 10, "{failed:?}");
    assert_eq!(locked.len(), 190);
    let mut all: Vec<u32> = failed.iter().chain(&locked).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (1..=200).collect::<Vec<u32>>());
    // Now the right password is refused too, and the answer says why.
    let r = s.get("/api/licences").await;
    r.assert_error(401, "EHTTPUnauthorized");
    let msg = r.json()["Message"].as_str().expect("Message").to_owned();
    assert!(
        msg.contains("too many failed logins") && msg.contains("201 within 600 s"),
        "{msg}"
    );
    assert!(r.header("retry-after").is_some());
    // The log names the client and user, never a password or the header.
    let log = s.log_plain();
    assert!(log.contains("client=127.0.0.1") && log.contains("user=\"admin\""));
    assert!(
        !log.contains("guess-") && !log.contains("Basic "),
        "a secret reached the log"
    );
}

#[tokio::test]
async fn identical_parallel_guesses_count_each() {
    let s = host("[api]\nmax_failed_logins = 10\nlogin_window_seconds = 600\n").await;
    let answers = burst(&s, 200, |_| "same-guess".into()).await;
    for r in &answers {
        r.assert_error(401, "EHTTPUnauthorized");
    }
    let failed = logged_counts(&s, FAILED);
    let locked = logged_counts(&s, LOCKED);
    assert_eq!(failed.len() + locked.len(), 200);
    assert_eq!(*locked.iter().max().expect("locked"), 200);
    s.get("/api/licences")
        .await
        .assert_error(401, "EHTTPUnauthorized");
}

#[tokio::test]
async fn a_burst_with_the_right_password_is_not_locked_out() {
    // Fewer allowed failures than parallel requests: were each one counted as a failure
    // while its hash ran, the burst would lock itself out.
    let s = host("[api]\nmax_failed_logins = 3\n").await;
    let answers = burst(&s, 300, |_| PASS.into()).await;
    for r in &answers {
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    assert!(logged_counts(&s, FAILED).is_empty());
    assert!(logged_counts(&s, LOCKED).is_empty());
}

#[tokio::test]
async fn requests_without_credentials_lock_nobody_out() {
    let s = host("[api]\nmax_failed_logins = 3\n").await;
    let answers = join_all((0..100).map(|i| {
        let q = format!("n{i}");
        let s = &s;
        async move {
            s.request("GET", "/api/licences", None, None, Some(&q))
                .await
        }
    }))
    .await;
    for r in &answers {
        r.assert_error(401, "EHTTPUnauthorized");
        assert!(r.header("www-authenticate").is_some());
    }
    assert!(logged_counts(&s, FAILED).is_empty());
    assert_eq!(s.get("/api/licences").await.status, 200);
}

#[tokio::test]
async fn busy_hash_workers_answer_503_without_counting() {
    // One hash at a time and no patience: most of a burst of wrong passwords cannot be
    // checked and is answered 503; those are not failures.
    let s =
        host("[api]\nmax_failed_logins = 1000\nlogin_hash_workers = 1\nlogin_wait_ms = 1\n").await;
    let answers = burst(&s, 40, |i| format!("busy-{i}")).await;
    let mut busy = 0;
    let mut refused = 0;
    for r in &answers {
        match r.status {
            503 => {
                r.assert_error(503, "ELoginBusy");
                assert!(r.header("retry-after").is_some());
                assert!(r.header("www-authenticate").is_none());
                busy += 1;
            }
            _ => {
                r.assert_error(401, "EHTTPUnauthorized");
                refused += 1;
            }
        }
    }
    assert!(busy > 0, "no login was turned away");
    assert!(refused > 0, "no login was checked");
    // Only the checked ones were counted: one log line each, and the next failure, alone,
    // is number refused + 1.
    assert_eq!(logged_counts(&s, FAILED).len(), refused);
    assert!(logged_counts(&s, LOCKED).is_empty());
    s.request("GET", "/api", None, Some((USER, "one-more")), None)
        .await
        .assert_error(401, "EHTTPUnauthorized");
    let failed = logged_counts(&s, FAILED);
    assert_eq!(
        failed.last().copied(),
        Some(refused as u32 + 1),
        "{failed:?}"
    );
}

#[tokio::test]
async fn the_lockout_ends_with_its_window_and_a_hashed_success_clears() {
    let s = host("[api]\nmax_failed_logins = 2\nlogin_window_seconds = 2\n").await;
    let wrong = |pw: &'static str| {
        let s = &s;
        async move {
            s.request("GET", "/api", None, Some((USER, pw)), None)
                .await
                .assert_error(401, "EHTTPUnauthorized")
        }
    };
    // A success whose hash ran (the first with this header) clears a failure; the same
    // header again, remembered, passes without clearing one.
    wrong("a").await;
    assert_eq!(s.get("/api").await.status, 200);
    wrong("b").await;
    assert_eq!(s.get("/api").await.status, 200);
    // With "b" still counted, one more locks the address, the right password included.
    wrong("c").await;
    s.get("/api").await.assert_error(401, "EHTTPUnauthorized");
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(s.get("/api").await.status, 200);
}

/// Behind a shared NAT a guesser and a legitimate client have one address. The legitimate
/// client's remembered (cached) header must not wipe the guesser's failures: after 9 wrong
/// guesses, one request with the right password, and 2 more guesses, the address is locked
/// out.
#[tokio::test]
async fn a_remembered_right_password_does_not_reset_the_guessers_count() {
    let s = host("[api]\nmax_failed_logins = 10\nlogin_window_seconds = 600\n").await;
    // The legitimate client: hashed once, remembered from here on.
    assert_eq!(s.get("/api/licences").await.status, 200);
    for i in 0..9 {
        s.request("GET", "/api", None, Some((USER, &format!("nat-{i}"))), None)
            .await
            .assert_error(401, "EHTTPUnauthorized");
    }
    // The legitimate client again, with the remembered header: served …
    assert_eq!(s.get("/api/licences").await.status, 200);
    // … and the guesser goes on counting from 9.
    s.request("GET", "/api", None, Some((USER, "nat-9")), None)
        .await
        .assert_error(401, "EHTTPUnauthorized");
    let r = s
        .request("GET", "/api", None, Some((USER, "nat-10")), None)
        .await;
    r.assert_error(401, "EHTTPUnauthorized");
    let msg = r.json()["Message"].as_str().expect("Message").to_owned();
    assert!(msg.contains("too many failed logins"), "{msg}");
    // Locked out: the right password too, until the window ends.
    s.get("/api/licences")
        .await
        .assert_error(401, "EHTTPUnauthorized");
    assert_eq!(logged_counts(&s, FAILED), (1..=10).collect::<Vec<u32>>());
}
