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

/// POSTs `body` to `path` (no credentials), asserts the status and the error's `reason`, and
/// returns the answer.
async fn expect_reason(
    c: &CentreServer,
    path: &str,
    body: Value,
    status: u16,
    reason: &str,
) -> Value {
    let (s, j) = c.post(path, body, false).await;
    assert_eq!(
        (s, j["reason"].as_str()),
        (status, Some(reason)),
        "{path}: {j}"
    );
    j
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
        expect_reason(
            &c,
            "/centre/v1/activate",
            activate(&code, &p, challenge.as_deref()),
            403,
            "challenge_refused",
        )
        .await;
    }

    // A fresh challenge: accepted once.
    let (_, ch) = c
        .post("/centre/v1/challenge", json!({"code": code}), false)
        .await;
    let hex_c = ch["challenge"].as_str().expect("hex").to_owned();
    let mut raw = [0u8; 32];
    hex::decode_to_slice(&hex_c, &mut raw).expect("hex");
    let p = proof(&blank.attest(&raw).expect("attest"));
    // A challenge asked for one code does not activate another (and is not used up by it).
    let other = c.code(json!({"key_id": "672B", "licence_count": 1})).await;
    let j = expect_reason(
        &c,
        "/centre/v1/activate",
        activate(&other, &p, Some(&hex_c)),
        403,
        "challenge_refused",
    )
    .await;
    assert!(j["error"]
        .as_str()
        .expect("e")
        .contains("issued for another activation code"));
    let (s, j) = c
        .post(
            "/centre/v1/activate",
            activate(&code, &p, Some(&hex_c)),
            false,
        )
        .await;
    assert_eq!(s, 200, "{j}");
    // Replayed: refused, for this code and for another.
    expect_reason(
        &c,
        "/centre/v1/activate",
        activate(&code, &p, Some(&hex_c)),
        403,
        "challenge_refused",
    )
    .await;
    let j = expect_reason(
        &c,
        "/centre/v1/activate",
        activate(&other, &p, Some(&hex_c)),
        403,
        "challenge_refused",
    )
    .await;
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

/// Failed proofs are throttled per client address and per activation code: 429 after N, and
/// then even the right proof is refused (it never reaches the database).
#[tokio::test]
async fn failed_proofs_are_throttled_per_client_and_per_code() {
    let c = centre(None, &["--proof-max-failures", "3"]).await;
    let (code_a, a) = activated(&c, Some(ITN), None, 3, &"A".repeat(40)).await;
    let (code_b, b) = activated(&c, Some(ITN), None, 3, &"B".repeat(40)).await;
    let lookup = |key_no: u64, code: &str, itn: &str| json!({"key_id": "672B", "key_no": key_no, "code": code, "itn": itn});

    // Per client: three wrong guesses on different KeyNos, then 429 — for the right code too.
    let one = client_from("127.0.0.2");
    for k in 0..3 {
        let (s, j, _) = post_from(
            &one,
            &c,
            "/centre/v1/licence",
            lookup(FIRST + 100 + k, &a_code(), ITN),
        )
        .await;
        assert_eq!(s, 404, "{j}");
    }
    let (s, j, retry) = post_from(&one, &c, "/centre/v1/licence", lookup(a, &code_a, ITN)).await;
    assert_eq!((s, j["reason"].as_str()), (429, Some("throttled")), "{j}");
    assert!(
        j["error"].as_str().expect("e").contains("this address"),
        "{j}"
    );
    assert!(retry.expect("Retry-After").parse::<u64>().expect("seconds") > 0);
    // A challenge is asked with a code, a proof like the others: refused as well.
    let fresh = c.code(json!({"key_id": "672B", "licence_count": 1})).await;
    let (s, j, _) = post_from(&one, &c, "/centre/v1/challenge", json!({"code": fresh})).await;
    assert_eq!((s, j["reason"].as_str()), (429, Some("throttled")), "{j}");
    assert!(
        j["error"]
            .as_str()
            .expect("e")
            .contains("too many attempts"),
        "{j}"
    );
    // Another client is not affected.
    let two = client_from("127.0.0.3");
    let (s, _, _) = post_from(&two, &c, "/centre/v1/licence", lookup(a, &code_a, ITN)).await;
    assert_eq!(s, 200);

    // Per code: three clients who have B's code guess its ITN; a fourth, with the right ITN,
    // is refused too (the code is what is being proven), while other codes stay open to it.
    for ip in ["127.0.0.4", "127.0.0.5", "127.0.0.6"] {
        let (s, _, _) = post_from(&client_from(ip), &c, "/centre/v1/restore",
            json!({"key_id": "672B", "key_no": b, "code": code_b, "itn": "7707083894", "binding": {"computer": "Z".repeat(40)}})).await;
        assert_eq!(s, 404);
    }
    let seven = client_from("127.0.0.7");
    let (s, j, _) = post_from(&seven, &c, "/centre/v1/licence", lookup(b, &code_b, ITN)).await;
    assert_eq!((s, j["reason"].as_str()), (429, Some("throttled")), "{j}");
    assert!(
        j["error"]
            .as_str()
            .expect("e")
            .contains("this activation code"),
        "{j}"
    );
    let (s, _, _) = post_from(&seven, &c, "/centre/v1/licence", lookup(a, &code_a, ITN)).await;
    assert_eq!(s, 200, "other codes stay open to it");
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
}

