//! The centre's OpenAPI description against what it serves: every route in the centre's code
//! (`.route("…")` in `src/centre/`; the account API's, nested under its base path, at the
//! default one) is documented with exactly the methods it serves (asked of
//! the running centre through a 405's `Allow`), and every documented operation is served. Also
//! the interactive page: vendored Swagger UI, offline, with Basic authentication.

mod common;

use common::centre::CentreServer;
use serde_json::Value;
use std::collections::BTreeSet;

/// The API page and the description itself are not part of the API they describe.
fn is_docs(path: &str) -> bool {
    path.starts_with("/centre/docs") || path == "/centre/v1/openapi.json"
}

/// Every `.route("PATH", …)` in the centre's source; the account API's, nested under its
/// base path, at the default one.
fn routes_in_source() -> BTreeSet<String> {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src/centre"));
    let out: BTreeSet<String> = common::route_literals(dir)
        .into_iter()
        .map(|(file, path)| {
            // OpenAPI has no catch-all segment: `{*x}` is documented as `{x}`.
            let path = path.replace("{*", "{");
            if file.ends_with("accounts/http.rs") && !path.starts_with("/centre/") {
                format!("/a/adm/hs/ext_api{path}")
            } else {
                path
            }
        })
        .filter(|p| !is_docs(p))
        .collect();
    assert!(out.len() >= 10, "found too few routes: {out:?}");
    out
}

#[tokio::test]
async fn every_served_route_is_documented_and_every_documented_route_is_served() {
    let c = CentreServer::start().await;
    let (s, doc) = c.get("/centre/v1/openapi.json", None).await;
    assert_eq!(s, 200);
    assert!(
        doc["openapi"].as_str().expect("version").starts_with("3."),
        "OpenAPI 3"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["basic"]["scheme"],
        "basic"
    );
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("ops").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.insert((path.clone(), method.to_uppercase()));
            }
        }
    }
    // What the centre serves, per route: the methods its 405 allows.
    let mut served = BTreeSet::new();
    for route in routes_in_source() {
        let r = c
            .client
            .request(
                reqwest::Method::from_bytes(b"PATCH").expect("m"),
                format!("{}{}", c.base, common::concrete(&route)),
            )
            .basic_auth("admin", Some("admin"))
            .send()
            .await
            .expect("send");
        assert_eq!(
            r.status().as_u16(),
            405,
            "{route} is not served (or serves PATCH)"
        );
        let allow = r.headers()["allow"].to_str().expect("allow").to_owned();
        for m in allow.split(',').map(str::trim).filter(|m| *m != "HEAD") {
            served.insert((route.clone(), m.to_owned()));
        }
    }
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not documented: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "documented but not served: {unserved:?}"
    );
    // And each documented operation reaches its handler, not the fallback.
    for (path, method) in &documented {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("m");
        let (s, _, body) = c
            .raw(
                method,
                &common::concrete(path),
                (m == reqwest::Method::POST).then_some(b"{}".as_slice()),
                Some("q"),
            )
            .await;
        let j: Value = serde_json::from_slice(&body).unwrap_or_default();
        let fallback = j["reason"] == "not_found"
            || j["general"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("no such path"));
        assert!(s != 405 && !fallback, "{method} {path}: {s} {j}");
    }
    for op in ["/centre/v1/releases/available", "/centre/v1/releases"] {
        assert!(
            doc["paths"][op]["post"]["requestBody"].is_object(),
            "{op} documents its body"
        );
    }
    assert_eq!(
        doc["paths"]["/centre/v1/releases"]["post"]["security"][0]["basic"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn the_api_page_is_vendored_and_offers_basic_login() {
    let c = CentreServer::start().await;
    let r = c
        .client
        .get(format!("{}/centre/docs/", c.base))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/html"));
    let html = r.text().await.expect("html");
    assert!(html.contains("swagger-ui"), "{html}");
    // Everything the page loads comes from the centre itself: it works offline.
    assert!(
        !html.contains("http://") && !html.contains("https://unpkg") && !html.contains("cdn"),
        "{html}"
    );
    for (file, needle) in [
        ("swagger-initializer.js", "/centre/v1/openapi.json"),
        ("swagger-ui-bundle.js", "SwaggerUIBundle"),
        ("swagger-ui.css", ".swagger-ui"),
    ] {
        let r = c
            .client
            .get(format!("{}/centre/docs/{file}", c.base))
            .send()
            .await
            .expect(file);
        assert_eq!(r.status().as_u16(), 200, "{file}");
        let text = r.text().await.expect("text");
        assert!(text.contains(needle), "{file} lacks {needle}");
    }
    let init = c
        .client
        .get(format!("{}/centre/docs/swagger-initializer.js", c.base))
        .send()
        .await
        .expect("init")
        .text()
        .await
        .expect("t");
    assert!(init.contains("tryItOutEnabled"), "{init}");
    let plain = common::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = plain
        .get(format!("{}/centre/docs", c.base))
        .send()
        .await
        .expect("redirect");
    assert_eq!(r.status().as_u16(), 308);
    assert_eq!(r.headers()["location"], "/centre/docs/");
    assert!(
        r.headers().get("licence-signature").is_some(),
        "signed like every answer"
    );
    let (s, _, _) = c
        .raw("GET", "/centre/docs/no-such-file.js", None, Some("q"))
        .await;
    assert_eq!(s, 404);
}
