//! One API client must not be able to cut its host off from the centre: activations the
//! centre refuses as unproven are throttled per client on the host, before the centre counts
//! them against the host's address; the centre's own throttling reaches the client as a 503
//! to retry, not as a refusal; an update the centre partly refused says so.

mod common;
use common::centre::CentreServer;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const PRODUCT: &str = "8A00";

async fn centre(args: &[&str]) -> CentreServer {
    let c = CentreServer::start_with(None, args, None).await;
    let product =
        json!({"key_id": PRODUCT, "product_name": "Бухгалтерия", "first_key_no": 5000000});
    assert_eq!(c.post("/centre/v1/products", product, true).await.0, 201);
    c
}

/// A host using centre `c`, with `extra` config (TOML tables) after the centre's.
fn config(c: &CentreServer, computer_id: &str, extra: &str) -> String {
    format!(
        "computer_id = \"{computer_id}\"\n[centre]\nurl = \"{}\"\nresponse_key = \"{}\"\n[licences]\ntrusted_centre_keys = [\"{}\"]\n{extra}\n",
        c.base,
        c.response_key_file().display(),
        c.trust_file().display()
    )
}

async fn host(c: &CentreServer, extra: &str) -> Server {
    Server::start(Opts {
        demo: false,
        config: config(c, &"A".repeat(40), extra),
    })
    .await
}

fn activation(code: &str) -> Value {
    json!({"ActivationCodeString": code, "ITN": 1234567890})
}

/// A code that passes the check digit but that the centre never issued.
fn random_code() -> String {
    keybridge::centre::ActivationCode::generate().to_string()
}

fn retry_after(r: &Resp) -> u64 {
    r.header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds")
}

/// The attack: a dozen random codes from one client, all at once. Only the host's limit (5)
/// reach the centre — below the centre's own (10), so the host keeps its standing — and the
/// rest are refused locally with 429 and Retry-After. The same client is refused until its
/// window passes (a genuine code cannot be told from a guess before the centre is asked);
/// then its genuine activation succeeds, which it would not if the centre had been burnt.
#[tokio::test]
async fn bad_activations_are_throttled_on_the_host_and_never_burn_the_centre() {
    let c = centre(&[]).await;
    let window = 6;
    let s = host(
        &c,
        &format!("[api]\nactivation_window_seconds = {window}\n"),
    )
    .await;
    let codes: Vec<String> = (0..12).map(|_| random_code()).collect();
    let answers =
        futures::future::join_all(codes.iter().map(|k| s.post("/api/licences", activation(k))))
            .await;
    let (mut refused, mut throttled) = (0, 0);
    for r in &answers {
        match r.status {
            403 => {
                r.assert_error(403, "EActivationRefused");
                refused += 1;
            }
            429 => {
                r.assert_error(429, "ETooManyActivationFailures");
                assert!((1..=window).contains(&retry_after(r)));
                throttled += 1;
            }
            _ => panic!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
        }
    }
    assert_eq!((refused, throttled), (5, 7));
    let log = c.log();
    assert_eq!(log.matches("failed proof (").count(), 5, "{log}");

    // Another loopback address is the same machine, so the same client: no fresh allowance.
    let other = client_builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().expect("ip"))
        .build()
        .expect("client");
    let r = other
        .post(format!("{}/api/licences", s.base))
        .basic_auth(USER, Some(PASS))
        .json(&activation(&random_code()))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 429);
    let j: Value = r.json().await.expect("json");
    assert_eq!(j["Exception"], "ETooManyActivationFailures", "{j}");

    // The same client with a genuine code: refused locally while its window lasts.
    let genuine = c.code(json!({"key_id": PRODUCT, "licence_count": 1})).await;
    let r = s.post("/api/licences", activation(&genuine)).await;
    r.assert_error(429, "ETooManyActivationFailures");
    assert!(s.log().contains("activations refused for this client"));
    assert_eq!(c.log().matches("failed proof (").count(), 5);

    tokio::time::sleep(Duration::from_secs(window + 1)).await;
    let r = s.post("/api/licences", activation(&genuine)).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = s.post("/api/licences/update", json!({})).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-update-failed").as_deref(), Some("0"));
}