/// KeyNos are sequential, so anyone can name a customer's licence: failing on it must not
/// lock its owner out. Clients sending made-up codes for the victim's KeyNo — as many
/// clients as they like, each up to its own limit — do not stop the victim's lookup and
/// restore with the right code.
#[tokio::test]
async fn wrong_codes_for_a_victims_key_no_do_not_lock_the_victim() {
    let c = centre(None, &["--proof-max-failures", "3"]).await;
    let (code, victim) = activated(&c, Some(ITN), Some(IEC), 3, &"V".repeat(40)).await;
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        let attacker = client_from(ip);
        for path in [
            "/centre/v1/licence",
            "/centre/v1/restore",
            "/centre/v1/licence",
        ] {
            let (s, j, _) = post_from(
                &attacker,
                &c,
                path,
                json!({"key_id": "672B", "key_no": victim, "code": a_code(), "itn": ITN, "iec": IEC,
                       "binding": {"computer": "X".repeat(40)}}),
            )
            .await;
            assert_eq!(
                (s, j["reason"].as_str()),
                (404, Some("unknown_licence")),
                "{j}"
            );
        }
    }
    let owner = client_from("127.0.0.9");
    let (s, j, _) = post_from(
        &owner,
        &c,
        "/centre/v1/licence",
        json!({"key_id": "672B", "key_no": victim, "code": code, "itn": ITN, "iec": IEC}),
    )
    .await;
    assert_eq!(s, 200, "lookup: {j}");
    let (s, j, _) = post_from(
        &owner,
        &c,
        "/centre/v1/restore",
        json!({"key_id": "672B", "key_no": victim, "code": code, "itn": ITN, "iec": IEC,
               "binding": {"computer": "W".repeat(40)}}),
    )
    .await;
    assert_eq!(s, 200, "restore: {j}");
}

