//! contrib/: the Zabbix template's preprocessing — its JSONPath steps (RFC 9535 paths plus
//! Zabbix's functions `length()`, `sum()`, `first()`) and its regular-expression steps — run
//! against a live host's answers, each result checked against what the host's JSON itself says;
//! the discovery rule and its item prototypes too. And the Grafana dashboard queries only
//! metrics the host exposes.

mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Zabbix's JSONPath: an RFC 9535 path, optionally followed by one of Zabbix's functions. A
/// definite single match is returned as its text (a string without quotes); several matches as
/// a JSON array; no match is an error (as in Zabbix).
fn jsonpath(input: &str, path: &str) -> Result<String, String> {
    let v: Value = serde_json::from_str(input).map_err(|e| format!("not JSON: {e}"))?;
    let (base, func) = ["length", "sum", "first", "min", "max", "avg"]
        .iter()
        .find_map(|f| path.strip_suffix(&format!(".{f}()")).map(|b| (b, Some(*f))))
        .unwrap_or((path, None));
    let p = serde_json_path::JsonPath::parse(base).map_err(|e| format!("{base}: {e}"))?;
    let found: Vec<&Value> = p.query(&v).all();
    // A function over one match that is itself an array applies to its elements.
    let items: Vec<&Value> = match found.as_slice() {
        [Value::Array(a)] if func.is_some() && !base.contains("[?") && !base.contains("[*]") => {
            a.iter().collect()
        }
        _ => found.clone(),
    };
    let num = |x: &&Value| x.as_f64().ok_or_else(|| format!("{x} is not a number"));
    let text = |x: &Value| match x {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let f64_text = |f: f64| {
        if f.fract() == 0.0 {
            format!("{}", f as i64)
        } else {
            f.to_string()
        }
    };
    match func {
        Some("length") => Ok(items.len().to_string()),
        Some("sum") => Ok(f64_text(items.iter().map(num).sum::<Result<f64, _>>()?)),
        Some("first") => items
            .first()
            .map(|x| text(x))
            .ok_or_else(|| "no match".into()),
        Some(f) => Err(format!("{f}() is not used by the template")),
        None => match found.as_slice() {
            [] => Err(format!("{path}: no match")),
            [one] if !base.contains("[?") && !base.contains("[*]") => Ok(text(one)),
            many => Ok(Value::Array(many.iter().map(|x| (*x).clone()).collect()).to_string()),
        },
    }
}

/// Zabbix's REGEX step: parameters "pattern" and "output" (`\N` refers to a group).
fn regex_step(input: &str, pattern: &str, output: &str) -> Result<String, String> {
    let re = regex::Regex::new(pattern).map_err(|e| e.to_string())?;
    let caps = re
        .captures(input)
        .ok_or_else(|| format!("{pattern}: no match"))?;
    let mut out = output.to_owned();
    for i in (0..caps.len()).rev() {
        out = out.replace(&format!("\\{i}"), caps.get(i).map_or("", |m| m.as_str()));
    }
    Ok(out)
}

/// Runs an item's steps on `input` (the steps a live value passes before Zabbix stores it).
fn run(item: &Value, input: &str, macros: &BTreeMap<String, String>) -> Result<String, String> {
    let mut value = input.to_owned();
    for step in item["preprocessing"].as_array().expect("steps") {
        let params: Vec<String> = step["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .map(|p| {
                let mut s = p.as_str().expect("text").to_owned();
                for (k, v) in macros {
                    s = s.replace(k, v);
                }
                s
            })
            .collect();
        let r = match step["type"].as_str().expect("type") {
            "JSONPATH" => jsonpath(&value, &params[0]),
            "REGEX" => regex_step(&value, &params[0], &params[1]),
            "BOOL_TO_DECIMAL" => Ok(match value.as_str() {
                "true" => "1".into(),
                "false" => "0".into(),
                other => return Err(format!("{other} is not a boolean")),
            }),
            // Needs two values over time; a single run passes the value through.
            "CHANGE_PER_SECOND" => Ok(value.clone()),
            other => panic!("step {other} is not run by this test: add it"),
        };
        value = match (r, step["error_handler"].as_str()) {
            (Ok(v), _) => v,
            (Err(_), Some("CUSTOM_VALUE")) => step["error_handler_params"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            (Err(e), _) => return Err(e),
        };
    }
    Ok(value)
}

/// The host's answer to `path` as Zabbix's HTTP agent sees it: the body, or the headers
/// (`Name: value` lines) for an item that retrieves headers.
async fn fetch(s: &Server, path: &str, headers: bool) -> String {
    let r = s.get(path).await;
    assert_eq!(r.status, 200, "{path}");
    if headers {
        r.headers
            .iter()
            .map(|(k, v)| format!("{}: {}\r\n", k, v.to_str().unwrap_or_default()))
            .collect()
    } else {
        String::from_utf8(r.body).expect("utf-8")
    }
}

#[tokio::test]
async fn the_zabbix_template_reads_a_live_host() {
    let s = Server::demo().await;
    // A session and a connection, so their counts are not zero.
    let open =
        json!({"KeyID": KEY_ID, "ClientSessionID": "z1", "AppName": "1cv8", "KeyNo": SOFTWARE_KEY});
    assert_eq!(s.post("/api/sessions", open).await.status, 201);

    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/zabbix/keybridge_template.json"
    ))
    .expect("template");
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    let tpl = &doc["zabbix_export"]["templates"][0];
    let items = tpl["items"].as_array().expect("items");
    // Every master's live answer, by key.
    let mut raw = BTreeMap::new();
    for i in items.iter().filter(|i| i["type"] == "HTTP_AGENT") {
        let url = i["url"].as_str().expect("url");
        let path = url
            .strip_prefix("{$KEYBRIDGE.URL}")
            .expect("relative to the macro");
        let headers = i["retrieve_mode"] == "HEADERS";
        raw.insert(
            i["key"].as_str().expect("key").to_owned(),
            fetch(&s, path, headers).await,
        );
    }
    let licences: Value = serde_json::from_str(&raw["keybridge.licences.raw"]).expect("licences");
    let list = licences["Licences"].as_array().expect("list");
    let sessions = s.get("/api/sessions").await.json()["Sessions"]
        .as_array()
        .map_or(0, Vec::len);
    let connections = s.get("/api/connections").await.json()["Connections"]
        .as_array()
        .map_or(0, Vec::len);
    let info = s.get("/api/serverinfo").await.json();
    // What each dependent item must come to, from the host's own answers.
    let count = |f: &dyn Fn(&Value) -> bool| list.iter().filter(|l| f(l)).count().to_string();
    let expected: BTreeMap<&str, String> = [
        ("keybridge.licences.count", list.len().to_string()),
        (
            "keybridge.licences.workable",
            count(&|l| l["Workable"] == true && l["IsBlank"] == false),
        ),
        (
            "keybridge.licences.not_workable",
            count(&|l| l["Workable"] == false),
        ),
        (
            "keybridge.licences.total",
            list.iter()
                .map(|l| l["LicenceCount"].as_u64().expect("n"))
                .sum::<u64>()
                .to_string(),
        ),
        (
            "keybridge.version",
            info["Version"].as_str().expect("v").to_owned(),
        ),
        (
            "keybridge.computer_id",
            info["ComputerID"].as_str().expect("id").to_owned(),
        ),
        ("keybridge.sessions.count", sessions.to_string()),
        ("keybridge.connections.count", connections.to_string()),
        ("keybridge.state", "running".to_owned()),
    ]
    .into_iter()
    .collect();
    let macros = BTreeMap::new();
    let mut checked = 0;
    for i in items.iter().filter(|i| i["type"] == "DEPENDENT") {
        let key = i["key"].as_str().expect("key");
        let master = i["master_item"]["key"].as_str().expect("master");
        let got = run(i, &raw[master], &macros).unwrap_or_else(|e| panic!("{key}: {e}"));
        match expected.get(key) {
            Some(want) => assert_eq!(&got, want, "{key}"),
            // Values that move (uptime, counters): a number is what must come out.
            None => assert!(got.parse::<f64>().is_ok(), "{key}: {got:?} is not a number"),
        }
        checked += 1;
    }
    assert!(checked >= 12, "every dependent item ran: {checked}");

    // Discovery: one row per licensed key, and each prototype's steps with its macros.
    let rule = &tpl["discovery_rules"][0];
    let rows: Value = serde_json::from_str(
        &run(rule, &raw["keybridge.licences.raw"], &macros).expect("discovery"),
    )
    .expect("rows");
    let rows = rows.as_array().expect("rows");
    assert_eq!(
        rows.len(),
        list.iter().filter(|l| l["IsBlank"] == false).count()
    );
    for row in rows {
        let mut m = BTreeMap::new();
        for p in rule["lld_macro_paths"].as_array().expect("paths") {
            let v = jsonpath(&row.to_string(), p["path"].as_str().expect("path")).expect("macro");
            m.insert(p["lld_macro"].as_str().expect("macro").to_owned(), v);
        }
        let key_no = &m["{#KEYNO}"];
        let l = list
            .iter()
            .find(|l| {
                l["KeyNo"].as_u64().map(|n| n.to_string()).as_deref() == Some(key_no.as_str())
            })
            .expect("the key");
        for proto in rule["item_prototypes"].as_array().expect("prototypes") {
            let got = run(proto, &raw["keybridge.licences.raw"], &m)
                .unwrap_or_else(|e| panic!("{}: {e}", proto["key"]));
            let key = proto["key"].as_str().expect("key");
            let want = if key.starts_with("keybridge.key.days_left") {
                l["DaysLeft"]
                    .as_i64()
                    .map_or("-1".into(), |d| d.to_string())
            } else if key.starts_with("keybridge.key.workable") {
                if l["Workable"] == true {
                    "1".into()
                } else {
                    "0".into()
                }
            } else {
                l["LicenceCount"].to_string()
            };
            assert_eq!(got, want, "{key} for {key_no}");
        }
    }
}

#[tokio::test]
async fn the_grafana_dashboard_queries_metrics_the_host_has() {
    let s = Server::demo().await;
    // A call to the centre, so its counter family exists.
    assert_eq!(s.post("/api/licences/update", json!({})).await.status, 200);
    let metrics = String::from_utf8(s.get("/metrics").await.body).expect("utf-8");
    let exposed: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/grafana/keybridge_dashboard.json"
    ))
    .expect("dashboard");
    let dash: Value = serde_json::from_str(&text).expect("JSON");
    let name = regex::Regex::new(r"keybridge_[a-z_]+").expect("re");
    let mut queried = 0;
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            for m in name.find_iter(t["expr"].as_str().expect("expr")) {
                assert!(
                    exposed.contains(m.as_str()),
                    "{} queries {}, which /metrics does not have: {exposed:?}",
                    p["title"],
                    m.as_str()
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= 10);
    // The instance variable's metric, too.
    assert!(exposed.contains("keybridge_build_info"));
}
