//! Attacks on the host's API as an outsider with (or without) API credentials would make
//! them: the signing oracle, every route under every method, malformed parameters. Each
//! runs against the real binary; signatures are checked with the `rsa` crate, `openssl` and
//! `keybridge verify`.

mod common;
use common::*;
use serde_json::{json, Value};

/// A made-up licence answer an attacker would like signed.
const FORGED_BODY: &str = r#"{"KeyNo":7131766,"LicenceCount":100000,"Workable":true}"#;
const PREFIX: &str = "20240101120000";

/// A request (path with query, body) and what its refusal must name.
type Case = (String, Option<Vec<u8>>, &'static [&'static str]);

fn mem() -> String {
    format!("/api/licences/{SOFTWARE_KEY}/memory")
}

async fn memory_value(s: &Server) -> Value {
    s.get(&mem()).await.json()["Value"].clone()
}

/// The attack that signed anything: a memory write answered 202 with an empty body, so its
/// signature covered the client's QueryID alone — and that QueryID was the made-up response.
#[tokio::test]
async fn the_signing_oracle_is_closed() {
    let s = Server::demo().await;
    assert_eq!(s.post(&mem(), json!({"Value": "before"})).await.status, 202);
    let forged_q = format!("{PREFIX}{FORGED_BODY}");

    // 1. The forged QueryID is refused before anything runs: a 400 in the error format,
    //    signed over the body alone, the QueryID not echoed, nothing written.
    let r = s
        .raw(
            "POST",
            &mem(),
            Some(br#"{"Value":"pwned"}"#.to_vec()),
            Some((USER, PASS)),
            &[("Licence-QueryID", &forged_q)],
        )
        .await;
    r.assert_error(400, "EBadRequest");
    let msg = r.json()["Message"].as_str().expect("Message").to_owned();
    assert!(msg.contains("Licence-QueryID"), "{msg}");
    // It advises a value nobody can guess in advance (a predictable QueryID lets anyone with
    // the credentials collect signed answers for it beforehand), not the bare time.
    assert!(
        msg.contains("random") && !msg.contains("is a good one"),
        "{msg}"
    );
    assert_eq!(r.header("licence-queryid"), None);
    assert!(s.signature_ok(&r, b""), "the 400 is signed over its body");
    assert!(!s.signature_ok(&r, forged_q.as_bytes()));
    assert_eq!(memory_value(&s).await, "before", "the refused write wrote");
    let sig400 = r.header("licence-signature").expect("sig");

    // 2. A valid QueryID: the 202 carries our JSON, so the signature covers QueryID ‖ that.
    let r = s
        .request(
            "POST",
            &mem(),
            Some(json!({"Value": "legit"})),
            Some((USER, PASS)),
            Some(PREFIX),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        r.json(),
        json!({"Code": 202, "Text": "Updated", "Command": "WriteMemory", "KeyNo": SOFTWARE_KEY})
    );
    assert!(r.body.starts_with(b"{"));
    let sig202 = r.header("licence-signature").expect("sig");
    let genuine = [PREFIX.as_bytes(), &r.body].concat();
    assert!(openssl_verify(&s.public_key, &genuine, &sig202));
    let headers = saved_headers(202, Some(PREFIX), &sig202);
    let (code, out) = s.cli_verify(&headers, &r.body);
    assert_eq!(code, Some(0), "{out}");

    // 3. The made-up response — QueryID PREFIX, body FORGED_BODY — verifies under neither
    //    signature, with no implementation; nor does the old attack's QueryID-only message.
    let made_up = format!("{PREFIX}{FORGED_BODY}");
    for sig in [&sig202, &sig400] {
        assert!(!rsa_verify(&s.public_key, made_up.as_bytes(), sig));
        assert!(!openssl_verify(&s.public_key, made_up.as_bytes(), sig));
        let (code, out) = s.cli_verify(
            &saved_headers(202, Some(PREFIX), sig),
            FORGED_BODY.as_bytes(),
        );
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains("does NOT verify"), "{out}");
    }

    // 4. keybridge verify refuses what no client could legitimately get, before the
    //    signature: a QueryID outside the alphabet, an empty body, a body that is not ours.
    let (code, out) = s.cli_verify(&saved_headers(202, Some(&forged_q), &sig202), b"");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("refused: the QueryID"), "{out}");
    let (code, out) = s.cli_verify(&saved_headers(202, Some(PREFIX), &sig202), b"");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("refused: the body is empty"), "{out}");
    let (code, out) = s.cli_verify(&saved_headers(202, None, &sig202), &genuine);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("refused: the body is neither"), "{out}");

    // 5. Two QueryIDs in one request: refused, not echoed, nothing written.
    let r = s
        .raw(
            "POST",
            &mem(),
            Some(br#"{"Value":"twice"}"#.to_vec()),
            Some((USER, PASS)),
            &[("Licence-QueryID", "a1"), ("Licence-QueryID", "b2")],
        )
        .await;
    r.assert_error(400, "EBadRequest");
    assert_eq!(r.header("licence-queryid"), None);
    assert!(s.signature_ok(&r, b""));
    assert_eq!(memory_value(&s).await, "legit");
}