/// The proof tables are bounded, and a full one neither forgets failing entries (that would
/// unlock them) nor refuses everyone new (that would let whoever fills it lock every customer
/// out): new clients and codes proceed untracked, and the centre says so in its log, once.
#[tokio::test]
async fn full_proof_tables_let_new_keys_through_untracked() {
    let c = centre(
        None,
        &["--proof-max-failures", "5", "--throttle-capacity", "4"],
    )
    .await;
    let (code_a, a) = activated(&c, Some(ITN), None, 3, &"A".repeat(40)).await;
    let lookup = |key_no: u64, code: &str| json!({"key_id": "672B", "key_no": key_no, "code": code, "itn": ITN});
    // One client fails with four codes: the code table is full.
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
    // Three more clients fail: the client table is full too.
    for ip in ["127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        let (s, j, _) = post_from(
            &client_from(ip),
            &c,
            "/centre/v1/licence",
            lookup(FIRST + 200, &a_code()),
        )
        .await;
        assert_eq!(s, 404, "{j}");
    }
    // A new client with a correct proof (a new code too) is answered.
    let (s, j, _) = post_from(
        &client_from("127.0.0.6"),
        &c,
        "/centre/v1/licence",
        lookup(a, &code_a),
    )
    .await;
    assert_eq!(s, 200, "{j}");
    // A new client with a wrong one gets the ordinary refusal, not 429.
    for _ in 0..3 {
        let (s, j, _) = post_from(
            &client_from("127.0.0.7"),
            &c,
            "/centre/v1/licence",
            lookup(a, &a_code()),
        )
        .await;
        assert_eq!(
            (s, j["reason"].as_str()),
            (404, Some("unknown_licence")),
            "{j}"
        );
    }
    // The tracked client keeps counting and is locked at its limit: nothing was evicted.
    let (s, _, _) = post_from(
        &one,
        &c,
        "/centre/v1/licence",
        lookup(FIRST + 300, &a_code()),
    )
    .await;
    assert_eq!(s, 404);
    let (s, j, _) = post_from(&one, &c, "/centre/v1/licence", lookup(a, &code_a)).await;
    assert_eq!((s, j["reason"].as_str()), (429, Some("throttled")), "{j}");
    // Said in the log, once per table however often it happened.
    let log = c.log();
    for table in ["proof clients", "proof codes"] {
        let said = log
            .lines()
            .filter(|l| l.contains("proceed untracked") && l.contains(table))
            .count();
        assert_eq!(said, 1, "{table}: {log}");
    }
}

/// Challenges: only for a code that exists (an unknown one is a failed proof; an activated
/// one gets a challenge, so a USB key whose activation was cut off can fetch its licence), at
/// most 3 outstanding per code (429), a per-client rate, and a cap on outstanding ones in all
/// (503 when full, logged once a minute).
#[tokio::test]
async fn challenges_are_rationed() {
    let c = centre(
        None,
        &[
            "--challenges-per-minute",
            "4",
            "--max-challenges",
            "6",
            "--proof-max-failures",
            "3",
        ],
    )
    .await;
    let ask = |from: &'static str, code: Value| {
        let c = &c;
        async move {
            post_from(
                &client_from(from),
                c,
                "/centre/v1/challenge",
                json!({ "code": code }),
            )
            .await
        }
    };
    // No code, or a malformed one: 400, nothing issued.
    let (s, j, _) = post_from(
        &client_from("127.0.0.9"),
        &c,
        "/centre/v1/challenge",
        json!({}),
    )
    .await;
    assert_eq!((s, j["reason"].as_str()), (400, Some("invalid")), "{j}");
    // An activated code gets a challenge like any issued one (it says nothing of the
    // activation); activating with it answers only the key the code was activated for.
    let (used, _) = activated(&c, None, None, 3, &"U".repeat(40)).await;
    let (s, j, _) = ask("127.0.0.9", json!(used)).await;
    assert_eq!(s, 200, "{j}");
    // An unknown code counts as a failed proof: the third locks the client out, however good
    // its next code.
    for _ in 0..3 {
        let (s, j, _) = ask("127.0.0.2", json!(a_code())).await;
        assert_eq!(
            (s, j["reason"].as_str()),
            (404, Some("unknown_code")),
            "{j}"
        );
    }
    let good = c.code(json!({"key_id": "672B", "licence_count": 1})).await;
    let (s, j, retry) = ask("127.0.0.2", json!(good)).await;
    assert_eq!((s, j["reason"].as_str()), (429, Some("throttled")), "{j}");
    assert!(retry.is_some());

    // A valid code: at most 3 outstanding, then 429 with Retry-After (other clients too).
    for from in ["127.0.0.3", "127.0.0.3", "127.0.0.4"] {
        let (s, j, _) = ask(from, json!(good)).await;
        assert_eq!(s, 200, "{j}");
    }
    let (s, j, retry) = ask("127.0.0.5", json!(good)).await;
    assert_eq!((s, j["reason"].as_str()), (429, Some("throttled")), "{j}");
    assert!(
        j["error"]
            .as_str()
            .expect("e")
            .contains("this activation code"),
        "{j}"
    );
    let retry: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((1..=300).contains(&retry), "{retry}");

    // Per client: 4 a minute, whatever the codes. In all: 6 outstanding (the activated
    // code's 1 + 3 + 2: so none was issued for the refused requests above), then 503 —
    // logged once however often.
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(c.code(json!({"key_id": "672B", "licence_count": 1})).await);
    }
    for code in &codes[..2] {
        let (s, j, _) = ask("127.0.0.3", json!(code)).await;
        assert_eq!(s, 200, "{j}");
    }
    let (s, j, _) = ask("127.0.0.3", json!(codes[2])).await;
    assert_eq!((s, j["reason"].as_str()), (429, Some("throttled")), "{j}");
    assert!(j["error"].as_str().expect("e").contains("challenges asked"));
    for from in ["127.0.0.6", "127.0.0.7", "127.0.0.8"] {
        let (s, j, _) = ask(from, json!(codes[2])).await;
        assert_eq!(
            (s, j["reason"].as_str()),
            (503, Some("challenges_full")),
            "{j}"
        );
    }
    let said = c
        .log()
        .lines()
        .filter(|l| l.contains("too many attestation challenges are outstanding;"))
        .count();
    assert_eq!(said, 1, "{}", c.log());
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

