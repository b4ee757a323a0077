//! The centre's HTTP service, end to end: vendor administration behind credentials, and the
//! host-facing endpoints answering signed.

mod common;
use common::centre::CentreServer;
use common::stdout;
use serde_json::{json, Value};

fn open(c: &CentreServer, licence_b64: &Value) -> keybridge::licence::LicenceTerms {
    let mut trust = keybridge::licence::TrustStore::default();
    trust.add(keybridge::crypto::PublicKey::from_pem(&c.public_key).expect("pem"));
    let doc = keybridge::crypto::unb64(licence_b64.as_str().expect("licence")).expect("b64");
    keybridge::licence::open(&doc, &trust).expect("a valid licence")
}

async fn vendor_administers_and_hosts_activate(c: CentreServer) {
    let product =
        json!({"key_id": "672B", "product_name": "Тестовая серия", "first_key_no": 7131766});
    let (s, _) = c.post("/centre/v1/products", product.clone(), false).await;
    assert_eq!(s, 401);
    let (s, _) = c.post("/centre/v1/products", product.clone(), true).await;
    assert_eq!(s, 201);
    let (s, j) = c.post("/centre/v1/products", product, true).await;
    assert_eq!((s, j["reason"].as_str()), (409, Some("product_exists")));
    let (s, j) = c
        .post(
            "/centre/v1/codes",
            json!({"key_id": "672B", "licence_count": 5, "period_days": 30}),
            true,
        )
        .await;
    assert_eq!(s, 201);
    let code = j["code"].as_str().expect("code").to_owned();

    let act = json!({"code": code, "itn": "1234567890", "iec": null, "binding": {"computer": "A".repeat(40)}});
    let (s, j) = c.post("/centre/v1/activate", act.clone(), false).await;
    assert_eq!(s, 200, "{j}");
    let t = open(&c, &j["licence"]);
    assert_eq!((t.key_no, t.licence_count, t.period), (7_131_766, 5, 30));
    let (s, again) = c.post("/centre/v1/activate", act, false).await;
    assert_eq!((s, &again), (200, &j), "idempotent");
    let other = json!({"code": code, "binding": {"computer": "B".repeat(40)}});
    let (s, j) = c.post("/centre/v1/activate", other, false).await;
    assert_eq!((s, j["reason"].as_str()), (409, Some("already_activated")));
    let (s, j) = c
        .post(
            "/centre/v1/activate",
            json!({"code": "1234-5678-9012-3456-7890", "binding": {"device": 1}}),
            false,
        )
        .await;
    assert_eq!(
        (s, j["reason"].as_str()),
        (400, Some("invalid")),
        "bad check digit"
    );
    let unknown = keybridge::centre::ActivationCode::generate().to_string();
    let (s, j) = c
        .post(
            "/centre/v1/activate",
            json!({"code": unknown, "binding": {"computer": "C".repeat(40)}}),
            false,
        )
        .await;
    assert_eq!((s, j["reason"].as_str()), (404, Some("unknown_code")));

    // The current version and a restore, each with its proof: the code; the code and ITN.
    let (s, j) = c
        .post(
            "/centre/v1/licence",
            json!({"key_id": "672B", "key_no": 7131766, "code": code, "itn": "1234567890"}),
            false,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(open(&c, &j["licence"]).key_no, 7_131_766);
    let (s, j) = c
        .post(
            "/centre/v1/restore",
            json!({"key_id": "672B", "key_no": 7131766, "code": code, "itn": "1234567890",
                   "binding": {"computer": "B".repeat(40)}}),
            false,
        )
        .await;
    assert_eq!(s, 200, "{j}");
    assert!(open(&c, &j["licence"]).recovered);

    // The vendor's listing, over HTTP and on the command line.
    let (s, j) = c.get("/centre/v1/codes", Some("admin")).await;
    assert_eq!(s, 200);
    assert_eq!(j["codes"][0]["state"], "activated");
    assert_eq!(j["codes"][0]["restores"], 1);
    let out = c.cli(&["centre", "code-list"]);
    assert!(stdout(&out).contains("activated"), "{}", stdout(&out));
    assert!(stdout(&out).contains("restored 1 time(s)"));
    let out = c.cli(&["centre", "code-issue", "--key-id", "672B", "--count", "2"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        keybridge::centre::ActivationCode::parse(stdout(&out).trim()).is_ok(),
        "{}",
        stdout(&out)
    );
    let out = c.cli(&["centre", "key-public"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), c.public_key);

    // Malformed JSON is answered in the centre's error format.
    let r = c
        .client
        .post(format!("{}/centre/v1/activate", c.base))
        .body("{\"code\": ")
        .header("content-type", "application/json")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    let j: Value = r.json().await.expect("json error");
    assert_eq!(j["reason"], "invalid");

    // Start and support dates flow into the licence.
    let (s, j) = c.post(
        "/centre/v1/codes",
        json!({"key_id": "672B", "licence_count": 1, "period_days": 10, "start_date": "2030-01-01",
               "support_date": "2026-01-01T00:00:00Z", "support_end_date": "2026-12-31T00:00:00Z", "support_type": 1}),
        true,
    )
    .await;
    assert_eq!(s, 201, "{j}");
    let no_itn_code = j["code"].clone();
    let act = json!({"code": j["code"], "binding": {"computer": "D".repeat(40)}});
    let (_, j) = c.post("/centre/v1/activate", act, false).await;
    let t = open(&c, &j["licence"]);
    assert_eq!(
        t.start_date.map(|d| keybridge::time::format(&d)).as_deref(),
        Some("2030-01-01T00:00:00.000Z")
    );
    assert_eq!((t.support_type, t.period), (Some(1), 10));
    assert!(t.validity(keybridge::time::now()).not_yet_valid);
    let (s, _) = c
        .post(
            "/centre/v1/codes",
            json!({"key_id": "672B", "licence_count": 1, "start_date": "soon"}),
            true,
        )
        .await;
    assert_eq!(s, 400);

    // Failed vendor logins are throttled per client, as on the host: after ten, even the right
    // password is refused for a while.
    for _ in 0..10 {
        assert_eq!(c.get("/centre/v1/codes", Some("guess")).await.0, 401);
    }
    let (s, j) = c.get("/centre/v1/codes", Some("admin")).await;
    assert_eq!(s, 401);
    assert!(
        j["error"]
            .as_str()
            .expect("error")
            .contains("too many failed logins"),
        "{j}"
    );

    // A licence does not move to another USB key by restore.
    let (s, j) = c
        .post(
            "/centre/v1/restore",
            json!({"key_id": "672B", "key_no": 7131766, "code": code, "itn": "1234567890",
                   "binding": {"device": 5}}),
            false,
        )
        .await;
    assert_eq!((s, j["reason"].as_str()), (403, Some("device_not_genuine")));
    // One activated without an ITN is not restored over HTTP: the vendor moves it.
    let (s, j) = c
        .post(
            "/centre/v1/restore",
            json!({"key_id": "672B", "key_no": 7131767, "code": no_itn_code, "itn": "1234567890",
                   "binding": {"computer": "E".repeat(40)}}),
            false,
        )
        .await;
    assert_eq!(
        (s, j["reason"].as_str()),
        (403, Some("restore_needs_vendor")),
        "{j}"
    );
    assert!(j["error"]
        .as_str()
        .expect("e")
        .contains("the vendor can move it"));
    // …which the vendor does on its own machine, writing the licence for the customer.
    let moved = c.data.join("moved.licence");
    let e40 = "E".repeat(40);
    let out = c.cli(&[
        "centre",
        "licence-move",
        "--key-id",
        "672B",
        "--key-no",
        "7131767",
        "--computer",
        &e40,
        "--out",
        moved.to_str().expect("p"),
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    let doc = std::fs::read(&moved).expect("licence");
    let t = open(&c, &serde_json::Value::String(keybridge::crypto::b64(&doc)));
    assert_eq!(
        (t.binding, t.recovered),
        (keybridge::licence::Binding::Computer(e40), true)
    );
    let out = c.cli(&[
        "centre",
        "licence-move",
        "--key-id",
        "672B",
        "--key-no",
        "99",
        "--device",
        "5",
        "--out",
        moved.to_str().expect("p"),
    ]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("no licence 672B.99"),
        "{}",
        stdout(&out)
    );

    // A challenge for a USB key's proof, asked for a code not yet activated: 32 random
    // bytes, fresh each time, with its expiry.
    // (Issued on the centre's machine: the admin login is locked out by now.)
    let out = c.cli(&["centre", "code-issue", "--key-id", "672B", "--count", "1"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let fresh = stdout(&out).trim().to_owned();
    let (s, a) = c
        .post("/centre/v1/challenge", json!({"code": fresh}), false)
        .await;
    assert_eq!(s, 200, "{a}");
    let (_, b) = c
        .post("/centre/v1/challenge", json!({"code": fresh}), false)
        .await;
    assert_eq!(a["challenge"].as_str().expect("hex").len(), 64);
    assert!(hex::decode(a["challenge"].as_str().expect("hex")).is_ok());
    assert_ne!(a["challenge"], b["challenge"]);
    let expires =
        keybridge::time::parse_client(a["expires"].as_str().expect("expires")).expect("a time");
    assert!(expires > keybridge::time::now());
}

#[tokio::test]
async fn centre_on_sqlite() {
    vendor_administers_and_hosts_activate(CentreServer::start().await).await;
}

#[tokio::test]
async fn centre_on_postgres() {
    let Some(url) = common::fresh_postgres("keybridge_http").await else {
        return;
    };
    vendor_administers_and_hosts_activate(CentreServer::start_on(Some(&url)).await).await;
}
