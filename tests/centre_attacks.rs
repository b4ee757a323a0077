//! Attacks on a real centre, end to end over HTTP: forging a licence from the centre's signed
//! answers, reading or moving other customers' licences without proof, replaying a USB key's
//! attestation, racing restores past the limit (PostgreSQL: `./scripts/test --test
//! centre_attacks`), guessing without end, and reading the centre's database from another
//! account.

mod common;
use common::centre::CentreServer;
use common::{stdout, Opts, Server};
use serde_json::{json, Value};
use std::net::IpAddr;

const ITN: &str = "7707083893";
const IEC: &str = "770701001";
const FIRST: u64 = 4_000_000;

/// A centre with series 672B, KeyNos from 4000000.
async fn centre(database: Option<&str>, args: &[&str]) -> CentreServer {
    let c = CentreServer::start_with(database, args, None).await;
    let product = json!({"key_id": "672B", "product_name": "Тест", "first_key_no": FIRST});
    assert_eq!(c.post("/centre/v1/products", product, true).await.0, 201);
    c
}

/// Issues a code and activates it for a ComputerID; returns the code and the KeyNo.
async fn activated(
    c: &CentreServer,
    itn: Option<&str>,
    iec: Option<&str>,
    restore_limit: u32,
    computer: &str,
) -> (String, u64) {
    let code = c
        .code(json!({"key_id": "672B", "licence_count": 2, "restore_limit": restore_limit}))
        .await;
    let (s, j) = c
        .post(
            "/centre/v1/activate",
            json!({"code": code, "itn": itn, "iec": iec, "binding": {"computer": computer}}),
            false,
        )
        .await;
    assert_eq!(s, 200, "{j}");
    let doc = keybridge::crypto::unb64(j["licence"].as_str().expect("licence")).expect("b64");
    let env: Value = serde_json::from_slice(&doc).expect("envelope");
    let terms: Value = serde_json::from_slice(
        &keybridge::crypto::unb64(env["payload"].as_str().expect("p")).expect("b64"),
    )
    .expect("terms");
    (code, terms["key_no"].as_u64().expect("key_no"))
}

/// A client whose requests come from `ip` (any 127/8 address on loopback).
fn client_from(ip: &str) -> reqwest::Client {
    common::client_builder()
        .local_address(ip.parse::<IpAddr>().expect("ip"))
        .build()
        .expect("client")
}

async fn post_from(
    client: &reqwest::Client,
    c: &CentreServer,
    path: &str,
    body: Value,
) -> (u16, Value, Option<String>) {
    let r = client
        .post(format!("{}{path}", c.base))
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii").to_owned());
    (status, r.json().await.expect("json"), retry)
}

fn a_code() -> String {
    keybridge::centre::ActivationCode::generate().to_string()
}

// ---------------------------------------------------------------------------------------
// (a) Forging a licence from the centre's signature.