// ---------------------------------------------------------------------------------------
// (f) What an activation code alone gets.

/// Activates `code` from `computer` with `itn`/`iec` as `client`.
async fn activate_from(
    client: &reqwest::Client,
    c: &CentreServer,
    code: &str,
    itn: Option<&str>,
    iec: Option<&str>,
    computer: &str,
) -> (u16, Value) {
    let (s, j, _) = post_from(
        client,
        c,
        "/centre/v1/activate",
        json!({"code": code, "itn": itn, "iec": iec, "binding": {"computer": computer}}),
    )
    .await;
    (s, j)
}

/// Whoever holds only an activated code (a leaked one, say) learns neither where it is bound
/// nor the licence, its ITN or IEC: activating it from elsewhere, from its binding without the
/// ITN and IEC, or with wrong ones, all get one answer, which names nothing. The binding with
/// the ITN and IEC it was activated for still gets the same licence again (offline
/// re-requests, the demo).
#[tokio::test]
async fn an_activated_code_alone_learns_nothing() {
    let c = centre(None, &["--proof-max-failures", "100"]).await;
    let home = "H".repeat(40);
    let code = c.code(json!({"key_id": "672B", "licence_count": 2})).await;
    let owner = client_from("127.0.0.2");
    let (s, first) = activate_from(&owner, &c, &code, Some(ITN), Some(IEC), &home).await;
    assert_eq!(s, 200, "{first}");

    let thief = client_from("127.0.0.3");
    let (s, refusal) = activate_from(&thief, &c, &code, None, None, &"X".repeat(40)).await;
    assert_eq!(
        (s, refusal["reason"].as_str()),
        (409, Some("already_activated")),
        "{refusal}"
    );
    let text = refusal.to_string();
    for secret in [home.as_str(), ITN, IEC, &code, &code.replace('-', "")] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(refusal.get("licence").is_none());
    // From the binding (guessed), without or with wrong ITN/IEC: the very same answer.
    for (itn, iec) in [
        (None, None),
        (Some(ITN), None),
        (None, Some(IEC)),
        (Some("7707083894"), Some(IEC)),
        (Some(ITN), Some("770701002")),
    ] {
        let (s, j) = activate_from(&thief, &c, &code, itn, iec, &home).await;
        assert_eq!((s, &j), (409, &refusal), "{itn:?} {iec:?}");
    }
    // The owner again, from another client: the same licence, byte for byte.
    let (s, again) = activate_from(
        &client_from("127.0.0.4"),
        &c,
        &code,
        Some(ITN),
        Some(IEC),
        &home,
    )
    .await;
    assert_eq!((s, &again), (200, &first));

    // A code activated without an ITN: again only without one.
    let bare = c.code(json!({"key_id": "672B", "licence_count": 1})).await;
    let (s, first) = activate_from(&owner, &c, &bare, None, None, &home).await;
    assert_eq!(s, 200);
    let (s, j) = activate_from(&thief, &c, &bare, Some(ITN), None, &home).await;
    assert_eq!((s, &j), (409, &refusal));
    let (s, again) = activate_from(&owner, &c, &bare, None, None, &home).await;
    assert_eq!((s, &again), (200, &first));
}