/// Every path of `GET /api`'s list (with real and unknown KeyNos and IDs), unknown paths,
/// every method, with and without credentials: every answer but HEAD's has a non-empty body
/// of ours — the error format for errors — signed over QueryID ‖ body with the QueryID echoed
/// as sent; HEAD answers carry no body and no signature.
#[tokio::test]
async fn every_route_and_method_answers_signed_json() {
    let s = Server::demo().await;
    let urns: Vec<String> = s.get("/api").await.json()["Urns"]
        .as_array()
        .expect("Urns")
        .iter()
        .map(|u| u.as_str().expect("urn").to_owned())
        .collect();
    assert_eq!(urns.len(), 10, "{urns:?}");
    let opened = s
        .post(
            "/api/sessions",
            json!({"KeyID": KEY_ID, "ClientSessionID": "walk", "AppName": "t"}),
        )
        .await;
    assert_eq!(opened.status, 201);
    let sessions = s.get("/api/sessions").await.json();
    let sid = sessions["Sessions"][0]["ID"]
        .as_str()
        .expect("ID")
        .to_owned();
    let connections = s.get("/api/connections").await.json();
    let cid = connections["Connections"][0]["ID"]
        .as_str()
        .expect("ID")
        .to_owned();

    let mut paths: Vec<String> = Vec::new();
    for urn in &urns {
        if urn.contains("{KeyNo}") {
            for k in [
                SOFTWARE_KEY.to_string(),
                USB_KEY.to_string(),
                "99".into(),
                "abc".into(),
            ] {
                paths.push(urn.replace("{KeyNo}", &k));
            }
        } else if urn.contains("{ID}") {
            let real = if urn.contains("sessions") { &sid } else { &cid };
            for id in [real.as_str(), "nope"] {
                paths.push(urn.replace("{ID}", id));
            }
        } else {
            paths.push(urn.clone());
        }
    }
    for p in [
        "/api",
        "/api/",
        "/api/someurl",
        "/api/licences/1/memory/x",
        "/elsewhere",
        "/",
    ] {
        paths.push(p.into());
    }

    let methods = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "FROB",
    ];
    let mut seen = std::collections::BTreeSet::new();
    let mut n = 0;
    for path in &paths {
        for method in methods {
            for auth in [Some((USER, PASS)), None] {
                n += 1;
                let q = format!("q-{n}");
                let r = s
                    .raw(method, path, None, auth, &[("Licence-QueryID", &q)])
                    .await;
                let what = format!("{method} {path} (auth: {}) → {}", auth.is_some(), r.status);
                seen.insert(r.status);
                assert_eq!(
                    r.header("licence-queryid").as_deref(),
                    Some(q.as_str()),
                    "{what}"
                );
                assert!(r.header("licence-serverversion").is_some(), "{what}");
                if method == "HEAD" {
                    assert!(r.body.is_empty(), "{what}");
                    assert_eq!(r.header("licence-signature"), None, "{what}");
                    assert_eq!(r.header("licence-querysignature"), None, "{what}");
                    continue;
                }
                assert!(!r.body.is_empty(), "{what}: empty body");
                assert!(s.signature_ok(&r, q.as_bytes()), "{what}: bad signature");
                assert_eq!(
                    r.header("licence-querysignature"),
                    r.header("licence-signature"),
                    "{what}"
                );
                // Issue 12: `/` is the web console, signed like everything else but HTML
                // (tests/console.rs).
                if path == "/" {
                    continue;
                }
                if path == "/api/publickey" && r.status == 200 {
                    assert!(r.body.starts_with(b"-----BEGIN PUBLIC KEY-----"), "{what}");
                    continue;
                }
                let j: Value = serde_json::from_slice(&r.body)
                    .unwrap_or_else(|e| panic!("{what}: not JSON ({e})"));
                assert!(j.is_object(), "{what}: {j}");
                if r.status >= 400 {
                    assert_eq!(j["Code"], r.status, "{what}: {j}");
                    assert!(j["Text"].is_string(), "{what}: {j}");
                    let exc = j["Exception"].as_str().expect("Exception");
                    assert!(exc.starts_with('E'), "{what}: {j}");
                    assert!(
                        j["Message"].as_str().is_some_and(|m| m.contains(exc)),
                        "{what}: {j}"
                    );
                    assert_eq!(j.as_object().map(|o| o.len()), Some(4), "{what}: {j}");
                }
                if r.status == 405 {
                    assert_eq!(j["Exception"], "EHTTPMethodNotAllowed", "{what}");
                    assert!(r.header("allow").is_some(), "{what}");
                }
                if r.status == 401 {
                    assert!(auth.is_none(), "{what}: the right password was refused");
                }
            }
        }
    }
    // The walk reached every kind of answer it is meant to check.
    for status in [200, 202, 400, 401, 404, 405] {
        assert!(seen.contains(&status), "no {status} among {seen:?}");
    }
}