/// Every wrong method on every route, and unknown paths: a QueryID carrying licence terms is
/// refused (400, the centre's JSON, signed without it); with a valid QueryID the answer is the
/// centre's own JSON error, signed — and that signature, wrapped as a licence signed by the
/// centre's licence key (payload the QueryID or the body), is refused by `licence import`.
#[tokio::test]
async fn signed_errors_do_not_make_licences() {
    let c = centre(None, &[]).await;
    let routes: &[(&str, &[&str])] = &[
        ("/centre/v1/activate", &["POST"]),
        ("/centre/v1/licence", &["POST"]),
        ("/centre/v1/restore", &["POST"]),
        ("/centre/v1/challenge", &["POST"]),
        ("/centre/v1/publickey", &["GET"]),
        ("/centre/v1/products", &["POST"]),
        ("/centre/v1/codes", &["GET", "POST"]),
        ("/centre/v1/nope", &[]),
        ("/centre/v1/licence/4000000", &[]),
        ("/", &[]),
        ("/api/licences", &[]),
    ];
    let terms = serde_json::to_string(&common::terms(
        4_000_000,
        999,
        keybridge::licence::Binding::Computer(common::COMPUTER_ID.into()),
    ))
    .expect("json");
    let mut signed = Vec::new();
    for (path, allowed) in routes {
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            if allowed.contains(&method) {
                continue;
            }
            // Licence terms smuggled in the QueryID: refused before anything else.
            let (s, h, body) = c.raw(method, path, Some(b"{}"), Some(&terms)).await;
            assert_eq!(s, 400, "{method} {path}");
            assert!(h.get("licence-queryid").is_none());
            let j: Value = serde_json::from_slice(&body).expect("JSON");
            assert_eq!(j["reason"], "invalid", "{method} {path}: {j}");

            let q = format!("forge-{}", signed.len());
            let (s, h, body) = c.raw(method, path, Some(b"{}"), Some(&q)).await;
            let j: Value = serde_json::from_slice(&body)
                .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {body:?}"));
            assert!(j["error"].is_string() && j["reason"].is_string(), "{j}");
            match s {
                // The normalising layer's words, not the signing layer's safety net.
                405 => {
                    assert_eq!(j["reason"], "method_not_allowed");
                    assert!(j["error"].as_str().expect("e").contains("does not take"));
                    assert!(h.get("allow").is_some());
                }
                404 => assert_eq!(j["reason"], "not_found"),
                401 => assert_eq!(j["reason"], "unauthorized"), // admin routes ask first
                other => panic!("{method} {path}: {other} {j}"),
            }
            let sig = h
                .get("licence-signature")
                .expect("signed")
                .to_str()
                .expect("ascii")
                .to_owned();
            signed.push((q, body, sig));
        }
    }
    assert!(signed.len() > 50);

    // A host that trusts the centre's licence key.
    let config = format!(
        "[licences]\ntrusted_centre_keys = [\"{}\"]\n",
        c.trust_file().display()
    );
    let mut host = Server::start(Opts {
        demo: false,
        config,
    })
    .await;
    let licence_key = keybridge::crypto::PublicKey::from_pem(&c.public_key).expect("pem");
    let dir = tempfile::tempdir().expect("tmp");
    let mut files = Vec::new();
    for (i, (q, body, sig)) in signed.iter().enumerate() {
        let sig = keybridge::crypto::unb64(sig).expect("b64");
        for (n, payload) in [q.as_bytes(), body.as_slice()].into_iter().enumerate() {
            let env = json!({
                "format": "keybridge-licence/2",
                "signer": licence_key.fingerprint(),
                "payload": keybridge::crypto::b64(payload),
                "signature": keybridge::crypto::b64(&sig),
            });
            let f = dir.path().join(format!("{i}-{n}.licence"));
            std::fs::write(&f, serde_json::to_vec(&env).expect("json")).expect("write");
            files.push(f);
        }
    }
    let import = |host: &Server, f: &std::path::Path| {
        let out = host.cli(&["licence", "import", f.to_str().expect("p")]);
        assert!(!out.status.success(), "accepted: {}", stdout(&out));
        assert!(stdout(&out).contains("does not verify"), "{}", stdout(&out));
    };
    // Through the running host, then by the CLI on its own.
    for f in &files {
        import(&host, f);
    }
    let listed = host.get("/api/licences").await.json();
    assert_eq!(listed["Licences"], json!([]), "{listed}");
    host.kill();
    for f in files.iter().step_by(7) {
        import(&host, f);
    }
    let left: Vec<_> = std::fs::read_dir(&host.data)
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".licence"))
        .collect();
    assert!(left.is_empty(), "nothing installed");
}

// ---------------------------------------------------------------------------------------
// (b) Reading and moving licences without proof.

