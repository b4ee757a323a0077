//! The host's OpenAPI description against what it serves: every route of the API's router
//! (`.route("…")` in `src/api/`) is documented with exactly the methods it serves (asked of the
//! running host through a 405's `Allow`), and every documented operation is served; every
//! operation documents the QueryID and the signing headers; the interactive page is vendored.

mod common;
use common::*;
use std::collections::BTreeSet;

/// The description, the page and the spec's `GET /api` index are not operations of the API.
fn is_docs(path: &str) -> bool {
    path.starts_with("/api/docs") || path == "/api/openapi.json" || path == "/api/"
}

fn routes_in_source() -> BTreeSet<String> {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api"));
    let out: BTreeSet<String> = route_literals(dir)
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| !is_docs(p))
        .collect();
    assert!(out.len() >= 10, "found too few routes: {out:?}");
    out
}

#[tokio::test]
async fn every_served_route_is_documented_and_every_documented_route_is_served() {
    let s = Server::demo().await;
    let r = s.get("/api/openapi.json").await;
    assert_eq!(r.status, 200);
    s.assert_signed(&r, None);
    let doc = r.json();
    assert!(doc["openapi"].as_str().expect("v").starts_with("3."));
    assert_eq!(
        doc["components"]["securitySchemes"]["basic"]["scheme"],
        "basic"
    );
    assert!(doc["components"]["schemas"]["ErrorBody"]["properties"]["Exception"].is_object());
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("ops") {
            documented.insert((path.clone(), method.to_uppercase()));
            let params = op["parameters"].as_array().expect("parameters");
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == "Licence-QueryID" && p["in"] == "header"),
                "{method} {path} documents the QueryID"
            );
            for (status, resp) in op["responses"].as_object().expect("responses") {
                assert!(
                    resp["headers"]["Licence-Signature"].is_object(),
                    "{method} {path} {status} documents the signature"
                );
            }
        }
    }
    let mut served = BTreeSet::new();
    for route in routes_in_source() {
        let r = s.call("PATCH", &concrete(&route), None).await;
        assert_eq!(r.status, 405, "{route} is not served (or serves PATCH)");
        let allow = r.header("allow").expect("Allow");
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
}

#[tokio::test]
async fn the_api_page_is_vendored_behind_the_login() {
    let s = Server::demo().await;
    let r = s.get("/api/docs/").await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .expect("ct")
        .starts_with("text/html"));
    let page = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        !page.contains("https://"),
        "nothing fetched from elsewhere: {page}"
    );
    let init = s.get("/api/docs/swagger-initializer.js").await;
    assert_eq!(init.status, 200);
    let init = String::from_utf8_lossy(&init.body).into_owned();
    assert!(
        init.contains("/api/openapi.json") && init.contains("tryItOutEnabled"),
        "{init}"
    );
    // `/api/docs` redirects to the page (the test client follows it).
    let r = s.get("/api/docs").await;
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("swagger"));
    // Without credentials: the API's 401, like every /api path.
    let r = s.raw("GET", "/api/openapi.json", None, None, &[]).await;
    assert_eq!(r.status, 401);
}