/// Those refusals are failed proofs: counted against the client and against the code, like
/// a wrong code or ITN.
#[tokio::test]
async fn activating_an_activated_code_elsewhere_is_a_failed_proof() {
    let c = centre(None, &["--proof-max-failures", "3"]).await;
    let (taken, _) = activated(&c, Some(ITN), None, 3, &"A".repeat(40)).await;
    // Per client: three tries at someone else's code, then even its own new code waits.
    let thief = client_from("127.0.0.2");
    for _ in 0..3 {
        let (s, j) = activate_from(&thief, &c, &taken, None, None, &"X".repeat(40)).await;
        assert_eq!(s, 409, "{j}");
    }
    let own = c.code(json!({"key_id": "672B", "licence_count": 1})).await;
    let (s, j) = activate_from(&thief, &c, &own, None, None, &"X".repeat(40)).await;
    assert_eq!((s, j["reason"].as_str()), (429, Some("throttled")), "{j}");
    assert!(
        j["error"].as_str().expect("e").contains("this address"),
        "{j}"
    );

    // Per code: three clients try one code from its binding without the ITN; then the code
    // is locked for its window, its owner included.
    let (other, _) = activated(&c, Some(ITN), None, 3, &"B".repeat(40)).await;
    for ip in ["127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        let (s, _) = activate_from(&client_from(ip), &c, &other, None, None, &"B".repeat(40)).await;
        assert_eq!(s, 409);
    }
    let (s, j) = activate_from(
        &client_from("127.0.0.6"),
        &c,
        &other,
        Some(ITN),
        None,
        &"B".repeat(40),
    )
    .await;
    assert_eq!((s, j["reason"].as_str()), (429, Some("throttled")), "{j}");
    assert!(
        j["error"]
            .as_str()
            .expect("e")
            .contains("this activation code"),
        "{j}"
    );
}

// ---------------------------------------------------------------------------------------
// (g) Requests that cannot become a licence change nothing.