/// Restore needs the code and the ITN (and IEC); the current version needs the code. A wrong
/// proof and an unknown licence read the same, and nothing unproven carries ITN, IEC or a
/// licence: enumerating sequential KeyNos learns nothing.
#[tokio::test]
async fn licences_need_proof_and_cannot_be_enumerated() {
    let c = centre(None, &["--proof-max-failures", "1000"]).await;
    let (code_a, a) = activated(&c, Some(ITN), Some(IEC), 3, &"A".repeat(40)).await;
    let (code_b, b) = activated(&c, Some(ITN), None, 3, &"B".repeat(40)).await;
    let (code_c, k) = activated(&c, None, None, 3, &"C".repeat(40)).await;
    assert_eq!((a, b, k), (FIRST, FIRST + 1, FIRST + 2));

    // Without a code at all: a malformed request, which names no licence.
    let (s, j) = c
        .post(
            "/centre/v1/licence",
            json!({"key_id": "672B", "key_no": a}),
            false,
        )
        .await;
    assert_eq!((s, j["reason"].as_str()), (400, Some("invalid")));
    let (s, _) = c
        .post(
            "/centre/v1/restore",
            json!({"key_id": "672B", "key_no": a, "binding": {"computer": "X".repeat(40)}}),
            false,
        )
        .await;
    assert_eq!(s, 400);

    // A series that is no series (it would become a throttle key): refused as such.
    let (s, j) = c
        .post(
            "/centre/v1/licence",
            json!({"key_id": "A".repeat(100_000), "key_no": a, "code": a_code()}),
            false,
        )
        .await;
    assert_eq!((s, j["reason"].as_str()), (400, Some("invalid")), "{j}");

    // The refusal every unproven request gets, whatever is wrong.
    let (s, refusal) = c
        .post(
            "/centre/v1/licence",
            json!({"key_id": "672B", "key_no": FIRST + 500, "code": a_code()}),
            false,
        )
        .await;
    assert_eq!(
        (s, refusal["reason"].as_str()),
        (404, Some("unknown_licence"))
    );
    let unproven = |body: &Value| {
        let text = body.to_string();
        assert!(!text.contains(ITN) && !text.contains(IEC), "{text}");
        assert!(body.get("licence").is_none(), "{text}");
    };
    // Sequential KeyNos — issued or not — with made-up codes, or with another licence's code,
    // with the right ITN or none.
    for key_no in FIRST - 3..FIRST + 8 {
        for (code, itn) in [
            (a_code(), Some(ITN)),
            (code_b.clone(), Some(ITN)),
            (a_code(), None),
        ] {
            if key_no == b && code == code_b {
                continue;
            }
            let (s, j) = c
                .post(
                    "/centre/v1/licence",
                    json!({"key_id": "672B", "key_no": key_no, "code": code, "itn": itn}),
                    false,
                )
                .await;
            assert_eq!((s, &j), (404, &refusal), "KeyNo {key_no}");
            unproven(&j);
        }
    }
    // Restores: unknown licence, wrong code, missing or wrong ITN, missing or wrong IEC.
    let to_x = json!({"computer": "X".repeat(40)});
    for (key_no, code, itn, iec) in [
        (FIRST + 500, code_a.as_str(), Some(ITN), Some(IEC)),
        (a, code_b.as_str(), Some(ITN), Some(IEC)),
        (a, code_a.as_str(), None, Some(IEC)),
        (a, code_a.as_str(), Some("7707083894"), Some(IEC)),
        (a, code_a.as_str(), Some(ITN), None),
        (a, code_a.as_str(), Some(ITN), Some("770701002")),
        (b, code_b.as_str(), Some(ITN), Some(IEC)),
    ] {
        let (s, j) = c
            .post(
                "/centre/v1/restore",
                json!({"key_id": "672B", "key_no": key_no, "code": code, "itn": itn, "iec": iec, "binding": to_x}),
                false,
            )
            .await;
        assert_eq!((s, &j), (404, &refusal), "{key_no} {code} {itn:?} {iec:?}");
        unproven(&j);
    }

    // The code alone is not enough for a licence activated with an ITN: otherwise the answer
    // would hand out the ITN a restore asks for.
    for (itn, iec) in [(None, None), (Some(ITN), None), (None, Some(IEC))] {
        let (s, j) = c
            .post(
                "/centre/v1/licence",
                json!({"key_id": "672B", "key_no": a, "code": code_a, "itn": itn, "iec": iec}),
                false,
            )
            .await;
        assert_eq!((s, &j), (404, &refusal));
    }

    // With proof: the current version and a restore (code, ITN, IEC as activated).
    let (s, j) = c
        .post(
            "/centre/v1/licence",
            json!({"key_id": "672B", "key_no": a, "code": code_a, "itn": ITN, "iec": IEC}),
            false,
        )
        .await;
    assert_eq!(s, 200, "{j}");
    let (s, j) = c
        .post(
            "/centre/v1/licence",
            json!({"key_id": "672B", "key_no": k, "code": code_c}),
            false,
        )
        .await;
    assert_eq!(s, 200, "no ITN: the code alone {j}");
    let (s, j) = c
        .post(
            "/centre/v1/restore",
            json!({"key_id": "672B", "key_no": a, "code": code_a, "itn": ITN, "iec": IEC, "binding": to_x}),
            false,
        )
        .await;
    assert_eq!(s, 200, "{j}");
    let (s, _) = c
        .post(
            "/centre/v1/restore",
            json!({"key_id": "672B", "key_no": b, "code": code_b, "itn": ITN, "binding": to_x}),
            false,
        )
        .await;
    assert_eq!(s, 200);
    // Activated without an ITN: only the code holder learns that the vendor must move it.
    let (s, j) = c
        .post(
            "/centre/v1/restore",
            json!({"key_id": "672B", "key_no": k, "code": code_c, "itn": ITN, "binding": to_x}),
            false,
        )
        .await;
    assert_eq!(
        (s, j["reason"].as_str()),
        (403, Some("restore_needs_vendor"))
    );
    let (s, j) = c
        .post(
            "/centre/v1/restore",
            json!({"key_id": "672B", "key_no": k, "code": a_code(), "itn": ITN, "binding": to_x}),
            false,
        )
        .await;
    assert_eq!((s, &j), (404, &refusal));
}