/// Malformed parameters: each is a 400 (413 for a body too large) in the error format that
/// names the problem, and none changes anything.
#[tokio::test]
async fn malformed_parameters_are_refused_and_change_nothing() {
    let s = Server::demo().await;
    assert_eq!(s.post(&mem(), json!({"Value": "keep"})).await.status, 202);
    let m = mem();
    let cases: Vec<Case> = vec![
        (
            format!("{m}?Value=%zz"),
            None,
            &["Value", "percent-encoding", "%zz"],
        ),
        (format!("{m}?Value=%"), None, &["Value", "percent-encoding"]),
        (format!("{m}?Value=%e0%80"), None, &["Value", "not UTF-8"]),
        (
            format!("{m}?Va%zzlue=x"),
            None,
            &["Va%zzlue", "percent-encoding"],
        ),
        (
            format!("{m}?Value=a&Value=a"),
            None,
            &["Value", "twice in the query string"],
        ),
        (
            format!("{m}?Value=a"),
            Some(br#"{"Value":"a"}"#.to_vec()),
            &["Value", "both in the query string and in the body"],
        ),
        (
            m.clone(),
            Some(br#"{"Value":"a","Value":"b"}"#.to_vec()),
            &["\"Value\" is given twice"],
        ),
        (
            m.clone(),
            Some(b"{\"Value\":\"\xff\"}".to_vec()),
            &["not UTF-8"],
        ),
        (
            m.clone(),
            Some(br#"{"Vaule":"x"}"#.to_vec()),
            &["\"Vaule\"", "Did you mean Value?"],
        ),
        (
            format!("{m}?Pasword=&Value=x"),
            None,
            &["\"Pasword\"", "Did you mean Password?"],
        ),
        (
            m.clone(),
            Some(br#"{"Value":true}"#.to_vec()),
            &["Value", "must be a string"],
        ),
        (
            m.clone(),
            Some(b"{\"Value\":".to_vec()),
            &["not valid JSON"],
        ),
        (m.clone(), Some(b"[\"Value\"]".to_vec()), &["JSON object"]),
    ];
    for (path, body, needles) in &cases {
        let r = s
            .raw("POST", path, body.clone(), Some((USER, PASS)), &[])
            .await;
        let what = format!(
            "POST {path} {:?}",
            body.as_deref().map(String::from_utf8_lossy)
        );
        assert!(s.signature_ok(&r, b""), "{what}");
        r.assert_error(400, "EBadRequest");
        let msg = r.json()["Message"].as_str().expect("Message").to_owned();
        for n in *needles {
            assert!(msg.contains(n), "{what}: {msg:?} does not name {n:?}");
        }
        assert_eq!(memory_value(&s).await, "keep", "{what} changed the memory");
    }

    // Too large: 413 in the error format.
    let big = format!(r#"{{"Value":"{}"}}"#, "x".repeat(70 * 1024));
    let r = s
        .raw("POST", &m, Some(big.into_bytes()), Some((USER, PASS)), &[])
        .await;
    assert!(s.signature_ok(&r, b""));
    r.assert_error(413, "EHTTPPayloadTooLarge");
    assert_eq!(memory_value(&s).await, "keep");

    // Reads and other endpoints are as strict.
    let r = s.get(&format!("{m}?Pasword=")).await;
    r.assert_error(400, "EBadRequest");
    assert!(r.json()["Message"]
        .as_str()
        .expect("m")
        .contains("Did you mean Password?"));
    let r = s.get("/api/licences?Foo=1").await;
    r.assert_error(400, "EBadRequest");
    assert!(r.json()["Message"]
        .as_str()
        .expect("m")
        .contains("takes no parameter"));
    s.call("DELETE", &format!("{m}?Password=x"), None)
        .await
        .assert_error(400, "EBadRequest");
    assert_eq!(memory_value(&s).await, "keep", "a refused reset reset");

    // Numbers out of range or in the wrong form are refused, naming the parameter; no
    // session is opened.
    for key_no in [
        "-1",
        "1.5",
        "\"+5\"",
        "18446744073709551616",
        "0",
        "\"7e6\"",
    ] {
        let body = format!(
            r#"{{"KeyID":"{KEY_ID}","ClientSessionID":"n","AppName":"t","KeyNo":{key_no}}}"#
        );
        let r = s
            .raw(
                "POST",
                "/api/sessions",
                Some(body.into_bytes()),
                Some((USER, PASS)),
                &[],
            )
            .await;
        assert!(s.signature_ok(&r, b""));
        r.assert_error(400, "EBadRequest");
        assert!(
            r.json()["Message"].as_str().expect("m").contains("KeyNo"),
            "{key_no}: {}",
            r.json()
        );
    }
    let r = s
        .post(
            "/api/licences",
            json!({"ActivationCodeString": "x", "BlankKeyNo": 0}),
        )
        .await;
    r.assert_error(400, "EBadRequest");
    assert!(r.json()["Message"]
        .as_str()
        .expect("m")
        .contains("BlankKeyNo"));
    assert_eq!(s.get("/api/sessions").await.json()["Sessions"], json!([]));

    // Path segments: not UTF-8, signed, not a number.
    for p in [
        "/api/licences/%ff",
        "/api/licences/+5",
        "/api/licences/%2B5/memory",
    ] {
        let r = s.get(p).await;
        r.assert_error(400, "EBadRequest");
    }

    // What is allowed still works: the lists' paging names, a body with a byte-order mark
    // (1C writes one), and a query string with '+' for a space.
    assert_eq!(s.get("/api/sessions?Offset=0&Limit=10").await.status, 200);
    assert_eq!(
        s.get("/api/connections?Offset=0&Limit=10").await.status,
        200
    );
    let r = s
        .raw(
            "POST",
            &m,
            Some(b"\xEF\xBB\xBF{\"Value\":\"bom\"}".to_vec()),
            Some((USER, PASS)),
            &[],
        )
        .await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(memory_value(&s).await, "bom");
    assert_eq!(
        s.call("POST", &format!("{m}?Value=a+b%2B"), None)
            .await
            .status,
        202
    );
    assert_eq!(memory_value(&s).await, "a b+");
}