/// A ComputerID a licence cannot carry (empty, over 128 characters) is a 400 that leaves the
/// code unused and its KeyNo unassigned, and a restore to one costs no restore.
#[tokio::test]
async fn invalid_bindings_spend_nothing() {
    let c = centre(None, &[]).await;
    let code = c.code(json!({"key_id": "672B", "licence_count": 1})).await;
    for computer in [String::new(), "C".repeat(129), "C".repeat(200)] {
        let (s, j) = c
            .post(
                "/centre/v1/activate",
                json!({"code": code, "itn": ITN, "binding": {"computer": computer}}),
                false,
            )
            .await;
        assert_eq!((s, j["reason"].as_str()), (400, Some("invalid")), "{j}");
    }
    let (s, j) = c
        .post(
            "/centre/v1/activate",
            json!({"code": code, "itn": ITN, "binding": {"device": 0}}),
            false,
        )
        .await;
    assert_eq!((s, j["reason"].as_str()), (400, Some("invalid")), "{j}");
    let listed = stdout(&c.cli(&["centre", "code-list"]));
    assert!(listed.contains("\tnew"), "{listed}");
    // Still unused: a proper activation gets it, with the series' first KeyNo.
    let (s, j) = c
        .post(
            "/centre/v1/activate",
            json!({"code": code, "itn": ITN, "binding": {"computer": "A".repeat(128)}}),
            false,
        )
        .await;
    assert_eq!(s, 200, "{j}");
    let (_, key_no) = {
        let doc = keybridge::crypto::unb64(j["licence"].as_str().expect("l")).expect("b64");
        let env: Value = serde_json::from_slice(&doc).expect("env");
        let t: Value = serde_json::from_slice(
            &keybridge::crypto::unb64(env["payload"].as_str().expect("p")).expect("b64"),
        )
        .expect("terms");
        ((), t["key_no"].as_u64().expect("key_no"))
    };
    assert_eq!(key_no, FIRST);

    // A restore to an impossible ComputerID: 400, and no restore is used up.
    let (code, key_no) = activated(&c, Some(ITN), None, 1, &"B".repeat(40)).await;
    for computer in [String::new(), "C".repeat(200)] {
        let (s, j) = c
            .post(
                "/centre/v1/restore",
                json!({"key_id": "672B", "key_no": key_no, "code": code, "itn": ITN, "binding": {"computer": computer}}),
                false,
            )
            .await;
        assert_eq!((s, j["reason"].as_str()), (400, Some("invalid")), "{j}");
    }
    let listed = stdout(&c.cli(&["centre", "code-list"]));
    assert!(!listed.contains("restored 1"), "{listed}");
    let (s, j) = c
        .post(
            "/centre/v1/restore",
            json!({"key_id": "672B", "key_no": key_no, "code": code, "itn": ITN, "binding": {"computer": "D".repeat(40)}}),
            false,
        )
        .await;
    assert_eq!(s, 200, "the one restore is still there: {j}");
    // The vendor's move checks the same, and writes nothing.
    let dir = tempfile::tempdir().expect("tmp");
    let moved = dir.path().join("moved.licence");
    let out = c.cli(&[
        "centre",
        "licence-move",
        "--key-id",
        "672B",
        "--key-no",
        &key_no.to_string(),
        "--computer",
        &"E".repeat(200),
        "--out",
        moved.to_str().expect("p"),
    ]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("1-128"), "{}", stdout(&out));
    assert!(!moved.exists());
    let listed = stdout(&c.cli(&["centre", "code-list"]));
    assert!(
        listed.contains("restored 1 time(s)") && !listed.contains("restored 2"),
        "{listed}"
    );
}

// ---------------------------------------------------------------------------------------
// (h) Secrets at rest: the log and the vendor's files.