// ---------------------------------------------------------------------------------------
// (c) Replaying a USB key's attestation.

/// A proof answers one challenge the centre issued, once: the same challenge and proof again
/// (for the same code or another) are refused, and so is a proof for the request-bound
/// challenge, which only `centre fulfil` accepts.
#[tokio::test]
async fn recorded_attestations_do_not_replay() {
    use keybridge::hal::KeyDevice;
    let c = centre(None, &[]).await;
    let d = tempfile::tempdir().expect("tmp");
    let bus = keybridge::hal::sim::SimBus::new(
        &d.path().join("sim"),
        keybridge::keymem::LockPolicy::default(),
    );
    let mut blank = bus.plug(600).expect("plug");
    let factory = keybridge::hal::sim::SimBus::factory_public_dir(&d.path().join("sim"));
    std::fs::copy(
        factory.join("sim-factory.pem"),
        c.data.join("manufacturers/sim-factory.pem"),
    )
    .expect("trust the factory");
    let proof = |a: &keybridge::hal::Attestation| {
        serde_json::to_value(keybridge::centre::wire::WireProof::from(a)).expect("json")
    };
    let activate = |code: &str, p: &Value, challenge: Option<&str>| json!({"code": code, "itn": ITN, "binding": {"device": 600}, "device_proof": p, "challenge": challenge});

    let code = c.code(json!({"key_id": "672B", "licence_count": 1})).await;
    // The request-bound proof (what an offline request carries), without or as a challenge.
    let bound = keybridge::hal::attest::offline_challenge(&code, Some(ITN), None, 600);
    let p = proof(&blank.attest(&bound).expect("attest"));
    for challenge in [None, Some(hex::encode(bound))] {
        let (s, j) = c
            .post(
                "/centre/v1/activate",
                activate(&code, &p, challenge.as_deref()),
                false,
            )
            .await;
        assert_eq!(
            (s, j["reason"].as_str()),
            (403, Some("challenge_refused")),
            "{j}"
        );
    }

    // A fresh challenge: accepted once.
    let (_, ch) = c.post("/centre/v1/challenge", json!({}), false).await;
    let hex_c = ch["challenge"].as_str().expect("hex").to_owned();
    let mut raw = [0u8; 32];
    hex::decode_to_slice(&hex_c, &mut raw).expect("hex");
    let p = proof(&blank.attest(&raw).expect("attest"));
    let (s, j) = c
        .post(
            "/centre/v1/activate",
            activate(&code, &p, Some(&hex_c)),
            false,
        )
        .await;
    assert_eq!(s, 200, "{j}");
    // Replayed: refused, for this code and for another.
    let (s, j) = c
        .post(
            "/centre/v1/activate",
            activate(&code, &p, Some(&hex_c)),
            false,
        )
        .await;
    assert_eq!(
        (s, j["reason"].as_str()),
        (403, Some("challenge_refused")),
        "{j}"
    );
    let other = c.code(json!({"key_id": "672B", "licence_count": 1})).await;
    let (s, j) = c
        .post(
            "/centre/v1/activate",
            activate(&other, &p, Some(&hex_c)),
            false,
        )
        .await;
    assert_eq!(
        (s, j["reason"].as_str()),
        (403, Some("challenge_refused")),
        "{j}"
    );
    assert!(j["error"].as_str().expect("e").contains("already used"));
    // A malformed challenge is a 400.
    let (s, _) = c
        .post(
            "/centre/v1/activate",
            activate(&other, &p, Some("xyz")),
            false,
        )
        .await;
    assert_eq!(s, 400);
}