/// A success gives its own attempt back but does not wipe earlier failures: a client holding
/// one good code cannot interleave it with guesses to keep guessing. Typos (a bad check
/// digit) are caught on the host and never count.
#[tokio::test]
async fn a_success_does_not_reset_the_count_and_typos_do_not_count() {
    let c = centre(&[]).await;
    let s = host(&c, "[api]\nmax_failed_activations = 2\n").await;
    let genuine = c.code(json!({"key_id": PRODUCT, "licence_count": 1})).await;
    let mut typo = genuine.clone();
    let last = typo.pop().expect("digit");
    typo.push(if last == '0' { '1' } else { '0' });
    for _ in 0..5 {
        s.post("/api/licences", activation(&typo))
            .await
            .assert_error(400, "EBadRequest");
    }
    s.post("/api/licences", activation(&random_code()))
        .await
        .assert_error(403, "EActivationRefused");
    // The same code again on the same binding: the same licence, a success.
    assert_eq!(
        s.post("/api/licences", activation(&genuine)).await.status,
        201
    );
    assert_eq!(
        s.post("/api/licences", activation(&genuine)).await.status,
        201
    );
    s.post("/api/licences", activation(&random_code()))
        .await
        .assert_error(403, "EActivationRefused");
    s.post("/api/licences", activation(&random_code()))
        .await
        .assert_error(429, "ETooManyActivationFailures");
    assert_eq!(c.log().matches("failed proof (").count(), 2);
}

/// The centre's 429 (it throttles this host's address) is a 503 `ECentreBusy` with the
/// centre's Retry-After — on activation and on update — not a 403 that reads as a refusal.
#[tokio::test]
async fn a_throttling_centre_is_a_503_with_retry_after() {
    let c = centre(&["--proof-max-failures", "1"]).await;
    let s = host(&c, "").await;
    let genuine = c.code(json!({"key_id": PRODUCT, "licence_count": 1})).await;
    assert_eq!(
        s.post("/api/licences", activation(&genuine)).await.status,
        201
    );
    s.post("/api/licences", activation(&random_code()))
        .await
        .assert_error(403, "EActivationRefused");
    let r = s.post("/api/licences", activation(&random_code())).await;
    r.assert_error(503, "ECentreBusy");
    assert!((1..=600).contains(&retry_after(&r)), "{:?}", r.headers);
    let m = r.json()["Message"].as_str().expect("message").to_owned();
    assert!(m.contains("too many attempts for this address"), "{m}");
    let r = s.post("/api/licences/update", json!({})).await;
    r.assert_error(503, "ECentreBusy");
    assert!((1..=600).contains(&retry_after(&r)));
    // The centre's 429 was not counted as a failed proof of this client on the host: one
    // failure so far, of five allowed.
    s.post("/api/licences", activation(&random_code()))
        .await
        .assert_error(503, "ECentreBusy");
}

/// An update the centre refuses for one licence still answers 200 with the list, but says
/// how many failed in `X-Update-Failed` and logs the centre's reason at WARN.
#[tokio::test]
async fn an_update_says_how_many_licences_failed() {
    let c = centre(&[]).await;
    let mut s = host(&c, "").await;
    let code = c
        .code(json!({"key_id": PRODUCT, "licence_count": 1, "restore_limit": 0}))
        .await;
    assert_eq!(s.post("/api/licences", activation(&code)).await.status, 201);
    let r = s.post("/api/licences/update", json!({})).await;
    assert_eq!(r.header("x-update-failed").as_deref(), Some("0"));

    // A new ComputerID: the licence needs a restore, which its code does not allow.
    s.kill();
    let mut s = Server::launch(
        &s.dir.clone(),
        &Opts {
            demo: false,
            config: config(&c, &"B".repeat(40), ""),
        },
    );
    s.wait_ready().await;
    let r = s.post("/api/licences/update", json!({})).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-update-failed").as_deref(), Some("1"));
    assert_eq!(r.json()["Licences"][0]["Workable"], false);
    let log = s.log_plain();
    let line = log
        .lines()
        .find(|l| l.contains("8A00.5000000 not updated"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("WARN") && line.contains("restore_limit"),
        "{line}"
    );
    s.kill();
}