/// Failed proofs are logged with the client and the code's last group, never the code; and
/// no answer echoes a code.
#[tokio::test]
async fn codes_never_reach_the_log() {
    let c = centre(None, &[]).await;
    let (taken, key_no) = activated(&c, Some(ITN), None, 3, &"A".repeat(40)).await;
    let reserved = c
        .code(json!({"key_id": "672B", "licence_count": 1, "itn": ITN}))
        .await;
    let unknown = a_code();
    let tries = [
        (
            "/centre/v1/activate",
            json!({"code": unknown, "binding": {"computer": "X".repeat(40)}}),
            404,
        ),
        (
            "/centre/v1/activate",
            json!({"code": reserved, "itn": "7707083894", "binding": {"computer": "X".repeat(40)}}),
            403,
        ),
        (
            "/centre/v1/activate",
            json!({"code": taken, "binding": {"computer": "X".repeat(40)}}),
            409,
        ),
        (
            "/centre/v1/licence",
            json!({"key_id": "672B", "key_no": key_no, "code": taken}),
            404,
        ),
        (
            "/centre/v1/restore",
            json!({"key_id": "672B", "key_no": key_no, "code": taken, "itn": "7707083894", "binding": {"computer": "X".repeat(40)}}),
            404,
        ),
    ];
    let codes = [&taken, &reserved, &unknown];
    for (path, body, status) in tries {
        let (s, j) = c.post(path, body, false).await;
        assert_eq!(s, status, "{path}: {j}");
        for code in codes {
            assert!(
                !j.to_string().contains(code.as_str()),
                "{path} echoes the code: {j}"
            );
        }
    }
    // The log is written as it happens; give the last line a moment.
    let mut log = String::new();
    for _ in 0..50 {
        log = c.log();
        if log.matches("failed proof").count() >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(log.matches("failed proof").count(), 5, "{log}");
    for code in codes {
        let digits = code.replace('-', "");
        for secret in [code.as_str(), &digits, &code[..19], &digits[..16]] {
            assert!(!log.contains(secret), "{secret} in the log:\n{log}");
        }
        let tail = &code[20..];
        assert!(
            log.contains(&format!("****-****-****-****-{tail}")),
            "{log}"
        );
    }
}

/// `centre fulfil` and `centre licence-move` write licence files — which carry the code, ITN
/// and IEC — for the vendor's user alone.
#[tokio::test]
async fn vendor_licence_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let c = centre(None, &[]).await;
    let dir = tempfile::tempdir().expect("tmp");
    let code = c.code(json!({"key_id": "672B", "licence_count": 1})).await;
    let request = dir.path().join("request.json");
    let body = json!({
        "format": keybridge::centre::wire::REQUEST_FORMAT,
        "code": code, "itn": ITN, "binding": {"computer": "A".repeat(40)},
    });
    std::fs::write(&request, body.to_string()).expect("request");
    let granted = dir.path().join("granted.licence");
    let out = c.cli(&[
        "centre",
        "fulfil",
        request.to_str().expect("p"),
        "--out",
        granted.to_str().expect("p"),
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    let moved = dir.path().join("moved.licence");
    let out = c.cli(&[
        "centre",
        "licence-move",
        "--key-id",
        "672B",
        "--key-no",
        &FIRST.to_string(),
        "--computer",
        &"B".repeat(40),
        "--out",
        moved.to_str().expect("p"),
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    for f in [&granted, &moved] {
        let text = std::fs::read_to_string(f).expect("licence");
        assert!(text.contains("keybridge-licence/2"), "{text}");
        let mode = std::fs::metadata(f).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
}

// ---------------------------------------------------------------------------------------
// (i) The database connection.

/// A PostgreSQL URL off this machine without `sslmode=verify-full` is warned about at start
/// (the connection still goes ahead: existing deployments keep working); a loopback one is not.
#[tokio::test]
async fn unverified_postgres_tls_is_warned_about() {
    let dir = tempfile::tempdir().expect("tmp");
    let run = |url: &str| {
        std::process::Command::new(common::BIN)
            .args(["centre", "code-list", "--data"])
            .arg(dir.path().join("c"))
            .env("KEYBRIDGE_CENTRE_DATABASE", url)
            .env_remove("RUST_LOG")
            .env_remove("PGSSLMODE")
            .output()
            .expect("run")
    };
    // `.invalid` never resolves, so nothing is reached; the warning comes before connecting.
    for mode in [
        "",
        "?sslmode=prefer",
        "?sslmode=require",
        "?sslmode=verify-ca",
    ] {
        let out = run(&format!("postgres://centre:pw@db.invalid/centre{mode}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains("WARN") && err.contains("sslmode=verify-full&sslrootcert="),
            "{mode}: {err}"
        );
        assert!(!err.contains(":pw@"), "{err}");
    }
    let out = run("postgres://centre@db.invalid/centre?sslmode=verify-full");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains("WARN"), "{err}");
    assert!(
        err.contains("db.invalid") || err.contains("lookup"),
        "it did try: {err}"
    );
}

// ---------------------------------------------------------------------------------------
// The vendor's input.

/// What the vendor asks for is checked when it is asked, with the limits licences have: a
/// code whose licence could not be made, or a series whose KeyNos would overflow, is a 400
/// (HTTP) or a refusal (CLI), not a code that fails at every activation.
#[tokio::test]
async fn vendor_input_is_checked() {
    let c = centre(None, &[]).await;
    let refused = |(s, j): (u16, Value), says: &str| {
        assert_eq!((s, j["reason"].as_str()), (400, Some("invalid")), "{j}");
        assert!(j["error"].as_str().expect("e").contains(says), "{j}");
    };
    let codes = |extra: Value| {
        let mut body = json!({"key_id": "672B", "licence_count": 1});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let c = &c;
        async move { c.post("/centre/v1/codes", body, true).await }
    };
    for n in [4_294_967_295u64, 1_000_001] {
        refused(codes(json!({"licence_count": n})).await, "LicenceCount");
    }
    refused(
        codes(json!({"period_days": 4_294_967_295u64})).await,
        "Period",
    );
    refused(codes(json!({"period_days": 36_526})).await, "Period");
    // The limits themselves are accepted, and such a code activates.
    let (s, j) = codes(json!({"licence_count": 1_000_000, "period_days": 36_525})).await;
    assert_eq!(s, 201, "{j}");
    let (s, j) = c
        .post(
            "/centre/v1/activate",
            json!({"code": j["code"], "binding": {"computer": "C".repeat(40)}}),
            false,
        )
        .await;
    assert_eq!(s, 200, "{j}");
    // The CLI says the same.
    let out = c.cli(&[
        "centre",
        "code-issue",
        "--key-id",
        "672B",
        "--count",
        "4294967295",
    ]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("LicenceCount"), "{}", stdout(&out));

    // First KeyNos: 0, and any that leaves less than 10^9 below i64::MAX, are refused (not
    // silently replaced).
    let max = i64::MAX as u64 - 1_000_000_000;
    for (id, first) in [
        ("Z0", 0),
        ("Z1", u64::MAX),
        ("Z2", i64::MAX as u64),
        ("Z3", max + 1),
    ] {
        let (s, j) = c
            .post(
                "/centre/v1/products",
                json!({"key_id": id, "product_name": "X", "first_key_no": first}),
                true,
            )
            .await;
        refused((s, j), "first_key_no");
    }
    let out = c.cli(&[
        "centre",
        "product-add",
        "--key-id",
        "Z4",
        "--name",
        "X",
        "--article",
        "1",
        "--article-name",
        "X",
        "--first-key-no",
        "9223372036854775807",
    ]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("first_key_no"), "{}", stdout(&out));
    // The highest allowed first KeyNo works, activation after activation.
    let (s, j) = c
        .post(
            "/centre/v1/products",
            json!({"key_id": "TOP", "product_name": "X", "first_key_no": max}),
            true,
        )
        .await;
    assert_eq!(s, 201, "{j}");
    for k in 0..2 {
        let code = c.code(json!({"key_id": "TOP", "licence_count": 1})).await;
        let (s, j) = c
            .post(
                "/centre/v1/activate",
                json!({"code": code, "binding": {"computer": "T".repeat(40)}}),
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
        assert_eq!(terms["key_no"].as_u64(), Some(max + k));
    }
}

/// A database error's text (table names, values, connection details) stays in the log: the
/// answer is a plain 500 "internal error". Forced with a series whose KeyNo counter an older
/// version let overflow (written into the database behind the centre's back).
#[tokio::test]
async fn database_errors_are_not_answered() {
    let c = centre(None, &[]).await;
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&keybridge::centre::sqlite_url(&c.data.join("centre.db")))
        .await
        .expect("open the centre's database");
    sqlx::query("UPDATE products SET next_key_no = 9223372036854775807 WHERE key_id = '672B'")
        .execute(&db)
        .await
        .expect("update");
    db.close().await;
    let code = c.code(json!({"key_id": "672B", "licence_count": 1})).await;
    let (s, j) = c
        .post(
            "/centre/v1/activate",
            json!({"code": code, "binding": {"computer": "D".repeat(40)}}),
            false,
        )
        .await;
    assert_eq!(
        (s, &j),
        (
            500,
            &json!({"error": "internal error", "reason": "internal"})
        )
    );
    assert!(c.log().contains("centre: database"), "{}", c.log());
}