// ---------------------------------------------------------------------------------------
// (d) Racing restores past the limit.

/// 20 parallel restores of one licence to 20 ComputerIDs, limit 3: exactly 3 succeed.
async fn parallel_restores(database: Option<&str>) {
    let c = centre(database, &["--proof-max-failures", "1000"]).await;
    let (code, key_no) = activated(&c, Some(ITN), None, 3, &"0".repeat(40)).await;
    let mut tasks = Vec::new();
    for i in 1..=20u32 {
        let (client, url) = (c.client.clone(), format!("{}/centre/v1/restore", c.base));
        let body = json!({"key_id": "672B", "key_no": key_no, "code": code, "itn": ITN,
                          "binding": {"computer": format!("{i:040}")}});
        tasks.push(tokio::spawn(async move {
            let r = client.post(url).json(&body).send().await.expect("send");
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.expect("json"))
        }));
    }
    let mut ok = 0;
    for t in futures::future::join_all(tasks).await {
        match t.expect("task") {
            (200, _) => ok += 1,
            (403, j) => assert_eq!(j["reason"], "restore_limit", "{j}"),
            (s, j) => panic!("{s} {j}"),
        }
    }
    assert_eq!(ok, 3, "exactly the limit");
    let out = c.cli(&["centre", "code-list"]);
    assert!(
        stdout(&out).contains("restored 3 time(s)"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_restores_stop_at_the_limit_on_postgres() {
    let Some(url) = common::fresh_postgres("keybridge_attacks").await else {
        return;
    };
    parallel_restores(Some(&url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_restores_stop_at_the_limit_on_sqlite() {
    parallel_restores(None).await;
}

// ---------------------------------------------------------------------------------------
// (e) Guessing without end.

/// Failed proofs are throttled per client address and per licence: 429 after N, and then even
/// the right proof is refused (it never reaches the database). The tables are bounded: once
/// full of failing entries, new ones are refused rather than old ones forgotten.
#[tokio::test]
async fn failed_proofs_are_throttled_in_bounded_tables() {
    let c = centre(None, &["--proof-max-failures", "3"]).await;
    let (code_a, a) = activated(&c, Some(ITN), None, 3, &"A".repeat(40)).await;
    let (code_b, b) = activated(&c, Some(ITN), None, 3, &"B".repeat(40)).await;
    let lookup = |key_no: u64, code: &str| json!({"key_id": "672B", "key_no": key_no, "code": code, "itn": ITN});

    // Per client: three wrong guesses on different KeyNos, then 429 — for the right code too.
    let one = client_from("127.0.0.2");
    for k in 0..3 {
        let (s, j, _) = post_from(
            &one,
            &c,
            "/centre/v1/licence",
            lookup(FIRST + 100 + k, &a_code()),
        )
        .await;
        assert_eq!(s, 404, "{j}");
    }
    let (s, j, retry) = post_from(&one, &c, "/centre/v1/licence", lookup(a, &code_a)).await;
    assert_eq!((s, j["reason"].as_str()), (429, Some("throttled")), "{j}");
    assert!(
        j["error"].as_str().expect("e").contains("this address"),
        "{j}"
    );
    assert!(retry.expect("Retry-After").parse::<u64>().expect("seconds") > 0);
    let (s, _, _) = post_from(&one, &c, "/centre/v1/challenge", json!({})).await;
    assert_eq!(s, 200, "challenges are throttled separately");
    // Another client is not affected.
    let two = client_from("127.0.0.3");
    let (s, _, _) = post_from(&two, &c, "/centre/v1/licence", lookup(a, &code_a)).await;
    assert_eq!(s, 200);

    // Per licence: three clients guess one licence's code; a fourth, with the right code, is
    // refused too, while other licences stay open to it.
    for ip in ["127.0.0.4", "127.0.0.5", "127.0.0.6"] {
        let (s, _, _) = post_from(&client_from(ip), &c, "/centre/v1/restore",
            json!({"key_id": "672B", "key_no": b, "code": a_code(), "itn": ITN, "binding": {"computer": "Z".repeat(40)}})).await;
        assert_eq!(s, 404);
    }
    let seven = client_from("127.0.0.7");
    let (s, j, _) = post_from(&seven, &c, "/centre/v1/licence", lookup(b, &code_b)).await;
    assert_eq!((s, j["reason"].as_str()), (429, Some("throttled")), "{j}");
    assert!(
        j["error"].as_str().expect("e").contains("this licence"),
        "{j}"
    );
    let (s, _, _) = post_from(&seven, &c, "/centre/v1/licence", lookup(a, &code_a)).await;
    assert_eq!(s, 200);
    // Unknown codes at activation count the same way.
    let eight = client_from("127.0.0.8");
    for _ in 0..3 {
        let (s, _, _) = post_from(
            &eight,
            &c,
            "/centre/v1/activate",
            json!({"code": a_code(), "binding": {"computer": "Y".repeat(40)}}),
        )
        .await;
        assert_eq!(s, 404);
    }
    let fresh = c.code(json!({"key_id": "672B", "licence_count": 1})).await;
    let (s, _, _) = post_from(
        &eight,
        &c,
        "/centre/v1/activate",
        json!({"code": fresh, "binding": {"computer": "Y".repeat(40)}}),
    )
    .await;
    assert_eq!(s, 429);

    // Bounded: with room for 4 licences and 4 clients, a fifth distinct one is refused.
    let c = centre(
        None,
        &["--proof-max-failures", "100", "--throttle-capacity", "4"],
    )
    .await;
    let (code_a, a) = activated(&c, Some(ITN), None, 3, &"A".repeat(40)).await;
    let one = client_from("127.0.0.2");
    for k in 0..4 {
        let (s, _, _) = post_from(
            &one,
            &c,
            "/centre/v1/licence",
            lookup(FIRST + 100 + k, &a_code()),
        )
        .await;
        assert_eq!(s, 404);
    }
    let (s, j, _) = post_from(
        &one,
        &c,
        "/centre/v1/licence",
        lookup(FIRST + 200, &a_code()),
    )
    .await;
    assert_eq!((s, j["reason"].as_str()), (429, Some("throttled")), "{j}");
    assert!(
        j["error"].as_str().expect("e").contains("too many clients"),
        "{j}"
    );
    // Known entries keep working: the licence that has not failed is refused too (fail
    // closed), the failing ones keep counting.
    let (s, _, _) = post_from(
        &one,
        &c,
        "/centre/v1/licence",
        lookup(FIRST + 100, &a_code()),
    )
    .await;
    assert_eq!(s, 404);
    for ip in ["127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        let (s, _, _) = post_from(
            &client_from(ip),
            &c,
            "/centre/v1/licence",
            lookup(FIRST + 100, &a_code()),
        )
        .await;
        assert_eq!(s, 404);
    }
    let (s, j, _) = post_from(
        &client_from("127.0.0.6"),
        &c,
        "/centre/v1/licence",
        lookup(a, &code_a),
    )
    .await;
    assert_eq!((s, j["reason"].as_str()), (429, Some("throttled")), "{j}");
}

/// Challenges: a per-client rate, and a cap on outstanding ones (503 when full).
#[tokio::test]
async fn challenges_are_rationed() {
    let c = centre(
        None,
        &["--challenges-per-minute", "3", "--max-challenges", "5"],
    )
    .await;
    let one = client_from("127.0.0.2");
    for _ in 0..3 {
        assert_eq!(
            post_from(&one, &c, "/centre/v1/challenge", json!({}))
                .await
                .0,
            200
        );
    }
    let (s, j, retry) = post_from(&one, &c, "/centre/v1/challenge", json!({})).await;
    assert_eq!((s, j["reason"].as_str()), (429, Some("throttled")), "{j}");
    assert!(retry.is_some());
    let two = client_from("127.0.0.3");
    for _ in 0..2 {
        assert_eq!(
            post_from(&two, &c, "/centre/v1/challenge", json!({}))
                .await
                .0,
            200
        );
    }
    let (s, j, _) = post_from(&two, &c, "/centre/v1/challenge", json!({})).await;
    assert_eq!(
        (s, j["reason"].as_str()),
        (503, Some("challenges_full")),
        "{j}"
    );
}

// ---------------------------------------------------------------------------------------
// The centre's files.

/// The data directory is its user's alone (narrowed if it was wider), and so are the
/// database and its companions and the keys.
#[tokio::test]
async fn the_centre_data_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("centre");
    std::fs::create_dir(&data).expect("dir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let db = data.join("centre.db");
    std::fs::write(&db, b"").expect("db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let c = CentreServer::start_in(tmp, data.clone(), None, &[], None).await;
    let product = json!({"key_id": "672B", "product_name": "Тест"});
    assert_eq!(c.post("/centre/v1/products", product, true).await.0, 201);
    // Some writes, so SQLite has made whatever files it makes.
    activated(&c, None, None, 1, &"A".repeat(40)).await;
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    let mut seen = 0;
    for name in [
        "centre.db",
        "centre.db-wal",
        "centre.db-shm",
        "centre.db-journal",
        "centre-key.pem",
        "centre-response-key.pem",
    ] {
        let p = data.join(name);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{name}");
            seen += 1;
        }
    }
    assert!(seen >= 3, "database and keys");

    // A fresh data directory and database are made private from the start.
    let c2 = CentreServer::start().await;
    assert_eq!(mode(&c2.data), 0o700);
    assert_eq!(mode(&c2.data.join("centre.db")), 0o600);
}
